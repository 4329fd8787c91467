//===- ShapeFunctions.cpp - symoc's own per-op static shape functions ---------===//
//
// One table from op type to shape function. Rules read static dims and the
// small integer inputs the folder turned into initializers; whatever they
// cannot work out stays unknown. Rules never throw and never trust their
// input: an invalid node (wrong rank, out-of-range axis, mismatched dims)
// gets no answer, and the analysis later treats its values as unknown.
//
//===----------------------------------------------------------------------===//

#include "symoc/Importer/ShapeFunctions.h"
#include "symoc/ModelIO/Attributes.h"

#include <algorithm>
#include <map>

namespace symoc {

bool ShapeInfo::isStatic() const {
  return ranked && std::all_of(dims.begin(), dims.end(), [](int64_t d) { return d >= 0; });
}

std::string ShapeInfo::str() const {
  if (!ranked)
    return "[*]";
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i)
    s += (i ? "," : "") + (dims[i] < 0 ? std::string("?") : std::to_string(dims[i]));
  return s + "]";
}

const ShapeInfo &ShapeQuery::input(int k) const {
  static const ShapeInfo none;
  return k >= 0 && size_t(k) < inputs.size() ? inputs[k] : none;
}

const std::vector<int64_t> *ShapeQuery::value(int k) const {
  return has(k) && size_t(k) < values.size() && values[k] ? &*values[k] : nullptr;
}

const onnx::AttributeProto *ShapeQuery::attr(const std::string &name) const { return symoc::attr(node, name); }

int64_t ShapeQuery::attrInt(const std::string &name, int64_t dflt) const { return symoc::attrInt(node, name, dflt); }

std::optional<std::vector<int64_t>> ShapeQuery::attrInts(const std::string &name) const {
  return symoc::attrInts(node, name);
}

SliceAxis sliceAxis(int64_t dim, int64_t start, int64_t end, int64_t step) {
  SliceAxis s;
  s.step = step;
  if (dim <= 0 || step == 0)
    return s;
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    s.first = start;
    s.count = end > start ? (end - start - 1) / step + 1 : 0;
  } else {
    start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    s.first = start;
    s.count = start > end ? (start - end - 1) / -step + 1 : 0;
  }
  return s;
}

std::optional<std::vector<SliceAxis>>
resolveSlice(const std::vector<int64_t> &dims, const std::vector<int64_t> &starts,
             const std::vector<int64_t> &ends, const std::vector<int64_t> *axes,
             const std::vector<int64_t> *steps) {
  const int64_t r = dims.size();
  if (starts.size() != ends.size() || (axes && axes->size() != starts.size()) ||
      (steps && steps->size() != starts.size()))
    return std::nullopt;
  std::vector<SliceAxis> out(r);
  std::vector<bool> seen(r, false);
  for (int64_t i = 0; i < r; ++i)
    out[i] = {0, 1, dims[i]};
  for (size_t k = 0; k < starts.size(); ++k) {
    int64_t ax = axes ? (*axes)[k] : int64_t(k);
    if (ax < 0) ax += r;
    int64_t step = steps ? (*steps)[k] : 1;
    if (ax < 0 || ax >= r || seen[ax] || step == 0 || dims[ax] < 0)
      return std::nullopt;
    seen[ax] = true;
    out[ax] = sliceAxis(dims[ax], starts[k], ends[k], step);
  }
  return out;
}

std::optional<ShapeInfo> mergeShapes(const ShapeInfo &known, const ShapeInfo &inferred,
                                     std::string &conflict) {
  ShapeInfo out = known;
  if (inferred.elemType) {
    if (known.elemType && known.elemType != inferred.elemType) {
      conflict = "element type " + std::to_string(inferred.elemType) + " where the graph says " +
                 std::to_string(known.elemType);
      return std::nullopt;
    }
    out.elemType = inferred.elemType;
  }
  if (!inferred.ranked)
    return out;
  if (!known.ranked)
    out.ranked = true, out.dims = inferred.dims;
  if (out.dims.size() != inferred.dims.size()) {
    conflict = "shape " + inferred.str() + " where the graph says " + known.str();
    return std::nullopt;
  }
  for (size_t i = 0; i < out.dims.size(); ++i) {
    if (inferred.dims[i] < 0)
      continue;
    if (out.dims[i] >= 0 && out.dims[i] != inferred.dims[i]) {
      conflict = "shape " + inferred.str() + " where the graph says " + known.str();
      return std::nullopt;
    }
    out.dims[i] = inferred.dims[i];
  }
  return out;
}

