//===- NNOps.cpp - MatMul, Gemm, Conv, pooling, normalization, softmax ----===//
#include "Ops.h"

#include "symoc/runtime/blas_core.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace symoc {

using TP = onnx::TensorProto;

namespace {

std::vector<Tensor> one(Tensor t) { return std::vector<Tensor>{std::move(t)}; }

/// A normalization's channel of n values (largest magnitude amax) is constant at eps = 0
/// (verify's epsilon-free model for approximate claims) when its spread is at the values'
/// rounding level: x - mean is rounding noise there, which 1 / sqrt(var) blows up to O(1)
/// values that change with any rescaling. The eps -> 0 limit of (x - mean) / sqrt(var + eps)
/// for a constant channel is 0, so such a channel gives its bias. Any eps > 0 computes as
/// written.
bool constantAtZeroEpsilon(double var, double eps, double amax, int64_t n) {
  const double noise = 4.0 * double(n) * std::numeric_limits<double>::epsilon() * amax;
  return eps == 0 && var <= noise * noise;
}

// C[M,N] += A[M,K] * B[K,N], row-major, by OpenBLAS dgemm: verify evaluates
// whole models (ViT-B/16, ResNet) several times per trial, and the GEMMs are
// the largest part of it (a hand-tiled loop ran at ~2 GFLOP/s). OpenBLAS splits the
// work over M and N, never K, so a given shape sums in a fixed order.
// transB: B is stored [N, K] (Gemm's transB, read in place instead of copied).
//
// OpenBLAS threads only pay on large products. Below kThreadedMacs multiply-adds
// (attention's per-head 197 x 64 x 197 products, a CNN's late small layers) two
// threads took 1.5x the CPU time of one on the 2-core development machine, and on
// a loaded machine 10x the wall time (the idle thread spins in sched_yield): those
// run on one thread, and the process's setting is restored after each.
constexpr double kThreadedMacs = 16e6;

void gemmAcc(const double *A, const double *B, double *C, int64_t M, int64_t K,
             int64_t N, bool transB = false) {
  if (M == 0 || N == 0 || K == 0)
    return;
  static const bool blasReady = (rt::ensureBlasCore(), true);
  (void)blasReady;
  int threads = openblas_get_num_threads();
  bool single = threads > 1 && double(M) * double(N) * double(K) < kThreadedMacs;
  if (single)
    openblas_set_num_threads(1);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, blasint(M),
              blasint(N), blasint(K), 1.0, A, blasint(K), B, blasint(transB ? K : N), 1.0, C,
              blasint(N));
  if (single)
    openblas_set_num_threads(threads);
}

// Numpy matmul: 1-D operands are promoted, batch dims broadcast.
std::vector<Tensor> matmul(OpContext &ctx) {
  // The operands are read in place (weights are large): only their dims are copied.
  const Tensor &A = ctx.in(0), &B = ctx.in(1);
  if (A.isBool() || B.isBool())
    ctx.unsupported("bool operands");
  if (A.rank() == 0 || B.rank() == 0)
    ctx.fail("MatMul operands must have rank >= 1");
  struct Operand {
    std::vector<int64_t> dims;
    const std::vector<double> &data;
  } a{A.dims, A.data}, b{B.dims, B.data};
  bool va = A.rank() == 1, vb = B.rank() == 1;
  if (va)
    a.dims.insert(a.dims.begin(), 1);
  if (vb)
    b.dims.push_back(1);
  int64_t M = a.dims[a.dims.size() - 2], K = a.dims.back();
  int64_t K2 = b.dims[b.dims.size() - 2], N = b.dims.back();
  if (K != K2)
    ctx.fail("inner dimensions differ: " + shapeString(ctx.in(0).dims) + " x " +
             shapeString(ctx.in(1).dims));
  std::vector<int64_t> ba(a.dims.begin(), a.dims.end() - 2),
      bb(b.dims.begin(), b.dims.end() - 2);
  std::vector<int64_t> bo = broadcastShapes(ctx, {ba, bb});
  std::vector<int64_t> sa = broadcastStrides(ba, bo), sb = broadcastStrides(bb, bo);
  int64_t nb = numElements(bo);
  std::vector<int64_t> od = bo;
  od.push_back(M);
  od.push_back(N);
  Tensor y = Tensor::zeros(od, A.dtype);
  // B shared by every batch (a weight against [L, B, d] activations): the batch
  // is one GEMM with M * nb rows. As nb GEMMs of M rows (often M = 1: the
  // sequence-first projections of nn.MultiheadAttention) OpenBLAS would pack
  // all of B once per row.
  bool sharedB = std::all_of(sb.begin(), sb.end(), [](int64_t s) { return s == 0; });
  if (nb > 1 && sharedB && ba == bo) {
    gemmAcc(a.data.data(), b.data.data(), y.data.data(), M * nb, K, N);
    nb = 0;
  }
  std::vector<int64_t> idx(bo.size(), 0);
  for (int64_t e = 0; e < nb; ++e) {
    int64_t oa = 0, ob = 0;
    for (size_t d = 0; d < bo.size(); ++d) {
      oa += idx[d] * sa[d];
      ob += idx[d] * sb[d];
    }
    gemmAcc(a.data.data() + oa * M * K, b.data.data() + ob * K * N,
            y.data.data() + e * M * N, M, K, N);
    for (int64_t d = int64_t(bo.size()) - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < bo[size_t(d)])
        break;
      idx[size_t(d)] = 0;
    }
  }
  if (va)
    y.dims.erase(y.dims.end() - 2);
  if (vb)
    y.dims.pop_back();
  if (y.isInteger())
    castInPlace(y, y.dtype);
  return one(std::move(y));
}

