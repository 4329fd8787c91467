//===- SpaceAnalysis.cpp - Spaces, groups and gauges of a graph -----------===//
//
// Two phases over the same per-op rules (the SymmetryRule interface):
//  1. segmentation: Split/Slice/Concat cut an axis into pieces; the cuts are
//     propagated through every tie until nothing changes;
//  2. spaces: union-find with parity over (value, axis, piece), the meet of
//     the groups each op allows, and the scale / sign flows, solved for their
//     kernels (the gauges).
// Anything not understood fixes the axes it touches: a claim is only made when
// every op on the space allows it.
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/SpaceAnalysis.h"

#include "symoc/Dialect/Graph/GraphOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/DenseMap.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

using namespace mlir;
using namespace symoc::graph;

namespace symoc {
namespace {

//===----------------------------------------------------------------------===//
// Axes and their pieces.
//===----------------------------------------------------------------------===//

struct AxisInfo {
  Value value;
  int64_t axis;
  int64_t size; // -1 when dynamic
  std::set<int64_t> cuts;
  int firstNode = -1, numNodes = 0;
};

class AxisTable {
public:
  int get(Value v, int64_t a) {
    auto key = std::make_pair(v.getAsOpaquePointer(), a);
    auto it = index.find(key);
    if (it != index.end())
      return it->second;
    int64_t size = -1;
    if (auto t = dyn_cast<RankedTensorType>(v.getType()))
      if (a >= 0 && a < t.getRank())
        size = t.getDimSize(a);
    AxisInfo info{v, a, size < 0 ? -1 : size, {}, -1, 0};
    if (size >= 0)
      info.cuts = {0, size};
    axes.push_back(info);
    index[key] = int(axes.size() - 1);
    return int(axes.size() - 1);
  }
  std::vector<AxisInfo> axes;

private:
  std::map<std::pair<const void *, int64_t>, int> index;
};

int64_t rankOfValue(Value v) {
  if (auto t = dyn_cast<RankedTensorType>(v.getType()))
    return t.getRank();
  return 0;
}

bool definedByParam(Value v) { return v.getDefiningOp<ParamOp>() != nullptr; }

/// Rules need ranks: an op with an operand or result of unknown rank (shape
/// inference gave up) is a barrier.
bool hasUnrankedTensor(Operation *op) {
  auto unranked = [](Value v) { return isa<UnrankedTensorType>(v.getType()); };
  return llvm::any_of(op->getOperands(), unranked) ||
         llvm::any_of(op->getResults(), unranked);
}

//===----------------------------------------------------------------------===//
// Phase 1: propagate cuts.
//===----------------------------------------------------------------------===//

class CutBuilder : public SpaceBuilder {
public:
  explicit CutBuilder(AxisTable &t) : table(t) {}
  bool changed = false;

  void tie(Value x, int64_t a, Value y, int64_t b, bool) override {
    AxisInfo &X = table.axes[table.get(x, a)];
    AxisInfo &Y = table.axes[table.get(y, b)];
    if (X.size < 0 || X.size != Y.size)
      return;
    merge(X.cuts, Y.cuts);
    merge(Y.cuts, X.cuts);
  }
  void slice(Value in, int64_t axis, int64_t begin, int64_t count, Value out,
             int64_t outAxis) override {
    AxisInfo &I = table.axes[table.get(in, axis)];
    AxisInfo &O = table.axes[table.get(out, outAxis)];
    if (I.size < 0 || O.size != count || begin < 0 || begin + count > I.size)
      return;
    add(I.cuts, begin);
    add(I.cuts, begin + count);
    for (int64_t c : std::vector<int64_t>(O.cuts.begin(), O.cuts.end()))
      add(I.cuts, begin + c);
    for (int64_t c : std::vector<int64_t>(I.cuts.begin(), I.cuts.end()))
      if (c >= begin && c <= begin + count)
        add(O.cuts, c - begin);
  }
  void restrict(Value, int64_t, unsigned, StringRef) override {}
  void fixAll(Value, StringRef) override {}
  void scaleRelation(ArrayRef<AxisTerm>) override {}
  void signRelation(ArrayRef<AxisTerm>) override {}
  void softmaxOver(Value, int64_t) override {}
  int64_t dimSize(Value v, int64_t a) override {
    return table.axes[table.get(v, a)].size;
  }
  bool isParameter(Value v) override { return definedByParam(v); }

private:
  void add(std::set<int64_t> &s, int64_t c) { changed |= s.insert(c).second; }
  void merge(std::set<int64_t> &dst, const std::set<int64_t> &src) {
    for (int64_t c : src)
      add(dst, c);
  }
  AxisTable &table;
};

//===----------------------------------------------------------------------===//
// Phase 2: spaces.
//===----------------------------------------------------------------------===//

struct Node {
  int axisIdx;
  int64_t start, len;
};

/// Union-find with a Z/2 parity (dual or not) to the parent.
class ParityUnionFind {
public:
  void resize(size_t n) {
    parent.resize(n);
    parity.assign(n, 0);
    for (size_t i = 0; i < n; ++i)
      parent[i] = int(i);
  }
  std::pair<int, int> find(int x) {
    int p = 0, r = x;
    while (parent[r] != r) {
      p ^= parity[r];
      r = parent[r];
    }
    // Path compression keeping parities right.
    int q = 0, y = x;
    while (parent[y] != y) {
      int next = parent[y], py = parity[y];
      parent[y] = r;
      parity[y] = p ^ q;
      q ^= py;
      y = next;
    }
    return {r, p};
  }
  /// Returns false when x and y are already joined with the other parity.
  bool unite(int x, int y, int rel) {
    auto [rx, px] = find(x);
    auto [ry, py] = find(y);
    if (rx == ry)
      return (px ^ py) == rel;
    parent[rx] = ry;
    parity[rx] = px ^ py ^ rel;
    return true;
  }
  std::vector<int> parent, parity;
};

struct Restriction {
  int node;
  unsigned bits;
  std::string why;
};

struct Relation {
  std::vector<std::pair<int, int64_t>> terms; // node, coefficient
};

class SpaceBuilderImpl : public SpaceBuilder {
public:
  SpaceBuilderImpl(AxisTable &t, std::vector<Node> &nodes) : table(t), nodes(nodes) {
    uf.resize(nodes.size());
  }

