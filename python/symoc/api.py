"""One call from a torch.nn.Module to a symoc optimizer (and to its symmetry report).

    import symoc.torch
    opt = symoc.torch.compile(model, (example_batch,), policy="auto", lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000)   # per-block groups
    rep = symoc.torch.report(model, (example_batch,))                    # text, JSON, picture

compile() exports a copy of the model to ONNX (parameters under their torch names, each its
own initializer), runs `symoc verify` and `symoc compile`, builds the generated library with
cmake, loads it and returns a `BlockOptimizer`: a SymocOptimizer whose param groups are the
plan's blocks (a scheduler may give each block its own lr). Results are cached on disk; a
second call for the same model structure and options neither exports nor builds.

Where the tools come from (first found): the `SYMOC_BIN` environment variable; the `bin/symoc`
of the relocatable package this Python package sits in (tools/package.sh); the build folder
of the source tree it sits in (`$SYMOC_BUILD_DIR/bin/symoc`, default `build/bin/symoc`);
`symoc` on PATH. The runtime sources likewise: `SYMOC_RUNTIME_DIR`, the package's or source
tree's `runtime/`, else the folder the symoc binary recorded. The cache: `SYMOC_CACHE_DIR`,
default `~/.cache/symoc`.
"""
import contextlib
import copy
import hashlib
import inspect
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
import types

import torch

from symoc import complex_export
from symoc.patching import patched
from symoc.build import SymocError, build_library
from symoc.onnx_scan import initializer_names

__all__ = ["compile", "report", "Report", "BlockOptimizer", "find_symoc", "cache_key"]

# Bump when anything that decides the exported file or the plan changes in this module.
_SCHEMA = "symoc.torch.compile/1"
_HERE = os.path.dirname(os.path.abspath(__file__))
_TREE = os.path.dirname(os.path.dirname(_HERE))   # package root or source tree


# --------------------------------------------------------------------------- tools
def find_symoc():
    """Path of the symoc binary (see the module docstring for the order); raises SymocError."""
    tried = []
    env = os.environ.get("SYMOC_BIN")
    if env:
        if os.path.isfile(env) and os.access(env, os.X_OK):
            return os.path.abspath(env)
        raise SymocError("SYMOC_BIN=%s: not an executable file" % env)
    for cand in (os.path.join(_TREE, "bin", "symoc"),
                 os.path.join(os.environ.get("SYMOC_BUILD_DIR") or os.path.join(_TREE, "build"),
                              "bin", "symoc")):
        tried.append(cand)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    on_path = shutil.which("symoc")
    if on_path:
        return os.path.abspath(on_path)
    raise SymocError("no symoc binary: set SYMOC_BIN, put symoc on PATH, or build it "
                     "(tried %s and PATH)" % ", ".join(tried))


def _runtime_dir(symoc):
    env = os.environ.get("SYMOC_RUNTIME_DIR")
    if env:
        return os.path.abspath(env)
    for root in (os.path.dirname(os.path.dirname(symoc)), _TREE):
        cand = os.path.join(root, "runtime")
        if os.path.isfile(os.path.join(cand, "include", "symoc", "runtime", "optimizer_api.h")):
            return cand
    return None     # the folder symoc recorded when it was built


def _file_id(path):
    st = os.stat(path)
    return "%s:%d:%d" % (os.path.realpath(path), st.st_size, st.st_mtime_ns)