namespace {

using Shapes = std::vector<ShapeInfo>;
constexpr int64_t U = kUnknownDim;
constexpr int32_t kInt64 = onnx::TensorProto::INT64;
constexpr int32_t kBool = onnx::TensorProto::BOOL;
constexpr int64_t kMaxDim = int64_t(1) << 40; // larger products are not trusted

/// a * b of dims, unknown if either is unknown or the product is absurd.
int64_t mulDims(int64_t a, int64_t b) {
  if (a < 0 || b < 0)
    return U;
  if (a != 0 && b > kMaxDim / a)
    return U;
  return a * b;
}

int64_t productOf(const std::vector<int64_t> &d, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to && i < d.size(); ++i)
    p = mulDims(p, d[i]);
  return p;
}

/// Normalizes an axis of a rank-r tensor; -1 when out of range.
int64_t normAxis(int64_t ax, int64_t r) {
  if (ax < 0)
    ax += r;
  return ax >= 0 && ax < r ? ax : -1;
}

Shapes one(ShapeInfo s) { return {std::move(s)}; }

/// The same shape and type as input k.
Shapes sameAs(const ShapeQuery &q, int k = 0) { return one(q.input(k)); }

/// numpy broadcasting of any number of shapes. An unknown dim against a
/// static d != 1 is d (the only valid outcome); against 1 or unknown it
/// stays unknown. Incompatible static dims: no answer.
std::optional<ShapeInfo> broadcast(const std::vector<const ShapeInfo *> &in) {
  size_t r = 0;
  for (auto *s : in) {
    if (!s->ranked)
      return ShapeInfo::unranked();
    r = std::max(r, s->dims.size());
  }
  std::vector<int64_t> out(r, 1);
  std::vector<bool> unknown(r, false);
  for (auto *s : in) {
    size_t off = r - s->dims.size();
    for (size_t i = 0; i < s->dims.size(); ++i) {
      int64_t d = s->dims[i];
      int64_t &o = out[off + i];
      if (d < 0) {
        unknown[off + i] = true;
        continue;
      }
      if (d == 1)
        continue;
      if (o != 1 && o != d)
        return std::nullopt;
      o = d;
    }
  }
  for (size_t i = 0; i < r; ++i)
    if (unknown[i] && out[i] == 1)
      out[i] = U;
  return ShapeInfo::of(out);
}

Shapes broadcastRule(const ShapeQuery &q, int32_t elemType, int from = 0) {
  std::vector<const ShapeInfo *> in;
  for (int k = from; k < q.node.input_size(); ++k)
    in.push_back(&q.input(k));
  auto b = broadcast(in);
  if (!b)
    return {};
  b->elemType = elemType;
  return one(*b);
}

Shapes arithmetic(const ShapeQuery &q) { return broadcastRule(q, q.input(0).elemType); }
Shapes comparison(const ShapeQuery &q) { return broadcastRule(q, kBool); }
Shapes whereRule(const ShapeQuery &q) { return broadcastRule(q, q.input(1).elemType); }
Shapes unary(const ShapeQuery &q) { return sameAs(q); }
Shapes boolUnary(const ShapeQuery &q) {
  ShapeInfo s = q.input(0);
  s.elemType = kBool;
  return one(s);
}

Shapes castRule(const ShapeQuery &q) {
  ShapeInfo s = q.input(0);
  s.elemType = int32_t(q.attrInt("to", 0));
  return one(s);
}

Shapes castLikeRule(const ShapeQuery &q) {
  ShapeInfo s = q.input(0);
  s.elemType = q.input(1).elemType;
  return one(s);
}

Shapes dropoutRule(const ShapeQuery &q) {
  ShapeInfo mask = q.input(0);
  if (q.opset >= 10)
    mask.elemType = kBool; // before opset 10 the mask has the data's type
  return {q.input(0), mask};
}

