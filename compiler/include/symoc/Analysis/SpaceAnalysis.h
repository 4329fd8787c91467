//===- SpaceAnalysis.h - Spaces, groups and gauges of a graph ---*- C++ -*-===//
//
// Groups the axes of every value into spaces (union-find over (value, axis,
// segment)), intersects the groups the ops allow on each space, and solves the
// scale and sign flows for gauges. The result lists, for every space that
// touches a parameter, its members (initializer, axis, offset, extent) and the
// claims that hold on it, in the form of docs/symmetry-schema.md.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_ANALYSIS_SPACEANALYSIS_H
#define SYMOC_ANALYSIS_SPACEANALYSIS_H

#include "mlir/IR/BuiltinOps.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace symoc {

enum class LossKind { Auto, CrossEntropy, MSE, None };

struct AnalysisOptions {
  LossKind loss = LossKind::Auto;
};

struct Member {
  std::string initializer;
  int64_t axis = 0, offset = 0, extent = 0, stride = 1;
  bool in = false;   // transforms by A^{-T}
  int64_t power = 1; // exponent in a scale or sign flow (claims only)
};

struct Claim {
  std::string id, kind; // linear | shift
  std::string group;    // S, Z2, Scale+, O, GL, heads, rope (linear)
  int64_t heads = 0, headDim = 0; // group "heads": whole heads permuted
  // group "rope": per channel pair a rotation ("SO2"; "sign": -I or I only;
  // "none") times, when `pairScale`, a positive factor; identity elsewhere.
  std::vector<std::pair<int64_t, int64_t>> pairs;
  std::string rotation = "SO2";
  bool pairScale = false;
  int64_t n = 0;
  std::string space;
  bool exact = true;
  std::vector<Member> members;
  std::string note;
  // shift: members use `axis` as the shifted axis and role weight/bias
  std::vector<std::string> roles;
  std::string output;
  int64_t outputAxis = -1;
};

struct Space {
  std::string id;
  int64_t size = 0;
  std::string group; // summary: "1", "S", "B", "S x Scale+", "O", "GL", ...
  bool fixed = false;
  std::string fixedBy; // why the group is trivial
  std::vector<Member> members;
  std::vector<std::string> claimIds;
};

struct Block {
  std::string name;
  std::vector<int64_t> shape;
  std::string role;
  bool tied = false;
  bool fromConstant = false;
  std::vector<std::vector<std::string>> axisSpaces; // per axis, the spaces
};

/// An op that fixes every axis of its operands and results (and pins their
/// scale and sign flows): why, and what the user can do about it.
struct Barrier {
  std::string node, opType, reason, hint;
};

struct AnalysisResult {
  std::string model;
  std::string lossAssumed;
  std::vector<Space> spaces;
  std::vector<Block> blocks;
  std::vector<Claim> claims;
  std::vector<Barrier> barriers;
};

/// Runs the analysis on an imported module (func @main of the graph dialect).
AnalysisResult analyzeSpaces(mlir::ModuleOp module, const AnalysisOptions &opts);

/// docs/symmetry-schema.md.
nlohmann::json toJson(const AnalysisResult &result);

/// Human-readable tables.
std::string formatReport(const AnalysisResult &result);

/// Graphviz: parameters and spaces, colored by space.
std::string formatDot(const AnalysisResult &result);

} // namespace symoc

#endif
