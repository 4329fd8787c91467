// Internal: the batched symmetric eigensolver on packed buffers of T (float or double), in
// place: A (batch x n x n, symmetric; only the row-major lower triangle is read) becomes the
// eigenvectors, row k = k-th eigenvector, and W (batch x n) the ascending eigenvalues.
#pragma once

#include "common.cuh"

#include <vector>

namespace symoc::cuda::detail {

class EighCore {
public:
  EighCore(Engine::Impl &, int64_t n, int64_t batch, bool dbl, EigMethod);
  ~EighCore();
  EighCore(const EighCore &) = delete;
  EighCore &operator=(const EighCore &) = delete;
  // Device scratch (solver work and per-matrix info).
  size_t workspace_bytes() const;
  // info: device ints, batch of them, or null (then kept in the scratch).
  void run(void *A, void *W, void *scratch, int *info, cudaStream_t);
  EigMethod method() const { return method_; }

private:
  Engine::Impl &e_;
  int64_t n_, batch_;
  bool dbl_;
  EigMethod method_;
  syevjInfo_t jac_ = nullptr;
  cusolverDnParams_t params_ = nullptr;
  size_t dev_bytes_ = 0, host_bytes_ = 0;
  bool per_matrix_ = false; // one Xsyevd per matrix: PerMatrix, or XsyevBatched unavailable
  std::vector<char> host_;
  void run_tridiagonal(void *A, void *W, char *scratch, int *info, cudaStream_t s);
  template <class T> void tridiagonal(T *A, T *W, char *scratch, int *info, cudaStream_t s);
  template <class T> size_t tridiagonal_bytes() const;
  template <class T> size_t tridiagonal_stage_bytes() const;
  bool timing_ = false; // Tridiagonal: SYMOC_CUDA_EIGH_TIMING=1
};

// Packs a strided fp32 batch into a packed T batch (optionally symmetrized: (S + S^T)/2).
template <class T>
void pack_square(const Batch &S, T *dst, bool symmetrize, cudaStream_t s);
// Unpacks a packed T batch of rows x cols into a strided fp32 batch.
template <class T> void unpack(const T *src, const Batch &out, cudaStream_t s);
// Converts n values T -> float.
template <class T> void to_float(const T *src, float *dst, int64_t n, cudaStream_t s);

} // namespace symoc::cuda::detail