Shapes layerNormRule(const ShapeQuery &q) {
  // Y is X; Mean and InvStdDev keep the axes before `axis`, 1 after.
  const ShapeInfo &x = q.input(0);
  if (!x.ranked)
    return {x};
  int64_t axis = normAxis(q.attrInt("axis", -1), x.rank());
  if (axis < 0)
    return {x};
  ShapeInfo stat = x;
  stat.elemType = 0; // the stash type, not X's
  for (size_t i = axis; i < stat.dims.size(); ++i)
    stat.dims[i] = 1;
  return {x, stat, stat};
}

Shapes matmulRule(const ShapeQuery &q) {
  ShapeInfo a = q.input(0), b = q.input(1);
  int32_t et = a.elemType;
  if (!a.ranked || !b.ranked)
    return one(ShapeInfo::unranked(et));
  if (a.dims.empty() || b.dims.empty())
    return {};
  bool aVec = a.dims.size() == 1, bVec = b.dims.size() == 1;
  if (aVec) a.dims.insert(a.dims.begin(), 1);
  if (bVec) b.dims.push_back(1);
  int64_t ka = a.dims.back(), kb = b.dims[b.dims.size() - 2];
  if (ka >= 0 && kb >= 0 && ka != kb)
    return {};
  ShapeInfo ab = ShapeInfo::of({a.dims.begin(), a.dims.end() - 2});
  ShapeInfo bb = ShapeInfo::of({b.dims.begin(), b.dims.end() - 2});
  auto batch = broadcast({&ab, &bb});
  if (!batch)
    return {};
  std::vector<int64_t> dims = batch->dims;
  if (!aVec) dims.push_back(a.dims[a.dims.size() - 2]);
  if (!bVec) dims.push_back(b.dims.back());
  return one(ShapeInfo::of(dims, et));
}

Shapes gemmRule(const ShapeQuery &q) {
  const ShapeInfo &a = q.input(0), &b = q.input(1);
  int32_t et = a.elemType;
  if (!a.ranked || !b.ranked || a.dims.size() != 2 || b.dims.size() != 2)
    return one(ShapeInfo::unranked(et));
  int64_t m = q.attrInt("transA", 0) ? a.dims[1] : a.dims[0];
  int64_t n = q.attrInt("transB", 0) ? b.dims[0] : b.dims[1];
  return one(ShapeInfo::of({m, n}, et));
}

Shapes transposeRule(const ShapeQuery &q) {
  const ShapeInfo &x = q.input(0);
  if (!x.ranked)
    return one(ShapeInfo::unranked(x.elemType));
  int64_t r = x.rank();
  std::vector<int64_t> perm(r);
  for (int64_t i = 0; i < r; ++i)
    perm[i] = r - 1 - i;
  if (auto p = q.attrInts("perm"))
    perm = *p;
  if (int64_t(perm.size()) != r)
    return {};
  std::vector<bool> used(r, false);
  ShapeInfo out = ShapeInfo::of(std::vector<int64_t>(r), x.elemType);
  for (int64_t i = 0; i < r; ++i) {
    int64_t p = normAxis(perm[i], r);
    if (p < 0 || used[p])
      return {};
    used[p] = true;
    out.dims[i] = x.dims[p];
  }
  return one(out);
}

