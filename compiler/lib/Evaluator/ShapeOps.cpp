//===- ShapeOps.cpp - Data movement and shape ops -------------------------===//
#include "Ops.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace symoc {

using TP = onnx::TensorProto;

namespace {

std::vector<Tensor> one(Tensor t) { return std::vector<Tensor>{std::move(t)}; }

// Odometer step of a strided walk: advances the multi-index idx (extents od) at axis `last`,
// carrying into earlier axes, and keeps `off` = sum idx[d] * ps[d].
void advance(std::vector<int64_t> &idx, int64_t &off, const std::vector<int64_t> &od, const std::vector<int64_t> &ps,
             int64_t last) {
  for (int64_t d = last; d >= 0; --d) {
    size_t ud = size_t(d);
    if (++idx[ud] < od[ud]) {
      off += ps[ud];
      return;
    }
    off -= ps[ud] * (od[ud] - 1);
    idx[ud] = 0;
  }
}

Tensor transpose(const Tensor &x, const std::vector<int64_t> &perm) {
  size_t r = x.dims.size();
  std::vector<int64_t> od(r);
  for (size_t i = 0; i < r; ++i)
    od[i] = x.dims[size_t(perm[i])];
  Tensor y = Tensor::zeros(od, x.dtype);
  std::vector<int64_t> is = stridesOf(x.dims), ps(r);
  for (size_t i = 0; i < r; ++i)
    ps[i] = is[size_t(perm[i])];
  // When the input's contiguous axis moves (a real transpose, e.g. of a weight
  // before a MatMul), copy in 32 x 32 tiles between that axis (output axis q)
  // and the output's last axis, so that neither side is read with a large
  // stride element by element.
  size_t q = r;
  for (size_t i = 0; i < r; ++i)
    if (size_t(perm[i]) + 1 == r)
      q = i;
  if (r >= 2 && q + 1 < r && y.size() > 0) {
    std::vector<int64_t> os = stridesOf(od);
    int64_t nq = od[q], nl = od[r - 1], isl = ps[r - 1], osq = os[q];
    std::vector<size_t> others;
    for (size_t i = 0; i + 1 < r; ++i)
      if (i != q)
        others.push_back(i);
    std::vector<int64_t> idx(others.size(), 0);
    int64_t outerCount = y.size() / (nq * nl);
    constexpr int64_t T = 32;
    for (int64_t o = 0; o < outerCount; ++o) {
      int64_t ib = 0, ob = 0;
      for (size_t k = 0; k < others.size(); ++k) {
        ib += idx[k] * ps[others[k]];
        ob += idx[k] * os[others[k]];
      }
      for (int64_t i0 = 0; i0 < nq; i0 += T)
        for (int64_t j0 = 0; j0 < nl; j0 += T) {
          int64_t i1 = std::min(nq, i0 + T), j1 = std::min(nl, j0 + T);
          for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = j0; j < j1; ++j)
              y.data[size_t(ob + i * osq + j)] = x.data[size_t(ib + i + j * isl)];
        }
      for (int64_t k = int64_t(others.size()) - 1; k >= 0; --k) {
        if (++idx[size_t(k)] < od[others[size_t(k)]])
          break;
        idx[size_t(k)] = 0;
      }
    }
    return y;
  }
  // The contiguous axis stays last: copy whole rows.
  if (r >= 2 && size_t(perm[r - 1]) + 1 == r && y.size() > 0) {
    int64_t row = od[r - 1];
    std::vector<int64_t> idx(r - 1, 0);
    int64_t off = 0;
    for (int64_t e = 0; e < y.size(); e += row) {
      std::copy_n(x.data.begin() + off, row, y.data.begin() + e);
      advance(idx, off, od, ps, int64_t(r) - 2);
    }
    return y;
  }
  std::vector<int64_t> idx(r, 0);
  int64_t off = 0;
  for (int64_t e = 0; e < y.size(); ++e) {
    y.data[size_t(e)] = x.data[size_t(off)];
    advance(idx, off, od, ps, int64_t(r) - 1);
  }
  return y;
}