class _Tools:
    """The symoc binary, the runtime sources and what this binary can do (probed once)."""
    _cache = {}

    @classmethod
    def get(cls):
        symoc = find_symoc()
        key = _file_id(symoc)
        if key not in cls._cache:
            cls._cache[key] = cls(symoc, key)
        return cls._cache[key]

    def __init__(self, symoc, ident):
        self.symoc = symoc
        self.runtime = _runtime_dir(symoc)
        files = []
        if self.runtime:
            for d, _, names in os.walk(self.runtime):
                files += [_file_id(os.path.join(d, n)) for n in sorted(names)]
        self.ident = _sha(ident, self.runtime or "", *sorted(files))
        self._compile_help = None
        self._opset_probe = {}

    peak_rss = 0   # largest VmHWM (bytes) seen of a symoc run in this process

    def run(self, args, what, module, failed_check_ok=False):
        """Run symoc; raise on failure, except (failed_check_ok) a run that only reports a
        failed numerical check (exit 1 with no `error` line), which the caller reads."""
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            p = subprocess.Popen([self.symoc] + args, stdout=out, stderr=err,
                                 universal_newlines=True)
            # Peak memory of symoc itself (a child's ru_maxrss would count the fork's copy of
            # this process): its VmHWM, read until it exits.
            while p.poll() is None:
                _Tools.peak_rss = max(_Tools.peak_rss, _vm_hwm(p.pid))
                try:
                    p.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
            out.seek(0)
            err.seek(0)
            r = subprocess.CompletedProcess(p.args, p.returncode, out.read(), err.read())
        if r.returncode != 0 and not (failed_check_ok and r.returncode == 1 and
                                      "error" not in r.stderr):
            # symoc's error line; else (a failed check) the failing claims and the summary
            out_lines = r.stdout.strip().splitlines()
            errs = [l for l in r.stderr.splitlines() if "error" in l] or \
                ([l for l in out_lines if l.startswith("FAIL")][:3] + out_lines[-1:]) or \
                r.stderr.strip().splitlines()[-3:]
            raise _error(module, "%s failed (exit %d): %s" % (what, r.returncode,
                                                             " | ".join(errs)))
        return r

    def compile_verifies(self):
        """Whether `symoc compile` checks the claims itself (then no separate verify run)."""
        if self._compile_help is None:
            r = subprocess.run([self.symoc, "compile", "--help"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, universal_newlines=True)
            self._compile_help = r.stdout
        return "--no-verify" in self._compile_help

    def accepts_opset(self, opset):
        """Whether this symoc imports a model of this opset (a one-node probe, cached)."""
        if opset not in self._opset_probe:
            with tempfile.TemporaryDirectory(prefix="symoc-probe-") as d:
                path = os.path.join(d, "probe.onnxtxt")
                with open(path, "w") as f:
                    f.write('<ir_version: 8, opset_import: ["" : %d]>\n'
                            'probe (float[2] x) => (float[2] y) {\n  y = Relu(x)\n}\n' % opset)
                r = subprocess.run([self.symoc, "import", path], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
                self._opset_probe[opset] = r.returncode == 0
        return self._opset_probe[opset]


def _tools(label):
    try:
        return _Tools.get()
    except SymocError as e:
        raise _error(label, str(e)) from None


def _vm_hwm(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _sha(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def _module_label(model):
    return type(model).__name__


def _unwrap(model):
    """The module a wrapper runs: torch.compile's OptimizedModule (`_orig_mod`),
    DistributedDataParallel and DataParallel (`module`). Their parameters are the inner
    module's own tensors under a name prefix, so what is exported, planned and stepped is the
    inner module; the optimizer then steps the very tensors the wrapper trains. (FSDP2's
    `fully_shard` has no wrapper: it shards the parameters themselves, _refuse_sharded.)"""
    while True:
        if type(model).__name__ == "OptimizedModule" and \
                isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        elif isinstance(model, (torch.nn.DataParallel,
                                torch.nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            break
    return model


def _refuse_sharded(model, label):
    sharded = [n for n, p in model.named_parameters()
               if any(c.__name__ == "DTensor" for c in type(p).__mro__)]
    if sharded:
        raise _error(label, "parameter %r is a DTensor (FSDP2's fully_shard): the one-call "
                     "optimizer steps whole tensors; build the library with symoc.torch.compile "
                     "on the unsharded model and step the shards with symoc.distributed."
                     "DistributedSymocOptimizer (docs/distributed.md)" % sharded[0])


def _error(module, cause):
    return SymocError("symoc.torch: %s: %s" % (module, cause))


def _cache_root(cache_dir):
    root = cache_dir or os.environ.get("SYMOC_CACHE_DIR") or \
        os.path.join(os.path.expanduser("~"), ".cache", "symoc")
    os.makedirs(root, exist_ok=True)
    return root


# --------------------------------------------------------------------------- cache key
_code_memo = {}


def _code_digest(code, depth, seen):
    """Bytes that change when a function's code (or a function it names) changes."""
    h = hashlib.sha256(code.co_code)
    h.update(repr([c for c in code.co_consts if not isinstance(c, types.CodeType)]).encode())
    h.update(repr(code.co_names).encode())
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            h.update(_code_digest(c, depth, seen))
    return h.digest()


def _function_digest(fn, depth=0, seen=None):
    """Code of fn and, three levels deep, of the Python functions its globals name; plus the
    content of the files they come from (helpers in the same file are covered that way)."""
    seen = set() if seen is None else seen
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    if code is None or id(code) in seen:
        return b""
    seen.add(id(code))
    h = hashlib.sha256(_code_digest(code, depth, seen))
    h.update(_source_file_digest(code.co_filename))
    if depth < 3:
        g = getattr(fn, "__globals__", {})
        for name in code.co_names:
            obj = g.get(name)
            if isinstance(obj, types.FunctionType):
                h.update(_function_digest(obj, depth + 1, seen))
    return h.digest()


_file_memo = {}


def _source_file_digest(path):
    """Content hash of a Python source file outside torch (torch's version is in the key)."""
    if not path or not os.path.isfile(path) or \
            os.path.realpath(path).startswith(os.path.dirname(os.path.realpath(torch.__file__))):
        return b""
    try:
        fid = _file_id(path)
    except OSError:
        return b""
    if fid not in _file_memo:
        with open(path, "rb") as f:
            _file_memo[fid] = hashlib.sha256(f.read()).digest()
    return _file_memo[fid]


def _tensor_digest(t):
    t = t.detach()
    if t.numel() * t.element_size() > (64 << 20):
        return "big"
    return hashlib.sha256(t.cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                          if t.dtype != torch.bool else
                          t.cpu().contiguous().to(torch.uint8).numpy().tobytes()).hexdigest()


def _describe(x, out, path="in"):
    """Shapes and dtypes of the example inputs (values do not enter the key)."""
    if isinstance(x, torch.Tensor):
        out.append("%s:%s:%s" % (path, tuple(x.shape), x.dtype))
    elif isinstance(x, (list, tuple)):
        out.append("%s:%s[%d]" % (path, type(x).__name__, len(x)))
        for i, v in enumerate(x):
            _describe(v, out, "%s.%d" % (path, i))
    elif isinstance(x, dict):
        for k in sorted(x, key=str):
            _describe(x[k], out, "%s.%s" % (path, k))
    else:
        out.append("%s:%r" % (path, x))


def _config_text(cfg):
    try:
        return json.dumps(cfg.to_dict(), sort_keys=True, default=repr)
    except Exception:   # a to_dict() that is something else: its repr
        return repr(cfg)


def cache_key(model, example_inputs, settings):
    """What decides the exported graph and the plan, hashed without exporting: the module
    tree (types, extra_repr, scalar attributes, forward code and its source files), every
    parameter's name/shape/dtype/requires_grad and tying, buffers and plain tensor attributes
    (values: they are constants of the graph), input shapes/dtypes, torch's version and the
    options. Parameter values do not enter: the export uses random ones anyway."""
    parts = [_SCHEMA, torch.__version__, json.dumps(settings, sort_keys=True)]
    firsts = {}
    seen_types = set()
    for mname, mod in model.named_modules(remove_duplicate=False):
        cls = type(mod)
        parts.append("M %s %s.%s %s" % (mname, cls.__module__, cls.__qualname__,
                                        mod.extra_repr()))
        if cls not in seen_types:
            seen_types.add(cls)
            for klass in cls.__mro__:
                fwd = klass.__dict__.get("forward")
                if fwd is not None:
                    parts.append(_function_digest(fwd))
        for k, v in sorted(vars(mod).items()):
            if k.startswith("_") or k == "training":
                continue
            if isinstance(v, (bool, int, float, str, type(None))):
                parts.append("A %s.%s=%r" % (mname, k, v))
            elif isinstance(v, (tuple, list)) and all(isinstance(e, (bool, int, float, str))
                                                     for e in v):
                parts.append("A %s.%s=%r" % (mname, k, v))
            elif isinstance(v, torch.Tensor):
                parts.append("T %s.%s %s %s %s" % (mname, k, tuple(v.shape), v.dtype,
                                                   _tensor_digest(v)))
            elif callable(getattr(v, "to_dict", None)):   # a Hugging Face config
                parts.append("C %s.%s %s %r" % (mname, k, _config_text(v),
                                                getattr(v, "_attn_implementation", None)))
        for k, p in mod._parameters.items():
            if p is None:
                continue
            full = mname + "." + k if mname else k
            first = firsts.setdefault(id(p), full)
            parts.append("P %s %s %s %s %s" % (full, tuple(p.shape), p.dtype, p.requires_grad,
                                               first))
        for k, b in mod._buffers.items():
            if b is not None:
                full = mname + "." + k if mname else k
                parts.append("B %s %s %s %s" % (full, tuple(b.shape), b.dtype, _tensor_digest(b)))
    ins = []
    _describe(example_inputs, ins)
    parts += ins
    return _sha(*parts)


# --------------------------------------------------------------------------- export
def _as_args(example_inputs):
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, list):
        return tuple(example_inputs)
    if isinstance(example_inputs, tuple):
        return example_inputs
    raise TypeError("example_inputs must be a tensor or a tuple of the forward's arguments, got %s"
                    % type(example_inputs).__name__)


@torch.no_grad()
def _structural_copy(model, seed=0):
    """A CPU copy of the model for export: trainable parameters get distinct random values
    near their own scale (equal initializers are not merged by any exporter, and constant
    gains hide nothing), frozen parameters and buffers keep theirs (they are constants of the
    graph), dropout probabilities (modules' and float `*drop*` attributes') are 0 and the
    copy is in training mode."""
    m = copy.deepcopy(model).cpu().float()
    g = torch.Generator().manual_seed(seed)
    for _, p in m.named_parameters():
        if not p.requires_grad or not p.is_floating_point():
            continue
        rms = float(p.double().pow(2).mean().sqrt()) if p.numel() else 0.0
        # A parameter at a tiny scale (LayerScale's 1e-5 gains) would hide what follows it
        # from verify's tolerance, so those get values of a visible size: the graph, not
        # the values, is what the analysis reads.
        std = 0.2 * rms if rms >= 1e-2 else 0.05
        p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.dropout._DropoutNd):
            mod.p = 0.0
        _zero_drop_rates(mod)
        _zero_drop_rates(getattr(mod, "config", None))
    _exportable_experts(m)
    return m.train()


def _has_batch_norm(m):
    """A BatchNorm in training mode normalizes by the batch's statistics, so the channels
    before it may be permuted and rescaled. torch 2.11's dynamo exporter writes it as an
    inference-mode BatchNormalization over the running statistics (constants): the file is
    then the eval-mode function, in which no channel symmetry passes a BatchNorm (timm
    ResNet-18: 0 claims, 64 from the TorchScript export). The TorchScript exporter keeps
    training_mode=1, so models with BatchNorm (or an InstanceNorm that tracks running
    statistics) are exported with it first."""
    norm_base = getattr(torch.nn.modules.batchnorm, "_NormBase", torch.nn.modules.batchnorm._BatchNorm)
    return any(isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) or
               (isinstance(mod, norm_base) and getattr(mod, "track_running_stats", False))
               for mod in m.modules())


def _zero_drop_rates(obj):
    """Dropout that is not an nn.Dropout module: a float probability the forward reads
    (F.dropout(x, self.dropout), timm's and Hugging Face's DropPath `drop_prob`, a block's
    `drop_rate`, BART's `layerdrop`, a config's `attention_dropout`). Exported in training
    mode it is a random op no verification can evaluate, so the export copy's are 0."""
    attrs = getattr(obj, "__dict__", None)
    if not attrs:
        return
    for k, v in list(attrs.items()):
        if "drop" in k.lower() and isinstance(v, float) and v > 0:
            try:
                setattr(obj, k, 0.0)
            except (AttributeError, TypeError, ValueError):  # a read-only or validated field
                pass


def _exportable_experts(m):
    """Hugging Face MoE layers (transformers >= 5) run their experts through a selectable
    backend whose default, grouped_mm, the ONNX exporters cannot translate; batched_mm computes
    the same function with a Gather of the selected experts' weights and torch.bmm, which they
    can. Only the export copy is switched; the model itself keeps its backend."""
    for mod in m.modules():
        switch = getattr(mod, "set_experts_implementation", None)
        if callable(switch):
            try:
                switch("batched_mm")
            except Exception:  # noqa: BLE001 (a model without MoE layers, an older transformers)
                pass


def _cpu(x, float32=False):
    """x's tensors on the CPU (detached); with float32, 16-bit floating ones as float32."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return x.float() if float32 and x.dtype in (torch.bfloat16, torch.float16) else x
    if isinstance(x, (list, tuple)):
        return type(x)(_cpu(v, float32) for v in x)
    if isinstance(x, dict):
        return {k: _cpu(v, float32) for k, v in x.items()}
    return x


def _dynamo_available():
    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        return False
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError:
        return False
    return True


def _onnx_export(model, args, path, **kw):
    """torch.onnx.export with the keywords this torch version has (the others are defaults
    of a version that lacks them)."""
    known = inspect.signature(torch.onnx.export).parameters
    torch.onnx.export(model, args, path, **{k: v for k, v in kw.items() if k in known})


def _export_torchscript(model, args, path):
    # Training mode, no constant folding: one initializer per parameter under its torch name,
    # no merged equal values, BatchNorm not folded (README, "Exporting a model").
    _onnx_export(model, args, path, opset_version=17, export_params=True,
                 do_constant_folding=False, training=torch.onnx.TrainingMode.TRAINING,
                 keep_initializers_as_inputs=False, dynamo=False)


def _export_dynamo(model, args, path):
    # optimize=False: every parameter keeps its own initializer under its torch name (the
    # optimizer would fold transposes into val_N copies and merge equal values).
    _onnx_export(model, args, path, dynamo=True, optimize=False, external_data=False)


def _export_dynamo_eval(model, args, path):
    # The same copy in eval mode, where train-mode code cannot be traced: a LayerDrop draw
    # compared in Python (BART, OPT, BioGPT, XGLM: torch.export cannot guard on the
    # data-dependent `torch.rand([]) < layerdrop`), a router's jitter noise (PhiMoE:
    # prims.uniform has no ONNX translation). The copy's dropout rates are 0 already, so eval
    # mode switches off only such draws; a model with BatchNorm never comes here (its eval
    # function normalizes by constants, _has_batch_norm).
    was = model.training
    model.eval()
    try:
        _export_dynamo(model, args, path)
    finally:
        model.train(was)


def _sdpa_math(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
               enable_gqa=False):
    """torch.nn.functional.scaled_dot_product_attention in matmul and softmax, as its
    documentation defines it (a boolean mask keeps the True positions, a float mask is added;
    is_causal keeps the lower triangle; enable_gqa repeats each key/value head for its group of
    query heads)."""
    L, S = query.size(-2), key.size(-2)
    factor = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    if enable_gqa and key.size(-3) != query.size(-3):
        rep = query.size(-3) // key.size(-3)
        key, value = key.repeat_interleave(rep, -3), value.repeat_interleave(rep, -3)
    att = torch.matmul(query, key.transpose(-2, -1)) * factor
    if is_causal:
        keep = torch.ones(L, S, dtype=torch.bool, device=query.device).tril()
        att = att.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        att = att.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else att + attn_mask
    att = torch.softmax(att, dim=-1)
    if dropout_p > 0.0:
        att = torch.dropout(att, dropout_p, True)
    return torch.matmul(att, value)


def _math_attention():
    """While active, torch.nn.functional.scaled_dot_product_attention is _sdpa_math (code that
    looks it up when it calls it: transformers' sdpa attention, timm's fused_attn)."""
    return patched(torch.nn.functional, scaled_dot_product_attention=_sdpa_math)


def _with_math_attention(export):
    """The same export with attention as matmul and softmax (_math_attention): the ONNX
    exporter's decompositions give SDPA's output other strides than its trace did, and the
    model's later .view of its transpose fails ("Cannot view a tensor with shape ...";
    pytorch#136543, #141107: transformers' T5 and Swin, timm's relative-position ViT). The
    exported function is the same."""
    def run(model, args, path):
        with _math_attention():
            export(model, args, path)
    return run


def _with_real_complex(export):
    """The same export of a copy whose complex numbers are pairs of real ones
    (complex_export.real_complex): ONNX and both of torch's exporters have no complex
    arithmetic, which rotary embeddings written as complex products need (Meta's LLaMA code,
    torchtitan, transformers' Llama 4). The exported function is the same."""
    def run(model, args, path):
        with complex_export.real_complex(model) as real:
            export(real, args, path)
    return run


def _dynamo_order(batch_norm):
    """symoc.torch's dynamo attempts, in order: (function, mode, what the cause says). The
    attention retries only where this torch has scaled_dot_product_attention; the eval-mode
    ones only without BatchNorm (_export_dynamo_eval); complex numbers as real pairs in
    training mode, after the attention retry, with it."""
    sdpa = hasattr(torch.nn.functional, "scaled_dot_product_attention")
    out = [(_export_dynamo, "train", "dynamo exporter")]
    if sdpa:
        out.append((_with_math_attention(_export_dynamo), "train",
                    "dynamo exporter (attention as matmul and softmax)"))
    out.append((_with_real_complex(_with_math_attention(_export_dynamo) if sdpa else _export_dynamo),
                "train", "dynamo exporter (complex numbers as real pairs%s)"
                % (", attention as matmul and softmax" if sdpa else "")))
    if not batch_norm:
        out.append((_export_dynamo_eval, "eval", "dynamo exporter (eval mode)"))
        if sdpa:
            out.append((_with_math_attention(_export_dynamo_eval), "eval",
                        "dynamo exporter (eval mode, attention as matmul and softmax)"))
    return out


def _tensors(x):
    """The tensors of a model output (a tensor, tuples, lists, dicts, HF ModelOutputs)."""
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, dict) or hasattr(x, "items"):
        return [t for _, v in x.items() for t in _tensors(v)]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _tensors(v)]
    return []


def _train_eval_gap(model, args):
    """How far the copy's training-mode forward is from its eval-mode one on the example
    inputs (max |a - b| / max |b| over the output tensors; None when it cannot be told). The
    eval-mode retry exports the eval function: where the two differ (a router that samples in
    training, an auxiliary head), the plan is derived from the eval-mode function."""
    was = model.training
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):   # the caller's RNG untouched
            torch.manual_seed(0)
            model.train()
            a = [t.double() for t in _tensors(model(*args))]
            model.eval()
            b = [t.double() for t in _tensors(model(*args))]
    except Exception:   # noqa: BLE001  (a forward that fails says nothing here)
        return None
    finally:
        model.train(was)
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b)):
        return float("inf")
    num = max([float((x - y).abs().max()) for x, y in zip(a, b) if x.numel()] or [0.0])
    den = max([float(y.abs().max()) for y in b if y.numel()] or [0.0])
    return num / den if den > 0 else num