  // Node ids of an axis, one per piece (empty for dynamic axes).
  std::pair<int, int> range(Value v, int64_t a) {
    int idx = table.get(v, a);
    ensureNodes(idx);
    return {table.axes[idx].firstNode, table.axes[idx].numNodes};
  }

  void ensureNodes(int idx) {
    AxisInfo &A = table.axes[idx];
    if (A.firstNode >= 0)
      return;
    A.firstNode = int(nodes.size());
    if (A.size < 0) {
      nodes.push_back({idx, 0, -1});
      A.numNodes = 1;
    } else {
      std::vector<int64_t> c(A.cuts.begin(), A.cuts.end());
      for (size_t i = 0; i + 1 < c.size(); ++i)
        nodes.push_back({idx, c[i], c[i + 1] - c[i]});
      A.numNodes = int(c.size()) - 1;
      if (A.numNodes <= 0) { // size-0 axis
        nodes.push_back({idx, 0, 0});
        A.numNodes = 1;
      }
    }
    uf.parent.resize(nodes.size());
    uf.parity.resize(nodes.size(), 0);
    for (size_t i = A.firstNode; i < nodes.size(); ++i)
      uf.parent[i] = int(i);
    if (A.size < 0)
      restrictions.push_back({A.firstNode, kNone, "dynamic dimension"});
  }

  bool samePieces(std::pair<int, int> X, std::pair<int, int> Y) {
    if (X.second != Y.second)
      return false;
    for (int i = 0; i < X.second; ++i)
      if (nodes[X.first + i].len != nodes[Y.first + i].len)
        return false;
    return true;
  }

  void fixNodes(std::pair<int, int> X, StringRef why) {
    for (int i = 0; i < X.second; ++i)
      restrictions.push_back({X.first + i, kNone, why.str()});
  }

  void tie(Value x, int64_t a, Value y, int64_t b, bool dual) override {
    auto X = range(x, a), Y = range(y, b);
    if (!samePieces(X, Y)) {
      fixNodes(X, "tied to an axis of another size");
      fixNodes(Y, "tied to an axis of another size");
      return;
    }
    for (int i = 0; i < X.second; ++i)
      if (!uf.unite(X.first + i, Y.first + i, dual ? 1 : 0))
        restrictions.push_back({X.first + i, kPerm | kSign | kScale,
                                "space is tied to its own dual"});
  }

  void restrict(Value x, int64_t a, unsigned bits, StringRef why) override {
    auto X = range(x, a);
    for (int i = 0; i < X.second; ++i)
      restrictions.push_back({X.first + i, bits, why.str()});
    if (bits == kNone && currentOp)
      fixedByOp.insert(currentOp);
  }

  void fixAll(Value v, StringRef why) override {
    for (int64_t a = 0, r = rankOfValue(v); a < r; ++a)
      restrict(v, a, kNone, why);
  }

