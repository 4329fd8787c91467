//===- Attention.cpp - Attention-23/24 as MatMul / Softmax ----------------===//
//
// softmax(Q K^T * scale [softcap] + mask) V per head, in the form exporters
// wrote before opset 23, so the existing rules see the heads (Reshape +
// Transpose of 3-D inputs), GQA (K and V repeated over the query heads of
// their group with Unsqueeze + Expand + Reshape, as Hugging Face's repeat_kv)
// and the causal mask (a constant added to the scores).
//
//===----------------------------------------------------------------------===//

#include "Rewrite.h"

#include <cmath>
#include <limits>

namespace symoc {
namespace adapter {
namespace {

void attention(Context &ctx, const onnx::NodeProto &n, int64_t v,
               std::vector<onnx::NodeProto> &out) {
  const std::string name = nodeName(n);
  if (n.input_size() < 3 || !hasInput(n, 0) || !hasInput(n, 1) || !hasInput(n, 2))
    ctx.fail(n, v, "needs Q, K and V");
  if (hasInput(n, 4) || hasInput(n, 5))
    ctx.fail(n, v, "past_key / past_value (a KV cache) are not supported; export without "
                   "a cache (use_cache=False)");
  if (hasInput(n, 6))
    ctx.fail(n, v, "nonpad_kv_seqlen is not supported");
  for (int k = 1; k < n.output_size(); ++k)
    if (!n.output(k).empty())
      ctx.fail(n, v, "only the output Y is supported (present_key, present_value and "
                     "qk_matmul_output are not)");
  auto rank = ctx.rank(n.input(0));
  if (!rank || (*rank != 3 && *rank != 4))
    ctx.fail(n, v, "Q must have a known rank of 3 or 4");
  bool threeD = *rank == 3;
  int64_t qHeads = attrInt(n, "q_num_heads", 0), kvHeads = attrInt(n, "kv_num_heads", 0);
  // The batch may stay symbolic: the rewrite reads heads, lengths and head sizes only.
  auto qs = ctx.shapeButBatch(n.input(0)), ks = ctx.shapeButBatch(n.input(1)),
       vs = ctx.shapeButBatch(n.input(2));
  if (!qs || !ks || !vs)
    ctx.fail(n, v, "needs static shapes of Q, K and V (but for the batch)");
  if (ks->size() != qs->size() || vs->size() != qs->size())
    ctx.fail(n, v, "Q, K and V must have the same rank");
  if (threeD && (qHeads <= 0 || kvHeads <= 0))
    ctx.fail(n, v, "3-D inputs need q_num_heads and kv_num_heads");
  if (!threeD) {
    qHeads = (*qs)[1];
    kvHeads = (*ks)[1];
  }
  int64_t dk = threeD ? (*qs)[2] / qHeads : (*qs)[3];
  int64_t dv = threeD ? (*vs)[2] / kvHeads : (*vs)[3];
  int64_t sq = threeD ? (*qs)[1] : (*qs)[2], skv = threeD ? (*ks)[1] : (*ks)[2];
  if (kvHeads <= 0 || qHeads % kvHeads)
    ctx.fail(n, v, "query heads (" + std::to_string(qHeads) +
                       ") are not a multiple of key/value heads (" + std::to_string(kvHeads) +
                       ")");
  auto heads = [&](const std::string &x, int64_t h) {
    if (!threeD)
      return x;
    std::string r = ctx.op1(out, "Reshape", {x, ctx.addInts({0, 0, h, -1}, {4}, "shape")}, name);
    std::string t = ctx.op1(out, "Transpose", {r}, name);
    setInts(out.back(), "perm", {0, 2, 1, 3});
    return t;
  };
  auto repeat = [&](const std::string &x, int64_t d) {
    if (qHeads == kvHeads)
      return x;
    int64_t groups = qHeads / kvHeads;
    std::string u = ctx.op1(out, "Unsqueeze", {x, ctx.addInts({2}, {1}, "axes")}, name);
    std::string e =
        ctx.op1(out, "Expand", {u, ctx.addInts({1, 1, groups, 1, 1}, {5}, "shape")}, name);
    return ctx.op1(out, "Reshape", {e, ctx.addInts({0, qHeads, -1, d}, {4}, "shape")}, name);
  };
  int32_t type = ctx.elemType(n.input(0));
  auto scalar = [&](float c) { return ctx.addFloat({c}, {}, "c", type, true); };

  std::string q = heads(n.input(0), qHeads);
  std::string k = repeat(heads(n.input(1), kvHeads), dk);
  std::string val = repeat(heads(n.input(2), kvHeads), dv);
  std::string kt = ctx.op1(out, "Transpose", {k}, name);
  setInts(out.back(), "perm", {0, 1, 3, 2});
  std::string s = ctx.op1(out, "MatMul", {q, kt}, name);
  float scale = attrFloat(n, "scale", float(1.0 / std::sqrt(double(dk))));
  s = ctx.op1(out, "Mul", {s, scalar(scale)}, name);
  if (float cap = attrFloat(n, "softcap", 0.0f); cap > 0) {
    std::string d = ctx.op1(out, "Div", {s, scalar(cap)}, name);
    s = ctx.op1(out, "Mul", {ctx.op1(out, "Tanh", {d}, name), scalar(cap)}, name);
  }
  const float inf = std::numeric_limits<float>::infinity();
  if (attrInt(n, "is_causal", 0)) {
    // Query i sees keys j <= i (aligned at the top left, as the spec's Trilu).
    std::vector<float> mask(size_t(sq * skv), 0.0f);
    for (int64_t i = 0; i < sq; ++i)
      for (int64_t j = i + 1; j < skv; ++j)
        mask[size_t(i * skv + j)] = -inf;
    s = ctx.op1(out, "Add",
                {s, ctx.addFloat(mask, {sq, skv}, "causal_mask", type, true)},
                name);
  }
  if (hasInput(n, 3)) {
    std::string m = n.input(3);
    if (ctx.elemType(m) == onnx::TensorProto::BOOL)
      m = ctx.op1(out, "Where", {m, scalar(0.0f), scalar(-inf)}, name);
    s = ctx.op1(out, "Add", {s, m}, name);
  }
  std::string p = ctx.op1(out, "Softmax", {s}, name);
  setInt(out.back(), "axis", -1);
  if (!threeD) {
    ctx.node(out, "MatMul", {p, val}, {n.output(0)}, name);
    return;
  }
  std::string y = ctx.op1(out, "MatMul", {p, val}, name);
  std::string t = ctx.op1(out, "Transpose", {y}, name);
  setInts(out.back(), "perm", {0, 2, 1, 3});
  ctx.node(out, "Reshape", {t, ctx.addInts({0, 0, -1}, {3}, "shape")}, {n.output(0)}, name);
}

} // namespace

void addAttention(Table &t) { t[{"Attention", 23}] = t[{"Attention", 24}] = attention; }

} // namespace adapter
} // namespace symoc
