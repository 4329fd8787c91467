//===- MatchUtils.cpp - Small matchers shared by the recomposition passes -===//

#include "MatchUtils.h"

#include <algorithm>
#include <cmath>

using namespace mlir;
using namespace symoc::graph;

namespace symoc::transforms {

std::optional<double> scalarConstant(Value v) {
  auto c = v.getDefiningOp<ConstantOp>();
  if (!c || !c.getValue())
    return std::nullopt;
  auto dense = dyn_cast<DenseElementsAttr>(*c.getValue());
  if (!dense || dense.getNumElements() != 1)
    return std::nullopt;
  Type elt = dense.getElementType();
  if (isa<FloatType>(elt))
    return (*dense.getValues<APFloat>().begin()).convertToDouble();
  if (elt.isInteger(1))
    return std::nullopt;
  if (isa<IntegerType>(elt))
    return double((*dense.getValues<APInt>().begin()).getSExtValue());
  return std::nullopt;
}

bool isConstant(Value v, double expected, double rtol) {
  std::optional<double> c = scalarConstant(v);
  if (!c || !std::isfinite(*c))
    return false;
  if (expected == 0.0)
    return std::fabs(*c) <= rtol;
  return std::fabs(*c - expected) <= rtol * std::fabs(expected);
}

int64_t rankOf(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t ? t.getRank() : -1;
}

bool isFloatTensor(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t && t.getRank() >= 1 && isa<FloatType>(t.getElementType());
}

int64_t lastDim(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  if (!t || t.getRank() < 1 || t.isDynamicDim(t.getRank() - 1))
    return -1;
  return t.getDimSize(t.getRank() - 1);
}

bool hasOneUse(Value v) { return v && v.hasOneUse(); }

Operation *singleUser(Value v) {
  if (!hasOneUse(v))
    return nullptr;
  // Only a graph op with one result can continue a pattern (not func.return,
  // not a hand-written op with several results).
  Operation *user = v.use_begin()->getOwner();
  return user->getNumResults() == 1 ? user : nullptr;
}

std::optional<std::vector<int64_t>> constInts(Value v) {
  auto c = v.getDefiningOp<ConstantOp>();
  if (!c || !c.getValue())
    return std::nullopt;
  auto dense = dyn_cast<DenseElementsAttr>(*c.getValue());
  if (!dense || !isa<IntegerType>(dense.getElementType()) ||
      dense.getElementType().isInteger(1))
    return std::nullopt;
  std::vector<int64_t> out;
  for (const APInt &i : dense.getValues<APInt>())
    out.push_back(i.getSExtValue());
  return out;
}

bool isMeanOverLastAxis(Operation *op, Value x) {
  auto mean = dyn_cast_or_null<ReduceMeanOp>(op);
  if (!mean || mean->getNumOperands() < 1 || mean->getOperand(0) != x ||
      mean->getNumResults() != 1)
    return false;
  int64_t r = rankOf(x);
  if (r < 1 || rankOf(mean->getResult(0)) != r)
    return false;
  // keepdims defaults to 1; the result must keep the reduced axis as size 1
  // so that it broadcasts back along the last axis only.
  if (auto k = mean->getAttrOfType<IntegerAttr>("keepdims"); k && k.getInt() != 1)
    return false;
  std::optional<std::vector<int64_t>> axes;
  if (auto a = mean->getAttrOfType<ArrayAttr>("axes")) {
    axes.emplace();
    for (Attribute e : a) {
      auto i = dyn_cast<IntegerAttr>(e);
      if (!i)
        return false;
      axes->push_back(i.getInt());
    }
  } else if (mean->getNumOperands() > 1 &&
             !isa<NoneType>(mean->getOperand(1).getType())) {
    axes = constInts(mean->getOperand(1)); // opset 18: axes as an input
    if (!axes)
      return false; // unknown axes: cannot tell what is reduced
  }
  if (!axes || axes->empty()) {
    // No axes: every axis is reduced (unless noop_with_empty_axes), which is
    // the last axis only for a vector.
    auto noop = mean->getAttrOfType<IntegerAttr>("noop_with_empty_axes");
    return r == 1 && !(noop && noop.getInt() != 0);
  }
  if (axes->size() != 1)
    return false;
  int64_t a = (*axes)[0] < 0 ? (*axes)[0] + r : (*axes)[0];
  return a == r - 1;
}

Value otherOperand(Operation *op, Value known) {
  if (!op || op->getNumOperands() != 2)
    return Value();
  if (op->getOperand(0) == known)
    return op->getOperand(1);
  if (op->getOperand(1) == known)
    return op->getOperand(0);
  return Value();
}

Value squaredValue(Value v, Operation **squareOp) {
  Operation *op = v.getDefiningOp();
  if (auto pow = dyn_cast_or_null<PowOp>(op)) {
    if (pow->getNumOperands() == 2 && isConstant(pow->getOperand(1), 2.0)) {
      *squareOp = op;
      return pow->getOperand(0);
    }
  } else if (auto mul = dyn_cast_or_null<MulOp>(op)) {
    if (mul->getNumOperands() == 2 && mul->getOperand(0) == mul->getOperand(1)) {
      *squareOp = op;
      return mul->getOperand(0);
    }
  }
  return Value();
}

bool isLastAxisVector(Value v, int64_t dim) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t && dim > 0 && t.getRank() == 1 && t.getDimSize(0) == dim &&
         isa<FloatType>(t.getElementType());
}