def _quiet(fn, *a):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a)


def _direct_checkpoint():
    """While active, activation checkpointing's reentrant form (torch.utils.checkpoint with
    use_reentrant=True, transformers' gradient_checkpointing_enable() default) calls its
    function directly: the forward is the same, only what autograd keeps differs, and its
    autograd.Function does not export (TorchScript: "unordered_map::at"). Patched on the
    class, so code that imported `checkpoint` by name is covered too."""
    import torch.utils.checkpoint as ckpt
    cls = getattr(ckpt, "CheckpointFunction", None)
    if cls is None:
        return contextlib.nullcontext()
    return patched(cls, apply=lambda function, preserve_rng_state, *args: function(*args))


def _glob_escape(name):
    return re.sub(r"([*?\[])", r"[\1]", name)


class _Exported:
    """An exported model file and what it says about the torch parameters."""

    def __init__(self, path, exporter, frozen, trainable, mode="train"):
        self.path, self.exporter, self.frozen, self.trainable = path, exporter, frozen, trainable
        self.mode = mode   # "eval": the training-mode trace failed (_export_dynamo_eval)
        self.note = None   # set when the training- and eval-mode forwards differ
        self.how = None    # the attempt that exported, as the errors name it (_dynamo_order)

    def frozen_args(self):
        out = []
        for n in self.frozen:
            out += ["--frozen", _glob_escape(n)]
        return out