Tensor transpose2(const Tensor &x) {
  int64_t R = x.dims[0], C = x.dims[1];
  Tensor y = Tensor::zeros({C, R}, x.dtype);
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < C; ++j)
      y.data[size_t(j * R + i)] = x.data[size_t(i * C + j)];
  return y;
}

std::vector<Tensor> gemm(OpContext &ctx) {
  // B (usually a weight) is read in place, transposed or not.
  const Tensor &b = ctx.in(1);
  Tensor aT;
  const Tensor *ap = &ctx.in(0);
  if (ap->rank() != 2 || b.rank() != 2)
    ctx.fail("Gemm operands must be 2-D, got " + shapeString(ap->dims) + " and " +
             shapeString(b.dims));
  if (ctx.opset < 7 && ctx.hasAttr("broadcast"))
    ctx.unsupported("legacy 'broadcast' attribute");
  if (ctx.attrInt("transA", 0)) {
    aT = transpose2(*ap);
    ap = &aT;
  }
  const Tensor &a = *ap;
  bool transB = ctx.attrInt("transB", 0) != 0;
  double alpha = ctx.attrFloat("alpha", 1.0), beta = ctx.attrFloat("beta", 1.0);
  int64_t M = a.dims[0], K = a.dims[1], N = b.dims[transB ? 0 : 1];
  if (b.dims[transB ? 1 : 0] != K)
    ctx.fail("inner dimensions differ");
  Tensor y = Tensor::zeros({M, N}, a.dtype);
  gemmAcc(a.data.data(), b.data.data(), y.data.data(), M, K, N, transB);
  for (double &v : y.data)
    v *= alpha;
  if (ctx.hasInput(2)) {
    const Tensor &c = ctx.in(2);
    Tensor z = broadcastMap(ctx, {&y, &c}, y.dtype, [beta](const double *v) {
      return v[0] + beta * v[1];
    });
    if (z.dims != y.dims)
      ctx.fail("C " + shapeString(c.dims) + " does not broadcast to " + shapeString(y.dims));
    y = std::move(z);
  }
  return one(std::move(y));
}

// Spatial geometry shared by Conv and the pools.
struct Window {
  size_t nsp = 0;
  std::vector<int64_t> in, kernel, stride, dil, padLo, padHi, out;
};

