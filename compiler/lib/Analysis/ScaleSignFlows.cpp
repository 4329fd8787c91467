//===- ScaleSignFlows.cpp - Kernels of the scale and sign flows -----------===//
//
// Takes the SpaceGraph's flow relations (sum of coefficient x exponent = 0 per
// op, over Q for positive scalings, over Z/2 for sign flips); gives Flows: a
// basis of each flow's kernel (the gauges), exact and epsilon-approximate.
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/Stages.h"

#include <cmath>
#include <functional>

namespace symoc {
namespace analysis {
namespace {

/// Null space of a sparse integer matrix over the rationals (doubles; the
/// entries are small integers) or over Z/2: sparse Gauss-Jordan elimination in
/// column order, so the pivots are the leftmost independent columns and the
/// result is the reduced row echelon form's basis (unique: the same claims
/// whatever order the relations came in). The flow systems are chains (one
/// relation per op), so rows stay short. Returns one basis vector per free
/// column, that column set to 1.
std::vector<std::map<int, double>>
sparseNullSpace(const std::vector<std::map<int, double>> &input, int cols, bool mod2) {
  auto reduce = [&](double x) {
    if (!mod2)
      return x;
    int64_t v = int64_t(std::llround(x)) % 2;
    return double(v < 0 ? v + 2 : v);
  };
  auto isZero = [&](double x) { return mod2 ? reduce(x) == 0 : std::fabs(x) < 1e-9; };
  std::vector<std::map<int, double>> rows;
  std::map<int, std::set<int>> rowsWith; // column -> rows holding it
  for (const auto &in : input) {
    std::map<int, double> r;
    for (auto [v, c] : in)
      if (!isZero(c))
        r[v] = reduce(c);
    for (auto &[v, c] : r)
      rowsWith[v].insert(int(rows.size()));
    rows.push_back(std::move(r));
  }
  std::vector<bool> used(rows.size(), false);
  std::map<int, int> pivotRow; // column -> row
  for (int c = 0; c < cols; ++c) {
    auto it = rowsWith.find(c);
    if (it == rowsWith.end())
      continue;
    int p = -1;
    for (int r : it->second)
      if (!used[size_t(r)]) { p = r; break; }
    if (p < 0)
      continue;
    used[size_t(p)] = true;
    pivotRow[c] = p;
    auto &pr = rows[size_t(p)];
    if (!mod2) {
      double inv = 1.0 / pr[c];
      for (auto &[v, x] : pr) x *= inv;
    }
    std::vector<int> others(it->second.begin(), it->second.end());
    for (int r : others) {
      if (r == p)
        continue;
      auto &row = rows[size_t(r)];
      double f = row[c];
      for (auto [v, x] : pr) {
        double y = reduce((row.count(v) ? row[v] : 0.0) - f * x);
        if (isZero(y)) {
          row.erase(v);
          rowsWith[v].erase(r);
        } else {
          if (!row.count(v))
            rowsWith[v].insert(r);
          row[v] = y;
        }
      }
    }
  }
  std::vector<std::map<int, double>> basis;
  for (int f = 0; f < cols; ++f) {
    if (pivotRow.count(f))
      continue;
    std::map<int, double> x{{f, 1.0}};
    // In reduced form a pivot row holds its pivot and free columns only.
    auto it = rowsWith.find(f);
    if (it != rowsWith.end())
      for (int r : it->second) {
        const auto &row = rows[size_t(r)];
        for (auto [v, c] : row)
          if (pivotRow.count(v) && pivotRow[v] == r) {
            double val = reduce(-row.at(f) / (mod2 ? 1.0 : c));
            if (!isZero(val))
              x[v] = val;
          }
      }
    basis.push_back(std::move(x));
  }
  return basis;
}

/// Solves one flow (scale over Q, sign over Z/2): returns, for each kernel
/// basis vector, the exponent of every node it touches.
std::vector<std::map<int, int64_t>> solveFlow(const std::vector<Relation> &rels,
                                              size_t numNodes, bool mod2) {
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
    std::vector<std::map<int, double>> m;
    for (size_t k : rowsByComp[c]) {
      std::map<int, double> row;
      for (auto [v, coef] : rows[k]) row[local[v]] = coef;
      m.push_back(std::move(row));
    }
    for (auto &vec : sparseNullSpace(m, int(vars.size()), mod2)) {
      std::map<int, int64_t> e;
      bool ok = true;
      for (auto [i, x] : vec) {
        if (std::fabs(x) < 1e-9) continue;
        if (std::fabs(x - std::round(x)) > 1e-9) { ok = false; break; }
        for (auto [node, w] : under[roots[vars[size_t(i)]]]) {
          int64_t val = int64_t(std::llround(x)) * w;
          if (mod2) val = ((val % 2) + 2) % 2;
          if (val) e[node] = val;
        }
      }
      if (!ok) continue; // a gauge with exponents beyond +-1: not expressible, not claimed
      if (!e.empty()) out.push_back(e);
    }
  }
  return out;
}

/// The scale kernel without the approximate relations: the vectors that need
/// a dropped relation (they move a node it pinned) hold up to the
/// normalization's epsilon. A vector that needs a uniform-only relaxation
/// (LayerNorm, RMSNorm) holds only for one factor shared by every coordinate.
void relaxedScaleKernels(const SpaceGraph &g, Flows &f) {
  if (g.approxScaleRels.empty())
    return;
  std::map<int, std::pair<std::string, bool>> relaxed;
  for (size_t k = 0; k < g.approxScaleRels.size(); ++k)
    for (auto [n, c] : g.approxScaleRels[k].terms) {
      auto &slot = relaxed[n];
      if (slot.first.empty() || g.approxUniform[k])
        slot = {g.approxWhy[k], g.approxUniform[k]};
    }
  // A uniform-only relaxation frees one factor for its whole axis: the
  // pieces of that axis (a Concat with a constant, heads) move together,
  // so a constant piece (a class token concatenated along the normalized
  // axis) pins the others.
  std::vector<Relation> relaxedRels = g.scaleRels;
  std::map<int, int> firstOfCall;
  for (size_t k = 0; k < g.approxScaleRels.size(); ++k) {
    if (!g.approxUniform[k])
      continue;
    for (auto [n, c] : g.approxScaleRels[k].terms) {
      auto [it, first] = firstOfCall.insert({g.approxCall[k], n});
      if (!first && it->second != n)
        relaxedRels.push_back({{{it->second, 1}, {n, -1}}});
    }
  }
  for (auto &vec : solveFlow(relaxedRels, g.nodes.size(), false)) {
    std::string why;
    bool uniform = false;
    for (auto [n, v] : vec)
      if (auto it = relaxed.find(n); it != relaxed.end()) {
        if (why.empty() || it->second.second) why = it->second.first;
        uniform = uniform || it->second.second;
      }
    if (!why.empty())
      (uniform ? f.uniformScale : f.approxScale).push_back({vec, why});
  }
}

} // namespace

Flows solveFlows(const SpaceGraph &g) {
  Flows f;
  // The exact scale flow includes the approximate relations.
  std::vector<Relation> exactScaleRels = g.scaleRels;
  exactScaleRels.insert(exactScaleRels.end(), g.approxScaleRels.begin(), g.approxScaleRels.end());
  f.scale = solveFlow(exactScaleRels, g.nodes.size(), false);
  relaxedScaleKernels(g, f);
  f.sign = solveFlow(g.signRels, g.nodes.size(), true);
  return f;
}

} // namespace analysis
} // namespace symoc