def _export(model, args, work, tools, label, exporter="auto"):
    """Export a structural copy to work/model.onnx; check every trainable parameter is an
    initializer under its own name; everything else in the file is frozen."""
    named = list(model.named_parameters())
    trainable = [n for n, p in named if p.requires_grad]
    if not trainable:
        raise _error(label, "no parameter requires grad: nothing to optimize")
    for n, p in named:
        if not p.requires_grad:
            continue
        if p.dtype == torch.bfloat16 and p.device.type != "cuda":
            raise _error(label, "parameter %r is bfloat16 on %s; symoc steps bfloat16 parameters "
                         "on CUDA only (float32 on any device)" % (n, p.device))
        if p.dtype not in (torch.float32, torch.bfloat16):
            raise _error(label, "parameter %r is %s; symoc optimizers step float32 parameters "
                         "(and bfloat16 ones on CUDA)" % (n, p.dtype))
    # The export is of a float32 copy (the plan depends on the graph, not the dtype), so
    # 16-bit floating example inputs go in as float32 too; integer inputs stay as they are.
    m = _structural_copy(model)
    a = _cpu(args, float32=True)
    path = os.path.join(work, "model.onnx")
    order = []   # (exporter, function, what the cause says, mode)
    batch_norm = _has_batch_norm(m)
    if exporter in ("auto", "dynamo") and _dynamo_available() and \
            (exporter == "dynamo" or tools.accepts_opset(18)):
        order += [("dynamo", fn, what, mode) for fn, mode, what in _dynamo_order(batch_norm)]
    if exporter in ("auto", "torchscript"):
        ts = [("torchscript", _export_torchscript, "torchscript exporter", "train"),
              ("torchscript", _with_real_complex(_export_torchscript),
               "torchscript exporter (complex numbers as real pairs)", "train")]
        if exporter == "auto" and batch_norm:
            order[:0] = ts   # TorchScript first, dynamo the fallback (_has_batch_norm)
        else:
            order += ts
    if not order:
        raise _error(label, "exporter %r is not available here (torch %s)"
                     % (exporter, torch.__version__))
    causes, lost = [], False
    for name, fn, what, mode in order:
        try:
            with _direct_checkpoint():
                _quiet(fn, m, a, path)
        except Exception as e:   # the exporters raise many types
            msg = str(e).strip().splitlines()
            causes.append("%s: %s: %s" % (what, type(e).__name__, msg[0] if msg else ""))
            continue
        inits = initializer_names(path)
        missing = [n for n in trainable if n not in inits]
        if missing:
            renamed = _rename_tied(path, model, missing, inits)
            if renamed:
                inits = initializer_names(path)
                missing = [n for n in trainable if n not in inits]
        if missing:
            lost = True
            causes.append("%s: %d trainable parameter(s) are not initializers of the "
                          "exported graph under their torch names: %s%s (unused in forward? "
                          "set requires_grad=False)"
                          % (what, len(missing), ", ".join(missing[:5]),
                             ", ..." if len(missing) > 5 else ""))
            continue
        tset = set(trainable)
        frozen = [n for n in inits if n not in tset]
        ex = _Exported(path, name, frozen, trainable, mode)
        ex.how = what
        if ex.mode == "eval":
            gap = _train_eval_gap(m, a)
            if gap is None or gap > 1e-6:
                ex.note = ("the training-mode trace failed (%s) and the eval-mode export is used, but "
                           "the training-mode forward differs from the eval-mode one on the example "
                           "inputs (%s): the plan is derived from the eval-mode function"
                           % (causes[-1], "max relative difference %.2g" % gap if gap is not None
                              else "the training-mode forward failed"))
                import warnings
                warnings.warn("symoc.torch: %s: %s" % (label, ex.note), stacklevel=3)
        return ex
    raise _error(label, ("the exported graph lacks trainable parameters: " if lost else
                         "the model does not export to ONNX: ") + "; ".join(causes))


