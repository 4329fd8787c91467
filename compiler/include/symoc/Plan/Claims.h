//===- Claims.h - Claims documents in the analysis' form ------*- C++ -*-===//
//
// `symoc compile --claims FILE` builds the plan on the claims of a file instead
// of the analysis' own; verification drops the claims that fail. Both go
// through these two functions.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_PLAN_CLAIMS_H
#define SYMOC_PLAN_CLAIMS_H

#include "symoc/Analysis/SpaceAnalysis.h"

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

namespace symoc::plan {

/// The claims of a `symoc.symmetry/2` (or /1) document (docs/symmetry-schema.md)
/// as the analysis writes them: linear members by offset, extent and stride;
/// shift and scale members by initializer, axis and role. Throws symoc::Error
/// naming `docName` for a claim without an id, a repeated id, or a form the
/// plan cannot use (an "index" list, variance "abs").
std::vector<Claim> claimsFromJson(const nlohmann::json &doc, const std::string &docName);

/// Removes the claims with these ids, and their ids from every space.
void dropClaims(AnalysisResult &result, const std::set<std::string> &ids);

} // namespace symoc::plan

#endif // SYMOC_PLAN_CLAIMS_H
