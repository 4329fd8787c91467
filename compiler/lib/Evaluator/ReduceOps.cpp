//===- ReduceOps.cpp - Reductions, ArgMax/ArgMin, TopK, CumSum ------------===//
#include "Ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace symoc {

using TP = onnx::TensorProto;

namespace {

enum class Red { Sum, Mean, Max, Min, Prod, L1, L2, SumSquare, LogSum, LogSumExp };

// The opset from which the op takes `axes` as an input instead of an attribute.
int64_t axesInputOpset(Red r) { return r == Red::Sum ? 13 : 18; }

std::vector<Tensor> reduce(OpContext &ctx, Red kind) {
  const Tensor &x = ctx.in(0);
  std::vector<int64_t> axes;
  bool fromInput = ctx.opset >= axesInputOpset(kind);
  if (fromInput) {
    if (ctx.hasAttr("axes"))
      ctx.fail("'axes' is an input in this opset");
    if (ctx.hasInput(1))
      axes = ctx.in(1).toInt64();
  } else {
    if (ctx.hasAttr("noop_with_empty_axes"))
      ctx.fail("'noop_with_empty_axes' does not exist in this opset");
    axes = ctx.attrInts("axes");
  }
  bool keep = ctx.attrInt("keepdims", 1) != 0;
  if (axes.empty() && ctx.attrInt("noop_with_empty_axes", 0))
    return {x};
  size_t r = x.dims.size();
  std::vector<bool> red(r, axes.empty());
  for (int64_t a : axes)
    red[size_t(ctx.axis(a, x.rank()))] = true;
  std::vector<int64_t> kd = x.dims, od;
  for (size_t i = 0; i < r; ++i) {
    if (red[i])
      kd[i] = 1;
    if (!red[i])
      od.push_back(x.dims[i]);
    else if (keep)
      od.push_back(1);
  }
  int64_t outN = numElements(kd);
  double init = 0;
  if (kind == Red::Max) init = -std::numeric_limits<double>::infinity();
  if (kind == Red::Min) init = std::numeric_limits<double>::infinity();
  if (kind == Red::Prod) init = 1;
  std::vector<double> acc(size_t(outN), init);
  std::vector<int64_t> cnt(size_t(outN), 0);
  std::vector<int64_t> ks = stridesOf(kd), idx(r, 0);
  // LogSumExp is shifted by the max for stability.
  std::vector<double> mx(size_t(outN), -std::numeric_limits<double>::infinity());
  for (int pass = kind == Red::LogSumExp ? 0 : 1; pass < 2; ++pass) {
    std::fill(idx.begin(), idx.end(), 0);
    for (int64_t e = 0; e < x.size(); ++e) {
      int64_t o = 0;
      for (size_t d = 0; d < r; ++d)
        if (!red[d])
          o += idx[d] * ks[d];
      double v = x.data[size_t(e)];
      double &a = acc[size_t(o)];
      if (pass == 0) {
        mx[size_t(o)] = std::max(mx[size_t(o)], v);
      } else {
        switch (kind) {
        case Red::Sum: case Red::Mean: case Red::LogSum: a += v; break;
        case Red::Max: a = std::max(a, v); break;
        case Red::Min: a = std::min(a, v); break;
        case Red::Prod: a *= v; break;
        case Red::L1: a += std::fabs(v); break;
        case Red::L2: case Red::SumSquare: a += v * v; break;
        case Red::LogSumExp: a += std::exp(v - mx[size_t(o)]); break;
        }
        cnt[size_t(o)]++;
      }
      for (int64_t d = int64_t(r) - 1; d >= 0; --d) {
        if (++idx[size_t(d)] < x.dims[size_t(d)])
          break;
        idx[size_t(d)] = 0;
      }
    }
  }
  for (int64_t o = 0; o < outN; ++o) {
    double &a = acc[size_t(o)];
    switch (kind) {
    case Red::Mean: a /= double(cnt[size_t(o)]); break;
    case Red::L2: a = std::sqrt(a); break;
    case Red::LogSum: a = std::log(a); break;
    case Red::LogSumExp: a = std::log(a) + mx[size_t(o)]; break;
    default: break;
    }
    a = castValue(a, x.dtype);
  }
  return {Tensor(od, std::move(acc), x.dtype)};
}

std::vector<Tensor> argExtreme(OpContext &ctx, bool isMax) {
  const Tensor &x = ctx.in(0);
  int64_t axis = ctx.axis(ctx.attrInt("axis", 0), x.rank());
  bool keep = ctx.attrInt("keepdims", 1) != 0, last = ctx.attrInt("select_last_index", 0);
  int64_t outer = 1, n = x.dims[size_t(axis)], inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.dims[size_t(i)];
  for (size_t i = size_t(axis) + 1; i < x.dims.size(); ++i) inner *= x.dims[i];
  std::vector<int64_t> od = x.dims;
  if (keep) od[size_t(axis)] = 1;
  else od.erase(od.begin() + axis);
  Tensor y = Tensor::zeros(od, TP::INT64);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      int64_t best = 0;
      for (int64_t k = 1; k < n; ++k) {
        double v = x.data[size_t((o * n + k) * inner + i)],
               b = x.data[size_t((o * n + best) * inner + i)];
        bool better = isMax ? (v > b || (last && v == b)) : (v < b || (last && v == b));
        if (better) best = k;
      }
      y.data[size_t(o * inner + i)] = double(best);
    }
  return {std::move(y)};
}