def _aliases(model):
    """{id(parameter): [every name it has]}: a tied parameter (one tensor under several
    modules) has several; named_parameters() lists only the first."""
    out = {}
    for mn, mod in model.named_modules():
        for pn, p in mod._parameters.items():
            if p is not None:
                names = out.setdefault(id(p), [])
                n = mn + "." + pn if mn else pn
                if n not in names:
                    names.append(n)
    return out


def _rename_tied(path, model, missing, inits):
    """The dynamo exporter names a tied parameter after one of its other names (GPT-2's
    wte.weight becomes lm_head.weight). Rename such initializers (and their uses) in the
    file to the named_parameters() name; True when something was renamed. Needs the onnx
    package, which the dynamo exporter needs anyway."""
    params = dict(model.named_parameters())
    aliases = _aliases(model)
    mapping = {}
    for n in missing:
        found = [a for a in aliases.get(id(params[n]), []) if a != n and a in inits]
        if len(found) == 1 and found[0] not in mapping:
            mapping[found[0]] = n
    if not mapping:
        return False
    try:
        import onnx
    except ImportError:
        return False
    m = onnx.load(path)

    def rename(g):
        for t in g.initializer:
            if t.name in mapping:
                t.name = mapping[t.name]
        for coll in (g.input, g.output, g.value_info):
            for v in coll:
                if v.name in mapping:
                    v.name = mapping[v.name]
        for node in g.node:
            for i, x in enumerate(node.input):
                if x in mapping:
                    node.input[i] = mapping[x]
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    rename(a.g)
                for sg in a.graphs:
                    rename(sg)
    rename(m.graph)
    onnx.save(m, path)
    return True


# --------------------------------------------------------------------------- optimizer
class BlockOptimizer:
    pass   # replaced below once symoc.torch is importable (avoids an import cycle)


def _make_block_optimizer_class():
    from symoc.torch import SymocOptimizer

    class BlockOptimizer(SymocOptimizer):
        """SymocOptimizer with one param group per plan block (unit).

        Each group has "lr", "block" (index), "names" and "rule"; a scheduler may drive the
        groups independently. The library keeps the lr given at creation; a group's lr
        reaches it as the block's multiplier lr_group / lr_created (set_block_multiplier).
        """

        def __init__(self, named_parameters, library, lr, plan):
            super().__init__(named_parameters, library=library, lr=lr)
            self._base_lr = float(lr)
            self._flat = self.param_groups[0]
            ordered = self._flat["params"]
            index = {n: i for i, n in enumerate(self._names)}
            groups, seen = [], set()
            for b, blk in enumerate(plan["blocks"]):
                names = list(blk["params"])
                for n in names:
                    if n not in index or n in seen:
                        raise SymocError("%s: plan block %d names %r, which is not (or twice) "
                                         "a parameter of the library" % (self._lib.path, b, n))
                    seen.add(n)
                step = blk.get("step", {})
                groups.append(dict(self.defaults, params=[ordered[index[n]] for n in names],
                                   lr=float(lr), block=b, names=names,
                                   rule=step.get("kind", blk.get("describe", "?")),
                                   describe=blk.get("describe", "")))
            if len(seen) != len(index):
                raise SymocError("%s: parameters %s are in no plan block"
                                 % (self._lib.path, sorted(set(index) - seen)))
            self.param_groups = groups
            self._pushed_mult = [1.0] * len(groups)
            self.plan = plan

        def _push_multipliers(self):
            for i, g in enumerate(self.param_groups):
                lr = g["lr"]
                if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr >= 0):
                    raise SymocError("BlockOptimizer: group %d (block %s) lr must be finite and "
                                     ">= 0, got %r" % (i, g.get("names"), lr))
                m = float(lr) / self._base_lr
                if m != self._pushed_mult[i]:
                    for n in g["names"]:
                        self.set_block_multiplier(_glob_escape(n), m)
                    self._pushed_mult[i] = m

        def _flat_view(self, fn, *a):
            groups = self.param_groups
            self.param_groups = [self._flat]
            try:
                return fn(*a)
            finally:
                self.param_groups = groups

        def step(self, closure=None):
            self._push_multipliers()
            return self._flat_view(super().step, closure)

        def state_dict(self):
            self._push_multipliers()
            sd = self._flat_view(super().state_dict)
            sd["block_groups"] = [{k: v for k, v in g.items() if k != "params"}
                                  for g in self.param_groups]
            return sd

        def load_state_dict(self, state_dict):
            self._flat_view(super().load_state_dict, state_dict)
            saved = state_dict.get("block_groups") or []
            if len(saved) != len(self.param_groups):
                raise SymocError("BlockOptimizer.load_state_dict: %d block groups saved, this "
                                 "optimizer has %d" % (len(saved), len(self.param_groups)))
            for g, s in zip(self.param_groups, saved):
                for k, v in s.items():
                    g[k] = v
            self._pushed_mult = [None] * len(self.param_groups)
            self._push_multipliers()

        def block_rules(self):
            """{parameter name: its block's rule as the plan describes it ("symo 1 x B")};
            param_rules() says what the loaded library runs, which must be the same."""
            return {n: g["describe"] for g in self.param_groups for n in g["names"]}

        def __repr__(self):
            return "BlockOptimizer(model=%r, policy=%r, params=%d, blocks=%d, lr=%g)" % (
                self._lib.model, self._lib.policy, len(self._names), len(self.param_groups),
                self._base_lr)

    return BlockOptimizer


