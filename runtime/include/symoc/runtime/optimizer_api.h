/* The C ABI of every optimizer library that `symoc compile` generates.
 *
 * A generated library (lib<model>_optimizer.so, built from out/CMakeLists.txt) exports
 *
 *     const SymocOptimizerApi *symoc_optimizer_api(void);
 *     const SymocOptimizerApi *<model>_optimizer_api(void);   (same table; use this one
 *                                                              when linking several models)
 *
 * returning a static table of function pointers plus metadata, so that one loader (ctypes,
 * dlopen) drives any generated optimizer without knowing the model. This header is the
 * whole contract; it has no dependency besides <stdint.h> and is valid C and C++.
 *
 * Parameters. The library knows the plan's parameters (trained ONNX initializers) in a fixed
 * order 0 .. num_params()-1, named by param_name(i) (the initializer name, unchanged) with
 * the initializer's ONNX shape (param_shape). step() takes one pointer per parameter in that
 * order: float32, contiguous, row-major in that shape. The library never keeps the
 * pointers after a call and never allocates or frees them. Weights are updated in place.
 *
 * Errors. Functions returning int return SYMOC_OK (0) on success and a non-zero
 * SymocStatus otherwise, after setting the message returned by last_error(opt) (one line,
 * naming the parameter or file and the problem). No function aborts or throws across the
 * ABI. A refused step() or load() leaves weights and optimizer state unchanged (step checks
 * the count and every pointer before touching anything; load reads into a fresh state and
 * swaps it in only when the whole file is valid). The library cannot see the shapes of the
 * caller's buffers: a loader checks them against param_shape(). An internal runtime failure
 * in the middle of a step (SYMOC_ERR_INTERNAL, not expected once those checks pass) may
 * leave the blocks stepped before it updated. create() returns NULL on failure; the
 * reason is then in last_error(NULL) (per thread), as for the calls that take no optimizer
 * (param_shape) or were given a NULL one.
 *
 * Non-finite gradients. A parameter (or a coupled group of parameters) whose gradient holds
 * NaN/Inf is skipped for that step: its weights and state are untouched and
 * steps_skipped(opt) counts the skipped blocks since create (or load).
 *
 * Threads. One optimizer object must not be used from two threads at once; distinct
 * objects are independent. The kernels themselves use OpenBLAS/OpenMP threads.
 *
 * Versioning. abi_version is SYMOC_OPTIMIZER_ABI_VERSION at build time; struct_size is
 * sizeof(SymocOptimizerApi). A loader checks abi_version first; later versions only append
 * fields, so struct_size tells which fields exist (v2: blocks and CUDA; v3: step_rows).
 */
#ifndef SYMOC_RUNTIME_OPTIMIZER_API_H
#define SYMOC_RUNTIME_OPTIMIZER_API_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SYMOC_OPTIMIZER_ABI_VERSION 3
/* Oldest version whose table this header's prefix still describes: a loader may accept a
 * library of version SYMOC_OPTIMIZER_ABI_MIN_VERSION .. SYMOC_OPTIMIZER_ABI_VERSION and use
 * only the fields that its struct_size covers (v2 ends at is_cuda). */
#define SYMOC_OPTIMIZER_ABI_MIN_VERSION 2
/* Largest rank param_shape() writes; dims arrays passed to it need this many entries. */
#define SYMOC_OPTIMIZER_MAX_RANK 8

/* Element types of step_cuda's weights/grads (optimizer state is always float32). */
typedef enum SymocDType { SYMOC_F32 = 0, SYMOC_BF16 = 1 } SymocDType;

/* Flags of step_rows. */
enum {
  /* The parameter's gradient holds NaN/Inf in rows outside the range (another shard): skip
   * the range as step() skips the whole parameter (counted, nothing touched). */
  SYMOC_STEP_ROWS_SKIP = 1
};

typedef enum SymocStatus {
  SYMOC_OK = 0,
  SYMOC_ERR_ARGUMENT = 1, /* null pointer, index out of range, bad value, unknown name */
  SYMOC_ERR_SHAPE = 2,    /* parameter count or shape does not match the plan */
  SYMOC_ERR_IO = 3,       /* a file could not be read or written */
  SYMOC_ERR_STATE = 4,    /* state file corrupt, or written for another model/plan */
  SYMOC_ERR_INTERNAL = 5  /* any other runtime failure (message says what) */
} SymocStatus;

