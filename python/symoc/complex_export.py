"""Complex numbers as pairs of real ones, for an export only (symoc.torch's retry).

ONNX has no complex arithmetic and neither of torch's exporters lowers it, so a model that
rotates queries and keys as complex numbers (Meta's LLaMA code and its descendants, torchtitan,
transformers' Llama 4: `torch.view_as_complex`, `torch.polar`, a complex product,
`torch.view_as_real`) does not export. While `real_complex` is active, those calls build and take
`RealPairs`: a complex tensor held as a real one with a trailing dimension of 2 (real,
imaginary), whose arithmetic is written out in real operations. The function is the same (up
to float rounding: `test_real_pairs_match_complex_arithmetic`); the graph has only real ops.
A complex operation this file does not write out raises, so the retry fails with a cause
instead of exporting something else.
"""
import contextlib
import copy

import torch

from symoc.patching import patched

_COMPLEX_TO_REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def _pair(re, im):
    return RealPairs(torch.stack((re, im), dim=-1))


class RealPairs:
    """A complex tensor of shape S held as the real tensor `r` of shape S + (2,)."""

    def __init__(self, r):
        if r.is_complex() or r.shape[-1:] != (2,):
            raise TypeError("RealPairs holds a real tensor whose last dimension is 2, got %s %s"
                            % (r.dtype, tuple(r.shape)))
        self.r = r

    # -- what a complex tensor reports
    @property
    def shape(self):
        return self.r.shape[:-1]

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def dim(self):
        return self.r.dim() - 1

    ndim = property(dim)
    device = property(lambda self: self.r.device)
    dtype = property(lambda self: {torch.float64: torch.complex128}.get(self.r.dtype, torch.complex64))
    real = property(lambda self: self.r[..., 0])
    imag = property(lambda self: self.r[..., 1])

    def _axis(self, d):   # a complex axis as an axis of r (the pair axis stays last)
        return d - 1 if d < 0 else d

    # -- shapes: every complex axis is the same axis of r
    def view(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
        return RealPairs(self.r.reshape(*shape, 2))

    reshape = view

    def unsqueeze(self, d):
        return RealPairs(self.r.unsqueeze(self._axis(d)))

    def squeeze(self, d):
        return RealPairs(self.r.squeeze(self._axis(d)))

    def expand(self, *sizes):
        sizes = sizes[0] if len(sizes) == 1 and isinstance(sizes[0], (tuple, list, torch.Size)) else sizes
        return RealPairs(self.r.expand(*sizes, 2))

    def flatten(self, start_dim=0, end_dim=-1):
        n = self.dim()
        return RealPairs(self.r.flatten(start_dim % n, end_dim % n))

    def transpose(self, a, b):
        return RealPairs(self.r.transpose(self._axis(a), self._axis(b)))

    def permute(self, *dims):
        dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
        n = self.dim()
        return RealPairs(self.r.permute(*[d % n for d in dims], n))

    def __getitem__(self, idx):
        idx = idx if isinstance(idx, tuple) else (idx,)
        return RealPairs(self.r[idx + (slice(None),)])

    # -- moves and copies
    def to(self, *args, **kwargs):
        args = [_COMPLEX_TO_REAL.get(a, a) if isinstance(a, torch.dtype) else a for a in args]
        if "dtype" in kwargs:
            kwargs["dtype"] = _COMPLEX_TO_REAL.get(kwargs["dtype"], kwargs["dtype"])
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, torch.dtype) and not a.is_floating_point:
                raise TypeError("RealPairs: a complex tensor cast to %s is not written out" % a)
        return RealPairs(self.r.to(*args, **kwargs))

    def type_as(self, other):
        return RealPairs(self.r.to(other.r.dtype if isinstance(other, RealPairs) else
                                   _COMPLEX_TO_REAL.get(other.dtype, other.dtype)))

    def contiguous(self):
        return RealPairs(self.r.contiguous())

    def clone(self):
        return RealPairs(self.r.clone())

    def detach(self):
        return RealPairs(self.r.detach())

    def conj(self):
        return _pair(self.real, -self.imag)

    def abs(self):
        return torch.sqrt(self.real * self.real + self.imag * self.imag)

    # -- arithmetic: a real operand is a complex one with zero imaginary part
    def __mul__(self, o):
        a, b = self.real, self.imag
        if isinstance(o, RealPairs):
            c, d = o.real, o.imag
            return _pair(a * c - b * d, a * d + b * c)
        if isinstance(o, complex):
            return _pair(a * o.real - b * o.imag, a * o.imag + b * o.real)
        return _pair(a * o, b * o)

    __rmul__ = __mul__

    def __add__(self, o):
        if isinstance(o, RealPairs):
            return RealPairs(self.r + o.r)
        if isinstance(o, complex):
            return _pair(self.real + o.real, self.imag + o.imag)
        return _pair(self.real + o, self.imag + torch.zeros_like(o) if torch.is_tensor(o) else self.imag)

    __radd__ = __add__

    def __neg__(self):
        return RealPairs(-self.r)

    def __sub__(self, o):
        return self + (-o)

    def __rsub__(self, o):
        return (-self) + o

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.mul, torch.multiply, torch.Tensor.mul, torch.Tensor.__mul__):
            return _as_pairs(args[0]) * args[1] if isinstance(args[0], RealPairs) else args[1] * args[0]
        if func in (torch.add, torch.Tensor.add, torch.Tensor.__add__) and len(args) == 2 and not kwargs:
            return _as_pairs(args[0]) + args[1] if isinstance(args[0], RealPairs) else args[1] + args[0]
        if func in (torch.sub, torch.Tensor.sub, torch.Tensor.__sub__) and len(args) == 2 and not kwargs:
            return _as_pairs(args[0]) - args[1] if isinstance(args[0], RealPairs) else (-args[1]) + args[0]
        if func in (torch.view_as_real,):
            return args[0].r
        if func in (torch.cat, torch.stack):
            xs, dim = args[0], kwargs.get("dim", args[1] if len(args) > 1 else 0)
            ps = [_as_pairs(x) for x in xs]
            n = ps[0].dim() + (1 if func is torch.stack else 0)
            return RealPairs(func([p.r for p in ps], dim % n))
        if func in (torch.real, torch.imag, torch.conj, torch.abs):
            p = args[0]
            return {torch.real: lambda: p.real, torch.imag: lambda: p.imag,
                    torch.conj: p.conj, torch.abs: p.abs}[func]()
        raise TypeError("symoc.torch: complex numbers as real pairs: %s is not written out for "
                        "complex tensors" % getattr(func, "__name__", func))