  void relation(std::vector<Relation> &out, ArrayRef<AxisTerm> terms, int mod) {
    if (terms.empty())
      return;
    std::vector<std::pair<int, int>> ranges;
    for (const AxisTerm &t : terms)
      ranges.push_back(range(t.value, t.axis));
    bool aligned = true;
    for (auto &r : ranges)
      aligned &= samePieces(r, ranges[0]);
    if (!aligned) {
      for (auto &r : ranges)
        for (int i = 0; i < r.second; ++i)
          out.push_back({{{r.first + i, 1}}});
      return;
    }
    for (int i = 0; i < ranges[0].second; ++i) {
      Relation rel;
      for (size_t k = 0; k < terms.size(); ++k) {
        int64_t c = terms[k].coeff;
        if (mod == 2)
          c = ((c % 2) + 2) % 2;
        if (c != 0)
          rel.terms.push_back({ranges[k].first + i, c});
      }
      if (!rel.terms.empty())
        out.push_back(rel);
    }
  }

  void scaleRelation(ArrayRef<AxisTerm> terms) override { relation(scaleRels, terms, 0); }
  void signRelation(ArrayRef<AxisTerm> terms) override { relation(signRels, terms, 2); }

  void slice(Value in, int64_t axis, int64_t begin, int64_t count, Value out,
             int64_t outAxis) override {
    auto I = range(in, axis), O = range(out, outAxis);
    for (int j = 0; j < O.second; ++j) {
      const Node &o = nodes[O.first + j];
      int match = -1;
      for (int i = 0; i < I.second; ++i)
        if (nodes[I.first + i].start == begin + o.start &&
            nodes[I.first + i].len == o.len)
          match = I.first + i;
      if (match < 0 || o.len < 0) {
        fixNodes(I, "slice boundaries not resolved");
        fixNodes(O, "slice boundaries not resolved");
        return;
      }
      uf.unite(match, O.first + j, 0);
      scaleRels.push_back({{{match, 1}, {O.first + j, -1}}});
      signRels.push_back({{{match, 1}, {O.first + j, 1}}});
    }
  }

  void softmaxOver(Value logits, int64_t axis) override {
    softmaxes.push_back({logits, axis});
  }
  int64_t dimSize(Value v, int64_t a) override {
    return table.axes[table.get(v, a)].size;
  }
  bool isParameter(Value v) override { return definedByParam(v); }