// Copies the block x[.., lo:hi, ..] along `axis` (outer x inner layout).
Tensor sliceAxis(const Tensor &x, int64_t axis, int64_t lo, int64_t hi) {
  std::vector<int64_t> od = x.dims;
  od[size_t(axis)] = hi - lo;
  Tensor y = Tensor::zeros(od, x.dtype);
  int64_t outer = 1, inner = 1, d = x.dims[size_t(axis)];
  for (int64_t i = 0; i < axis; ++i)
    outer *= x.dims[size_t(i)];
  for (size_t i = size_t(axis) + 1; i < x.dims.size(); ++i)
    inner *= x.dims[i];
  int64_t w = (hi - lo) * inner;
  for (int64_t o = 0; o < outer; ++o)
    std::copy_n(x.data.begin() + (o * d + lo) * inner, w, y.data.begin() + o * w);
  return y;
}

// Axes from an attribute (old opsets) or an optional int64 input (new ones).
std::vector<int64_t> axesArg(OpContext &ctx, int64_t inputOpset, size_t inputIdx,
                             bool *given = nullptr) {
  if (ctx.opset >= inputOpset) {
    if (ctx.hasAttr("axes"))
      ctx.fail("'axes' is an input from opset " + std::to_string(inputOpset));
    if (given)
      *given = ctx.hasInput(inputIdx);
    return ctx.hasInput(inputIdx) ? ctx.in(inputIdx).toInt64() : std::vector<int64_t>{};
  }
  if (given)
    *given = ctx.hasAttr("axes");
  return ctx.attrInts("axes");
}

std::vector<Tensor> reshape(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  std::vector<int64_t> shape =
      ctx.opset < 5 ? ctx.attrInts("shape") : ctx.in(1).toInt64();
  bool allowZero = ctx.attrInt("allowzero", 0) != 0;
  int64_t infer = -1, known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0 && !allowZero) {
      if (i >= x.dims.size())
        ctx.fail("shape copies dimension " + std::to_string(i) + " of a rank-" +
                 std::to_string(x.rank()) + " input");
      shape[i] = x.dims[i];
    }
    if (shape[i] == -1) {
      if (infer >= 0)
        ctx.fail("more than one -1 in the target shape");
      infer = int64_t(i);
      continue;
    }
    if (shape[i] < 0)
      ctx.fail("negative dimension in the target shape");
    known *= shape[i];
  }
  if (infer >= 0) {
    if (known == 0 || x.size() % known)
      ctx.fail("cannot reshape " + shapeString(x.dims) + " to " + shapeString(shape));
    shape[size_t(infer)] = x.size() / known;
  }
  if (numElements(shape) != x.size())
    ctx.fail("cannot reshape " + shapeString(x.dims) + " to " + shapeString(shape));
  Tensor y = x;
  y.dims = shape;
  return one(std::move(y));
}

std::vector<Tensor> squeeze(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  std::vector<int64_t> axes = axesArg(ctx, 13, 1);
  std::vector<bool> drop(x.dims.size(), false);
  if (axes.empty()) {
    for (size_t i = 0; i < x.dims.size(); ++i)
      drop[i] = x.dims[i] == 1;
  } else {
    for (int64_t a : axes) {
      int64_t ax = ctx.axis(a, x.rank());
      if (x.dims[size_t(ax)] != 1)
        ctx.fail("cannot squeeze axis " + std::to_string(a) + " of size " +
                 std::to_string(x.dims[size_t(ax)]));
      drop[size_t(ax)] = true;
    }
  }
  Tensor y = x;
  y.dims.clear();
  for (size_t i = 0; i < x.dims.size(); ++i)
    if (!drop[i])
      y.dims.push_back(x.dims[i]);
  return one(std::move(y));
}

std::vector<Tensor> unsqueeze(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  std::vector<int64_t> axes = axesArg(ctx, 13, 1);
  int64_t r = x.rank() + int64_t(axes.size());
  std::vector<bool> ins(size_t(r), false);
  for (int64_t a : axes) {
    int64_t ax = ctx.axis(a, r);
    if (ins[size_t(ax)])
      ctx.fail("repeated axis");
    ins[size_t(ax)] = true;
  }
  Tensor y = x;
  y.dims.clear();
  size_t j = 0;
  for (int64_t i = 0; i < r; ++i)
    y.dims.push_back(ins[size_t(i)] ? 1 : x.dims[j++]);
  return one(std::move(y));
}