Window window(OpContext &ctx, const std::vector<int64_t> &inSp,
              std::vector<int64_t> kernel, bool ceilMode) {
  Window w;
  w.nsp = inSp.size();
  w.in = inSp;
  w.kernel = std::move(kernel);
  w.stride = ctx.attrInts("strides");
  w.dil = ctx.attrInts("dilations");
  if (w.stride.empty()) w.stride.assign(w.nsp, 1);
  for (int64_t v : w.stride)
    if (v <= 0) ctx.fail("strides must be positive");
  for (int64_t v : w.kernel)
    if (v <= 0) ctx.fail("kernel dimensions must be positive");
  if (w.dil.empty()) w.dil.assign(w.nsp, 1);
  for (int64_t v : w.dil)
    if (v <= 0) ctx.fail("dilations must be positive");
  std::vector<int64_t> pads = ctx.attrInts("pads");
  if (pads.empty()) pads.assign(2 * w.nsp, 0);
  if (w.kernel.size() != w.nsp || w.stride.size() != w.nsp || w.dil.size() != w.nsp ||
      pads.size() != 2 * w.nsp)
    ctx.fail("kernel/strides/dilations/pads do not match " + std::to_string(w.nsp) +
             " spatial dims");
  std::string ap = ctx.attrString("auto_pad", "NOTSET");
  w.padLo.assign(pads.begin(), pads.begin() + long(w.nsp));
  w.padHi.assign(pads.begin() + long(w.nsp), pads.end());
  w.out.resize(w.nsp);
  for (size_t i = 0; i < w.nsp; ++i) {
    int64_t ek = (w.kernel[i] - 1) * w.dil[i] + 1;
    if (ap == "SAME_UPPER" || ap == "SAME_LOWER") {
      int64_t o = (w.in[i] + w.stride[i] - 1) / w.stride[i];
      int64_t total = std::max<int64_t>((o - 1) * w.stride[i] + ek - w.in[i], 0);
      w.padLo[i] = ap == "SAME_UPPER" ? total / 2 : total - total / 2;
      w.padHi[i] = total - w.padLo[i];
    } else if (ap == "VALID") {
      w.padLo[i] = w.padHi[i] = 0;
    } else if (ap != "NOTSET") {
      ctx.fail("unknown auto_pad '" + ap + "'");
    }
    // out = floor or ceil(span / stride) + 1 (ONNX's formula). span < 0 (a kernel larger
    // than the padded input) leaves no window in floor mode; in ceil mode one window when
    // span > -stride: HF EfficientNet's pooler is AvgPool2d(hidden_dim, ceil_mode=True) over
    // a smaller map, as torch computes it (the window clipped to the padded input).
    int64_t span = w.in[i] + w.padLo[i] + w.padHi[i] - ek, st = w.stride[i];
    int64_t q = span >= 0 ? (ceilMode ? (span + st - 1) / st : span / st)
                          : (ceilMode ? -(-span / st) : -((-span + st - 1) / st));
    int64_t o = q + 1;
    if (o < 1)
      ctx.fail("kernel larger than the padded input");
    // In ceil mode the last window must start inside the input or left padding.
    if (ceilMode && (o - 1) * st >= w.in[i] + w.padLo[i])
      --o;
    w.out[i] = o;
  }
  return w;
}

// Iterates an N-d index over `dims`; returns false after the last one.
bool nextIndex(std::vector<int64_t> &idx, const std::vector<int64_t> &dims) {
  for (int64_t d = int64_t(dims.size()) - 1; d >= 0; --d) {
    if (++idx[size_t(d)] < dims[size_t(d)])
      return true;
    idx[size_t(d)] = 0;
  }
  return false;
}