  AxisTable &table;
  std::vector<Node> &nodes;
  ParityUnionFind uf;
  std::vector<Restriction> restrictions;
  std::vector<Relation> scaleRels, signRels;
  std::vector<std::pair<Value, int64_t>> softmaxes;
  Operation *currentOp = nullptr;
  std::set<Operation *> fixedByOp;
};

//===----------------------------------------------------------------------===//
// Kernels of the flows.
//===----------------------------------------------------------------------===//

/// Null space of an integer matrix over the rationals (doubles; the entries are
/// small integers) or over Z/2. Returns basis vectors in reduced form: one per
/// free column, that column set to 1.
std::vector<std::vector<double>> nullSpace(std::vector<std::vector<double>> m,
                                           size_t cols, bool mod2) {
  size_t rows = m.size(), r = 0;
  std::vector<int> pivotCol;
  auto isZero = [&](double x) { return mod2 ? (int64_t(std::llround(x)) % 2 == 0) : std::fabs(x) < 1e-9; };
  for (size_t c = 0; c < cols && r < rows; ++c) {
    size_t p = r;
    while (p < rows && isZero(m[p][c]))
      ++p;
    if (p == rows)
      continue;
    std::swap(m[p], m[r]);
    if (!mod2) {
      double inv = 1.0 / m[r][c];
      for (double &x : m[r]) x *= inv;
    }
    for (size_t i = 0; i < rows; ++i) {
      if (i == r || isZero(m[i][c]))
        continue;
      double f = m[i][c];
      for (size_t k = 0; k < cols; ++k) {
        if (mod2)
          m[i][k] = double((int64_t(std::llround(m[i][k])) + int64_t(std::llround(m[r][k]))) % 2);
        else
          m[i][k] -= f * m[r][k];
      }
    }
    pivotCol.push_back(int(c));
    ++r;
  }
  std::vector<bool> isPivot(cols, false);
  for (int c : pivotCol) isPivot[c] = true;
  std::vector<std::vector<double>> basis;
  for (size_t f = 0; f < cols; ++f) {
    if (isPivot[f])
      continue;
    std::vector<double> v(cols, 0.0);
    v[f] = 1;
    for (size_t i = 0; i < pivotCol.size(); ++i) {
      double x = -m[i][f];
      if (mod2)
        x = double(((int64_t(std::llround(x)) % 2) + 2) % 2);
      v[pivotCol[i]] = x;
    }
    basis.push_back(v);
  }
  return basis;
}

/// Solves one flow (scale over Q, sign over Z/2): returns, for each kernel
/// basis vector, the exponent of every node it touches.
std::vector<std::map<int, int64_t>> solveFlow(const std::vector<Relation> &rels,
                                              size_t numNodes, bool mod2,
                                              bool &nonUnit) {
  // Two-term relations with unit coefficients are equalities up to sign:
  // e_x = w * e_y. Fold them with a weighted union-find.
  std::vector<int> parent(numNodes);
  std::vector<int> weight(numNodes, 1); // e_node = weight * e_parent
  std::vector<bool> pinned(numNodes, false);
  for (size_t i = 0; i < numNodes; ++i) parent[i] = int(i);
  std::function<std::pair<int, int>(int)> find = [&](int x) -> std::pair<int, int> {
    if (parent[x] == x)
      return {x, 1};
    auto [r, w] = find(parent[x]);
    parent[x] = r;
    weight[x] *= w;
    return {r, weight[x]};
  };
  std::vector<const Relation *> rest;
  for (const Relation &rel : rels) {
    if (rel.terms.size() == 1) {
      pinned[find(rel.terms[0].first).first] = true;
      continue;
    }
    if (rel.terms.size() == 2 && std::llabs(rel.terms[0].second) == std::llabs(rel.terms[1].second)) {
      // a e_x + b e_y = 0 -> e_x = -(b/a) e_y
      int w = mod2 ? 1 : -int(rel.terms[1].second / rel.terms[0].second);
      auto [rx, wx] = find(rel.terms[0].first);
      auto [ry, wy] = find(rel.terms[1].first);
      if (rx == ry) {
        // wx e_r = w wy e_r: a contradiction forces e_r = 0.
        if (!mod2 && wx != w * wy)
          pinned[rx] = true;
        continue;
      }
      parent[rx] = ry;
      weight[rx] = wx * w * wy; // e_rx = (1/wx) e_x = (w/wx) e_y = (w wy / wx) e_ry
      if (pinned[rx]) pinned[ry] = true;
      continue;
    }
    rest.push_back(&rel);
  }
  // Variables: unpinned roots. Components linked by the remaining relations.
  std::map<int, int> var;
  std::vector<int> roots;
  for (size_t i = 0; i < numNodes; ++i) {
    auto [r, w] = find(int(i));
    (void)w;
    if (!pinned[r] && !var.count(r)) {
      var[r] = int(roots.size());
      roots.push_back(r);
    }
  }
  // Component of each variable through the multi-term relations.
  std::vector<int> comp(roots.size());
  for (size_t i = 0; i < roots.size(); ++i) comp[i] = int(i);
  std::function<int(int)> cfind = [&](int x) { return comp[x] == x ? x : comp[x] = cfind(comp[x]); };
  std::vector<std::vector<std::pair<int, double>>> rows;
  for (const Relation *rel : rest) {
    std::map<int, double> row;
    for (auto [node, c] : rel->terms) {
      auto [r, w] = find(node);
      if (pinned[r]) continue;
      row[var[r]] += double(c * w);
    }
    std::vector<std::pair<int, double>> entries;
    for (auto [v, c] : row)
      if (mod2 ? (int64_t(std::llround(c)) % 2 != 0) : std::fabs(c) > 1e-12)
        entries.push_back({v, c});
    for (size_t k = 1; k < entries.size(); ++k)
      comp[cfind(entries[k].first)] = cfind(entries[0].first);
    if (!entries.empty())
      rows.push_back(entries);
  }
  std::map<int, std::vector<int>> byComp;
  for (size_t i = 0; i < roots.size(); ++i)
    byComp[cfind(int(i))].push_back(int(i));
  std::map<int, std::vector<size_t>> rowsByComp;
  for (size_t k = 0; k < rows.size(); ++k)
    rowsByComp[cfind(rows[k][0].first)].push_back(k);
  // Nodes under each root.
  std::map<int, std::vector<std::pair<int, int>>> under;
  for (size_t i = 0; i < numNodes; ++i) {
    auto [r, w] = find(int(i));
    if (!pinned[r])
      under[r].push_back({int(i), w});
  }
  std::vector<std::map<int, int64_t>> out;
  for (auto &[c, vars] : byComp) {
    std::map<int, int> local;
    for (size_t i = 0; i < vars.size(); ++i) local[vars[i]] = int(i);
    std::vector<std::vector<double>> m;
    for (size_t k : rowsByComp[c]) {
      std::vector<double> row(vars.size(), 0.0);
      for (auto [v, coef] : rows[k]) row[local[v]] = coef;
      m.push_back(row);
    }
    for (auto &vec : nullSpace(m, vars.size(), mod2)) {
      std::map<int, int64_t> e;
      bool ok = true;
      for (size_t i = 0; i < vars.size(); ++i) {
        double x = vec[i];
        if (std::fabs(x) < 1e-9) continue;
        if (std::fabs(x - std::round(x)) > 1e-9) { ok = false; break; }
        for (auto [node, w] : under[roots[vars[i]]]) {
          int64_t val = int64_t(std::llround(x)) * w;
          if (mod2) val = ((val % 2) + 2) % 2;
          if (val) e[node] = val;
        }
      }
      if (!ok) { nonUnit = true; continue; }
      if (!e.empty()) out.push_back(e);
    }
  }
  return out;
}

std::string groupName(unsigned bits) {
  if (bits == kNone) return "1";
  if ((bits & kAll) == kAll) return "GL";
  if (bits & kRotation) return "O";
  return "S";
}

} // namespace

//===----------------------------------------------------------------------===//
// The analysis.
//===----------------------------------------------------------------------===//

AnalysisResult analyzeSpaces(ModuleOp module, const AnalysisOptions &opts) {
  AnalysisResult result;
  if (auto loc = dyn_cast<FileLineColLoc>(module.getLoc()))
    result.model = loc.getFilename().str();
  func::FuncOp fn;
  module.walk([&](func::FuncOp f) { if (!fn) fn = f; });
  if (!fn)
    return result;

  std::vector<Operation *> ops;
  fn.walk([&](Operation *op) { ops.push_back(op); });

  AxisTable table;
  // Phase 1: cuts.
  for (int iter = 0; iter < 32; ++iter) {
    CutBuilder cuts(table);
    for (Operation *op : ops)
      if (auto rule = dyn_cast<SymmetryRule>(op))
        if (!hasUnrankedTensor(op))
          rule.applySymmetryRule(cuts);
    if (!cuts.changed)
      break;
  }

  // Phase 2: spaces.
  std::vector<Node> nodes;
  SpaceBuilderImpl b(table, nodes);
  std::set<std::string> barrierTypes;
  for (Operation *op : ops) {
    b.currentOp = op;
    if (isa<SymmetryRule>(op) && hasUnrankedTensor(op)) {
      for (Value v : op->getOperands()) b.fixAll(v, "unknown rank");
      for (Value v : op->getResults()) b.fixAll(v, "unknown rank");
      std::string node;
      if (auto nl = dyn_cast<NameLoc>(op->getLoc())) node = nl.getName().str();
      result.barriers.push_back({node, op->getName().stripDialect().str(),
                                 "shape inference gave no rank"});
    } else if (auto rule = dyn_cast<SymmetryRule>(op)) {
      rule.applySymmetryRule(b);
    } else if (auto g = dyn_cast<GenericOp>(op)) {
      for (Value v : op->getOperands()) b.fixAll(v, "op without a rule: " + g.getOpType().str());
      for (Value v : op->getResults()) b.fixAll(v, "op without a rule: " + g.getOpType().str());
      std::string node;
      if (auto nl = dyn_cast<NameLoc>(op->getLoc())) node = nl.getName().str();
      result.barriers.push_back({node, g.getOpType().str(), "no symmetry rule for this op"});
    } else if (auto c = dyn_cast<ConstantOp>(op)) {
      b.fixAll(c.getResult(), "fixed constant");
    }
  }
  b.currentOp = nullptr;
  // Rules that fixed everything they touch are barriers worth listing.
  for (Operation *op : b.fixedByOp) {
    if (isa<GenericOp, ConstantOp, ShapeOp, SizeOp, ConstantOfShapeOp, RangeOp>(op))
      continue;
    std::string node;
    if (auto nl = dyn_cast<NameLoc>(op->getLoc())) node = nl.getName().str();
    if (isa<TopKOp, ArgMaxOp, ArgMinOp, EinsumOp, ConvTransposeOp, GatherElementsOp,
            ScatterNDOp, TileOp, PadOp, CumSumOp, InstanceNormalizationOp,
            GroupNormalizationOp>(op))
      result.barriers.push_back({node, op->getName().stripDialect().str(), "treated as a barrier"});
  }
  // Model inputs and outputs are fixed.
  for (BlockArgument arg : fn.getArguments())
    b.fixAll(arg, "model input");
  fn.walk([&](func::ReturnOp ret) {
    for (Value v : ret.getOperands())
      b.fixAll(v, "model output");
  });

  // Loss-dependent output symmetries.
  LossKind loss = opts.loss;
  bool endsInSoftmax = false;
  std::vector<std::pair<Value, std::string>> outputs;
  fn.walk([&](func::ReturnOp ret) {
    for (unsigned i = 0; i < ret.getNumOperands(); ++i) {
      Value v = ret.getOperand(i);
      auto name = fn.getResultAttrOfType<StringAttr>(i, "graph.name");
      outputs.push_back({v, name ? name.str() : ""});
      if (v.getDefiningOp<SoftmaxOp>() || v.getDefiningOp<LogSoftmaxOp>())
        endsInSoftmax = true;
    }
  });
  switch (loss) {
  case LossKind::Auto:
    result.lossAssumed = endsInSoftmax ? "graph ends in Softmax/LogSoftmax"
                                       : "none (outputs fixed)";
    break;
  case LossKind::CrossEntropy:
    result.lossAssumed = "cross-entropy over the last axis of each output";
    break;
  case LossKind::MSE: result.lossAssumed = "mse (outputs fixed)"; break;
  case LossKind::None: result.lossAssumed = "none (outputs fixed)"; break;
  }

  // Classes.
  std::map<int, unsigned> mask;
  std::map<int, std::string> why;
  for (size_t i = 0; i < nodes.size(); ++i)
    mask[b.uf.find(int(i)).first] = kAll;
  for (const Restriction &r : b.restrictions) {
    int root = b.uf.find(r.node).first;
    unsigned before = normalizeGroup(mask[root]);
    mask[root] &= r.bits;
    if (normalizeGroup(mask[root]) == kNone && before != kNone)
      why[root] = r.why;
  }
  for (auto &[root, bits] : mask)
    bits = normalizeGroup(bits);

  // Parameter nodes per class.
  std::map<int, std::vector<int>> paramNodes;
  std::map<std::string, ParamOp> params;
  std::vector<ParamOp> paramOrder;
  fn.walk([&](ParamOp p) {
    params[p.getName().str()] = p;
    paramOrder.push_back(p);
    for (int64_t a = 0, r = rankOfValue(p.getResult()); a < r; ++a) {
      auto R = b.range(p.getResult(), a);
      for (int i = 0; i < R.second; ++i)
        paramNodes[b.uf.find(R.first + i).first].push_back(R.first + i);
    }
  });
  // Nodes created late (params never touched) need masks too.
  for (size_t i = 0; i < nodes.size(); ++i) {
    int root = b.uf.find(int(i)).first;
    if (!mask.count(root)) mask[root] = normalizeGroup(kAll);
  }

  bool nonUnitScale = false, nonUnitSign = false;
  auto scaleKernel = solveFlow(b.scaleRels, nodes.size(), false, nonUnitScale);
  auto signKernel = solveFlow(b.signRels, nodes.size(), true, nonUnitSign);

  auto memberOf = [&](int node, bool in) {
    const Node &n = nodes[node];
    const AxisInfo &A = table.axes[n.axisIdx];
    Member m;
    m.initializer = A.value.getDefiningOp<ParamOp>().getName().str();
    m.axis = A.axis;
    m.offset = n.start;
    m.extent = n.len;
    m.in = in;
    return m;
  };

  std::map<int, std::string> spaceOfRoot;
  int claimCounter = 0;
  auto newClaimId = [&]() { return "c" + std::to_string(++claimCounter); };

  // Spaces with parameter members, in parameter order.
  std::vector<int> rootsInOrder;
  std::set<int> seenRoots;
  for (ParamOp p : paramOrder)
    for (int64_t a = 0, r = rankOfValue(p.getResult()); a < r; ++a) {
      auto R = b.range(p.getResult(), a);
      for (int i = 0; i < R.second; ++i) {
        int root = b.uf.find(R.first + i).first;
        if (seenRoots.insert(root).second)
          rootsInOrder.push_back(root);
      }
    }

  for (int root : rootsInOrder) {
    Space s;
    s.id = "s" + std::to_string(result.spaces.size() + 1);
    spaceOfRoot[root] = s.id;
    const std::vector<int> &pn = paramNodes[root];
    s.size = nodes[pn.front()].len;
    unsigned bits = mask[root];
    s.fixed = bits == kNone || s.size < 1;
    s.fixedBy = why.count(root) ? why[root] : "";
    // Orientation: most members are "out".
    int outs = 0;
    for (int n : pn) outs += b.uf.find(n).second == 0;
    int flip = outs * 2 >= int(pn.size()) ? 0 : 1;
    for (int n : pn)
      s.members.push_back(memberOf(n, (b.uf.find(n).second ^ flip) == 1));
    if (s.fixed || s.size < 2) {
      s.group = "1";
      result.spaces.push_back(s);
      continue;
    }
    std::set<int> pset(pn.begin(), pn.end());
    std::string summary = groupName(bits);
    auto addLinear = [&](const std::string &group, std::vector<Member> members,
                         const std::string &note) {
      Claim c;
      c.id = newClaimId();
      c.kind = "linear";
      c.group = group;
      c.n = s.size;
      c.space = s.id;
      c.members = std::move(members);
      c.note = note;
      s.claimIds.push_back(c.id);
      result.claims.push_back(std::move(c));
    };
    if (bits & kShear) {
      addLinear("GL", s.members, "every op on this space is linear");
    } else if (bits & kRotation) {
      addLinear("O", s.members, "every op on this space is orthogonally equivariant");
    } else {
      addLinear("S", s.members, "permutation of the space's coordinates");
    }
    // Sign and scale gauges whose support is inside this space.
    bool fullSign = false, hasScale = false;
    int signClaims = 0;
    if (!(bits & kRotation)) {
      for (auto &vec : signKernel) {
        int r0 = b.uf.find(vec.begin()->first).first;
        if (r0 != root) continue;
        bool inside = true;
        std::vector<Member> members;
        for (auto [n, v] : vec) {
          if (b.uf.find(n).first != root) { inside = false; break; }
          if (pset.count(n)) members.push_back(memberOf(n, false));
        }
        if (!inside || members.empty()) continue;
        if (members.size() == s.members.size()) fullSign = true;
        ++signClaims;
        addLinear("Z2", members, "sign flips of the space's coordinates");
      }
    }
    if (!(bits & kShear)) {
      for (auto &vec : scaleKernel) {
        int r0 = b.uf.find(vec.begin()->first).first;
        if (r0 != root) continue;
        bool inside = true, unit = true;
        std::vector<Member> members;
        for (auto [n, v] : vec) {
          if (b.uf.find(n).first != root) { inside = false; break; }
          if (std::llabs(v) != 1) unit = false;
          if (pset.count(n)) members.push_back(memberOf(n, v < 0));
        }
        if (!inside || !unit || members.empty()) continue;
        hasScale = true;
        addLinear("Scale+", members, "positive rescaling (a gauge)");
      }
    }
    if (summary == "S") {
      if (fullSign) summary = "B";
      else if (signClaims) summary = "S x Z2";
    }
    if (hasScale) summary += " x Scale+";
    s.group = summary;
    result.spaces.push_back(s);
  }

  // Shift gauges: a Softmax over the output axis of a trainable linear map.
  std::vector<std::pair<Value, int64_t>> softmaxes = b.softmaxes;
  std::map<const void *, std::string> outputName;
  for (auto &[v, name] : outputs) outputName[v.getAsOpaquePointer()] = name;
  if (loss == LossKind::CrossEntropy)
    for (auto &[v, name] : outputs)
      if (rankOfValue(v) >= 1) softmaxes.push_back({v, -1});
  auto singleUse = [](Value v) { return v.hasOneUse(); };
  for (auto [logits, axisIn] : softmaxes) {
    int64_t r = rankOfValue(logits);
    int64_t axis = axisIn < 0 ? axisIn + r : axisIn;
    if (axis != r - 1) continue;
    bool isOutput = outputName.count(logits.getAsOpaquePointer());
    Value v = logits;
    std::vector<std::string> names, roles;
    std::vector<Member> members;
    if (!isOutput && !singleUse(v)) continue;
    Value bias;
    if (auto add = v.getDefiningOp<AddOp>()) {
      Value a = add.getOperand(0), c = add.getOperand(1);
      if (definedByParam(a)) std::swap(a, c);
      if (!definedByParam(c) || rankOfValue(c) != 1 || !singleUse(c) || !singleUse(a)) continue;
      bias = c;
      v = a;
    }
    Value w;
    int64_t wAxis = -1;
    if (auto mm = v.getDefiningOp<MatMulOp>()) {
      w = mm.getOperand(1);
      wAxis = 1;
      if (rankOfValue(w) != 2) continue;
    } else if (auto gemm = v.getDefiningOp<GemmOp>()) {
      w = gemm.getOperand(1);
      wAxis = gemm->getAttrOfType<IntegerAttr>("transB") &&
                      gemm->getAttrOfType<IntegerAttr>("transB").getInt()
                  ? 0 : 1;
      if (gemm.getNumOperands() > 2 && !isa<NoneType>(gemm.getOperand(2).getType())) {
        if (bias) continue;
        Value c = gemm.getOperand(2);
        if (!definedByParam(c) || rankOfValue(c) != 1 || !singleUse(c)) continue;
        bias = c;
      }
    } else {
      continue;
    }
    if (!definedByParam(w) || !singleUse(w)) continue;
    Claim c;
    c.id = newClaimId();
    c.kind = "shift";
    c.group = "shift";
    Member mw;
    mw.initializer = w.getDefiningOp<ParamOp>().getName().str();
    mw.axis = wAxis;
    c.members.push_back(mw);
    c.roles.push_back("weight");
    if (bias) {
      Member mb;
      mb.initializer = bias.getDefiningOp<ParamOp>().getName().str();
      mb.axis = 0;
      c.members.push_back(mb);
      c.roles.push_back("bias");
    }
    if (isOutput && loss == LossKind::CrossEntropy) {
      c.output = outputName[logits.getAsOpaquePointer()];
      c.outputAxis = -1;
      c.note = "logit shift under the cross-entropy loss";
    } else {
      c.note = "shift of the logits of a Softmax in the graph";
    }
    result.claims.push_back(c);
  }

  // Blocks and roles.
  for (ParamOp p : paramOrder) {
    Block blk;
    blk.name = p.getName().str();
    auto t = cast<RankedTensorType>(p.getType());
    blk.shape.assign(t.getShape().begin(), t.getShape().end());
    blk.fromConstant = p.getFromConstant();
    std::set<Operation *> users(p->getUsers().begin(), p->getUsers().end());
    blk.tied = users.size() > 1;
    std::set<std::string> roles;
    auto feedsOutput = [&](Value v) {
      for (int k = 0; k < 2; ++k) {
        if (outputName.count(v.getAsOpaquePointer())) return true;
        if (!v.hasOneUse()) return false;
        Operation *u = *v.getUsers().begin();
        if (!isa<AddOp>(u)) return false;
        v = u->getResult(0);
      }
      return outputName.count(v.getAsOpaquePointer()) > 0;
    };
    for (OpOperand &use : p->getUses()) {
      Operation *u = use.getOwner();
      unsigned idx = use.getOperandNumber();
      if (isa<GatherOp>(u) && idx == 0) roles.insert("embedding");
      else if (isa<MatMulOp, GemmOp>(u) && idx == 1)
        roles.insert(feedsOutput(u->getResult(0)) ? "lm_head" : "linear");
      else if (isa<GemmOp>(u) && idx == 2) roles.insert("bias");
      else if (isa<ConvOp>(u) && idx == 1) {
        int64_t g = u->getAttrOfType<IntegerAttr>("group") ? u->getAttrOfType<IntegerAttr>("group").getInt() : 1;
        roles.insert(g > 1 && blk.shape.size() > 1 && blk.shape[1] == 1 ? "conv_depthwise" : "conv");
      } else if (isa<ConvOp>(u) && idx == 2) roles.insert("bias");
      else if (isa<BatchNormalizationOp>(u) && idx >= 3)
        roles.insert("norm_statistics");
      else if (isa<LayerNormalizationOp, BatchNormalizationOp, RMSNormalizationOp>(u))
        roles.insert(idx == 1 ? "norm_gain" : "norm_bias");
      else if (isa<MulOp>(u) && blk.shape.size() == 1) roles.insert("gain");
      else if (isa<AddOp>(u) && blk.shape.size() == 1) roles.insert("bias");
      else if (isa<AddOp>(u)) roles.insert("positional_embedding");
      else if (isa<PReluOp>(u)) roles.insert("prelu_slope");
      else roles.insert("other");
    }
    for (const Claim &c : result.claims)
      if (c.kind == "shift" && c.note.find("Softmax in the graph") != std::string::npos &&
          c.members[0].initializer == blk.name)
        roles.insert("router");
    for (const auto &r : roles)
      blk.role += (blk.role.empty() ? "" : "+") + r;
    for (int64_t a = 0; a < int64_t(blk.shape.size()); ++a) {
      std::vector<std::string> sp;
      auto R = b.range(p.getResult(), a);
      for (int i = 0; i < R.second; ++i)
        sp.push_back(spaceOfRoot[b.uf.find(R.first + i).first]);
      blk.axisSpaces.push_back(sp);
    }
    result.blocks.push_back(blk);
  }
  return result;
}

} // namespace symoc