std::vector<Tensor> concat(OpContext &ctx) {
  if (!ctx.hasAttr("axis"))
    ctx.fail("missing attribute 'axis'");
  const Tensor &a = ctx.in(0);
  int64_t axis = ctx.axis(ctx.attrInt("axis", 0), a.rank());
  std::vector<int64_t> od = a.dims;
  od[size_t(axis)] = 0;
  for (size_t i = 0; i < ctx.numInputs(); ++i) {
    const Tensor &t = ctx.in(i);
    if (t.rank() != a.rank())
      ctx.fail("inputs have different ranks");
    for (size_t d = 0; d < t.dims.size(); ++d)
      if (int64_t(d) != axis && t.dims[d] != a.dims[d])
        ctx.fail("shapes " + shapeString(a.dims) + " and " + shapeString(t.dims) +
                 " differ off the concat axis");
    od[size_t(axis)] += t.dims[size_t(axis)];
  }
  Tensor y = Tensor::zeros(od, a.dtype);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i)
    outer *= od[size_t(i)];
  for (size_t i = size_t(axis) + 1; i < od.size(); ++i)
    inner *= od[i];
  int64_t pos = 0, total = od[size_t(axis)] * inner;
  for (size_t i = 0; i < ctx.numInputs(); ++i) {
    const Tensor &t = ctx.in(i);
    int64_t w = t.dims[size_t(axis)] * inner;
    for (int64_t o = 0; o < outer; ++o)
      std::copy_n(t.data.begin() + o * w, w, y.data.begin() + o * total + pos);
    pos += w;
  }
  return one(std::move(y));
}

std::vector<Tensor> split(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  int64_t axis = ctx.axis(ctx.attrInt("axis", 0), x.rank());
  int64_t d = x.dims[size_t(axis)];
  std::vector<int64_t> sizes;
  if (ctx.opset < 13)
    sizes = ctx.attrInts("split");
  else if (ctx.hasInput(1))
    sizes = ctx.in(1).toInt64();
  size_t n = ctx.numOutputs();
  if (ctx.hasAttr("num_outputs"))
    n = size_t(ctx.attrInt("num_outputs", 1));
  if (sizes.empty()) {
    if (ctx.hasAttr("num_outputs")) { // opset 18: last chunk may be smaller
      int64_t c = (d + int64_t(n) - 1) / int64_t(n);
      for (size_t i = 0; i < n; ++i)
        sizes.push_back(std::min(c, d - c * int64_t(i)));
    } else {
      if (d % int64_t(n))
        ctx.fail("axis of size " + std::to_string(d) + " does not split into " +
                 std::to_string(n) + " equal parts");
      sizes.assign(n, d / int64_t(n));
    }
  }
  if (sizes.size() != n)
    ctx.fail(std::to_string(sizes.size()) + " split sizes for " + std::to_string(n) + " outputs");
  for (int64_t v : sizes)
    if (v < 0)
      ctx.fail("negative split size");
  if (std::accumulate(sizes.begin(), sizes.end(), int64_t(0)) != d)
    ctx.fail("split sizes do not add up to " + std::to_string(d));
  std::vector<Tensor> outs;
  int64_t lo = 0;
  for (int64_t s : sizes) {
    outs.push_back(sliceAxis(x, axis, lo, lo + s));
    lo += s;
  }
  return outs;
}

std::vector<Tensor> slice(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  std::vector<int64_t> starts, ends, axes, steps;
  if (ctx.opset < 10) {
    starts = ctx.attrInts("starts");
    ends = ctx.attrInts("ends");
    axes = ctx.attrInts("axes");
  } else {
    starts = ctx.in(1).toInt64();
    ends = ctx.in(2).toInt64();
    if (ctx.hasInput(3))
      axes = ctx.in(3).toInt64();
    if (ctx.hasInput(4))
      steps = ctx.in(4).toInt64();
  }
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i)
      axes.push_back(int64_t(i));
  if (steps.empty())
    steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() ||
      steps.size() != starts.size())
    ctx.fail("starts/ends/axes/steps have different lengths");
  size_t r = x.dims.size();
  std::vector<int64_t> st(r, 0), sp(r, 1), od = x.dims;
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t a = ctx.axis(axes[i], x.rank());
    int64_t d = x.dims[size_t(a)], s = starts[i], e = ends[i], k = steps[i];
    if (k == 0)
      ctx.fail("slice step 0");
    if (s < 0 && s != INT64_MIN)
      s += d;
    else if (s == INT64_MIN)
      s = -1;
    if (e < 0 && e != INT64_MIN)
      e += d;
    else if (e == INT64_MIN)
      e = -1;
    if (k > 0) {
      s = std::clamp<int64_t>(s, 0, d);
      e = std::clamp<int64_t>(e, 0, d);
    } else {
      s = std::clamp<int64_t>(s, 0, d - 1);
      e = std::clamp<int64_t>(e, -1, d - 1);
    }
    int64_t n = k > 0 ? (e - s + k - 1) / k : (s - e + (-k) - 1) / (-k);
    st[size_t(a)] = s;
    sp[size_t(a)] = k;
    od[size_t(a)] = std::max<int64_t>(n, 0);
  }
  Tensor y = Tensor::zeros(od, x.dtype);
  std::vector<int64_t> is = stridesOf(x.dims), idx(r, 0);
  for (int64_t e = 0; e < y.size(); ++e) {
    int64_t off = 0;
    for (size_t d = 0; d < r; ++d)
      off += (st[d] + idx[d] * sp[d]) * is[d];
    y.data[size_t(e)] = x.data[size_t(off)];
    for (int64_t d = int64_t(r) - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < od[size_t(d)])
        break;
      idx[size_t(d)] = 0;
    }
  }
  return one(std::move(y));
}