std::vector<Tensor> conv(OpContext &ctx) {
  const Tensor &x = ctx.in(0), &wt = ctx.in(1);
  if (x.rank() < 3 || wt.rank() != x.rank())
    ctx.fail("X " + shapeString(x.dims) + " and W " + shapeString(wt.dims) +
             " must have the same rank >= 3");
  int64_t N = x.dims[0], C = x.dims[1], M = wt.dims[0], G = ctx.attrInt("group", 1);
  std::vector<int64_t> inSp(x.dims.begin() + 2, x.dims.end());
  std::vector<int64_t> kSp(wt.dims.begin() + 2, wt.dims.end());
  std::vector<int64_t> ks = ctx.attrInts("kernel_shape");
  if (!ks.empty() && ks != kSp)
    ctx.fail("kernel_shape does not match W");
  if (G <= 0 || C % G || M % G || wt.dims[1] != C / G)
    ctx.fail("channels C=" + std::to_string(C) + ", W " + shapeString(wt.dims) +
             " and group=" + std::to_string(G) + " do not agree");
  Window w = window(ctx, inSp, kSp, false);
  int64_t Cg = C / G, Mg = M / G, kvol = numElements(kSp), ovol = numElements(w.out),
          ivol = numElements(inSp);
  std::vector<int64_t> od{N, M};
  od.insert(od.end(), w.out.begin(), w.out.end());
  Tensor y = Tensor::zeros(od, x.dtype);
  std::vector<int64_t> is = stridesOf(inSp);
  // im2col: rows (c, kernel offset), columns output positions.
  std::vector<double> col(size_t(Cg * kvol * ovol));
  // Precompute, for each (kernel offset, output position), the input offset or -1.
  std::vector<int64_t> src(size_t(kvol * ovol));
  {
    std::vector<int64_t> kidx(w.nsp, 0);
    int64_t kk = 0;
    do {
      std::vector<int64_t> oidx(w.nsp, 0);
      int64_t oo = 0;
      do {
        int64_t off = 0;
        for (size_t d = 0; d < w.nsp && off >= 0; ++d) {
          int64_t p = oidx[d] * w.stride[d] - w.padLo[d] + kidx[d] * w.dil[d];
          off = (p < 0 || p >= inSp[d]) ? -1 : off + p * is[d];
        }
        src[size_t(kk * ovol + oo)] = off;
        ++oo;
      } while (nextIndex(oidx, w.out));
      ++kk;
    } while (nextIndex(kidx, kSp));
  }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t c = 0; c < Cg; ++c) {
        const double *xc = x.data.data() + (n * C + g * Cg + c) * ivol;
        for (int64_t k = 0; k < kvol * ovol; ++k) {
          int64_t s = src[size_t(k)];
          col[size_t(c * kvol * ovol + k)] = s < 0 ? 0.0 : xc[s];
        }
      }
      gemmAcc(wt.data.data() + g * Mg * Cg * kvol, col.data(),
              y.data.data() + (n * M + g * Mg) * ovol, Mg, Cg * kvol, ovol);
    }
  if (ctx.hasInput(2)) {
    const Tensor &b = ctx.in(2);
    if (b.size() != M)
      ctx.fail("bias has " + std::to_string(b.size()) + " entries, expected " +
               std::to_string(M));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t o = 0; o < ovol; ++o)
          y.data[size_t((n * M + m) * ovol + o)] += b.data[size_t(m)];
  }
  return one(std::move(y));
}

std::vector<Tensor> pool(OpContext &ctx, bool isMax) {
  const Tensor &x = ctx.in(0);
  if (x.rank() < 3)
    ctx.fail("input must have rank >= 3");
  std::vector<int64_t> inSp(x.dims.begin() + 2, x.dims.end());
  std::vector<int64_t> ks = ctx.attrInts("kernel_shape");
  if (ks.empty())
    ctx.fail("missing kernel_shape");
  if (!isMax && ctx.hasAttr("dilations") && ctx.opset < 19)
    ctx.fail("AveragePool has no dilations before opset 19");
  // storage_order 1: Indices count the spatial dims column-major.
  bool colMajor = isMax && ctx.attrInt("storage_order", 0) != 0;
  Window w = window(ctx, inSp, ks, ctx.attrInt("ceil_mode", 0) != 0);
  bool includePad = ctx.attrInt("count_include_pad", 0) != 0;
  int64_t NC = x.dims[0] * x.dims[1], ivol = numElements(inSp), ovol = numElements(w.out);
  std::vector<int64_t> od{x.dims[0], x.dims[1]};
  od.insert(od.end(), w.out.begin(), w.out.end());
  Tensor y = Tensor::zeros(od, x.dtype), ind = Tensor::zeros(od, TP::INT64);
  std::vector<int64_t> is = stridesOf(inSp), cs(inSp.size(), 1);
  for (size_t d = 1; d < inSp.size(); ++d)
    cs[d] = cs[d - 1] * inSp[d - 1];
  for (int64_t nc = 0; nc < NC; ++nc) {
    const double *xc = x.data.data() + nc * ivol;
    std::vector<int64_t> oidx(w.nsp, 0);
    int64_t oo = 0;
    do {
      double acc = isMax ? -std::numeric_limits<double>::infinity() : 0.0;
      int64_t arg = -1, argCol = -1, count = 0, padCount = 0;
      std::vector<int64_t> kidx(w.nsp, 0);
      do {
        int64_t off = 0, offCol = 0;
        bool inside = true, inPadded = true;
        for (size_t d = 0; d < w.nsp; ++d) {
          int64_t p = oidx[d] * w.stride[d] - w.padLo[d] + kidx[d] * w.dil[d];
          if (p < 0 || p >= inSp[d])
            inside = false;
          if (p < -w.padLo[d] || p >= inSp[d] + w.padHi[d])
            inPadded = false;
          off += p * is[d];
          offCol += p * cs[d];
        }
        padCount += inPadded;
        if (!inside)
          continue;
        ++count;
        double v = xc[off];
        if (isMax) {
          if (v > acc || arg < 0) {
            acc = v;
            arg = off;
            argCol = offCol;
          }
        } else {
          acc += v;
        }
      } while (nextIndex(kidx, ks));
      if (!isMax)
        acc = acc / double(includePad ? padCount : count);
      y.data[size_t(nc * ovol + oo)] = acc;
      ind.data[size_t(nc * ovol + oo)] = double(nc * ivol + (colMajor ? argCol : arg));
      ++oo;
    } while (nextIndex(oidx, w.out));
  }
  std::vector<Tensor> outs{std::move(y)};
  if (isMax && ctx.wantsOutput(1))
    outs.push_back(std::move(ind));
  return outs;
}