/// m + eps (either order) or m alone; fills the epsilon and the Add.
static Value stripEpsilon(Value v, InverseRms &info) {
  auto add = v.getDefiningOp<AddOp>();
  if (!add || add->getNumOperands() != 2)
    return v;
  for (int k = 0; k < 2; ++k) {
    std::optional<double> eps = scalarConstant(add->getOperand(1 - k));
    // The eps must be one number that does not change the mean's shape; a
    // non-constant addend is not an epsilon.
    if (eps && add->getResult(0).getType() == add->getOperand(k).getType() &&
        std::isfinite(*eps) &&
        add->getOperand(k).getDefiningOp<ReduceMeanOp>()) {
      if (!hasOneUse(add->getOperand(k)))
        return Value();
      info.epsilon = *eps;
      info.ops.push_back(add);
      return add->getOperand(k);
    }
  }
  return v;
}

/// sqrt(m + eps) or (m + eps)^-0.5 below a use by the norm; returns the
/// ReduceMean's input.
static bool matchRms(Value sqrtLike, bool inverted, Value x, InverseRms &info) {
  Operation *op = sqrtLike.getDefiningOp();
  Value meanPlusEps;
  if (!inverted) {
    if (!isa_and_nonnull<SqrtOp>(op) || op->getNumOperands() != 1)
      return false;
    meanPlusEps = op->getOperand(0);
  } else {
    // Pow(m + eps, -0.5) is already the inverse.
    if (!isa_and_nonnull<PowOp>(op) || op->getNumOperands() != 2 ||
        !isConstant(op->getOperand(1), -0.5) ||
        op->getResult(0).getType() != op->getOperand(0).getType())
      return false;
    meanPlusEps = op->getOperand(0);
  }
  info.ops.push_back(op);
  if (!hasOneUse(meanPlusEps))
    return false;
  Value mean = stripEpsilon(meanPlusEps, info);
  if (!mean || !hasOneUse(mean))
    return false;
  Operation *meanOp = mean.getDefiningOp();
  if (!isa_and_nonnull<ReduceMeanOp>(meanOp))
    return false;
  Value q = meanOp->getOperand(0);
  // The squared quantity must have x's shape: the mean is then one number per
  // row of x, broadcast back along x's last axis.
  if (q.getType() != x.getType() || !isMeanOverLastAxis(meanOp, q))
    return false;
  info.ops.push_back(meanOp);
  info.meanInput = q;
  return true;
}

/// The forms of 1 / sqrt(...) multiplied onto x.
static bool matchInverse(Value r, Value x, InverseRms &info) {
  Operation *op = r.getDefiningOp();
  if (!op || !hasOneUse(r))
    return false;
  if (isa<ReciprocalOp>(op) && op->getNumOperands() == 1) {
    info.ops.push_back(op);
    return hasOneUse(op->getOperand(0)) && matchRms(op->getOperand(0), false, x, info);
  }
  if (isa<DivOp>(op) && op->getNumOperands() == 2 && isConstant(op->getOperand(0), 1.0) &&
      op->getResult(0).getType() == op->getOperand(1).getType()) {
    info.ops.push_back(op);
    return hasOneUse(op->getOperand(1)) && matchRms(op->getOperand(1), false, x, info);
  }
  if (isa<PowOp>(op))
    return matchRms(r, true, x, info);
  return false;
}

