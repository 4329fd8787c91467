//===- Roles.h - What a parameter does, read from the graph -----*- C++ -*-===//
#ifndef SYMOC_COMPILER_LIB_ANALYSIS_ROLES_H
#define SYMOC_COMPILER_LIB_ANALYSIS_ROLES_H

#include "symoc/Analysis/SpaceAnalysis.h"
#include "symoc/Dialect/Graph/GraphOps.h"

#include <set>
#include <string>

namespace symoc {

/// The roles of a parameter, from how the graph uses it (never from its name):
/// embedding, positional_embedding, linear, lm_head, attn_q/k/v/o (attn_qkv for
/// a fused projection), mlp_in/mlp_out, swiglu_gate/up/down, conv,
/// conv_depthwise, norm_gain, norm_bias, norm_statistics, gain, bias,
/// prelu_slope, other. `outputs` are the graph's returned values.
std::set<std::string> inferRoles(graph::ParamOp param,
                                 const std::set<const void *> &outputs);

/// Mixture of experts: after the spaces are known, every parameter whose
/// leading axis is the space of a router's rows (the axis its in-graph logit
/// shift acts on), when that space is one that positions select from
/// (`selected`: the sources of TopK indices), is a stacked expert tensor: adds
/// role `moe_experts` (and drops `other`, `embedding`). The router's own
/// weight and bias are left alone.
void addExpertRoles(std::vector<Block> &blocks, const std::vector<Claim> &claims,
                    const std::set<std::string> &selected);

} // namespace symoc

#endif