std::vector<Tensor> globalPool(OpContext &ctx, bool isMax) {
  const Tensor &x = ctx.in(0);
  if (x.rank() < 3)
    ctx.fail("input must have rank >= 3");
  int64_t NC = x.dims[0] * x.dims[1], vol = x.size() / std::max<int64_t>(NC, 1);
  std::vector<int64_t> od(x.dims.size(), 1);
  od[0] = x.dims[0];
  od[1] = x.dims[1];
  Tensor y = Tensor::zeros(od, x.dtype);
  for (int64_t i = 0; i < NC; ++i) {
    double acc = isMax ? -std::numeric_limits<double>::infinity() : 0.0;
    for (int64_t j = 0; j < vol; ++j) {
      double v = x.data[size_t(i * vol + j)];
      acc = isMax ? std::max(acc, v) : acc + v;
    }
    y.data[size_t(i)] = isMax ? acc : acc / double(vol);
  }
  return one(std::move(y));
}

// Softmax family. From opset 13 one axis; before, the input is flattened to
// 2-D at `axis` and the op acts over the whole trailing block.
std::vector<Tensor> softmaxLike(OpContext &ctx, int kind /*0 softmax 1 log 2 hardmax*/) {
  const Tensor &x = ctx.in(0);
  int64_t r = x.rank();
  bool modern = ctx.opset >= 13;
  int64_t axis = ctx.attrInt("axis", modern ? -1 : 1);
  if (r == 0)
    ctx.fail("scalar input");
  axis = ctx.axis(axis, r);
  int64_t outer = 1, n = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i)
    outer *= x.dims[size_t(i)];
  if (modern) {
    n = x.dims[size_t(axis)];
    for (int64_t i = axis + 1; i < r; ++i)
      inner *= x.dims[size_t(i)];
  } else {
    for (int64_t i = axis; i < r; ++i)
      n *= x.dims[size_t(i)];
  }
  Tensor y = x;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t in = 0; in < inner; ++in) {
      auto at = [&](int64_t k) -> double & {
        return y.data[size_t((o * n + k) * inner + in)];
      };
      if (kind == 2) {
        int64_t best = 0;
        for (int64_t k = 1; k < n; ++k)
          if (at(k) > at(best))
            best = k;
        for (int64_t k = 0; k < n; ++k)
          at(k) = k == best ? 1.0 : 0.0;
        continue;
      }
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t k = 0; k < n; ++k)
        m = std::max(m, at(k));
      double s = 0;
      for (int64_t k = 0; k < n; ++k)
        s += std::exp(at(k) - m);
      for (int64_t k = 0; k < n; ++k)
        at(k) = kind == 1 ? at(k) - m - std::log(s) : std::exp(at(k) - m) / s;
    }
  return one(std::move(y));
}