Value matchNormalized(Operation *root, InverseRms &info) {
  if (!root || root->getNumOperands() != 2 || root->getNumResults() != 1)
    return Value();
  Value out = root->getResult(0);
  auto tryX = [&](Value x, Value rest, bool isDiv) -> Value {
    InverseRms candidate;
    // x must already have the result's shape and be a float tensor: the
    // inverse RMS is then a [..., 1] factor that cannot broadcast x.
    if (!isFloatTensor(x) || x.getType() != out.getType() || !hasOneUse(rest))
      return Value();
    bool ok = isDiv ? matchRms(rest, false, x, candidate) : matchInverse(rest, x, candidate);
    if (!ok)
      return Value();
    info = candidate;
    return x;
  };
  if (isa<DivOp>(root))
    return tryX(root->getOperand(0), root->getOperand(1), true);
  if (isa<MulOp>(root)) {
    if (Value x = tryX(root->getOperand(0), root->getOperand(1), false))
      return x;
    return tryX(root->getOperand(1), root->getOperand(0), false);
  }
  return Value();
}

void eraseDead(RewriterBase &rewriter, ArrayRef<Operation *> ops) {
  SmallVector<Operation *> constants;
  for (Operation *op : ops) {
    if (!op->use_empty())
      continue;
    for (Value v : op->getOperands())
      if (auto c = v.getDefiningOp<ConstantOp>())
        constants.push_back(c);
    rewriter.eraseOp(op);
  }
  // A constant may feed two erased ops: erase each once, when unused.
  for (size_t i = 0; i < constants.size(); ++i) {
    Operation *c = constants[i];
    if (llvm::is_contained(ArrayRef(constants).take_front(i), c))
      continue;
    if (c->use_empty())
      rewriter.eraseOp(c);
  }
}

int64_t normalizeAxis(int64_t a, int64_t r) {
  if (a < 0) a += r;
  return a >= 0 && a < r ? a : -1;
}

std::optional<std::vector<int64_t>> intsAttr(Operation *op, StringRef name) {
  auto arr = op->getAttrOfType<ArrayAttr>(name);
  if (!arr) return std::nullopt;
  std::vector<int64_t> out;
  for (Attribute a : arr) {
    auto i = dyn_cast<IntegerAttr>(a);
    if (!i) return std::nullopt;
    out.push_back(i.getInt());
  }
  return out;
}

int64_t opsetOf(Operation *op) {
  for (Operation *p = op; p; p = p->getParentOp())
    if (auto i = p->getAttrOfType<IntegerAttr>("graph.opset")) return i.getInt();
  return 17;
}

std::optional<SliceInfo> sliceOf(Operation *op) {
  if (!isa_and_nonnull<SliceOp>(op) || op->getNumOperands() < 1) return std::nullopt;
  Value x = op->getOperand(0);
  auto xt = dyn_cast<RankedTensorType>(x.getType());
  auto yt = dyn_cast<RankedTensorType>(op->getResult(0).getType());
  if (!xt || !yt || !xt.hasStaticShape() || !yt.hasStaticShape()) return std::nullopt;
  std::optional<std::vector<int64_t>> starts, ends, axes, steps;
  if (opsetOf(op) < 10) {
    starts = intsAttr(op, "starts");
    ends = intsAttr(op, "ends");
    axes = intsAttr(op, "axes");
  } else {
    if (op->getNumOperands() < 3) return std::nullopt;
    starts = constInts(op->getOperand(1));
    ends = constInts(op->getOperand(2));
    if (op->getNumOperands() > 3 && !isa<NoneType>(op->getOperand(3).getType()))
      axes = constInts(op->getOperand(3));
    if (op->getNumOperands() > 4 && !isa<NoneType>(op->getOperand(4).getType()))
      steps = constInts(op->getOperand(4));
  }
  if (!starts || !ends || starts->size() != 1 || ends->size() != 1) return std::nullopt;
  if (axes && axes->size() != 1) return std::nullopt;
  if (steps && steps->size() != 1) return std::nullopt;
  SliceInfo s;
  s.axis = normalizeAxis(axes ? (*axes)[0] : 0, xt.getRank());
  if (s.axis < 0) return std::nullopt;
  int64_t n = xt.getDimSize(s.axis);
  s.step = steps ? (*steps)[0] : 1;
  if (s.step <= 0) return std::nullopt; // negative steps: not needed here
  int64_t b = (*starts)[0], e = (*ends)[0];
  if (b < 0) b += n;
  if (e < 0) e += n;
  b = std::clamp<int64_t>(b, 0, n);
  e = std::clamp<int64_t>(e, 0, n);
  s.start = b;
  s.count = e > b ? (e - b + s.step - 1) / s.step : 0;
  if (s.count != yt.getDimSize(s.axis)) return std::nullopt;
  for (int64_t a = 0; a < xt.getRank(); ++a)
    if (a != s.axis && xt.getDimSize(a) != yt.getDimSize(a)) return std::nullopt;
  return s;
}