def _as_pairs(x):
    if isinstance(x, RealPairs):
        return x
    if torch.is_tensor(x) and x.is_complex():
        return RealPairs(torch.view_as_real(x).clone())
    if torch.is_tensor(x):
        return _pair(x, torch.zeros_like(x))
    raise TypeError("symoc.torch: complex numbers as real pairs: cannot take %s" % type(x).__name__)


def _view_as_complex(x):
    return RealPairs(x)


def _view_as_real(x, _orig=torch.view_as_real):
    return x.r if isinstance(x, RealPairs) else _orig(x)


def _polar(abs, angle):
    return _pair(abs * torch.cos(angle), abs * torch.sin(angle))


def _complex(real, imag):
    return _pair(real, imag)


@contextlib.contextmanager
def real_complex(model):
    """While active: torch.view_as_complex / view_as_real / polar / complex build and take
    RealPairs. Yields a deep copy of the model whose complex buffers and tensor attributes
    (precomputed rotations) are RealPairs attributes (the model itself is left alone)."""
    m = copy.deepcopy(model)
    for mod in m.modules():
        for name, buf in list(mod._buffers.items()):
            if buf is not None and buf.is_complex():
                del mod._buffers[name]
                object.__setattr__(mod, name, _as_pairs(buf))
        for name, v in list(vars(mod).items()):
            if torch.is_tensor(v) and v.is_complex():
                object.__setattr__(mod, name, _as_pairs(v))
    with patched(torch, view_as_complex=_view_as_complex, view_as_real=_view_as_real,
                 polar=_polar, complex=_complex):
        yield m