std::vector<Tensor> layerNorm(OpContext &ctx) {
  const Tensor &x = ctx.in(0), &scale = ctx.in(1);
  int64_t r = x.rank(), axis = ctx.axis(ctx.attrInt("axis", -1), r);
  double eps = ctx.attrFloat("epsilon", 1e-5);
  int64_t outer = 1, n = 1;
  for (int64_t i = 0; i < axis; ++i)
    outer *= x.dims[size_t(i)];
  for (int64_t i = axis; i < r; ++i)
    n *= x.dims[size_t(i)];
  std::vector<int64_t> nd(x.dims.begin() + axis, x.dims.end());
  // Scale and B broadcast unidirectionally to the normalized shape.
  Tensor ones = Tensor::zeros(nd, x.dtype);
  auto expandTo = [&](const Tensor &t) {
    Tensor e = broadcastMap(ctx, {&t, &ones}, x.dtype, [](const double *v) { return v[0]; });
    if (e.dims != nd)
      ctx.fail("scale/bias " + shapeString(t.dims) + " do not broadcast to " +
               shapeString(nd));
    return e;
  };
  Tensor s = expandTo(scale);
  Tensor b = ctx.hasInput(2) ? expandTo(ctx.in(2)) : Tensor::zeros(nd, x.dtype);
  Tensor y = x;
  std::vector<int64_t> sd = x.dims;
  for (int64_t i = axis; i < r; ++i)
    sd[size_t(i)] = 1;
  Tensor mean = Tensor::zeros(sd, x.dtype), inv = Tensor::zeros(sd, x.dtype);
  for (int64_t o = 0; o < outer; ++o) {
    double *p = y.data.data() + o * n;
    double mu = 0, var = 0, amax = 0;
    for (int64_t k = 0; k < n; ++k)
      mu += p[k], amax = std::max(amax, std::fabs(p[k]));
    mu /= double(n);
    for (int64_t k = 0; k < n; ++k)
      var += (p[k] - mu) * (p[k] - mu);
    var /= double(n);
    double is = constantAtZeroEpsilon(var, eps, amax, n) ? 0.0 : 1.0 / std::sqrt(var + eps);
    for (int64_t k = 0; k < n; ++k)
      p[k] = (p[k] - mu) * is * s.data[size_t(k)] + b.data[size_t(k)];
    mean.data[size_t(o)] = mu;
    inv.data[size_t(o)] = is;
  }
  std::vector<Tensor> outs{std::move(y)};
  if (ctx.numOutputs() > 1)
    outs.push_back(std::move(mean));
  if (ctx.numOutputs() > 2)
    outs.push_back(std::move(inv));
  return outs;
}

std::vector<Tensor> batchNorm(OpContext &ctx) {
  const Tensor &x = ctx.in(0), &scale = ctx.in(1), &bias = ctx.in(2), &mean = ctx.in(3),
               &var = ctx.in(4);
  if (ctx.opset < 9)
    ctx.unsupported("BatchNormalization before opset 9 (spatial attribute)");
  double eps = ctx.attrFloat("epsilon", 1e-5), mom = ctx.attrFloat("momentum", 0.9);
  bool training = ctx.attrInt("training_mode", 0) != 0;
  if (ctx.opset < 14 && ctx.numOutputs() > 1)
    ctx.unsupported("training outputs before opset 14");
  if (x.rank() < 2)
    ctx.fail("input must have rank >= 2");
  int64_t N = x.dims[0], C = x.dims[1], inner = x.size() / std::max<int64_t>(N * C, 1);
  for (const Tensor *t : {&scale, &bias, &mean, &var})
    if (t->size() != C)
      ctx.fail("per-channel inputs must have " + std::to_string(C) + " entries");
  std::vector<double> mu(mean.data), va(var.data), is(static_cast<size_t>(C), 0.0);
  std::vector<char> flat(static_cast<size_t>(C), 0); // batch statistics of a constant channel
  if (training) {
    for (int64_t c = 0; c < C; ++c) {
      double s = 0, q = 0, amax = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < inner; ++i) {
          const double v = x.data[size_t((n * C + c) * inner + i)];
          s += v, amax = std::max(amax, std::fabs(v));
        }
      double m = s / double(N * inner);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < inner; ++i) {
          double d = x.data[size_t((n * C + c) * inner + i)] - m;
          q += d * d;
        }
      mu[size_t(c)] = m;
      va[size_t(c)] = q / double(N * inner); // population variance, as the spec's reference
      flat[size_t(c)] = constantAtZeroEpsilon(va[size_t(c)], eps, amax, N * inner);
    }
  }
  for (int64_t c = 0; c < C; ++c)
    is[size_t(c)] = flat[size_t(c)] ? 0.0 : 1.0 / std::sqrt(va[size_t(c)] + eps);
  Tensor y = x;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < inner; ++i) {
        double &v = y.data[size_t((n * C + c) * inner + i)];
        v = (v - mu[size_t(c)]) * is[size_t(c)] * scale.data[size_t(c)] + bias.data[size_t(c)];
      }
  std::vector<Tensor> outs{std::move(y)};
  if (ctx.numOutputs() > 1) {
    if (!training)
      ctx.fail("extra outputs need training_mode=1");
    Tensor rm = mean, rv = var;
    for (int64_t c = 0; c < C; ++c) {
      rm.data[size_t(c)] = mean.data[size_t(c)] * mom + mu[size_t(c)] * (1 - mom);
      rv.data[size_t(c)] = var.data[size_t(c)] * mom + va[size_t(c)] * (1 - mom);
    }
    outs.push_back(std::move(rm));
    outs.push_back(std::move(rv));
  }
  return outs;
}