/// Erases the candidates that have no uses, repeatedly (a user before its
/// operands or after), then the graph.constant operands left unused.
void eraseUnused(RewriterBase &rewriter, SmallVector<Operation *> list) {
  // Each op once: a candidate named twice would be visited after its erasure.
  SmallVector<Operation *> cand;
  for (Operation *op : list)
    if (op && !llvm::is_contained(cand, op))
      cand.push_back(op);
  SmallVector<Operation *> constants;
  bool progress = true;
  while (progress) {
    progress = false;
    for (Operation *&op : cand) {
      if (!op || !op->use_empty()) continue;
      for (Value v : op->getOperands())
        if (auto c = v.getDefiningOp<ConstantOp>())
          if (!llvm::is_contained(constants, c.getOperation())) constants.push_back(c);
      rewriter.eraseOp(op);
      op = nullptr;
      progress = true;
    }
  }
  for (Operation *c : constants)
    if (c->use_empty()) rewriter.eraseOp(c);
}

std::optional<std::vector<double>> constantValues(ConstantOp c, const ConstantReader &reader) {
  auto vt = dyn_cast<RankedTensorType>(c.getType());
  if (!vt || !vt.hasStaticShape())
    return std::nullopt;
  std::vector<double> values;
  if (c.getValue()) {
    auto dense = dyn_cast<DenseElementsAttr>(*c.getValue());
    if (!dense || !isa<FloatType>(dense.getElementType()))
      return std::nullopt;
    for (const APFloat &x : dense.getValues<APFloat>())
      values.push_back(x.convertToDouble());
  } else if (reader && c.getName()) {
    auto vals = reader(*c.getName());
    if (!vals)
      return std::nullopt;
    values = std::move(*vals);
  } else {
    return std::nullopt;
  }
  if (int64_t(values.size()) != vt.getNumElements())
    return std::nullopt;
  return values;
}

bool sameTensor(Value a, Value b, const ConstantReader &reader, int depth) {
  if (a == b)
    return true;
  if (!a || !b || a.getType() != b.getType() || depth > 16)
    return false;
  Operation *da = a.getDefiningOp(), *db = b.getDefiningOp();
  if (!da || !db)
    return false; // two different model inputs
  if (auto ca = dyn_cast<ConstantOp>(da)) {
    auto cb = dyn_cast<ConstantOp>(db);
    if (!cb)
      return false;
    if (ca.getValue() && cb.getValue() && *ca.getValue() == *cb.getValue())
      return true;
    auto va = constantValues(ca, reader), vb = constantValues(cb, reader);
    return va && vb && *va == *vb;
  }
  // Parameters may be trained apart; ops without a curated definition may be
  // random (RandomNormal) or have effects; Dropout draws a mask per node.
  if (isa<ParamOp, GenericOp, DropoutOp>(da) || da->getName() != db->getName() ||
      da->getAttrDictionary() != db->getAttrDictionary() ||
      da->getNumOperands() != db->getNumOperands() ||
      cast<OpResult>(a).getResultNumber() != cast<OpResult>(b).getResultNumber())
    return false;
  for (unsigned i = 0; i < da->getNumOperands(); ++i)
    if (!sameTensor(da->getOperand(i), db->getOperand(i), reader, depth + 1))
      return false;
  return true;
}