int64_t checkIndex(OpContext &ctx, double v, int64_t d) {
  int64_t i = int64_t(v);
  if (i < -d || i >= d)
    ctx.fail("index " + std::to_string(i) + " out of range for an axis of size " +
             std::to_string(d));
  return i < 0 ? i + d : i;
}

std::vector<Tensor> gather(OpContext &ctx) {
  const Tensor &x = ctx.in(0), &ind = ctx.in(1);
  if (!ind.isInteger())
    ctx.fail("indices must be integers");
  int64_t axis = ctx.axis(ctx.attrInt("axis", 0), x.rank());
  std::vector<int64_t> od;
  for (int64_t i = 0; i < axis; ++i)
    od.push_back(x.dims[size_t(i)]);
  for (int64_t d : ind.dims)
    od.push_back(d);
  for (size_t i = size_t(axis) + 1; i < x.dims.size(); ++i)
    od.push_back(x.dims[i]);
  int64_t outer = 1, inner = 1, d = x.dims[size_t(axis)];
  for (int64_t i = 0; i < axis; ++i)
    outer *= x.dims[size_t(i)];
  for (size_t i = size_t(axis) + 1; i < x.dims.size(); ++i)
    inner *= x.dims[i];
  Tensor y = Tensor::zeros(od, x.dtype);
  int64_t m = ind.size();
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < m; ++j) {
      int64_t k = checkIndex(ctx, ind.data[size_t(j)], d);
      std::copy_n(x.data.begin() + (o * d + k) * inner, inner,
                  y.data.begin() + (o * m + j) * inner);
    }
  return one(std::move(y));
}

std::vector<Tensor> gatherElements(OpContext &ctx) {
  const Tensor &x = ctx.in(0), &ind = ctx.in(1);
  int64_t axis = ctx.axis(ctx.attrInt("axis", 0), x.rank());
  if (ind.rank() != x.rank())
    ctx.fail("indices and data must have the same rank");
  for (size_t d = 0; d < ind.dims.size(); ++d)
    if (int64_t(d) != axis && ind.dims[d] > x.dims[d])
      ctx.fail("indices larger than data off the gather axis");
  Tensor y = Tensor::zeros(ind.dims, x.dtype);
  std::vector<int64_t> xs = stridesOf(x.dims), idx(ind.dims.size(), 0);
  for (int64_t e = 0; e < y.size(); ++e) {
    int64_t off = 0;
    for (size_t d = 0; d < idx.size(); ++d) {
      int64_t v = int64_t(d) == axis
                      ? checkIndex(ctx, ind.data[size_t(e)], x.dims[d])
                      : idx[d];
      off += v * xs[d];
    }
    y.data[size_t(e)] = x.data[size_t(off)];
    for (int64_t d = int64_t(idx.size()) - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < ind.dims[size_t(d)])
        break;
      idx[size_t(d)] = 0;
    }
  }
  return one(std::move(y));
}