Shapes reshapeRule(const ShapeQuery &q) {
  const ShapeInfo &x = q.input(0);
  const std::vector<int64_t> *target = q.value(1);
  if (!target) {
    // Computed target: its length is still the rank.
    const ShapeInfo &t = q.input(1);
    if (t.isStatic() && t.rank() == 1)
      return one(ShapeInfo::of(std::vector<int64_t>(t.dims[0], U), x.elemType));
    return one(ShapeInfo::unranked(x.elemType));
  }
  bool allowZero = q.attrInt("allowzero", 0) != 0;
  std::vector<int64_t> dims = *target;
  int64_t inferAt = -1, known = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == 0 && !allowZero) {
      if (!x.ranked || i >= x.dims.size())
        return {}; // copies a dim that does not exist (or unknown rank)
      dims[i] = x.dims[i];
    } else if (dims[i] == -1) {
      if (inferAt >= 0)
        return {};
      inferAt = int64_t(i);
      continue;
    } else if (dims[i] < -1) {
      return {};
    }
    known = mulDims(known, dims[i]);
  }
  if (inferAt >= 0) {
    int64_t total = x.ranked ? productOf(x.dims, 0, x.dims.size()) : U;
    if (total >= 0 && known > 0 && total % known == 0)
      dims[inferAt] = total / known;
    else
      dims[inferAt] = U;
  }
  if (x.isStatic() && productOf(dims, 0, dims.size()) >= 0 &&
      productOf(dims, 0, dims.size()) != productOf(x.dims, 0, x.dims.size()))
    return {}; // element counts differ: invalid
  return one(ShapeInfo::of(dims, x.elemType));
}

Shapes flattenRule(const ShapeQuery &q) {
  const ShapeInfo &x = q.input(0);
  if (!x.ranked)
    return one(ShapeInfo::of({U, U}, x.elemType));
  int64_t r = x.rank(), axis = q.attrInt("axis", 1);
  if (axis < 0)
    axis += r;
  if (axis < 0 || axis > r)
    return {};
  return one(ShapeInfo::of({productOf(x.dims, 0, axis), productOf(x.dims, axis, r)},
                           x.elemType));
}

/// Axes from the attribute (older opsets) or input 1 (newer ones).
std::optional<std::vector<int64_t>> axesOf(const ShapeQuery &q, int inputIndex = 1) {
  if (auto a = q.attrInts("axes"))
    return a;
  if (auto *v = q.value(inputIndex))
    return *v;
  return std::nullopt;
}

Shapes unsqueezeRule(const ShapeQuery &q) {
  const ShapeInfo &x = q.input(0);
  auto axes = axesOf(q);
  if (!axes)
    return {};
  if (!x.ranked)
    return one(ShapeInfo::unranked(x.elemType));
  int64_t r = x.rank() + int64_t(axes->size());
  std::vector<bool> isNew(r, false);
  for (int64_t ax : *axes) {
    int64_t k = normAxis(ax, r);
    if (k < 0 || isNew[k])
      return {};
    isNew[k] = true;
  }
  ShapeInfo out = ShapeInfo::of({}, x.elemType);
  size_t k = 0;
  for (int64_t i = 0; i < r; ++i)
    out.dims.push_back(isNew[i] ? 1 : x.dims[k++]);
  return one(out);
}

Shapes squeezeRule(const ShapeQuery &q) {
  const ShapeInfo &x = q.input(0);
  if (!x.ranked)
    return one(ShapeInfo::unranked(x.elemType));
  int64_t r = x.rank();
  std::vector<bool> drop(r, false);
  if (auto axes = axesOf(q)) {
    for (int64_t ax : *axes) {
      int64_t k = normAxis(ax, r);
      if (k < 0 || (x.dims[k] >= 0 && x.dims[k] != 1))
        return {};
      drop[k] = true;
    }
  } else if (q.has(1)) {
    return {}; // axes computed at run time
  } else {
    for (int64_t i = 0; i < r; ++i) {
      if (x.dims[i] < 0)
        return {}; // which dims are 1 is unknown
      drop[i] = x.dims[i] == 1;
    }
  }
  ShapeInfo out = ShapeInfo::of({}, x.elemType);
  for (int64_t i = 0; i < r; ++i)
    if (!drop[i])
      out.dims.push_back(x.dims[i]);
  return one(out);
}