std::vector<Tensor> topk(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  int64_t k = ctx.opset < 10 ? ctx.attrInt("k", 0) : int64_t(ctx.scalar(1, "K"));
  int64_t axis = ctx.axis(ctx.attrInt("axis", -1), x.rank());
  bool largest = ctx.attrInt("largest", 1) != 0, sorted = ctx.attrInt("sorted", 1) != 0;
  int64_t outer = 1, n = x.dims[size_t(axis)], inner = 1;
  if (k < 0 || k > n)
    ctx.fail("k=" + std::to_string(k) + " out of range for an axis of size " + std::to_string(n));
  for (int64_t i = 0; i < axis; ++i) outer *= x.dims[size_t(i)];
  for (size_t i = size_t(axis) + 1; i < x.dims.size(); ++i) inner *= x.dims[i];
  std::vector<int64_t> od = x.dims;
  od[size_t(axis)] = k;
  Tensor v = Tensor::zeros(od, x.dtype), ind = Tensor::zeros(od, TP::INT64);
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t j) { return x.data[size_t((o * n + j) * inner + i)]; };
      std::iota(order.begin(), order.end(), 0);
      // Ties keep the lower index first (as the spec requires).
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return largest ? at(a) > at(b) : at(a) < at(b);
      });
      // sorted=0 leaves the order of the selected entries to the implementation: this one
      // lists them by position, which exposes a rule that assumed the sorted order
      // (permuting the input then reorders the outputs).
      if (!sorted)
        std::sort(order.begin(), order.begin() + k);
      for (int64_t j = 0; j < k; ++j) {
        v.data[size_t((o * k + j) * inner + i)] = at(order[size_t(j)]);
        ind.data[size_t((o * k + j) * inner + i)] = double(order[size_t(j)]);
      }
    }
  return {std::move(v), std::move(ind)};
}

std::vector<Tensor> cumsum(OpContext &ctx) {
  const Tensor &x = ctx.in(0);
  int64_t axis = ctx.axis(int64_t(ctx.scalar(1, "axis")), x.rank());
  bool excl = ctx.attrInt("exclusive", 0), rev = ctx.attrInt("reverse", 0);
  int64_t outer = 1, n = x.dims[size_t(axis)], inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.dims[size_t(i)];
  for (size_t i = size_t(axis) + 1; i < x.dims.size(); ++i) inner *= x.dims[i];
  Tensor y = x;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      double s = 0;
      for (int64_t jj = 0; jj < n; ++jj) {
        int64_t j = rev ? n - 1 - jj : jj;
        size_t at = size_t((o * n + j) * inner + i);
        double v = x.data[at];
        y.data[at] = excl ? s : s + v;
        s += v;
      }
    }
  return {std::move(y)};
}

} // namespace

void registerReduceOps(std::map<std::string, OpInfo> &r) {
  std::set<std::string> ra{"axes", "keepdims", "noop_with_empty_axes"};
  auto add = [&](const std::string &n, Red k) {
    r[n] = {[k](OpContext &c) { return reduce(c, k); }, ra};
  };
  add("ReduceSum", Red::Sum);
  add("ReduceMean", Red::Mean);
  add("ReduceMax", Red::Max);
  add("ReduceMin", Red::Min);
  add("ReduceProd", Red::Prod);
  add("ReduceL1", Red::L1);
  add("ReduceL2", Red::L2);
  add("ReduceSumSquare", Red::SumSquare);
  add("ReduceLogSum", Red::LogSum);
  add("ReduceLogSumExp", Red::LogSumExp);
  std::set<std::string> aa{"axis", "keepdims", "select_last_index"};
  r["ArgMax"] = {[](OpContext &c) { return argExtreme(c, true); }, aa};
  r["ArgMin"] = {[](OpContext &c) { return argExtreme(c, false); }, aa};
  r["TopK"] = {topk, {"axis", "k", "largest", "sorted"}};
  r["CumSum"] = {cumsum, {"exclusive", "reverse"}};
}

} // namespace symoc