std::vector<Tensor> gatherND(OpContext &ctx) {
  const Tensor &x = ctx.in(0), &ind = ctx.in(1);
  int64_t b = ctx.attrInt("batch_dims", 0);
  if (ind.rank() < 1 || b < 0 || b >= ind.rank())
    ctx.fail("indices must have rank > batch_dims");
  int64_t k = ind.dims.back();
  if (k < 1 || b + k > x.rank())
    ctx.fail("last indices dimension too large");
  std::vector<int64_t> od(ind.dims.begin(), ind.dims.end() - 1);
  for (size_t i = size_t(b + k); i < x.dims.size(); ++i)
    od.push_back(x.dims[i]);
  int64_t inner = 1, batch = 1, batchX = 1;
  for (size_t i = size_t(b + k); i < x.dims.size(); ++i)
    inner *= x.dims[i];
  for (int64_t i = 0; i < b; ++i)
    batch *= x.dims[size_t(i)];
  batchX = x.size() / std::max<int64_t>(batch, 1);
  int64_t tuples = (ind.size() / k) / std::max<int64_t>(batch, 1);
  std::vector<int64_t> xs = stridesOf(x.dims);
  Tensor y = Tensor::zeros(od, x.dtype);
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t t = 0; t < tuples; ++t) {
      int64_t off = bi * batchX, row = bi * tuples + t;
      for (int64_t j = 0; j < k; ++j)
        off += checkIndex(ctx, ind.data[size_t(row * k + j)], x.dims[size_t(b + j)]) *
               xs[size_t(b + j)];
      std::copy_n(x.data.begin() + off, inner, y.data.begin() + row * inner);
    }
  return one(std::move(y));
}

std::vector<Tensor> scatterND(OpContext &ctx) {
  const Tensor &x = ctx.in(0), &ind = ctx.in(1), &upd = ctx.in(2);
  std::string red = ctx.attrString("reduction", "none");
  if (ind.rank() < 1 || ind.dims.back() < 1 || ind.dims.back() > x.rank())
    ctx.fail("last indices dimension must be in [1, rank of data]");
  int64_t k = ind.dims.back(), inner = 1;
  for (size_t i = size_t(k); i < x.dims.size(); ++i)
    inner *= x.dims[i];
  std::vector<int64_t> xs = stridesOf(x.dims);
  Tensor y = x;
  int64_t tuples = ind.size() / k;
  if (upd.size() != tuples * inner)
    ctx.fail("updates have the wrong size");
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t off = 0;
    for (int64_t j = 0; j < k; ++j)
      off += checkIndex(ctx, ind.data[size_t(t * k + j)], x.dims[size_t(j)]) * xs[size_t(j)];
    for (int64_t i = 0; i < inner; ++i) {
      double &dst = y.data[size_t(off + i)], u = upd.data[size_t(t * inner + i)];
      if (red == "none") dst = u;
      else if (red == "add") dst += u;
      else if (red == "mul") dst *= u;
      else if (red == "max") dst = std::max(dst, u);
      else if (red == "min") dst = std::min(dst, u);
      else ctx.unsupported("reduction '" + red + "'");
    }
  }
  return one(std::move(y));
}

std::vector<Tensor> scatterElements(OpContext &ctx) {
  const Tensor &x = ctx.in(0), &ind = ctx.in(1), &upd = ctx.in(2);
  int64_t axis = ctx.axis(ctx.attrInt("axis", 0), x.rank());
  std::string red = ctx.attrString("reduction", "none");
  if (ind.rank() != x.rank() || upd.dims != ind.dims)
    ctx.fail("indices and updates must have the same shape and the rank of data");
  for (size_t d = 0; d < ind.dims.size(); ++d)
    if (int64_t(d) != axis && ind.dims[d] > x.dims[d])
      ctx.fail("indices larger than data off the scatter axis");
  Tensor y = x;
  std::vector<int64_t> xs = stridesOf(x.dims), idx(ind.dims.size(), 0);
  for (int64_t e = 0; e < ind.size(); ++e) {
    int64_t off = 0;
    for (size_t d = 0; d < idx.size(); ++d)
      off += (int64_t(d) == axis ? checkIndex(ctx, ind.data[size_t(e)], x.dims[d]) : idx[d]) *
             xs[d];
    double &dst = y.data[size_t(off)], u = upd.data[size_t(e)];
    if (red == "none") dst = u;
    else if (red == "add") dst += u;
    else if (red == "mul") dst *= u;
    else if (red == "max") dst = std::max(dst, u);
    else if (red == "min") dst = std::min(dst, u);
    else ctx.unsupported("reduction '" + red + "'");
    for (int64_t d = int64_t(idx.size()) - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < ind.dims[size_t(d)])
        break;
      idx[size_t(d)] = 0;
    }
  }
  return one(std::move(y));
}

std::vector<Tensor> expand(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  std::vector<int64_t> s = ctx.in(1).toInt64();
  std::vector<int64_t> od = broadcastShapes(ctx, {x.dims, s});
  Tensor z = Tensor::zeros(od, x.dtype);
  return one(broadcastMap(ctx, {&x, &z}, x.dtype, [](const double *v) { return v[0]; }));
}