def _block_optimizer_class():
    global BlockOptimizer
    if not hasattr(BlockOptimizer, "step"):
        BlockOptimizer = _make_block_optimizer_class()
    return BlockOptimizer


# --------------------------------------------------------------------------- compile
_COMPILE_FLAGS = {"budget_bytes": "--budget-bytes", "max_dense": "--max-dense",
                  "config": "--config", "overrides": "--override", "dims": "--dim",
                  "constant_params": "--constant-params", "granularity": "--granularity",
                  "line_norm": "--line-norm", "embedding": "--embedding"}


def _compile_args(opts, label):
    """Options of `symoc compile` from keyword arguments (names with _ for -)."""
    out = []
    for k in sorted(opts):
        v = opts[k]
        if k not in _COMPILE_FLAGS:
            raise _error(label, "unknown option %r (known: %s)"
                         % (k, ", ".join(sorted(_COMPILE_FLAGS) + ["loss", "exporter"])))
        flag = _COMPILE_FLAGS[k]
        if isinstance(v, dict):
            v = ["%s=%s" % kv for kv in sorted(v.items())]
        if isinstance(v, bool):
            v = "on" if v else "off"
        for e in (v if isinstance(v, (list, tuple)) else [v]):
            out += [flag, str(e)]
    return out


def _model_name(label):
    name = re.sub(r"[^A-Za-z0-9_]", "_", label).lower().strip("_") or "model"
    return name if not name[0].isdigit() else "m_" + name


def _cmake_args(tools):
    args = []
    if shutil.which("ninja"):
        args += ["-G", "Ninja"]
    if shutil.which("ccache"):
        args += ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
    pkg = os.path.dirname(os.path.dirname(tools.symoc))
    if os.path.isfile(os.path.join(pkg, "SYMOC_PACKAGE")):
        # The package carries OpenBLAS/LAPACKE (lib/, include/); DT_RPATH (not RUNPATH) so
        # that their own dependencies (libgfortran, liblapack) are found beside them too.
        args += ["-DCMAKE_PREFIX_PATH=" + pkg,
                 "-DCMAKE_SHARED_LINKER_FLAGS=-Wl,--disable-new-dtags"]
    return args


