//===- ExtraOps.cpp - ConvTranspose, Resize, losses, OneHot, ... ----------===//
#include "Ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace symoc {

using TP = onnx::TensorProto;

namespace {

std::vector<Tensor> one(Tensor t) { return std::vector<Tensor>{std::move(t)}; }

bool nextIndex(std::vector<int64_t> &idx, const std::vector<int64_t> &dims) {
  for (int64_t d = int64_t(dims.size()) - 1; d >= 0; --d) {
    if (++idx[size_t(d)] < dims[size_t(d)])
      return true;
    idx[size_t(d)] = 0;
  }
  return false;
}

// y[n, g*Mg+m, o] += x[n, g*Cg+c, i] * W[g*Cg+c, m, k]  with o = i*s + k*d - padBegin.
std::vector<Tensor> convTranspose(OpContext &ctx) {
  const Tensor &x = ctx.in(0), &w = ctx.in(1);
  if (x.rank() < 3 || w.rank() != x.rank())
    ctx.fail("X and W must have the same rank >= 3");
  size_t nsp = size_t(x.rank() - 2);
  int64_t N = x.dims[0], C = x.dims[1], G = ctx.attrInt("group", 1);
  if (G <= 0 || C % G || w.dims[0] != C)
    ctx.fail("W " + shapeString(w.dims) + " does not match C=" + std::to_string(C) +
             " and group=" + std::to_string(G));
  int64_t Mg = w.dims[1], M = Mg * G, Cg = C / G;
  std::vector<int64_t> in(x.dims.begin() + 2, x.dims.end()), k(w.dims.begin() + 2, w.dims.end());
  auto vec = [&](const char *name, int64_t dflt, size_t n) {
    std::vector<int64_t> v = ctx.attrInts(name);
    if (v.empty())
      v.assign(n, dflt);
    if (v.size() != n)
      ctx.fail(std::string("attribute '") + name + "' has the wrong length");
    return v;
  };
  std::vector<int64_t> s = vec("strides", 1, nsp), d = vec("dilations", 1, nsp),
                       op = vec("output_padding", 0, nsp), pads = vec("pads", 0, 2 * nsp);
  for (size_t i = 0; i < nsp; ++i)
    if (s[i] <= 0 || d[i] <= 0)
      ctx.fail("strides and dilations must be positive");
  std::vector<int64_t> ks = ctx.attrInts("kernel_shape");
  if (!ks.empty() && ks != k)
    ctx.fail("kernel_shape does not match W");
  std::vector<int64_t> outShape = ctx.attrInts("output_shape");
  std::string ap = ctx.attrString("auto_pad", "NOTSET");
  std::vector<int64_t> pb(nsp), out(nsp);
  for (size_t i = 0; i < nsp; ++i) {
    int64_t full = s[i] * (in[i] - 1) + op[i] + (k[i] - 1) * d[i] + 1;
    int64_t target = -1;
    if (!outShape.empty())
      target = outShape[outShape.size() - nsp + i];
    else if (ap == "SAME_UPPER" || ap == "SAME_LOWER")
      target = in[i] * s[i];
    if (target >= 0) {
      // Floor division (as the spec's reference): a negative total (output
      // larger than the full result) extends the end.
      int64_t total = full - target;
      int64_t half = total >= 0 ? total / 2 : -((-total + 1) / 2);
      bool upper = ap == "SAME_UPPER";
      pb[i] = upper ? half : total - half;
      out[i] = target;
    } else {
      if (ap == "VALID")
        pads.assign(2 * nsp, 0);
      pb[i] = pads[i];
      out[i] = full - pads[i] - pads[i + nsp];
    }
    if (out[i] <= 0)
      ctx.fail("non-positive output size");
  }
  std::vector<int64_t> od{N, M};
  od.insert(od.end(), out.begin(), out.end());
  Tensor y = Tensor::zeros(od, x.dtype);
  int64_t ivol = numElements(in), kvol = numElements(k), ovol = numElements(out);
  std::vector<int64_t> os = stridesOf(out);
  // Output offset for each (input position, kernel position), -1 when cropped.
  std::vector<int64_t> dst(size_t(ivol * kvol));
  {
    std::vector<int64_t> ii(nsp, 0);
    int64_t a = 0;
    do {
      std::vector<int64_t> kk(nsp, 0);
      int64_t b = 0;
      do {
        int64_t off = 0;
        for (size_t q = 0; q < nsp && off >= 0; ++q) {
          int64_t o = ii[q] * s[q] + kk[q] * d[q] - pb[q];
          off = (o < 0 || o >= out[q]) ? -1 : off + o * os[q];
        }
        dst[size_t(a * kvol + b)] = off;
        ++b;
      } while (nextIndex(kk, k));
      ++a;
    } while (nextIndex(ii, in));
  }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < G; ++g)
      for (int64_t c = 0; c < Cg; ++c) {
        const double *xc = x.data.data() + (n * C + g * Cg + c) * ivol;
        for (int64_t m = 0; m < Mg; ++m) {
          const double *wk = w.data.data() + ((g * Cg + c) * Mg + m) * kvol;
          double *yo = y.data.data() + (n * M + g * Mg + m) * ovol;
          for (int64_t a = 0; a < ivol; ++a)
            for (int64_t b = 0; b < kvol; ++b) {
              int64_t o = dst[size_t(a * kvol + b)];
              if (o >= 0)
                yo[o] += xc[a] * wk[b];
            }
        }
      }
  if (ctx.hasInput(2)) {
    const Tensor &bias = ctx.in(2);
    if (bias.size() != M)
      ctx.fail("bias must have M entries");
    for (int64_t n = 0; n < N; ++n)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t o = 0; o < ovol; ++o)
          y.data[size_t((n * M + m) * ovol + o)] += bias.data[size_t(m)];
  }
  return one(std::move(y));
}

// Per output coordinate of one axis: the input taps and their weights.
struct Taps {
  std::vector<std::vector<std::pair<int64_t, double>>> at; // [out coord] -> taps
  std::vector<bool> outside;                               // extrapolated
};