std::vector<Tensor> tile(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  std::vector<int64_t> rep = ctx.in(1).toInt64();
  if (int64_t(rep.size()) != x.rank())
    ctx.fail("repeats must have one entry per axis");
  for (int64_t v : rep)
    if (v < 0)
      ctx.fail("negative repeats");
  std::vector<int64_t> od = x.dims;
  for (size_t i = 0; i < od.size(); ++i)
    od[i] *= rep[i];
  Tensor y = Tensor::zeros(od, x.dtype);
  std::vector<int64_t> xs = stridesOf(x.dims), idx(od.size(), 0);
  for (int64_t e = 0; e < y.size(); ++e) {
    int64_t off = 0;
    for (size_t d = 0; d < od.size(); ++d)
      off += (idx[d] % x.dims[d]) * xs[d];
    y.data[size_t(e)] = x.data[size_t(off)];
    for (int64_t d = int64_t(od.size()) - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < od[size_t(d)])
        break;
      idx[size_t(d)] = 0;
    }
  }
  return one(std::move(y));
}

std::vector<Tensor> pad(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  std::string mode = ctx.attrString("mode", "constant");
  std::vector<int64_t> pads;
  double cval = 0;
  std::vector<int64_t> axes;
  if (ctx.opset < 11) {
    pads = ctx.attrInts("pads");
    cval = ctx.attrFloat("value", 0.0);
  } else {
    pads = ctx.in(1).toInt64();
    if (ctx.hasInput(2) && ctx.in(2).size())
      cval = ctx.in(2).data[0];
    if (ctx.hasInput(3))
      axes = ctx.in(3).toInt64();
  }
  size_t r = x.dims.size();
  if (axes.empty())
    for (size_t i = 0; i < r; ++i)
      axes.push_back(int64_t(i));
  if (pads.size() != 2 * axes.size())
    ctx.fail("pads must have 2 entries per padded axis");
  std::vector<int64_t> lo(r, 0), hi(r, 0);
  for (size_t i = 0; i < axes.size(); ++i) {
    int64_t a = ctx.axis(axes[i], x.rank());
    lo[size_t(a)] = pads[i];
    hi[size_t(a)] = pads[i + axes.size()];
  }
  std::vector<int64_t> od(r);
  for (size_t i = 0; i < r; ++i)
    od[i] = x.dims[i] + lo[i] + hi[i];
  if (mode != "constant" && mode != "reflect" && mode != "edge" && mode != "wrap")
    ctx.unsupported("mode '" + mode + "'");
  Tensor y = Tensor::zeros(od, x.dtype);
  std::vector<int64_t> xs = stridesOf(x.dims), idx(r, 0);
  for (int64_t e = 0; e < y.size(); ++e) {
    int64_t off = 0;
    bool outside = false;
    for (size_t d = 0; d < r; ++d) {
      int64_t i = idx[d] - lo[d], n = x.dims[d];
      if (i < 0 || i >= n) {
        if (mode == "constant" || n == 0) {
          outside = true;
          break;
        }
        if (mode == "edge")
          i = std::clamp<int64_t>(i, 0, n - 1);
        else if (mode == "wrap")
          i = ((i % n) + n) % n;
        else { // reflect without repeating the edge
          if (n == 1) i = 0;
          else {
            int64_t p = 2 * (n - 1);
            i = ((i % p) + p) % p;
            if (i >= n) i = p - i;
          }
        }
      }
      off += i * xs[d];
    }
    y.data[size_t(e)] = outside ? cval : x.data[size_t(off)];
    for (int64_t d = int64_t(r) - 1; d >= 0; --d) {
      if (++idx[size_t(d)] < od[size_t(d)])
        break;
      idx[size_t(d)] = 0;
    }
  }
  return one(std::move(y));
}

std::vector<Tensor> constant(OpContext &ctx) {
  const auto &n = ctx.node;
  if (n.attribute_size() != 1)
    ctx.fail("needs exactly one value attribute");
  const auto &a = n.attribute(0);
  if (a.name() == "value")
    return one(tensorFromProto(a.t(), ctx.modelPath));
  if (a.name() == "value_float")
    return one(Tensor::scalar(a.f(), TP::FLOAT));
  if (a.name() == "value_int")
    return one(Tensor::scalar(double(a.i()), TP::INT64));
  if (a.name() == "value_floats")
    return one(Tensor({int64_t(a.floats_size())},
                      std::vector<double>(a.floats().begin(), a.floats().end()), TP::FLOAT));
  if (a.name() == "value_ints")
    return one(Tensor({int64_t(a.ints_size())},
                      std::vector<double>(a.ints().begin(), a.ints().end()), TP::INT64));
  ctx.unsupported("Constant attribute '" + a.name() + "'");
}