std::optional<SmallVector<int64_t>> staticShape(Value v) {
  auto t = dyn_cast_or_null<RankedTensorType>(v ? v.getType() : Type());
  if (!t || !t.hasStaticShape())
    return std::nullopt;
  return SmallVector<int64_t>(t.getShape().begin(), t.getShape().end());
}

static RankedTensorType withShape(Value like, ArrayRef<int64_t> shape) {
  return RankedTensorType::get(shape, cast<RankedTensorType>(like.getType()).getElementType());
}

Value buildI64Constant(OpBuilder &b, Location loc, ArrayRef<int64_t> values) {
  auto t = RankedTensorType::get({int64_t(values.size())}, b.getI64Type());
  return b.create<ConstantOp>(loc, t, DenseElementsAttr::get(t, values), StringAttr());
}

Value buildReshape(OpBuilder &b, Location loc, Value x, ArrayRef<int64_t> shape) {
  Value s = buildI64Constant(b, loc, shape);
  return b.create<ReshapeOp>(loc, TypeRange{withShape(x, shape)}, ValueRange{x, s})
      ->getResult(0);
}

Value buildSlice(OpBuilder &b, Location loc, Value x, int64_t axis, int64_t start, int64_t end) {
  SmallVector<int64_t> shape(cast<RankedTensorType>(x.getType()).getShape());
  shape[size_t(axis)] = end - start;
  Type type = withShape(x, shape);
  Operation *slice;
  if (opsetOf(b.getInsertionBlock()->getParentOp()) < 10) {
    slice = b.create<SliceOp>(loc, TypeRange{type}, ValueRange{x});
    slice->setAttr("starts", b.getI64ArrayAttr({start}));
    slice->setAttr("ends", b.getI64ArrayAttr({end}));
    slice->setAttr("axes", b.getI64ArrayAttr({axis}));
  } else {
    slice = b.create<SliceOp>(loc, TypeRange{type},
                              ValueRange{x, buildI64Constant(b, loc, {start}),
                                         buildI64Constant(b, loc, {end}),
                                         buildI64Constant(b, loc, {axis})});
  }
  return slice->getResult(0);
}

Value buildConcat(OpBuilder &b, Location loc, ValueRange parts, int64_t axis) {
  SmallVector<int64_t> shape(cast<RankedTensorType>(parts[0].getType()).getShape());
  shape[size_t(axis)] = 0;
  for (Value p : parts)
    shape[size_t(axis)] += cast<RankedTensorType>(p.getType()).getDimSize(axis);
  auto cat = b.create<ConcatOp>(loc, TypeRange{withShape(parts[0], shape)}, parts);
  cat->setAttr("axis", b.getI64IntegerAttr(axis));
  return cat->getResult(0);
}

Value buildTranspose(OpBuilder &b, Location loc, Value x, ArrayRef<int64_t> perm) {
  auto in = cast<RankedTensorType>(x.getType()).getShape();
  SmallVector<int64_t> shape;
  for (int64_t p : perm)
    shape.push_back(in[size_t(p)]);
  auto tr = b.create<TransposeOp>(loc, TypeRange{withShape(x, shape)}, ValueRange{x});
  tr->setAttr("perm", b.getI64ArrayAttr(perm));
  return tr->getResult(0);
}

namespace {
/// Remembers the ops a rewrite erased so that the driver never visits them.
struct ErasedTracker : public RewriterBase::Listener {
  llvm::DenseSet<Operation *> erased;
  void notifyOperationErased(Operation *op) override { erased.insert(op); }
};
} // namespace

unsigned rewriteEach(Operation *root,
                     function_ref<bool(Operation *, IRRewriter &)> tryAt) {
  // Candidates are collected first: rewrites erase ops behind the walk.
  SmallVector<Operation *> ops;
  root->walk([&](Operation *op) {
    if (op != root)
      ops.push_back(op);
  });
  ErasedTracker tracker;
  IRRewriter rewriter(root->getContext(), &tracker);
  unsigned count = 0;
  for (Operation *op : ops) {
    if (tracker.erased.contains(op))
      continue;
    if (tryAt(op, rewriter))
      ++count;
  }
  return count;
}

} // namespace symoc::transforms