// The Keys cubic kernel with coefficient A at distance s (zero from |s| = 2 on).
double keysKernel(double A, double s) {
  s = std::fabs(s);
  if (s <= 1)
    return ((A + 2) * s - (A + 3)) * s * s + 1;
  if (s < 2)
    return ((A * s - 5 * A) * s + 8 * A) * s - 4 * A;
  return 0.0;
}

// Resize-18's antialias (linear, cubic): the kernel stretched by 1 / scale when downscaling,
// so 2 - 2 start taps i0 + k, k in [start, 2 - start), weights normalized to sum 1. x = i0 +
// ratio with ratio in (0, 1] (an integer x counts from the pixel on its left), as the ONNX
// reference numbers them. At scale >= 1 these are the plain taps.
void antialiasTaps(std::vector<std::pair<int64_t, double>> &taps, double x, double scale,
                   bool cubic, double A) {
  const double s = std::min(scale, 1.0), fl = std::floor(x);
  const double ratio = x == fl ? 1.0 : x - fl;
  const int64_t i0 = int64_t(fl) - (x == fl ? 1 : 0);
  const int64_t start = int64_t(std::floor(-(cubic ? 2.0 : 1.0) / s)) + 1;
  double sum = 0;
  for (int64_t k = start; k < 2 - start; ++k) {
    const double d = s * (double(k) - ratio);
    const double w = cubic ? keysKernel(A, d) : std::max(0.0, 1.0 - std::fabs(d));
    taps.push_back({i0 + k, w});
    sum += w;
  }
  for (auto &tp : taps)
    tp.second /= sum;
}

Taps axisTaps(OpContext &ctx, int64_t inLen, int64_t outLen, double outLenF, double scale,
              const std::string &mode, const std::string &ctm, const std::string &nearest,
              double cubicA, bool excludeOutside, bool antialias, double roiStart,
              double roiEnd) {
  Taps t;
  t.at.resize(size_t(outLen));
  t.outside.assign(size_t(outLen), false);
  for (int64_t o = 0; o < outLen; ++o) {
    double xo = double(o), x;
    if (ctm == "half_pixel")
      x = (xo + 0.5) / scale - 0.5;
    else if (ctm == "half_pixel_symmetric") // Resize-19: the crop's centre kept at the centre
      x = 0.5 * double(inLen) * (1 - double(outLen) / outLenF) + (xo + 0.5) / scale - 0.5;
    else if (ctm == "pytorch_half_pixel")
      x = outLenF > 1 ? (xo + 0.5) / scale - 0.5 : -0.5;
    else if (ctm == "align_corners") // the resized length before flooring, as the reference
      x = outLenF == 1 ? 0.0 : xo * double(inLen - 1) / (outLenF - 1);
    else if (ctm == "asymmetric")
      x = xo / scale;
    else if (ctm == "tf_half_pixel_for_nn")
      x = (xo + 0.5) / scale;
    else if (ctm == "tf_crop_and_resize") {
      x = outLenF > 1 ? roiStart * double(inLen - 1) +
                            xo * (roiEnd - roiStart) * double(inLen - 1) / (outLenF - 1)
                     : 0.5 * (roiStart + roiEnd) * double(inLen - 1);
      if (x < 0 || x > double(inLen - 1))
        t.outside[size_t(o)] = true;
    } else
      ctx.unsupported("coordinate_transformation_mode '" + ctm + "'");
    auto clampi = [&](int64_t i) { return std::clamp<int64_t>(i, 0, inLen - 1); };
    auto &taps = t.at[size_t(o)];
    double fl = std::floor(x), r = x - fl;
    int64_t i0 = int64_t(fl);
    if (mode == "nearest") {
      int64_t i;
      if (r == 0)
        i = i0;
      else if (nearest == "round_prefer_floor")
        i = r <= 0.5 ? i0 : i0 + 1;
      else if (nearest == "round_prefer_ceil")
        i = r < 0.5 ? i0 : i0 + 1;
      else if (nearest == "floor")
        i = i0;
      else if (nearest == "ceil")
        i = i0 + 1;
      else
        ctx.unsupported("nearest_mode '" + nearest + "'");
      taps.push_back({clampi(i), 1.0});
    } else if (antialias && (mode == "linear" || mode == "cubic")) {
      antialiasTaps(taps, x, scale, mode == "cubic", cubicA);
    } else if (mode == "linear") {
      taps.push_back({i0, 1.0 - r});
      taps.push_back({i0 + 1, r});
    } else if (mode == "cubic") {
      for (int64_t j = -1; j <= 2; ++j)
        taps.push_back({i0 + j, keysKernel(cubicA, r - double(j))});
    } else {
      ctx.unsupported("mode '" + mode + "'");
    }
    if (mode != "nearest") {
      if (excludeOutside) {
        double sum = 0;
        for (auto &tp : taps) {
          if (tp.first < 0 || tp.first >= inLen)
            tp.second = 0;
          sum += tp.second;
        }
        for (auto &tp : taps)
          tp.second /= sum;
      }
      for (auto &tp : taps)
        tp.first = clampi(tp.first); // edge padding
    }
  }
  return t;
}