std::vector<Tensor> shapeOp(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  int64_t r = x.rank();
  int64_t s = ctx.attrInt("start", 0), e = ctx.attrInt("end", r);
  if (s < 0) s += r;
  if (e < 0) e += r;
  s = std::clamp<int64_t>(s, 0, r);
  e = std::clamp<int64_t>(e, 0, r);
  std::vector<double> v;
  for (int64_t i = s; i < e; ++i)
    v.push_back(double(x.dims[size_t(i)]));
  int64_t n = int64_t(v.size());
  return one(Tensor({n}, std::move(v), TP::INT64));
}

std::vector<Tensor> flatten(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  int64_t a = ctx.attrInt("axis", 1);
  if (a < 0)
    a += x.rank();
  if (a < 0 || a > x.rank())
    ctx.fail("axis out of range");
  int64_t outer = 1;
  for (int64_t i = 0; i < a; ++i)
    outer *= x.dims[size_t(i)];
  Tensor y = x;
  y.dims = {outer, outer ? x.size() / outer : 0};
  return one(std::move(y));
}

std::vector<Tensor> trilu(OpContext &ctx) {
  Tensor y = ctx.in(0);
  bool upper = ctx.attrInt("upper", 1) != 0;
  int64_t k = ctx.hasInput(1) ? int64_t(ctx.scalar(1, "k")) : 0;
  if (y.rank() < 2)
    ctx.fail("input must have rank >= 2");
  int64_t R = y.dims[y.dims.size() - 2], C = y.dims.back();
  for (int64_t b = 0; b * R * C < y.size(); ++b)
    for (int64_t i = 0; i < R; ++i)
      for (int64_t j = 0; j < C; ++j) {
        bool keep = upper ? (j - i >= k) : (j - i <= k);
        if (!keep)
          y.data[size_t(b * R * C + i * C + j)] = 0;
      }
  return one(std::move(y));
}

std::vector<Tensor> constantOfShape(OpContext &ctx) {
  std::vector<int64_t> s = ctx.in(0).toInt64();
  double v = 0;
  DType t = TP::FLOAT;
  if (const auto *a = ctx.attr("value")) {
    Tensor c = tensorFromProto(a->t(), ctx.modelPath);
    if (c.size() != 1)
      ctx.fail("value must have one element");
    v = c.data[0];
    t = c.dtype;
  }
  Tensor y = Tensor::zeros(s, t);
  std::fill(y.data.begin(), y.data.end(), v);
  return one(std::move(y));
}

std::vector<Tensor> range(OpContext &ctx) {
  const Tensor &s = ctx.in(0);
  double st = ctx.scalar(0, "start"), li = ctx.scalar(1, "limit"), de = ctx.scalar(2, "delta");
  if (de == 0)
    ctx.fail("delta is 0");
  int64_t n = std::max<int64_t>(int64_t(std::ceil((li - st) / de)), 0);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[size_t(i)] = castValue(st + double(i) * de, s.dtype);
  return one(Tensor({n}, std::move(v), s.dtype));
}

std::vector<Tensor> dropout(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  bool training = ctx.opset >= 12 && ctx.hasInput(2) && ctx.scalar(2, "training_mode") != 0;
  double ratio = ctx.opset >= 12 ? (ctx.hasInput(1) ? ctx.scalar(1, "ratio") : 0.5)
                                 : ctx.attrFloat("ratio", 0.5);
  if (training && ratio > 0)
    ctx.unsupported("training-mode dropout (random)");
  std::vector<Tensor> outs{x};
  if (ctx.wantsOutput(1)) {
    Tensor m = Tensor::zeros(x.dims, TP::BOOL);
    std::fill(m.data.begin(), m.data.end(), 1.0);
    outs.push_back(std::move(m));
  }
  return outs;
}

std::vector<Tensor> eyeLike(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  DType t = ctx.hasAttr("dtype") ? DType(ctx.attrInt("dtype", 1)) : x.dtype;
  if (!isSupportedDType(t))
    ctx.unsupported("dtype " + dtypeName(t));
  int64_t k = ctx.attrInt("k", 0);
  if (x.rank() != 2)
    ctx.fail("input must be 2-D");
  Tensor y = Tensor::zeros(x.dims, t);
  for (int64_t i = 0; i < x.dims[0]; ++i)
    if (i + k >= 0 && i + k < x.dims[1])
      y.data[size_t(i * x.dims[1] + i + k)] = 1;
  return one(std::move(y));
}