Shapes concatRule(const ShapeQuery &q) {
  int r = -1;
  int32_t et = 0;
  for (int k = 0; k < q.node.input_size(); ++k) {
    et = et ? et : q.input(k).elemType;
    if (q.input(k).ranked)
      r = int(q.input(k).rank());
  }
  if (r < 0)
    return one(ShapeInfo::unranked(et));
  int64_t axis = normAxis(q.attrInt("axis", 0), r);
  if (axis < 0)
    return {};
  ShapeInfo out = ShapeInfo::of(std::vector<int64_t>(r, U), et);
  int64_t total = 0;
  for (int k = 0; k < q.node.input_size(); ++k) {
    const ShapeInfo &s = q.input(k);
    if (!s.ranked) {
      total = U;
      continue;
    }
    if (s.rank() != r)
      return {};
    for (int i = 0; i < r; ++i) {
      if (i == axis || s.dims[i] < 0)
        continue;
      if (out.dims[i] >= 0 && out.dims[i] != s.dims[i])
        return {};
      out.dims[i] = s.dims[i];
    }
    total = total < 0 || s.dims[axis] < 0 ? U : total + s.dims[axis];
  }
  out.dims[axis] = total;
  return one(out);
}

Shapes splitRule(const ShapeQuery &q) {
  const ShapeInfo &x = q.input(0);
  int n = q.node.output_size();
  if (!x.ranked || n == 0)
    return {};
  int64_t axis = normAxis(q.attrInt("axis", 0), x.rank());
  if (axis < 0)
    return {};
  std::vector<int64_t> sizes;
  if (auto *v = q.value(1))
    sizes = *v;
  else if (auto s = q.attrInts("split"))
    sizes = *s;
  Shapes out;
  if (sizes.empty() && q.has(1)) {
    // Sizes computed at run time (tokens per expert): the axis is unknown,
    // every other dim is the input's.
    for (int k = 0; k < n; ++k) {
      ShapeInfo o = x;
      o.dims[axis] = U;
      out.push_back(o);
    }
    return out;
  }
  int64_t d = x.dims[axis];
  if (sizes.empty()) {
    if (d >= 0 && d % n != 0)
      return {};
    sizes.assign(n, d < 0 ? U : d / n);
  } else {
    if (int64_t(sizes.size()) != n)
      return {};
    int64_t sum = 0;
    for (int64_t s : sizes) {
      if (s < 0)
        return {};
      sum += s;
    }
    if (d >= 0 && sum != d)
      return {};
  }
  for (int64_t s : sizes) {
    ShapeInfo o = x;
    o.dims[axis] = s;
    out.push_back(o);
  }
  return out;
}

Shapes sliceRule(const ShapeQuery &q) {
  const ShapeInfo &x = q.input(0);
  if (!x.ranked)
    return one(ShapeInfo::unranked(x.elemType));
  std::optional<std::vector<int64_t>> starts, ends, axes, steps;
  if (q.opset < 10) {
    starts = q.attrInts("starts");
    ends = q.attrInts("ends");
    axes = q.attrInts("axes");
  } else {
    if (auto *v = q.value(1)) starts = *v;
    if (auto *v = q.value(2)) ends = *v;
    if (auto *v = q.value(3)) axes = *v;
    if (auto *v = q.value(4)) steps = *v;
    if ((q.has(3) && !axes) || (q.has(4) && !steps))
      starts.reset();
  }
  ShapeInfo out = x;
  if (!starts || !ends) {
    // Which axes are sliced may still be known: the others keep their dims.
    if (!axes)
      out.dims.assign(x.dims.size(), U);
    else
      for (int64_t ax : *axes)
        if (int64_t k = normAxis(ax, x.rank()); k >= 0)
          out.dims[k] = U;
    return one(out);
  }
  // Unknown dims on sliced axes: resolve with a placeholder, then unmark.
  std::vector<int64_t> dims = x.dims;
  std::vector<bool> unknown(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i)
    if (dims[i] < 0)
      unknown[i] = true, dims[i] = 0;
  auto axesRes = resolveSlice(dims, *starts, *ends, axes ? &*axes : nullptr,
                              steps ? &*steps : nullptr);
  if (!axesRes)
    return {};
  for (size_t i = 0; i < dims.size(); ++i)
    out.dims[i] = unknown[i] ? U : (*axesRes)[i].count;
  return one(out);
}

Shapes gatherRule(const ShapeQuery &q) {
  const ShapeInfo &x = q.input(0), &idx = q.input(1);
  if (!x.ranked || !idx.ranked)
    return one(ShapeInfo::unranked(x.elemType));
  int64_t axis = normAxis(q.attrInt("axis", 0), x.rank());
  if (axis < 0)
    return {};
  ShapeInfo out = ShapeInfo::of({x.dims.begin(), x.dims.begin() + axis}, x.elemType);
  out.dims.insert(out.dims.end(), idx.dims.begin(), idx.dims.end());
  out.dims.insert(out.dims.end(), x.dims.begin() + axis + 1, x.dims.end());
  return one(out);
}