/* Opaque optimizer instance: hyper-parameters, optimizer state, counters, workspace. */
typedef struct SymocOptimizer SymocOptimizer;

typedef struct SymocOptimizerApi {
  /* ---- metadata (static strings, valid for the life of the library) ---- */
  uint32_t abi_version;    /* SYMOC_OPTIMIZER_ABI_VERSION */
  uint32_t struct_size;    /* sizeof(SymocOptimizerApi) of the library */
  const char *model;       /* model name the code was generated for (e.g. "llama") */
  const char *policy;      /* policy given to `symoc compile` (e.g. "symo", "muon") */
  const char *fingerprint; /* identity of model + plan; stored in and checked by save/load */
  const char *plan_json;   /* the plan (same document as out/plan.json), for inspection */

  /* ---- lifetime ---- */
  /* New optimizer with base learning rate lr (> 0, finite) and zero state. */
  SymocOptimizer *(*create)(float lr);
  /* Frees everything the optimizer owns; NULL is allowed. */
  void (*destroy)(SymocOptimizer *opt);

  /* ---- parameters (need no instance) ---- */
  int (*num_params)(void);
  /* Initializer name of parameter i, or NULL when i is out of range. */
  const char *(*param_name)(int i);
  /* Writes the rank to *rank and the dims (ONNX order) to dims[0 .. rank-1]; dims needs
   * SYMOC_OPTIMIZER_MAX_RANK entries (or may be NULL to query the rank only). */
  int (*param_shape)(int i, int64_t *dims, int *rank);

  /* ---- stepping ---- */
  /* One optimizer step over all parameters. weights[i] / grads[i] belong to parameter i
   * (plan order); n must equal num_params(). Per parameter:
   *   W <- W - lr * m_block * (direction + decoupled weight decay)
   * with the step rule of the plan. Returns SYMOC_ERR_SHAPE when n differs from the plan,
   * SYMOC_ERR_ARGUMENT for a NULL pointer, without touching anything. */
  int (*step)(SymocOptimizer *opt, float *const *weights, const float *const *grads, int n);
  /* Drops all optimizer state (moments, preconditioners, step counts); keeps lr and the
   * block multipliers. */
  int (*zero_state)(SymocOptimizer *opt);
  int (*set_lr)(SymocOptimizer *opt, float lr);
  float (*get_lr)(const SymocOptimizer *opt); /* NaN when opt is NULL */
  /* Learning-rate multiplier m (finite, >= 0) for the parameters matched by `name`: an
   * initializer name, or a glob with '*' and '?' over initializer names, relative to the
   * plan's rate for the block (its step option lr_scale, usually 1). Default 1. Returns
   * SYMOC_ERR_ARGUMENT when nothing matches. Parameters stepped jointly with others (one
   * batched/coupled call) may receive different multipliers: each is applied to that
   * parameter's own update. */
  int (*set_block_multiplier)(SymocOptimizer *opt, const char *name, float m);

  /* ---- checkpoints (runtime/README.md, "State file format") ---- */
  /* Saves the optimizer state, lr, multipliers and step count to path (atomically). */
  int (*save)(const SymocOptimizer *opt, const char *path);
  /* Replaces the state by the one in path; SYMOC_ERR_STATE when the file was written for
   * another fingerprint (model/plan) or is corrupt, SYMOC_ERR_IO when unreadable. */
  int (*load)(SymocOptimizer *opt, const char *path);

  /* ---- diagnostics ---- */
  /* Message of the last failed call on opt ("" when none); opt == NULL: the last failed
   * create() (or call without an optimizer) on this thread. The pointer is valid until the next call on opt. */
  const char *(*last_error)(const SymocOptimizer *opt);
  /* Blocks skipped for a non-finite gradient since create (or the last load). */
  int64_t (*steps_skipped)(const SymocOptimizer *opt);
  /* Completed step() and step_blocks() calls since create (restored by load). */
  int64_t (*steps_taken)(const SymocOptimizer *opt);
  /* Step rule of parameter i as the plan names it ("adamw", "muon", "symo B x B", ...),
   * or NULL when i is out of range. */
  const char *(*param_rule)(int i);
  /* Bytes of optimizer state currently held (float32 buffers; grows on the first step). */
  int64_t (*state_bytes)(const SymocOptimizer *opt);

  /* ---- ABI version 2: blocks (distributed stepping) ----
   * A block is the unit the plan steps at once: one parameter, or parameters stepped
   * jointly (coupled/batched). Blocks are numbered 0 .. num_blocks()-1 in plan order. */
  int (*num_blocks)(void);
  /* Writes the parameter indices of block b to params[0 .. min(count, cap)-1] and returns
   * the count; -1 when b is out of range. */
  int (*block_params)(int b, int32_t *params, int cap);
  /* The plan's estimated cost of one step of block b (FLOPs + bytes moved; relative
   * weights for load balancing), or -1 when b is out of range. */
  double (*block_cost)(int b);
  /* Like step() but updates only the listed blocks (each at most once); weights/grads are
   * full-length (n == num_params()) and entries of parameters outside those blocks may be
   * NULL. State is created only for blocks that are stepped. */
  int (*step_blocks)(SymocOptimizer *opt, float *const *weights, const float *const *grads,
                     int n, const int32_t *blocks, int nblocks);

  /* ---- ABI version 2: CUDA (NULL in a library built without CUDA) ---- */
  /* New optimizer whose state lives on CUDA device `device`; NULL on failure
   * (last_error(NULL)). save/load/zero_state/set_lr/... work on it as on a CPU one. */
  SymocOptimizer *(*create_cuda)(float lr, int device);
  /* One step of a CUDA optimizer over device pointers: weights[i]/grads[i] of dtypes[i]
   * (SymocDType; NULL means all SYMOC_F32), contiguous in the plan's shape, ordered on
   * `stream` (a cudaStream_t; NULL = the legacy default stream). blocks == NULL steps every
   * block, else only the nblocks listed (as step_blocks). No host synchronization and no
   * allocation after the first step. */
  int (*step_cuda)(SymocOptimizer *opt, void *const *weights, const void *const *grads,
                   const int32_t *dtypes, int n, const int32_t *blocks, int nblocks,
                   void *stream);
  /* 1 when opt was made by create_cuda, 0 otherwise. */
  int (*is_cuda)(const SymocOptimizer *opt);

  /* ---- ABI version 3: row ranges of elementwise blocks (sharded stepping) ----
   * A parameter whose block is elementwise (the parameter alone, no gauge, stepped by adamw,
   * adam, sgd or adam_mini: the update of an entry depends only on that entry's, or its row
   * group's, gradient and state) can be stepped a range of rows at a time with state for
   * those rows only: a data-parallel rank steps its shard in place, or a large block is
   * split over ranks. Rows are the parameter's first dimension (plan rows; 1-D: entries),
   * row r holding the cols = product of the other dimensions contiguous entries. */
  /* > 0 when step_rows accepts parameter i: row ranges start and end on multiples of it
   * (adam_mini: its group_rows, else 1); 0 when its rule needs the whole block; -1 when i
   * is out of range. */
  int64_t (*param_row_granule)(int i);
  /* Steps rows [row_begin, row_end) of parameter i; weights/grads point to those rows only
   * ((row_end - row_begin) * cols contiguous floats). The rows' update is bit-identical to
   * theirs in step(). State is kept under the parameter's usual keys, sized to the range
   * (adamw's m and v: (row_end - row_begin) x cols; adam_mini's v: one entry per row group),
   * plus the counter "<param>/shard_rows" = row_end - row_begin: one optimizer steps one row
   * count per parameter (a parameter stepped whole, or with another count, is refused with
   * SYMOC_ERR_STATE, untouched). Flags: SYMOC_STEP_ROWS_SKIP (see above). An empty range is
   * a no-op. Does not count in steps_taken. CPU optimizers only (create()). */
  int (*step_rows)(SymocOptimizer *opt, int i, int64_t row_begin, int64_t row_end,
                   float *weights, const float *grads, int flags);
} SymocOptimizerApi;

/* Exported by every generated library. */
const SymocOptimizerApi *symoc_optimizer_api(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SYMOC_RUNTIME_OPTIMIZER_API_H */