std::vector<Tensor> resizeImpl(OpContext &ctx, const Tensor &x, std::vector<double> scales,
                               std::vector<int64_t> sizes, std::vector<double> roi,
                               const std::string &mode, const std::string &ctm,
                               const std::string &nearest, bool antialias) {
  size_t r = x.dims.size();
  if (sizes.empty()) {
    if (scales.size() != r)
      ctx.fail("scales must have one entry per axis");
    for (size_t i = 0; i < r; ++i) {
      double n = std::floor(double(x.dims[i]) * scales[i]);
      sizes.push_back(std::isfinite(n) && std::fabs(n) < 1e15 ? int64_t(n) : -1);
    }
  } else {
    if (sizes.size() != r)
      ctx.fail("sizes must have one entry per axis");
    scales.clear();
    for (size_t i = 0; i < r; ++i)
      scales.push_back(double(sizes[i]) / double(x.dims[i]));
  }
  // Sizes from bad scales or a bad `sizes` input become allocation sizes below
  // (the taps per output coordinate): refuse them first.
  for (size_t i = 0; i < r; ++i)
    if (!std::isfinite(scales[i]) || scales[i] <= 0 || sizes[i] < 0 || sizes[i] > (int64_t(1) << 32))
      ctx.fail("output size " + std::to_string(sizes[i]) + " (scale " + std::to_string(scales[i]) +
               ") on axis " + std::to_string(i) + " is not a valid resize of " +
               std::to_string(x.dims[i]));
  double cubicA = ctx.attrFloat("cubic_coeff_a", -0.75);
  bool exclude = ctx.attrInt("exclude_outside", 0) != 0;
  double extrap = ctx.attrFloat("extrapolation_value", 0.0);
  std::vector<Taps> taps;
  for (size_t i = 0; i < r; ++i) {
    double rs = roi.size() == 2 * r ? roi[i] : 0.0, re = roi.size() == 2 * r ? roi[i + r] : 1.0;
    taps.push_back(axisTaps(ctx, x.dims[i], sizes[i], double(x.dims[i]) * scales[i], scales[i],
                            mode, ctm, nearest, cubicA,
                            exclude, antialias, rs, re));
  }
  Tensor y = Tensor::zeros(sizes, x.dtype);
  std::vector<int64_t> xs = stridesOf(x.dims), idx(r, 0);
  if (y.size() == 0)
    return one(std::move(y));
  do {
    bool outside = false;
    for (size_t a = 0; a < r; ++a)
      outside |= taps[a].outside[size_t(idx[a])];
    double acc = 0;
    if (!outside) {
      // Sum over the product of the per-axis taps.
      std::vector<size_t> t(r, 0);
      while (true) {
        double w = 1;
        int64_t off = 0;
        for (size_t a = 0; a < r; ++a) {
          const auto &tp = taps[a].at[size_t(idx[a])][t[a]];
          w *= tp.second;
          off += tp.first * xs[a];
        }
        acc += w * x.data[size_t(off)];
        size_t a = r;
        while (a > 0) {
          --a;
          if (++t[a] < taps[a].at[size_t(idx[a])].size())
            break;
          t[a] = 0;
          if (a == 0) {
            a = r + 1;
            break;
          }
        }
        if (a == r + 1 || r == 0)
          break;
      }
    }
    int64_t o = 0;
    std::vector<int64_t> ys = stridesOf(sizes);
    for (size_t a = 0; a < r; ++a)
      o += idx[a] * ys[a];
    y.data[size_t(o)] = castValue(outside ? extrap : acc, x.dtype);
  } while (nextIndex(idx, sizes));
  return one(std::move(y));
}

std::vector<Tensor> resize(OpContext &ctx) {
  if (ctx.opset < 11)
    ctx.unsupported("Resize before opset 11");
  const Tensor &x = ctx.in(0);
  if (ctx.hasAttr("axes") || ctx.hasAttr("keep_aspect_ratio_policy"))
    ctx.unsupported("axes / keep_aspect_ratio_policy");
  std::vector<double> roi, scales;
  std::vector<int64_t> sizes;
  if (ctx.hasInput(1))
    roi = ctx.in(1).data;
  if (ctx.hasInput(2))
    scales = ctx.in(2).data;
  if (ctx.hasInput(3))
    sizes = ctx.in(3).toInt64();
  if (!sizes.empty() && !scales.empty())
    ctx.fail("give scales or sizes, not both");
  return resizeImpl(ctx, x, scales, sizes, roi, ctx.attrString("mode", "nearest"),
                    ctx.attrString("coordinate_transformation_mode", "half_pixel"),
                    ctx.attrString("nearest_mode", "round_prefer_floor"),
                    ctx.attrInt("antialias", 0) != 0);
}

std::vector<Tensor> upsample(OpContext &ctx) {
  // Deprecated; equals Resize with asymmetric coordinates and floor rounding.
  std::vector<double> scales = ctx.opset < 9 ? ctx.attrFloats("scales") : ctx.in(1).data;
  std::string mode = ctx.attrString("mode", "nearest");
  return resizeImpl(ctx, ctx.in(0), scales, {}, {}, mode, "asymmetric", "floor", false);
}

// Shared by NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss:
// logp [N, C, d...], labels [N, d...].
Tensor nll(OpContext &ctx, const Tensor &logp, const Tensor &labels, const Tensor *weight) {
  std::string red = ctx.attrString("reduction", "mean");
  bool hasIgnore = ctx.hasAttr("ignore_index");
  int64_t ignore = ctx.attrInt("ignore_index", 0);
  if (logp.rank() < 2)
    ctx.fail("input must have rank >= 2");
  int64_t N = logp.dims[0], C = logp.dims[1], inner = logp.size() / std::max<int64_t>(N * C, 1);
  if (labels.size() != N * inner)
    ctx.fail("labels do not match the input shape");
  if (weight && weight->size() != C)
    ctx.fail("weight must have C = " + std::to_string(C) + " entries");
  std::vector<int64_t> ld = labels.dims;
  Tensor loss = Tensor::zeros(ld, logp.dtype);
  double wsum = 0, lsum = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < inner; ++i) {
      int64_t t = int64_t(labels.data[size_t(n * inner + i)]);
      if (hasIgnore && t == ignore)
        continue;
      if (t < 0 || t >= C)
        ctx.fail("label " + std::to_string(t) + " out of range [0, " + std::to_string(C) + ")");
      double w = weight ? weight->data[size_t(t)] : 1.0;
      double l = -logp.data[size_t((n * C + t) * inner + i)] * w;
      loss.data[size_t(n * inner + i)] = l;
      wsum += w;
      lsum += l;
    }
  if (red == "none")
    return loss;
  if (red == "sum")
    return Tensor::scalar(lsum, logp.dtype);
  if (red == "mean")
    return Tensor::scalar(wsum == 0 ? 0.0 : lsum / wsum, logp.dtype);
  ctx.unsupported("reduction '" + red + "'");
}