Shapes gatherElementsRule(const ShapeQuery &q) {
  ShapeInfo out = q.input(1);
  out.elemType = q.input(0).elemType;
  return one(out);
}

Shapes expandRule(const ShapeQuery &q) {
  const ShapeInfo &x = q.input(0);
  const std::vector<int64_t> *shape = q.value(1);
  if (!shape) {
    if (q.input(1).isStatic() && q.input(1).rank() == 1 && x.ranked)
      return one(ShapeInfo::of(
          std::vector<int64_t>(std::max<int64_t>(x.rank(), q.input(1).dims[0]), U), x.elemType));
    return one(ShapeInfo::unranked(x.elemType));
  }
  for (int64_t d : *shape)
    if (d < 0)
      return {};
  ShapeInfo target = ShapeInfo::of(*shape);
  auto b = broadcast({&x, &target});
  if (!b)
    return {};
  b->elemType = x.elemType;
  return one(*b);
}

Shapes tileRule(const ShapeQuery &q) {
  const ShapeInfo &x = q.input(0);
  const std::vector<int64_t> *reps = q.value(1);
  if (!x.ranked)
    return one(ShapeInfo::unranked(x.elemType));
  ShapeInfo out = x;
  if (!reps) {
    out.dims.assign(x.dims.size(), U);
    return one(out);
  }
  if (reps->size() != x.dims.size())
    return {};
  for (size_t i = 0; i < reps->size(); ++i) {
    if ((*reps)[i] < 0)
      return {};
    out.dims[i] = mulDims(x.dims[i], (*reps)[i]);
  }
  return one(out);
}

Shapes padRule(const ShapeQuery &q) {
  const ShapeInfo &x = q.input(0);
  if (!x.ranked)
    return one(ShapeInfo::unranked(x.elemType));
  std::optional<std::vector<int64_t>> pads;
  if (q.opset >= 11) {
    if (auto *v = q.value(1))
      pads = *v;
  } else {
    pads = q.attrInts(q.opset < 2 ? "paddings" : "pads");
  }
  ShapeInfo out = x;
  if (!pads) {
    out.dims.assign(x.dims.size(), U); // the rank is kept whatever the pads
    return one(out);
  }
  size_t r = x.dims.size();
  if (pads->size() != 2 * r)
    return {};
  for (size_t i = 0; i < r; ++i) {
    if (x.dims[i] < 0)
      continue;
    int64_t d = x.dims[i] + (*pads)[i] + (*pads)[i + r];
    if (d < 0 || std::abs((*pads)[i]) > kMaxDim || std::abs((*pads)[i + r]) > kMaxDim)
      return {};
    out.dims[i] = d;
  }
  return one(out);
}

Shapes shapeRule(const ShapeQuery &q) {
  const ShapeInfo &x = q.input(0);
  if (!x.ranked)
    return one(ShapeInfo::of({U}, kInt64));
  int64_t r = x.rank(), s = q.attrInt("start", 0), e = q.attrInt("end", r);
  if (s < 0) s += r;
  if (e < 0) e += r;
  s = std::clamp<int64_t>(s, 0, r);
  e = std::clamp<int64_t>(e, s, r);
  return one(ShapeInfo::of({e - s}, kInt64));
}

Shapes sizeRule(const ShapeQuery &) { return one(ShapeInfo::of({}, kInt64)); }

Shapes constantOfShapeRule(const ShapeQuery &q) {
  int32_t et = onnx::TensorProto::FLOAT;
  if (auto *a = q.attr("value"))
    et = a->t().data_type();
  if (auto *v = q.value(0)) {
    for (int64_t d : *v)
      if (d < 0)
        return {};
    return one(ShapeInfo::of(*v, et));
  }
  if (q.input(0).isStatic() && q.input(0).rank() == 1)
    return one(ShapeInfo::of(std::vector<int64_t>(q.input(0).dims[0], U), et));
  return one(ShapeInfo::unranked(et));
}