std::vector<Tensor> depthSpace(OpContext &ctx, bool toSpace) {
  const Tensor &x = ctx.in(0);
  int64_t b = ctx.attrInt("blocksize", 0);
  if (x.rank() != 4 || b <= 0)
    ctx.fail("needs a rank-4 input and a positive blocksize");
  int64_t N = x.dims[0], C = x.dims[1], H = x.dims[2], W = x.dims[3];
  if (toSpace ? C % (b * b) != 0 : (H % b != 0 || W % b != 0))
    ctx.fail("shape " + shapeString(x.dims) + " does not divide by blocksize " +
             std::to_string(b));
  Tensor t = x;
  if (toSpace) {
    bool crd = ctx.attrString("mode", "DCR") == "CRD";
    if (crd) {
      t.dims = {N, C / (b * b), b, b, H, W};
      t = transpose(t, {0, 1, 4, 2, 5, 3});
    } else {
      t.dims = {N, b, b, C / (b * b), H, W};
      t = transpose(t, {0, 3, 4, 1, 5, 2});
    }
    t.dims = {N, C / (b * b), H * b, W * b};
  } else {
    t.dims = {N, C, H / b, b, W / b, b};
    t = transpose(t, {0, 3, 5, 1, 2, 4});
    t.dims = {N, C * b * b, H / b, W / b};
  }
  return one(std::move(t));
}

} // namespace

Tensor transposeTensor(const Tensor &x, const std::vector<int64_t> &perm) {
  return transpose(x, perm);
}

void registerShapeOps(std::map<std::string, OpInfo> &r) {
  r["Reshape"] = {reshape, {"allowzero", "shape"}};
  r["Squeeze"] = {squeeze, {"axes"}};
  r["Unsqueeze"] = {unsqueeze, {"axes"}};
  r["Concat"] = {concat, {"axis"}};
  r["Split"] = {split, {"axis", "split", "num_outputs"}};
  r["Slice"] = {slice, {"starts", "ends", "axes"}};
  r["Gather"] = {gather, {"axis"}};
  r["GatherElements"] = {gatherElements, {"axis"}};
  r["GatherND"] = {gatherND, {"batch_dims"}};
  r["ScatterND"] = {scatterND, {"reduction"}};
  r["ScatterElements"] = {scatterElements, {"axis", "reduction"}};
  r["Expand"] = {expand, {}};
  r["Tile"] = {tile, {}};
  r["Pad"] = {pad, {"mode", "pads", "value"}};
  r["Constant"] = {constant, {"value", "value_float", "value_floats", "value_int",
                              "value_ints", "value_string", "value_strings",
                              "sparse_value"}};
  r["Shape"] = {shapeOp, {"start", "end"}};
  r["Size"] = {[](OpContext &ctx) {
                 return one(Tensor::scalar(double(ctx.in(0).size()), TP::INT64));
               },
               {}};
  r["Flatten"] = {flatten, {"axis"}};
  r["Trilu"] = {trilu, {"upper"}};
  r["ConstantOfShape"] = {constantOfShape, {"value"}};
  r["Range"] = {range, {}};
  r["Dropout"] = {dropout, {"ratio", "seed", "is_test"}};
  r["EyeLike"] = {eyeLike, {"dtype", "k"}};
  r["DepthToSpace"] = {[](OpContext &c) { return depthSpace(c, true); },
                       {"blocksize", "mode"}};
  r["SpaceToDepth"] = {[](OpContext &c) { return depthSpace(c, false); }, {"blocksize"}};
  r["Transpose"] = {[](OpContext &ctx) {
                      const Tensor &x = ctx.in(0);
                      std::vector<int64_t> p = ctx.attrInts("perm");
                      if (p.empty())
                        for (int64_t i = x.rank() - 1; i >= 0; --i)
                          p.push_back(i);
                      std::vector<int64_t> q = p;
                      std::sort(q.begin(), q.end());
                      for (size_t i = 0; i < q.size(); ++i)
                        if (q[i] != int64_t(i) || int64_t(p.size()) != x.rank())
                          ctx.fail("perm is not a permutation of the axes");
                      return one(transpose(x, p));
                    },
                    {"perm"}};
}

} // namespace symoc