std::vector<Tensor> nllLoss(OpContext &ctx) {
  return one(nll(ctx, ctx.in(0), ctx.in(1), ctx.hasInput(2) ? &ctx.in(2) : nullptr));
}

std::vector<Tensor> softmaxCrossEntropy(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  if (x.rank() < 2)
    ctx.fail("scores must have rank >= 2");
  int64_t N = x.dims[0], C = x.dims[1], inner = x.size() / std::max<int64_t>(N * C, 1);
  Tensor logp = x;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t c) -> double & { return logp.data[size_t((n * C + c) * inner + i)]; };
      double m = -std::numeric_limits<double>::infinity(), s = 0;
      for (int64_t c = 0; c < C; ++c) m = std::max(m, at(c));
      for (int64_t c = 0; c < C; ++c) s += std::exp(at(c) - m);
      for (int64_t c = 0; c < C; ++c) at(c) = at(c) - m - std::log(s);
    }
  std::vector<Tensor> outs{nll(ctx, logp, ctx.in(1), ctx.hasInput(2) ? &ctx.in(2) : nullptr)};
  if (ctx.wantsOutput(1))
    outs.push_back(std::move(logp));
  return outs;
}

std::vector<Tensor> oneHot(OpContext &ctx) {
  const Tensor &ind = ctx.in(0), &depthT = ctx.in(1), &vals = ctx.in(2);
  int64_t depth = int64_t(ctx.scalar(1, "depth"));
  if (depth <= 0)
    ctx.fail("depth must be positive");
  if (vals.size() != 2)
    ctx.fail("values must be [off, on]");
  int64_t r = ind.rank() + 1, axis = ctx.attrInt("axis", -1);
  if (axis < 0)
    axis += r;
  if (axis < 0 || axis >= r)
    ctx.fail("axis out of range");
  std::vector<int64_t> od = ind.dims;
  od.insert(od.begin() + axis, depth);
  Tensor y = Tensor::zeros(od, vals.dtype);
  std::fill(y.data.begin(), y.data.end(), vals.data[0]);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= ind.dims[size_t(i)];
  for (size_t i = size_t(axis); i < ind.dims.size(); ++i) inner *= ind.dims[i];
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      int64_t k = int64_t(ind.data[size_t(o * inner + i)]);
      if (k < 0)
        k += depth;
      if (k >= 0 && k < depth)
        y.data[size_t((o * depth + k) * inner + i)] = vals.data[1];
    }
  return one(std::move(y));
}

std::vector<Tensor> nonZero(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  std::vector<int64_t> hits;
  for (int64_t e = 0; e < x.size(); ++e)
    if (x.data[size_t(e)] != 0)
      hits.push_back(e);
  int64_t r = std::max<int64_t>(x.rank(), 1), n = int64_t(hits.size());
  Tensor y = Tensor::zeros({x.rank(), n}, TP::INT64);
  std::vector<int64_t> s = stridesOf(x.dims);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < x.rank(); ++d)
      y.data[size_t(d * n + j)] = double((hits[size_t(j)] / s[size_t(d)]) % x.dims[size_t(d)]);
  (void)r;
  return one(std::move(y));
}

std::vector<Tensor> compress(OpContext &ctx) {
  Tensor x = ctx.in(0);
  const Tensor &cond = ctx.in(1);
  int64_t axis;
  if (ctx.hasAttr("axis")) {
    axis = ctx.axis(ctx.attrInt("axis", 0), x.rank());
  } else {
    x.dims = {x.size()};
    axis = 0;
  }
  int64_t outer = 1, d = x.dims[size_t(axis)], inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.dims[size_t(i)];
  for (size_t i = size_t(axis) + 1; i < x.dims.size(); ++i) inner *= x.dims[i];
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < std::min<int64_t>(d, cond.size()); ++i)
    if (cond.data[size_t(i)] != 0)
      keep.push_back(i);
  std::vector<int64_t> od = x.dims;
  od[size_t(axis)] = int64_t(keep.size());
  Tensor y = Tensor::zeros(od, x.dtype);
  int64_t k = int64_t(keep.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < k; ++j)
      std::copy_n(x.data.begin() + (o * d + keep[size_t(j)]) * inner, inner,
                  y.data.begin() + (o * k + j) * inner);
  return one(std::move(y));
}

std::vector<Tensor> meanVarianceNorm(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  std::vector<int64_t> axes = ctx.attrInts("axes");
  if (axes.empty())
    axes = {0, 2, 3};
  std::vector<bool> red(x.dims.size(), false);
  for (int64_t a : axes)
    red[size_t(ctx.axis(a, x.rank()))] = true;
  std::vector<int64_t> kd = x.dims;
  for (size_t i = 0; i < kd.size(); ++i)
    if (red[i]) kd[i] = 1;
  int64_t nout = numElements(kd), cnt = x.size() / std::max<int64_t>(nout, 1);
  std::vector<double> s1(size_t(nout), 0), s2(size_t(nout), 0);
  std::vector<int64_t> ks = stridesOf(kd), idx(x.dims.size(), 0), where(size_t(x.size()));
  for (int64_t e = 0; e < x.size(); ++e) {
    int64_t o = 0;
    for (size_t d = 0; d < idx.size(); ++d)
      if (!red[d]) o += idx[d] * ks[d];
    where[size_t(e)] = o;
    s1[size_t(o)] += x.data[size_t(e)];
    s2[size_t(o)] += x.data[size_t(e)] * x.data[size_t(e)];
    nextIndex(idx, x.dims);
  }
  Tensor y = x;
  for (int64_t e = 0; e < x.size(); ++e) {
    int64_t o = where[size_t(e)];
    double m = s1[size_t(o)] / double(cnt), v = s2[size_t(o)] / double(cnt) - m * m;
    y.data[size_t(e)] = (x.data[size_t(e)] - m) / (std::sqrt(std::max(v, 0.0)) + 1e-9);
  }
  return one(std::move(y));
}