Shapes rangeRule(const ShapeQuery &q) {
  int32_t et = q.input(0).elemType;
  auto *s = q.value(0), *l = q.value(1), *d = q.value(2);
  if (!s || !l || !d || s->size() != 1 || l->size() != 1 || d->size() != 1 || (*d)[0] == 0)
    return one(ShapeInfo::of({U}, et));
  int64_t st = (*s)[0], lim = (*l)[0], dl = (*d)[0];
  if (std::abs(st) > kMaxDim || std::abs(lim) > kMaxDim || std::abs(dl) > kMaxDim)
    return one(ShapeInfo::of({U}, et));
  int64_t count = dl > 0 ? (lim > st ? (lim - st - 1) / dl + 1 : 0)
                         : (st > lim ? (st - lim - 1) / -dl + 1 : 0);
  return one(ShapeInfo::of({count}, et));
}

Shapes reduceRule(const ShapeQuery &q) {
  const ShapeInfo &x = q.input(0);
  bool keep = q.attrInt("keepdims", 1) != 0;
  if (!x.ranked)
    return one(ShapeInfo::unranked(x.elemType));
  int64_t r = x.rank();
  std::optional<std::vector<int64_t>> axes = q.attrInts("axes");
  if (!axes && q.has(1)) {
    if (auto *v = q.value(1))
      axes = *v;
    else if (keep)
      return one(ShapeInfo::of(std::vector<int64_t>(r, U), x.elemType));
    else
      return {};
  }
  std::vector<bool> reduced(r, false);
  if (!axes || axes->empty()) {
    if (q.attrInt("noop_with_empty_axes", 0))
      return sameAs(q);
    reduced.assign(r, true);
  } else {
    for (int64_t ax : *axes) {
      int64_t k = normAxis(ax, r);
      if (k < 0)
        return {};
      reduced[k] = true;
    }
  }
  ShapeInfo out = ShapeInfo::of({}, x.elemType);
  for (int64_t i = 0; i < r; ++i)
    if (!reduced[i])
      out.dims.push_back(x.dims[i]);
    else if (keep)
      out.dims.push_back(1);
  return one(out);
}

Shapes argReduceRule(const ShapeQuery &q) {
  const ShapeInfo &x = q.input(0);
  if (!x.ranked)
    return one(ShapeInfo::unranked(kInt64));
  int64_t axis = normAxis(q.attrInt("axis", 0), x.rank());
  if (axis < 0)
    return {};
  ShapeInfo out = ShapeInfo::of({}, kInt64);
  for (int64_t i = 0; i < x.rank(); ++i)
    if (i != axis)
      out.dims.push_back(x.dims[i]);
    else if (q.attrInt("keepdims", 1))
      out.dims.push_back(1);
  return one(out);
}

Shapes globalPoolRule(const ShapeQuery &q) {
  ShapeInfo x = q.input(0);
  if (!x.ranked || x.rank() < 2)
    return one(ShapeInfo::unranked(x.elemType));
  for (size_t i = 2; i < x.dims.size(); ++i)
    x.dims[i] = 1;
  return one(x);
}

Shapes nonZeroRule(const ShapeQuery &q) {
  // The count of non-zeros is data: only the rank and the first dim are known.
  return one(ShapeInfo::of({q.input(0).ranked ? q.input(0).rank() : U, U}, kInt64));
}

Shapes scatterRule(const ShapeQuery &q) { return sameAs(q, 0); }