def _write_json(path, obj):
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def compile(model, example_inputs, policy="auto", lr=1e-3, loss="auto", exporter="auto",
            cache=True, cache_dir=None, verbose=False, jobs=None, **opts):
    """Compile a symoc optimizer for `model` and return it (a BlockOptimizer).

    example_inputs: the forward's arguments (a tensor or a tuple), used to trace the model.
    policy: `symoc compile --policy` (auto, symo, muon, adamw, ...). lr: the base lr.
    loss: `--loss` (auto|cross-entropy|mse|none). exporter: auto|torchscript|dynamo.
    opts: budget_bytes, max_dense, config, overrides ({name: STEP} or ["NAME=STEP"]), dims,
        constant_params, granularity, line_norm (True/False or "on"/"off"), embedding
        ("adamw" or "row") (the `symoc compile` options of the same names).
    Buffers and parameters with requires_grad=False are frozen (constants of the graph).
    The result's .symoc_info has the timings, paths and whether the cache answered.
    """
    if not isinstance(model, torch.nn.Module):
        raise SymocError("symoc.torch.compile: model must be a torch.nn.Module, got %s"
                         % type(model).__name__)
    model = _unwrap(model)
    label = _module_label(model)
    _refuse_sharded(model, label)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise _error(label, "lr must be a finite number > 0, got %r" % (lr,))
    t0 = time.perf_counter()
    times = {}
    tools = _tools(label)
    args = _as_args(example_inputs)
    settings = dict(policy=policy, loss=loss, exporter=exporter, opts=_compile_args(opts, label),
                    tools=tools.ident)
    root = _cache_root(cache_dir)
    key = cache_key(model, args, settings)
    times["key"] = time.perf_counter() - t0
    key_file = os.path.join(root, "keys", key + ".json")
    info = dict(cache_hit=False, key=key, symoc=tools.symoc, runtime=tools.runtime)
    entry = None
    if cache and os.path.isfile(key_file):
        with open(key_file) as f:
            entry = json.load(f)
        if not os.path.isfile(entry.get("library", "")):
            entry = None
    if entry is None:
        entry = _compile_uncached(model, args, policy, loss, exporter, opts, tools, root, label,
                                  times, verbose, jobs)
        os.makedirs(os.path.dirname(key_file), exist_ok=True)
        _write_json(key_file, entry)
    else:
        info["cache_hit"] = True
    t = time.perf_counter()
    with open(entry["plan"]) as f:
        plan = json.load(f)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    try:
        opt = _block_optimizer_class()(trainable, library=entry["library"], lr=lr, plan=plan)
    except SymocError as e:
        raise _error(label, "the optimizer does not take the model's parameters: %s" % e) \
            from None
    times["load"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    info.update(entry, times=times, symoc_peak_rss_mib=round(_Tools.peak_rss / 2**20, 1))
    opt.symoc_info = info
    return opt


def _exported_and(step, model, args, work, tools, label, exporter, times):
    """Export, then step(exported). When `auto` chose one exporter and symoc rejects its file
    (the importer may not take every dynamo output yet; a TorchScript export of a model with
    BatchNorm may give verify too little to see), export with the other one and try again;
    if that fails too, the error gives both causes."""
    t = time.perf_counter()
    ex = _export(model, args, work, tools, label, exporter)
    times["export"] = time.perf_counter() - t
    try:
        return ex, step(ex)
    except SymocError as e:
        other = "torchscript" if ex.exporter == "dynamo" else "dynamo"
        if exporter != "auto" or (other == "dynamo" and
                                  not (_dynamo_available() and tools.accepts_opset(18))):
            raise
        tried, first = ex.exporter, str(e).split(": ", 2)[-1]
    t = time.perf_counter()
    try:
        ex = _export(model, args, work, tools, label, other)
        times["export_fallback"] = time.perf_counter() - t
        return ex, step(ex)
    except SymocError as e:
        raise _error(label, "%s export: %s; %s export: %s"
                     % (tried, first, other, str(e).split(": ", 2)[-1])) from None


def _compile_uncached(model, args, policy, loss, exporter, opts, tools, root, label, times,
                      verbose, jobs):
    os.makedirs(os.path.join(root, "work"), exist_ok=True)
    work = tempfile.mkdtemp(prefix="compile-", dir=os.path.join(root, "work"))
    try:
        def verify_and_compile(ex):
            common = ex.frozen_args() + ["--loss", loss]
            if not tools.compile_verifies():
                t = time.perf_counter()
                vjson = os.path.join(work, "verify.json")
                tools.run(["verify", ex.path, "--json", vjson] + common,
                          "`symoc verify` (every claim must pass before a step is built on "
                          "it)", label)
                times["verify"] = time.perf_counter() - t
            t = time.perf_counter()
            src = os.path.join(work, "optimizer-" + ex.exporter)
            cargs = ["compile", ex.path, "--policy", policy, "-o", src,
                     "--name", _model_name(label)] + common + _compile_args(opts, label)
            if tools.runtime:
                cargs += ["--runtime-dir", tools.runtime]
            tools.run(cargs, "`symoc compile --policy %s`" % policy, label)
            times["compile"] = time.perf_counter() - t
            return src

        ex, src = _exported_and(verify_and_compile, model, args, work, tools, label, exporter,
                                times)
        with open(os.path.join(src, "plan.json")) as f:
            plan = json.load(f)
        unknown = [p["name"] for p in plan["params"] if p["name"] not in set(ex.trainable)]
        if unknown:
            raise _error(label, "the plan has parameters the model does not train: %s"
                         % ", ".join(unknown[:5]))
        # One library per plan fingerprint and toolchain.
        libdir = os.path.join(root, "lib", "%s-%s-%s" % (
            _model_name(label), _sha(plan["fingerprint"])[:16], tools.ident[:12]))
        t = time.perf_counter()
        lib = _built_library(libdir, src, tools, label, verbose, jobs)
        times["build"] = time.perf_counter() - t
        entry = dict(library=lib, plan=os.path.join(libdir, "plan.json"),
                     fingerprint=plan["fingerprint"], exporter=ex.exporter,
                     export_mode=ex.mode, export_note=ex.note, export_how=ex.how, frozen=ex.frozen,
                     policy=policy, model=label)
        return entry
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _find_lib(libdir):
    bdir = os.path.join(libdir, "build")
    if os.path.isdir(bdir):
        for n in os.listdir(bdir):
            if n.startswith("lib") and n.endswith("_optimizer.so"):
                return os.path.join(bdir, n)
    return None


_RUNTIME_WRAPPER = """cmake_minimum_required(VERSION 3.16)
project(symoc_runtime_cache LANGUAGES C CXX)
add_subdirectory("%(runtime)s" rt)
%(cuda)s
# Read by the generated optimizers' builds (CMAKE_PROJECT_INCLUDE): the runtime built here,
# as an imported target, so that each optimizer compiles only its own source.
file(GENERATE OUTPUT "${CMAKE_BINARY_DIR}/symoc_runtime_import.cmake" CONTENT "
if(NOT TARGET symoc_runtime)
  find_package(OpenMP REQUIRED COMPONENTS CXX)
  add_library(symoc_runtime STATIC IMPORTED)
  set_target_properties(symoc_runtime PROPERTIES
    IMPORTED_LOCATION \\"$<TARGET_FILE:symoc_runtime>\\"
    INTERFACE_INCLUDE_DIRECTORIES \\"%(runtime)s/include\\"
    INTERFACE_COMPILE_FEATURES cxx_std_17
    INTERFACE_LINK_LIBRARIES \\"${SYMOC_LAPACKE_LIB};${SYMOC_OPENBLAS_LIB};OpenMP::OpenMP_CXX\\")
endif()
${symoc_cuda_import}")
"""

# Appended to the import file when the runtime was built with its CUDA backend: the CUDA
# archives as imported targets too, so that generated code gets its CUDA entry points
# (create_cuda/step_cuda) without compiling runtime/cuda again for every optimizer.
_RUNTIME_WRAPPER_CUDA = """
if(TARGET symoc_runtime_cuda)
  set(symoc_cuda_import "
if(NOT TARGET symoc_runtime_cuda)
  find_package(CUDAToolkit REQUIRED)
  add_library(symoc_cuda_matrix STATIC IMPORTED)
  set_target_properties(symoc_cuda_matrix PROPERTIES
    IMPORTED_LOCATION \\"$<TARGET_FILE:symoc_cuda_matrix>\\"
    INTERFACE_INCLUDE_DIRECTORIES \\"%(runtime)s/cuda/include\\"
    INTERFACE_LINK_LIBRARIES \\"symoc_runtime;CUDA::cudart;CUDA::cublas;CUDA::cublasLt;CUDA::cusolver\\")
  add_library(symoc_runtime_cuda STATIC IMPORTED)
  set_target_properties(symoc_runtime_cuda PROPERTIES
    IMPORTED_LOCATION \\"$<TARGET_FILE:symoc_runtime_cuda>\\"
    INTERFACE_INCLUDE_DIRECTORIES \\"%(runtime)s/cuda/include\\"
    INTERFACE_LINK_LIBRARIES \\"symoc_cuda_matrix;symoc_runtime;CUDA::cudart;CUDA::cublas\\")
endif()
")
endif()
"""


def _want_cuda():
    """Build CUDA entry points when torch sees a CUDA device (as symoc.build does)."""
    try:
        import torch
        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _runtime_import(tools, root, label, verbose, jobs):
    """Build the runtime once per toolchain (symoc + runtime sources) into the cache and
    return the CMake file importing it; None when the runtime's folder is not known.
    With a CUDA device the runtime's CUDA backend is built and imported as well (its own
    cache entry); without one it is not compiled at all."""
    if not tools.runtime:
        return None
    cuda = _want_cuda()
    rdir = os.path.join(root, "runtime", tools.ident[:16] + ("-cuda" if cuda else ""))
    imp = os.path.join(rdir, "build", "symoc_runtime_import.cmake")
    if os.path.isfile(imp):
        return imp
    os.makedirs(os.path.dirname(rdir), exist_ok=True)
    staging = tempfile.mkdtemp(prefix="build-", dir=os.path.dirname(rdir))
    try:
        with open(os.path.join(staging, "CMakeLists.txt"), "w") as f:
            rt = tools.runtime.replace("\\", "/")
            f.write(_RUNTIME_WRAPPER % dict(runtime=rt, cuda=_RUNTIME_WRAPPER_CUDA % dict(runtime=rt)))
        b = os.path.join(staging, "build")
        for cmd in (["cmake", "-S", staging, "-B", b, "-DCMAKE_BUILD_TYPE=Release",
                     "-DSYMOC_CUDA=" + ("ON" if cuda else "OFF")] + _cmake_args(tools), ["cmake", "--build", b, "-j", str(jobs)]):
            r = subprocess.run(cmd, stdout=None if verbose else subprocess.DEVNULL,
                               stderr=subprocess.PIPE, universal_newlines=True)
            if r.returncode != 0:
                tail = (r.stderr or "").strip().splitlines()[-5:]
                raise _error(label, "building symoc's runtime (%s) failed: %s"
                             % (tools.runtime, " | ".join(tail)))
        # The import file names the archive inside the staging folder: rewrite it for the
        # final place (the archive does not depend on where it lies).
        with open(os.path.join(b, "symoc_runtime_import.cmake")) as f:
            text = f.read().replace(staging, rdir)
        with open(os.path.join(b, "symoc_runtime_import.cmake"), "w") as f:
            f.write(text)
        try:
            os.rename(staging, rdir)
            staging = None
        except OSError:
            if not os.path.isfile(imp):
                raise
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
    return imp


def _built_library(libdir, src, tools, label, verbose, jobs):
    lib = _find_lib(libdir)
    if lib:
        return lib
    jobs = jobs or os.cpu_count() or 2
    imp = _runtime_import(tools, os.path.dirname(os.path.dirname(libdir)), label, verbose, jobs)
    os.makedirs(os.path.dirname(libdir), exist_ok=True)
    staging = tempfile.mkdtemp(prefix="build-", dir=os.path.dirname(libdir))
    try:
        for n in os.listdir(src):
            shutil.move(os.path.join(src, n), os.path.join(staging, n))
        def build(with_import):
            build_library(staging, jobs=jobs, quiet=not verbose, runtime_dir=tools.runtime,
                          cmake_args=_cmake_args(tools) +
                          (["-DCMAKE_PROJECT_INCLUDE=" + imp] if with_import else []))
        try:
            try:
                build(imp is not None)
            except SymocError:
                if imp is None:
                    raise
                # Generated code that needs more of the runtime than the imported archive
                # (a CUDA part, say): build it the plain way, runtime included.
                shutil.rmtree(os.path.join(staging, "build"), ignore_errors=True)
                build(False)
        except SymocError as e:
            raise _error(label, "building the generated optimizer failed: %s" % e) from None
        # cmake recorded the staging path; the library itself does not depend on it.
        try:
            os.rename(staging, libdir)
        except OSError:
            if not _find_lib(libdir):   # another process won the race with the same result
                raise
        staging = None
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
    lib = _find_lib(libdir)
    if not lib:
        raise _error(label, "%s: no lib*_optimizer.so after the build" % libdir)
    return lib


# --------------------------------------------------------------------------- report
class Report:
    """The symmetry report of a model: .text (what `symoc analyze` prints), .claims (the claims
    document, docs/symmetry-schema.md), .verified (True: every claim passed `--verify`'s
    check; False: some failed, the text names them; None: not checked), .dot and .svg (the
    picture; svg needs Graphviz's `dot`), .exporter, .export_mode ("train", or "eval" where only
    the eval-mode trace exported), .export_note (set when that eval-mode function differs from
    the training-mode forward), .export_how (the attempt that exported, e.g. "dynamo exporter
    (attention as matmul and softmax)") and .frozen (what the export used)."""

    def __init__(self, text, claims, verified, dot, svg, exporter, frozen, export_mode="train",
                 export_note=None, export_how=None):
        self.text, self.claims, self.verified = text, claims, verified
        self.dot, self.svg, self.exporter, self.frozen = dot, svg, exporter, frozen
        self.export_mode, self.export_note, self.export_how = export_mode, export_note, export_how

    def json(self):
        return json.dumps(self.claims, indent=2)

    def _repr_svg_(self):
        return self.svg

    def __str__(self):
        return self.text

    def save(self, prefix):
        """Write PREFIX.txt, PREFIX.claims.json, PREFIX.dot (and PREFIX.svg); returns paths."""
        out = []
        for ext, data in (("txt", self.text), ("claims.json", self.json()), ("dot", self.dot),
                          ("svg", self.svg)):
            if data is not None:
                p = "%s.%s" % (prefix, ext)
                with open(p, "w") as f:
                    f.write(data)
                out.append(p)
        return out


def report(model, example_inputs, loss="auto", verify=True, exporter="auto"):
    """Export the model (as compile() does) and return its symmetry Report; compiles nothing."""
    model = _unwrap(model)
    label = _module_label(model)
    tools = _tools(label)
    args = _as_args(example_inputs)
    with tempfile.TemporaryDirectory(prefix="symoc-report-") as work:
        cj, dot = os.path.join(work, "claims.json"), os.path.join(work, "model.dot")

        def analyze(ex):
            cmd = ["analyze", ex.path, "--json", cj, "--dot", dot, "--loss", loss] + \
                ex.frozen_args()
            if verify:
                cmd.append("--verify")
            return tools.run(cmd, "`symoc analyze`", label, failed_check_ok=verify)
        ex, r = _exported_and(analyze, model, args, work, tools, label, exporter, {})
        with open(cj) as f:
            claims = json.load(f)
        with open(dot) as f:
            dot_text = f.read()
        svg = None
        if shutil.which("dot"):
            d = subprocess.run(["dot", "-Tsvg"], input=dot_text, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, universal_newlines=True)
            svg = d.stdout if d.returncode == 0 else None
        return Report(r.stdout, claims, (r.returncode == 0) if verify else None, dot_text, svg,
                      ex.exporter, ex.frozen, ex.mode, ex.note, ex.how)