/// LpNormalization: x divided by its L1 or L2 norm along `axis` (no epsilon: a zero slice
/// gives NaN, as the spec's division does).
std::vector<Tensor> lpNormalization(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  const int64_t p = ctx.attrInt("p", 2);
  if (p != 1 && p != 2)
    ctx.fail("p must be 1 or 2, is " + std::to_string(p));
  const int64_t ax = ctx.axis(ctx.attrInt("axis", -1), x.rank());
  int64_t n = x.dims[size_t(ax)], inner = 1;
  for (size_t d = size_t(ax) + 1; d < x.dims.size(); ++d)
    inner *= x.dims[d];
  const int64_t outer = n && inner ? x.size() / (n * inner) : 0;
  Tensor y = x;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t k = 0; k < inner; ++k) {
      double norm = 0;
      for (int64_t i = 0; i < n; ++i) {
        const double v = x.data[size_t((o * n + i) * inner + k)];
        norm += p == 1 ? std::fabs(v) : v * v;
      }
      if (p == 2)
        norm = std::sqrt(norm);
      for (int64_t i = 0; i < n; ++i)
        y.data[size_t((o * n + i) * inner + k)] /= norm;
    }
  return one(std::move(y));
}

std::vector<Tensor> lrn(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  double alpha = ctx.attrFloat("alpha", 1e-4), beta = ctx.attrFloat("beta", 0.75),
         bias = ctx.attrFloat("bias", 1.0);
  int64_t size = ctx.attrInt("size", 0);
  if (size <= 0 || x.rank() < 3)
    ctx.fail("needs a positive size and rank >= 3");
  int64_t N = x.dims[0], C = x.dims[1], inner = x.size() / std::max<int64_t>(N * C, 1);
  int64_t lo = (size - 1) / 2, hi = size - 1 - lo;
  Tensor y = x;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < inner; ++i) {
        double s = 0;
        for (int64_t cc = std::max<int64_t>(0, c - lo); cc <= std::min(C - 1, c + hi); ++cc) {
          double v = x.data[size_t((n * C + cc) * inner + i)];
          s += v * v;
        }
        size_t at = size_t((n * C + c) * inner + i);
        y.data[at] = x.data[at] / std::pow(bias + alpha / double(size) * s, beta);
      }
  return one(std::move(y));
}


std::vector<Tensor> bitShift(OpContext &ctx) {
  const Tensor &x = ctx.in(0), &y = ctx.in(1);
  std::string dir = ctx.attrString("direction", "");
  if (dir != "LEFT" && dir != "RIGHT")
    ctx.fail("direction must be LEFT or RIGHT");
  if (!x.isInteger())
    ctx.fail("operands must be unsigned integers");
  bool left = dir == "LEFT";
  return one(broadcastMap(ctx, {&x, &y}, x.dtype, [left](const double *v) {
    double p = std::ldexp(1.0, int(v[1]));
    return left ? v[0] * p : std::floor(v[0] / p);
  }));
}

// In place: X_k = sum_j x_j e^(sign 2 pi i j k / n) for n a power of two (iterative
// radix-2, twiddles from the exact angle 2 pi m / n of each m).
void fftPow2(std::vector<double> &re, std::vector<double> &im, double sign) {
  const size_t n = re.size();
  for (size_t i = 1, j = 0; i < n; ++i) { // bit-reversal permutation
    size_t bit = n >> 1;
    for (; j & bit; bit >>= 1)
      j ^= bit;
    j ^= bit;
    if (i < j)
      std::swap(re[i], re[j]), std::swap(im[i], im[j]);
  }
  for (size_t len = 2; len <= n; len <<= 1)
    for (size_t m = 0; m < len / 2; ++m) {
      const double th = sign * 2 * M_PI * double(m) / double(len);
      const double wr = std::cos(th), wi = std::sin(th);
      for (size_t b = 0; b < n; b += len) {
        const size_t u = b + m, v = u + len / 2;
        const double tr = re[v] * wr - im[v] * wi, ti = re[v] * wi + im[v] * wr;
        re[v] = re[u] - tr, im[v] = im[u] - ti;
        re[u] += tr, im[u] += ti;
      }
    }
}