Shapes einsumRule(const ShapeQuery &q) {
  // Explicit equations: each output letter's size from the operands.
  auto *eqAttr = q.attr("equation");
  int32_t et = q.input(0).elemType;
  if (!eqAttr)
    return {};
  std::string e;
  for (char c : eqAttr->s())
    if (c != ' ')
      e += c;
  size_t arrow = e.find("->");
  if (arrow == std::string::npos || e.find("...") != std::string::npos)
    return {};
  std::map<char, int64_t> size;
  std::string lhs = e.substr(0, arrow);
  int k = 0;
  for (size_t start = 0;; ++k) {
    size_t comma = lhs.find(',', start);
    std::string term = lhs.substr(start, comma == std::string::npos ? std::string::npos
                                                                    : comma - start);
    const ShapeInfo &s = q.input(k);
    if (k >= q.node.input_size() || !s.ranked || s.dims.size() != term.size())
      return {};
    for (size_t i = 0; i < term.size(); ++i) {
      // A letter's size: operands agree, or one of them is 1 (broadcast).
      int64_t d = s.dims[i];
      auto it = size.find(term[i]);
      if (it == size.end()) {
        size[term[i]] = d;
        continue;
      }
      int64_t &p = it->second;
      if (p == d || d == 1)
        continue;
      if (p == 1 || p < 0) {
        p = d >= 0 ? d : (p == 1 ? U : p);
        continue;
      }
      if (d >= 0)
        return {};
    }
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  if (k + 1 != q.node.input_size())
    return {};
  ShapeInfo out = ShapeInfo::of({}, et);
  for (char c : e.substr(arrow + 2)) {
    auto it = size.find(c);
    if (it == size.end())
      return {};
    out.dims.push_back(it->second);
  }
  return one(out);
}

const std::map<std::string, ShapeFunction> &table() {
  static const std::map<std::string, ShapeFunction> rules = [] {
    std::map<std::string, ShapeFunction> t;
    for (const char *op : {"Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum",
                           "Mean", "BitShift", "PRelu"})
      t[op] = arithmetic;
    for (const char *op : {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
                           "And", "Or", "Xor"})
      t[op] = comparison;
    for (const char *op :
         {"Identity", "Neg", "Abs", "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Erf",
          "Reciprocal", "Softmax", "LogSoftmax", "Hardmax", "Sin", "Cos", "Floor", "Ceil",
          "Round", "Sign", "LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish",
          "Softplus", "Softsign", "Mish", "Clip", "Trilu", "CumSum", "InstanceNormalization",
          "LpNormalization", "MeanVarianceNormalization", "Shrink", "ThresholdedRelu",
          "BatchNormalization"})
      t[op] = unary; // BatchNormalization: only Y (its training outputs are left alone)
    for (const char *op : {"Not", "IsNaN", "IsInf"})
      t[op] = boolUnary;
    for (const char *op : {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
                           "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                           "ReduceSumSquare"})
      t[op] = reduceRule;
    for (const char *op : {"ArgMax", "ArgMin"})
      t[op] = argReduceRule;
    for (const char *op : {"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
      t[op] = globalPoolRule;
    for (const char *op : {"ScatterND", "ScatterElements", "Scatter"})
      t[op] = scatterRule;
    t["Where"] = whereRule;
    t["Cast"] = castRule;
    t["CastLike"] = castLikeRule;
    t["Dropout"] = dropoutRule;
    t["LayerNormalization"] = layerNormRule;
    t["MatMul"] = matmulRule;
    t["Gemm"] = gemmRule;
    t["Einsum"] = einsumRule;
    t["Transpose"] = transposeRule;
    t["Reshape"] = reshapeRule;
    t["Flatten"] = flattenRule;
    t["Unsqueeze"] = unsqueezeRule;
    t["Squeeze"] = squeezeRule;
    t["Concat"] = concatRule;
    t["Split"] = splitRule;
    t["Slice"] = sliceRule;
    t["Gather"] = gatherRule;
    t["GatherElements"] = gatherElementsRule;
    t["Expand"] = expandRule;
    t["Tile"] = tileRule;
    t["Pad"] = padRule;
    t["Shape"] = shapeRule;
    t["Size"] = sizeRule;
    t["ConstantOfShape"] = constantOfShapeRule;
    t["Range"] = rangeRule;
    t["NonZero"] = nonZeroRule;
    return t;
  }();
  return rules;
}

} // namespace

ShapeFunction findShapeFunction(const std::string &opType) {
  auto it = table().find(opType);
  return it == table().end() ? nullptr : it->second;
}

std::vector<std::string> shapeFunctionOpTypes() {
  std::vector<std::string> out;
  for (const auto &[op, rule] : table())
    out.push_back(op);
  return out;
}

} // namespace symoc