std::vector<Tensor> instanceNorm(OpContext &ctx) {
  const Tensor &x = ctx.in(0), &scale = ctx.in(1), &bias = ctx.in(2);
  double eps = ctx.attrFloat("epsilon", 1e-5);
  if (x.rank() < 3)
    ctx.fail("input must have rank >= 3");
  int64_t N = x.dims[0], C = x.dims[1], inner = x.size() / std::max<int64_t>(N * C, 1);
  if (scale.size() != C || bias.size() != C)
    ctx.fail("scale and B must have C = " + std::to_string(C) + " entries");
  Tensor y = x;
  for (int64_t nc = 0; nc < N * C; ++nc) {
    double *p = y.data.data() + nc * inner, m = 0, v = 0, amax = 0;
    for (int64_t i = 0; i < inner; ++i) m += p[i], amax = std::max(amax, std::fabs(p[i]));
    m /= double(inner);
    for (int64_t i = 0; i < inner; ++i) v += (p[i] - m) * (p[i] - m);
    v /= double(inner);
    int64_t c = nc % C;
    const bool flat = constantAtZeroEpsilon(v, eps, amax, inner);
    const double sd = std::sqrt(v + eps);
    for (int64_t i = 0; i < inner; ++i)
      p[i] = (flat ? 0.0 : (p[i] - m) / sd) * scale.data[size_t(c)] + bias.data[size_t(c)];
  }
  return one(std::move(y));
}