// DFT-17 (and DFT-20 through the opset adapter, which turns its axis input into
// this attribute): input [batch, signal..., 1 (real) or 2 (complex)]; along `axis`
// (0 .. rank - 2), zero-padded or cut to dft_length, X_k = sum_j x_j e^(-+2 pi i j k / n)
// (inverse: +, and 1/n); onesided keeps k <= n / 2. In double: radix-2 when n is a power of
// two, direct sums otherwise.
std::vector<Tensor> dft(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  const int64_t r = x.rank();
  if (r < 3 || (x.dims.back() != 1 && x.dims.back() != 2))
    ctx.fail("input must be [batch, signal..., 1 or 2]");
  int64_t axis = ctx.attrInt("axis", 1);
  if (axis < 0)
    axis += r; // DFT-20's convention, should a negative value reach here
  if (axis < 0 || axis > r - 2)
    ctx.fail("axis " + std::to_string(ctx.attrInt("axis", 1)) + " is out of range for rank " +
             std::to_string(r) + " (the last axis holds real and imaginary parts)");
  const bool inverse = ctx.attrInt("inverse", 0) != 0, onesided = ctx.attrInt("onesided", 0) != 0;
  if (inverse && onesided)
    ctx.unsupported("inverse with onesided");
  const int64_t len = x.dims[size_t(axis)];
  int64_t n = len;
  if (ctx.hasInput(1)) {
    const Tensor &dl = ctx.in(1);
    if (dl.size() != 1 || !(dl.data[0] >= 1) || dl.data[0] > double(int64_t(1) << 24))
      ctx.fail("dft_length must be one positive integer");
    n = int64_t(dl.data[0]);
  }
  const int64_t nOut = onesided ? n / 2 + 1 : n;
  const bool complexIn = x.dims.back() == 2, pow2 = (n & (n - 1)) == 0;
  // [outer, axis, inner, 1|2] views of input and output.
  int64_t outer = 1, inner = 1;
  for (int64_t a = 0; a < axis; ++a)
    outer *= x.dims[size_t(a)];
  for (int64_t a = axis + 1; a < r - 1; ++a)
    inner *= x.dims[size_t(a)];
  std::vector<int64_t> od = x.dims;
  od[size_t(axis)] = nOut;
  od.back() = 2;
  Tensor y = Tensor::zeros(od, x.dtype);
  const int64_t ci = complexIn ? 2 : 1, m = std::min(len, n);
  const double sign = inverse ? 1.0 : -1.0, scale = inverse ? 1.0 / double(n) : 1.0;
  std::vector<double> re(static_cast<size_t>(n)), im(static_cast<size_t>(n));
  // Direct sums: e^(sign 2 pi i t / n) for t = j k mod n (exact integers), computed once.
  std::vector<double> wc, ws;
  if (!pow2)
    for (int64_t t = 0; t < n; ++t) {
      const double th = sign * 2 * M_PI * double(t) / double(n);
      wc.push_back(std::cos(th)), ws.push_back(std::sin(th));
    }
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      std::fill(re.begin(), re.end(), 0.0), std::fill(im.begin(), im.end(), 0.0);
      for (int64_t j = 0; j < m; ++j) {
        const size_t at = size_t(((o * len + j) * inner + i) * ci);
        re[size_t(j)] = x.data[at];
        im[size_t(j)] = complexIn ? x.data[at + 1] : 0.0;
      }
      auto put = [&](int64_t k, double a, double b) {
        const size_t to = size_t(((o * nOut + k) * inner + i) * 2);
        y.data[to] = a * scale, y.data[to + 1] = b * scale;
      };
      if (pow2) {
        fftPow2(re, im, sign);
        for (int64_t k = 0; k < nOut; ++k)
          put(k, re[size_t(k)], im[size_t(k)]);
        continue;
      }
      for (int64_t k = 0; k < nOut; ++k) {
        double sr = 0, si = 0;
        for (int64_t j = 0; j < m; ++j) {
          const size_t t = size_t((j * k) % n);
          sr += re[size_t(j)] * wc[t] - im[size_t(j)] * ws[t];
          si += re[size_t(j)] * ws[t] + im[size_t(j)] * wc[t];
        }
        put(k, sr, si);
      }
    }
  return one(std::move(y));
}

std::vector<Tensor> det(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  if (x.rank() < 2 || x.dims.back() != x.dims[x.dims.size() - 2])
    ctx.fail("input must be [..., M, M]");
  int64_t M = x.dims.back(), batch = x.size() / std::max<int64_t>(M * M, 1);
  std::vector<int64_t> od(x.dims.begin(), x.dims.end() - 2);
  Tensor y = Tensor::zeros(od, x.dtype);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<double> a(x.data.begin() + b * M * M, x.data.begin() + (b + 1) * M * M);
    double d = 1;
    for (int64_t c = 0; c < M && d != 0; ++c) {
      int64_t p = c;
      for (int64_t r = c + 1; r < M; ++r)
        if (std::fabs(a[size_t(r * M + c)]) > std::fabs(a[size_t(p * M + c)]))
          p = r;
      if (a[size_t(p * M + c)] == 0) {
        d = 0;
        break;
      }
      if (p != c) {
        for (int64_t j = 0; j < M; ++j)
          std::swap(a[size_t(p * M + j)], a[size_t(c * M + j)]);
        d = -d;
      }
      d *= a[size_t(c * M + c)];
      for (int64_t r = c + 1; r < M; ++r) {
        double f = a[size_t(r * M + c)] / a[size_t(c * M + c)];
        for (int64_t j = c; j < M; ++j)
          a[size_t(r * M + j)] -= f * a[size_t(c * M + j)];
      }
    }
    y.data[size_t(b)] = d;
  }
  return one(std::move(y));
}

std::vector<Tensor> reverseSequence(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  std::vector<int64_t> lens = ctx.in(1).toInt64();
  int64_t ba = ctx.attrInt("batch_axis", 1), ta = ctx.attrInt("time_axis", 0);
  if (x.rank() < 2 || !((ba == 0 && ta == 1) || (ba == 1 && ta == 0)))
    ctx.fail("batch_axis/time_axis must be 0 and 1");
  int64_t B = x.dims[size_t(ba)], T = x.dims[size_t(ta)];
  if (int64_t(lens.size()) != B)
    ctx.fail("sequence_lens must have one entry per batch");
  int64_t inner = x.size() / std::max<int64_t>(B * T, 1);
  Tensor y = x;
  auto off = [&](int64_t b, int64_t t) {
    return (ba == 0 ? b * T + t : t * B + b) * inner;
  };
  for (int64_t b = 0; b < B; ++b) {
    int64_t L = std::clamp<int64_t>(lens[size_t(b)], 0, T);
    for (int64_t t = 0; t < L; ++t)
      std::copy_n(x.data.begin() + off(b, L - 1 - t), inner, y.data.begin() + off(b, t));
  }
  return one(std::move(y));
}


// ---- RNN / GRU / LSTM (one implementation, three cell kinds) ----

enum class Cell { RNN, GRU, LSTM };

double activate(const std::string &f, double x) {
  if (f == "Tanh") return std::tanh(x);
  if (f == "Sigmoid") return x >= 0 ? 1 / (1 + std::exp(-x)) : std::exp(x) / (1 + std::exp(x));
  if (f == "Relu") return x > 0 ? x : 0;
  if (f == "Softsign") return x / (1 + std::fabs(x));
  if (f == "Softplus") return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
  return std::nan("");
}

