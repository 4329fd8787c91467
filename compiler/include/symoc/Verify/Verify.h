//===- Verify.h - Numerical check of claimed weight-space symmetries -*- C++ -*-===//
//
// For every claim of a `symoc.symmetry/1` document (docs/symmetry-schema.md),
// draws random group elements with a seeded RNG, transforms the initializers
// the claim's members name, runs the model with the reference evaluator on
// random inputs, and compares the outputs with the untransformed model:
//   rel err = ||y' - y|| / ||y||  (all float outputs together, float64).
// A claim passes when the largest rel err over the trials is within the
// tolerance (exact claims: 1e-9; "exact": false: 1e-3).
//
// By composition (the default): claims compared the same way are checked
// together, one forward run per trial for the product of one random element
// of each; only a batch that fails is bisected (on the same elements), so the
// cost grows with the number of failing claims times log(claims), not with
// the number of claims. `compose = false` checks each claim alone.
//
// A claim's elements over the trials are drawn together (Rounds in
// lib/Verify/Elements.h): every sign slot is flipped in some trial, every
// permutation is a derangement in the first, and claims with several sign
// slots (Z2, B, rope "sign") get one element more on the first trial's inputs,
// so that a claim wrong on one coordinate fails on every seed.
//
// Each run also checks a negative control (a deliberately wrong transform)
// that must fail; if it passes, the run fails. A control that changes nothing
// at all is inconclusive (the outputs do not depend on that weight) and is
// reported as such without failing the run.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_VERIFY_VERIFY_H
#define SYMOC_VERIFY_VERIFY_H

#include <nlohmann/json.hpp>
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

namespace symoc {

struct VerifyOptions {
  uint64_t seed = 0;
  int trials = 3;
  /// Sizes for symbolic input dimensions (dim_param name -> size).
  std::map<std::string, int64_t> dims;
  /// Size of a symbolic dimension that `dims` does not give (0: an error).
  int64_t defaultDim = 0;
  double exactTol = 1e-9;
  /// For "exact": false claims (normalization epsilon makes them approximate).
  double approxTol = 1e-3;
  /// Name of the claims document in error messages (a file name, "analysis").
  std::string claimsName = "claims";
  /// Each trial keeps every intermediate value of the untransformed run so
  /// that a claim recomputes only the part of the graph its weights reach;
  /// above this many bytes it runs the whole model per claim instead
  /// (0: never keep).
  size_t cacheLimitBytes = size_t(2) << 30;
  /// Check claims by composition (see above); false: each claim alone.
  bool compose = true;
  /// A shift claim that names an output is compared after a softmax over its axis (what a
  /// cross-entropy loss sees); false (a loss of mse or none given): compared raw.
  bool outputsSeeSoftmax = true;
  /// Integer and boolean inputs that are not Gather indices (masks, flags) all 1; false:
  /// 0 or 1 at random, the first entry of every row 1 (verify falls back to all 1 when the
  /// model does not run that way: such inputs are sizes).
  bool masksAllSet = false;
};

struct ClaimResult {
  std::string id, kind, description, note;
  bool exact = true;
  bool pass = false;
  double maxRelErr = 0, tol = 0;
  int trials = 0;
  /// Approximate claims ("exact": false) are checked exactly on the model with
  /// every normalization's epsilon set to 0 (maxRelErr, tol); this is the
  /// error on the model as it is, for information (-1: not measured).
  double relErrAtEpsilon = -1;
  /// Failed claims only: how far rounding-level noise (every weight moved by one unit in
  /// the last place of double, random signs) moved the outputs on the inputs where the
  /// claim failed (-1: not measured). A failure within kRoundingMargin of it is
  /// `unresolved`, not refuted: the model amplifies rounding past the tolerance there, so
  /// a transform that only reorders sums (a permutation) changes the outputs that much too.
  /// Unresolved claims do not pass either (compile builds nothing on them).
  double roundingRelErr = -1;
  bool unresolved = false;
  /// Set (with unresolved) when a member is a weight the outputs read through the graph but
  /// that moved them not at all at the sampled inputs (a layer that is dead there): the
  /// claim was not seen, so it does not pass.
  std::string blindOn;
};

/// A failure is unresolved when its error is at most this times the rounding noise's.
constexpr double kRoundingMargin = 100;

struct VerifyReport {
  std::string model;
  uint64_t seed = 0;
  int trials = 0;
  std::vector<ClaimResult> claims;
  /// The negative control: a wrong transform that must FAIL (pass == false).
  bool controlRan = false;
  ClaimResult control;
  /// Set when the control changed nothing: "the output does not depend on X".
  std::string controlInconclusive;
  /// Claims checked by composition (VerifyOptions::compose).
  bool composed = true;
  /// Forward runs of the model (full runs and partial reruns).
  int forwards = 0;
  /// Symbolic dimensions given VerifyOptions::defaultDim ("batch=2").
  std::vector<std::string> assumedDims;
  /// What the report should say besides the claims (the weights it was checked at).
  std::vector<std::string> notes;
  /// Every claim passes and the control does not pass (it fails, or it is
  /// inconclusive because the outputs do not depend on the weight it changes).
  bool ok() const;
  /// Ids of the claims that fail (refuted; not the unresolved ones).
  std::vector<std::string> failedIds() const;
  /// Ids of the claims whose failure rounding noise explains (ClaimResult::unresolved).
  std::vector<std::string> unresolvedIds() const;
};

/// What --no-verify still checks: every claim of `doc` fits the model (members name
/// initializers or Constants, axes, offsets, extents and strides inside them, n, known
/// groups), without running it. Throws symoc::Error (one line naming `docName`).
void checkClaimsFit(const onnx::ModelProto &model, const std::string &docName,
                    const nlohmann::json &doc);

/// Checks every entry of claims["claims"]. Throws symoc::Error (one line naming
/// the model or claims file) for unreadable weights, NaN/Inf weights, members
/// that do not fit their initializers, inputs whose sizes are unknown, or a
/// model the evaluator cannot run.
VerifyReport verify(const onnx::ModelProto &model, const std::string &modelPath,
                    const nlohmann::json &claims, const VerifyOptions &options);

nlohmann::json toJson(const VerifyReport &report);

/// One line per claim ("PASS c3 linear S(128) relu hidden  rel err 3.1e-16 <= 1e-9"),
/// the control line, and a summary line.
void printReport(const VerifyReport &report, std::ostream &os);

} // namespace symoc

#endif // SYMOC_VERIFY_VERIFY_H