// General Einsum by direct summation over all letters (explicit and implicit
// output, ellipsis, repeated letters for diagonals).
std::vector<Tensor> einsum(OpContext &ctx) {
  std::string eq;
  for (char ch : ctx.attrString("equation", ""))
    if (ch != ' ')
      eq += ch;
  size_t arrow = eq.find("->");
  std::string lhs = eq.substr(0, arrow);
  std::vector<std::string> terms;
  size_t p = 0;
  while (true) {
    size_t c = lhs.find(',', p);
    terms.push_back(lhs.substr(p, c == std::string::npos ? std::string::npos : c - p));
    if (c == std::string::npos)
      break;
    p = c + 1;
  }
  if (terms.size() != ctx.numInputs())
    ctx.fail("equation has " + std::to_string(terms.size()) + " operands, node has " +
             std::to_string(ctx.numInputs()));
  // Ellipsis dims become the digits '0'.. (no subscript is a digit; uppercase letters are
  // subscripts too: an equation "...A,AB->...B" had its own A taken for an ellipsis dim).
  int64_t ellRank = 0;
  for (size_t t = 0; t < terms.size(); ++t) {
    size_t e = terms[t].find("...");
    if (e != std::string::npos) {
      int64_t named = int64_t(terms[t].size()) - 3;
      ellRank = std::max(ellRank, ctx.in(t).rank() - named);
    }
  }
  std::string ellLetters;
  if (ellRank > 10)
    ctx.unsupported("an ellipsis of more than 10 dimensions");
  for (int64_t i = 0; i < ellRank; ++i)
    ellLetters += char('0' + i);
  std::map<char, int64_t> size;
  std::vector<std::string> spec(terms.size());
  for (size_t t = 0; t < terms.size(); ++t) {
    const Tensor &x = ctx.in(t);
    std::string s = terms[t];
    size_t e = s.find("...");
    if (e != std::string::npos) {
      int64_t k = x.rank() - (int64_t(s.size()) - 3);
      s = s.substr(0, e) + ellLetters.substr(size_t(ellRank - k)) + s.substr(e + 3);
    }
    if (int64_t(s.size()) != x.rank())
      ctx.fail("operand " + std::to_string(t) + " has rank " + std::to_string(x.rank()) +
               ", subscripts '" + terms[t] + "'");
    for (size_t i = 0; i < s.size(); ++i) {
      auto it = size.find(s[i]);
      int64_t d = x.dims[i];
      if (it == size.end() || it->second == 1)
        size[s[i]] = d;
      else if (d != 1 && d != it->second)
        ctx.fail(std::string("subscript '") + s[i] + "' has inconsistent sizes");
    }
    spec[t] = s;
  }
  std::string out;
  if (arrow != std::string::npos) {
    out = eq.substr(arrow + 2);
    size_t e = out.find("...");
    if (e != std::string::npos)
      out = out.substr(0, e) + ellLetters + out.substr(e + 3);
  } else {
    std::map<char, int> count;
    for (const auto &s : spec)
      for (char ch : s)
        count[ch]++;
    out = ellLetters;
    for (auto &kv : count)
      if (kv.second == 1 && !std::isdigit(static_cast<unsigned char>(kv.first)))
        out += kv.first;
  }
  std::string letters = out;
  for (auto &kv : size)
    if (letters.find(kv.first) == std::string::npos)
      letters += kv.first;
  std::vector<int64_t> ld, od;
  for (char ch : letters) {
    if (!size.count(ch))
      ctx.fail(std::string("output subscript '") + ch + "' not in any operand");
    ld.push_back(size[ch]);
  }
  for (char ch : out)
    od.push_back(size[ch]);
  // Per operand, stride of each letter (0 when absent or broadcast).
  std::vector<std::vector<int64_t>> st(terms.size(), std::vector<int64_t>(letters.size(), 0));
  for (size_t t = 0; t < terms.size(); ++t) {
    std::vector<int64_t> xs = stridesOf(ctx.in(t).dims);
    for (size_t i = 0; i < spec[t].size(); ++i)
      if (ctx.in(t).dims[i] != 1)
        st[t][letters.find(spec[t][i])] += xs[i];
  }
  DType dt = ctx.in(0).dtype;
  Tensor y = Tensor::zeros(od, dt);
  int64_t outVol = y.size(), total = numElements(ld);
  if (total == 0)
    return one(std::move(y));
  int64_t sumVol = total / std::max<int64_t>(outVol, 1);
  std::vector<int64_t> idx(letters.size(), 0), off(terms.size(), 0);
  for (int64_t o = 0; o < outVol; ++o) {
    double acc = 0;
    for (int64_t s = 0; s < sumVol; ++s) {
      double prod = 1;
      for (size_t t = 0; t < terms.size(); ++t)
        prod *= ctx.in(t).data[size_t(off[t])];
      acc += prod;
      for (int64_t d = int64_t(letters.size()) - 1; d >= 0; --d) {
        size_t ud = size_t(d);
        if (++idx[ud] < ld[ud]) {
          for (size_t t = 0; t < terms.size(); ++t)
            off[t] += st[t][ud];
          break;
        }
        for (size_t t = 0; t < terms.size(); ++t)
          off[t] -= st[t][ud] * (ld[ud] - 1);
        idx[ud] = 0;
      }
    }
    y.data[size_t(o)] = castValue(acc, dt);
  }
  return one(std::move(y));
}

} // namespace

void registerNNOps(std::map<std::string, OpInfo> &r) {
  r["MatMul"] = {matmul, {}};
  r["Gemm"] = {gemm, {"alpha", "beta", "transA", "transB"}};
  r["Conv"] = {conv, {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"},
               true};
  r["MaxPool"] = {[](OpContext &c) { return pool(c, true); },
                  {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads",
                   "storage_order", "strides"}};
  r["AveragePool"] = {[](OpContext &c) { return pool(c, false); },
                      {"auto_pad", "ceil_mode", "count_include_pad", "dilations",
                       "kernel_shape", "pads", "strides"},
                      true};
  r["GlobalAveragePool"] = {[](OpContext &c) { return globalPool(c, false); }, {}, true};
  r["GlobalMaxPool"] = {[](OpContext &c) { return globalPool(c, true); }, {}, true};
  r["Softmax"] = {[](OpContext &c) { return softmaxLike(c, 0); }, {"axis"}, true};
  r["LogSoftmax"] = {[](OpContext &c) { return softmaxLike(c, 1); }, {"axis"}, true};
  r["Hardmax"] = {[](OpContext &c) { return softmaxLike(c, 2); }, {"axis"}, true};
  r["LayerNormalization"] = {layerNorm, {"axis", "epsilon", "stash_type"}, true};
  r["BatchNormalization"] = {batchNorm, {"epsilon", "momentum", "training_mode"}, true};
  r["InstanceNormalization"] = {instanceNorm, {"epsilon"}, true};
  r["Einsum"] = {einsum, {"equation"}};
}

} // namespace symoc