std::vector<Tensor> recurrent(OpContext &ctx, Cell cell) {
  const Tensor &X = ctx.in(0), &W = ctx.in(1), &R = ctx.in(2);
  int64_t G = cell == Cell::RNN ? 1 : cell == Cell::GRU ? 3 : 4;
  std::string dir = ctx.attrString("direction", "forward");
  int64_t D = dir == "bidirectional" ? 2 : 1;
  if (dir != "forward" && dir != "reverse" && dir != "bidirectional")
    ctx.fail("unknown direction '" + dir + "'");
  if (ctx.hasAttr("activation_alpha") || ctx.hasAttr("activation_beta"))
    ctx.unsupported("activations with parameters");
  // No conformance data or torch export exercises these: refuse rather than guess.
  if (ctx.hasAttr("clip"))
    ctx.unsupported("attribute 'clip'");
  if (ctx.attrInt("input_forget", 0) != 0)
    ctx.unsupported("input_forget=1");
  bool layout1 = ctx.attrInt("layout", 0) != 0;
  if (X.rank() != 3 || W.rank() != 3 || R.rank() != 3)
    ctx.fail("X, W and R must be 3-D");
  int64_t S = layout1 ? X.dims[1] : X.dims[0], Bt = layout1 ? X.dims[0] : X.dims[1],
          I = X.dims[2], H = R.dims[2];
  if (ctx.hasAttr("hidden_size") && ctx.attrInt("hidden_size", 0) != H)
    ctx.fail("hidden_size does not match R");
  if (W.dims != std::vector<int64_t>{D, G * H, I} || R.dims != std::vector<int64_t>{D, G * H, H})
    ctx.fail("W " + shapeString(W.dims) + " / R " + shapeString(R.dims) + " do not match");
  std::vector<std::string> acts;
  if (const auto *a = ctx.attr("activations"))
    for (const auto &x : a->strings())
      acts.push_back(x);
  size_t per = cell == Cell::RNN ? 1 : cell == Cell::GRU ? 2 : 3;
  if (acts.empty()) {
    std::vector<std::string> d = cell == Cell::RNN   ? std::vector<std::string>{"Tanh"}
                                 : cell == Cell::GRU ? std::vector<std::string>{"Sigmoid", "Tanh"}
                                                     : std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"};
    for (int64_t k = 0; k < D; ++k)
      acts.insert(acts.end(), d.begin(), d.end());
  }
  if (acts.size() == per && D == 2)
    acts.insert(acts.end(), acts.begin(), acts.end());
  if (acts.size() != per * size_t(D))
    ctx.fail("wrong number of activations");
  for (const auto &f : acts)
    if (std::isnan(activate(f, 0.5)))
      ctx.unsupported("activation '" + f + "'");
  double clip = ctx.attrFloat("clip", 0.0);
  bool hasClip = ctx.hasAttr("clip");
  bool lbr = ctx.attrInt("linear_before_reset", 0) != 0;
  bool inputForget = ctx.attrInt("input_forget", 0) != 0;
  auto pre = [&](double v) { return hasClip ? std::clamp(v, -clip, clip) : v; };
  const Tensor *B = ctx.hasInput(3) ? &ctx.in(3) : nullptr;
  std::vector<int64_t> lens(size_t(Bt), S);
  if (ctx.hasInput(4))
    lens = ctx.in(4).toInt64();
  const Tensor *h0 = ctx.hasInput(5) ? &ctx.in(5) : nullptr;
  const Tensor *c0 = cell == Cell::LSTM && ctx.hasInput(6) ? &ctx.in(6) : nullptr;
  const Tensor *P = cell == Cell::LSTM && ctx.hasInput(7) ? &ctx.in(7) : nullptr;
  if (B && B->size() != D * 2 * G * H)
    ctx.fail("B must have num_directions x " + std::to_string(2 * G * H) + " entries");
  if (int64_t(lens.size()) != Bt)
    ctx.fail("sequence_lens must have one entry per batch");
  for (const Tensor *st : {h0, c0})
    if (st && st->size() != D * Bt * H)
      ctx.fail("initial state must have num_directions x batch x hidden entries");
  if (P && P->size() != D * 3 * H)
    ctx.fail("P must have num_directions x " + std::to_string(3 * H) + " entries");
  auto xAt = [&](int64_t t, int64_t b, int64_t i) {
    return X.data[size_t(layout1 ? (b * S + t) * I + i : (t * Bt + b) * I + i)];
  };
  Tensor Y = Tensor::zeros(layout1 ? std::vector<int64_t>{Bt, S, D, H}
                                   : std::vector<int64_t>{S, D, Bt, H}, X.dtype);
  Tensor Yh = Tensor::zeros(layout1 ? std::vector<int64_t>{Bt, D, H}
                                    : std::vector<int64_t>{D, Bt, H}, X.dtype);
  Tensor Yc = Yh;
  auto stateIdx = [&](int64_t d, int64_t b, int64_t h) {
    return size_t(layout1 ? (b * D + d) * H + h : (d * Bt + b) * H + h);
  };
  for (int64_t d = 0; d < D; ++d) {
    bool rev = dir == "reverse" || d == 1;
    const double *w = W.data.data() + d * G * H * I, *r = R.data.data() + d * G * H * H;
    auto wb = [&](int64_t j) { return B ? B->data[size_t(d * 2 * G * H + j)] : 0.0; };
    auto rb = [&](int64_t j) { return B ? B->data[size_t(d * 2 * G * H + G * H + j)] : 0.0; };
    const std::string *f = &acts[size_t(d) * per];
    for (int64_t b = 0; b < Bt; ++b) {
      std::vector<double> h(size_t(H), 0.0), c(size_t(H), 0.0);
      for (int64_t k = 0; k < H; ++k) {
        if (h0) h[size_t(k)] = h0->data[stateIdx(d, b, k)];
        if (c0) c[size_t(k)] = c0->data[stateIdx(d, b, k)];
      }
      int64_t L = std::min(lens[size_t(b)], S);
      for (int64_t step = 0; step < L; ++step) {
        int64_t t = rev ? L - 1 - step : step;
        // gates[j] = x W_j^T + Wb_j (+ h R_j^T + Rb_j except GRU's candidate)
        std::vector<double> xw(size_t(G * H)), hr(size_t(G * H));
        for (int64_t j = 0; j < G * H; ++j) {
          double sx = wb(j), sh = rb(j);
          for (int64_t i = 0; i < I; ++i) sx += xAt(t, b, i) * w[j * I + i];
          for (int64_t k = 0; k < H; ++k) sh += h[size_t(k)] * r[j * H + k];
          xw[size_t(j)] = sx;
          hr[size_t(j)] = sh;
        }
        std::vector<double> hn(static_cast<size_t>(H));
        if (cell == Cell::RNN) {
          for (int64_t k = 0; k < H; ++k)
            hn[size_t(k)] = activate(f[0], pre(xw[size_t(k)] + hr[size_t(k)]));
        } else if (cell == Cell::GRU) { // gates z, r, h
          std::vector<double> rh(static_cast<size_t>(H));
          for (int64_t k = 0; k < H; ++k)
            rh[size_t(k)] = activate(f[0], pre(xw[size_t(H + k)] + hr[size_t(H + k)])) * h[size_t(k)];
          for (int64_t k = 0; k < H; ++k) {
            double z = activate(f[0], pre(xw[size_t(k)] + hr[size_t(k)]));
            double rg = activate(f[0], pre(xw[size_t(H + k)] + hr[size_t(H + k)]));
            double cand;
            if (lbr) {
              cand = xw[size_t(2 * H + k)] + rg * hr[size_t(2 * H + k)];
            } else {
              double s = rb(2 * H + k);
              for (int64_t q = 0; q < H; ++q) s += rh[size_t(q)] * r[(2 * H + k) * H + q];
              cand = xw[size_t(2 * H + k)] + s;
            }
            double ht = activate(f[1], pre(cand));
            hn[size_t(k)] = (1 - z) * ht + z * h[size_t(k)];
          }
        } else { // LSTM gates i, o, f, c; peepholes P = [Pi, Po, Pf]
          auto p = [&](int64_t g, int64_t k) {
            return P ? P->data[size_t(d * 3 * H + g * H + k)] : 0.0;
          };
          for (int64_t k = 0; k < H; ++k) {
            double ig = activate(f[0], pre(xw[size_t(k)] + hr[size_t(k)] + p(0, k) * c[size_t(k)]));
            double fg = inputForget ? 1 - ig
                                    : activate(f[0], pre(xw[size_t(2 * H + k)] + hr[size_t(2 * H + k)] +
                                                         p(2, k) * c[size_t(k)]));
            double cg = activate(f[1], pre(xw[size_t(3 * H + k)] + hr[size_t(3 * H + k)]));
            double cn = fg * c[size_t(k)] + ig * cg;
            double og = activate(f[0], pre(xw[size_t(H + k)] + hr[size_t(H + k)] + p(1, k) * cn));
            hn[size_t(k)] = og * activate(f[2], cn);
            c[size_t(k)] = cn;
          }
        }
        h = hn;
        for (int64_t k = 0; k < H; ++k)
          Y.data[size_t(layout1 ? ((b * S + t) * D + d) * H + k : ((t * D + d) * Bt + b) * H + k)] =
              h[size_t(k)];
      }
      for (int64_t k = 0; k < H; ++k) {
        Yh.data[stateIdx(d, b, k)] = h[size_t(k)];
        Yc.data[stateIdx(d, b, k)] = c[size_t(k)];
      }
    }
  }
  std::vector<Tensor> outs{std::move(Y), std::move(Yh)};
  if (cell == Cell::LSTM)
    outs.push_back(std::move(Yc));
  return outs;
}

} // namespace

void registerExtraOps(std::map<std::string, OpInfo> &r) {
  std::set<std::string> ra{"activation_alpha", "activation_beta", "activations", "clip",
                           "direction", "hidden_size", "layout"};
  r["RNN"] = {[](OpContext &c) { return recurrent(c, Cell::RNN); }, ra, true};
  auto ga = ra;
  ga.insert("linear_before_reset");
  r["GRU"] = {[](OpContext &c) { return recurrent(c, Cell::GRU); }, ga, true};
  auto la = ra;
  la.insert("input_forget");
  r["LSTM"] = {[](OpContext &c) { return recurrent(c, Cell::LSTM); }, la, true};
  r["BitShift"] = {bitShift, {"direction"}};
  r["Det"] = {det, {}, true};
  r["DFT"] = {dft, {"axis", "inverse", "onesided"}, true};
  r["ReverseSequence"] = {reverseSequence, {"batch_axis", "time_axis"}};
  // Scatter (opsets 9-10) is ScatterElements without reduction.
  if (r.count("ScatterElements"))
    r["Scatter"] = {r["ScatterElements"].kernel, {"axis"}};
  r["ConvTranspose"] = {convTranspose,
                        {"auto_pad", "dilations", "group", "kernel_shape", "output_padding",
                         "output_shape", "pads", "strides"},
                        true};
  r["Resize"] = {resize,
                 {"coordinate_transformation_mode", "cubic_coeff_a", "exclude_outside",
                  "extrapolation_value", "mode", "nearest_mode", "antialias", "axes",
                  "keep_aspect_ratio_policy"}};
  r["Upsample"] = {upsample, {"mode", "scales"}};
  r["NegativeLogLikelihoodLoss"] = {nllLoss, {"ignore_index", "reduction"}, true};
  r["SoftmaxCrossEntropyLoss"] = {softmaxCrossEntropy, {"ignore_index", "reduction"}, true};
  r["OneHot"] = {oneHot, {"axis"}};
  r["NonZero"] = {nonZero, {}};
  r["Compress"] = {compress, {"axis"}};
  r["MeanVarianceNormalization"] = {meanVarianceNorm, {"axes"}, true};
  r["LRN"] = {lrn, {"alpha", "beta", "bias", "size"}, true};
  r["LpNormalization"] = {lpNormalization, {"axis", "p"}, true};
}

} // namespace symoc
