//===- Rotary.cpp - RotaryEmbedding-23 as rotate-half / interleaved ops ---===//
//
//   y = x * cos + g(x) * sin   on the first rotary_embedding_dim channels,
// g = rotate-half Concat(-x2, x1), or the interleaved pair swap, with the
// caches gathered at position_ids and repeated to the rotated width: the
// spelling symoc-recompose-rotary recognizes (when the tables are constants).
//
//===----------------------------------------------------------------------===//

#include "Rewrite.h"

namespace symoc {
namespace adapter {
namespace {

void rotary(Context &ctx, const onnx::NodeProto &n, int64_t v, std::vector<onnx::NodeProto> &out) {
  const std::string name = nodeName(n);
  if (n.input_size() < 3)
    ctx.fail(n, v, "needs input, cos_cache and sin_cache");
  auto xs = ctx.shapeButBatch(n.input(0)); // the batch is never read
  if (!xs || (xs->size() != 3 && xs->size() != 4))
    ctx.fail(n, v, "needs an input of static shape (but for the batch), 3-D or 4-D");
  bool threeD = xs->size() == 3;
  int64_t heads = attrInt(n, "num_heads", 0);
  if (threeD && heads <= 0)
    ctx.fail(n, v, "3-D input needs num_heads");
  int64_t d = threeD ? (*xs)[2] / heads : (*xs)[3];
  int64_t rd = attrInt(n, "rotary_embedding_dim", 0);
  if (rd <= 0)
    rd = d;
  if (rd % 2 || rd > d)
    ctx.fail(n, v, "rotary_embedding_dim must be even and at most the head size");
  // The caches hold one angle per rotated pair: [.., rotary_embedding_dim / 2] (the spec's
  // shapes). A wider cache would be read as rd / 2 columns by the constant table and whole by
  // the gathered one; refuse it in one line rather than build mismatched tables.
  for (int k : {1, 2})
    if (auto cs = ctx.shape(n.input(k)); cs && !cs->empty() && cs->back() > 0 && cs->back() != rd / 2)
      ctx.fail(n, v, (k == 1 ? "cos_cache" : "sin_cache") + std::string("'s last axis is ") +
                         std::to_string(cs->back()) + ", not rotary_embedding_dim / 2 = " +
                         std::to_string(rd / 2));
  bool interleaved = attrInt(n, "interleaved", 0) != 0;
  auto ints = [&](std::vector<int64_t> x) {
    return ctx.addInts(x, {int64_t(x.size())}, "i");
  };
  auto slice = [&](const std::string &x, int64_t b, int64_t e, int64_t step) {
    return ctx.op1(out, "Slice", {x, ints({b}), ints({e}), ints({-1}), ints({step})}, name);
  };
  // x in [B, S, H, D] (3-D) or [B, H, S, D] (4-D); tables broadcast over H.
  std::string x = n.input(0);
  if (threeD)
    x = ctx.op1(out, "Reshape", {x, ints({0, 0, heads, -1})}, name);
  int64_t headAxis = threeD ? 2 : 1;
  // Constant caches (and constant or absent position_ids) give constant
  // tables, computed here so the rotary pass can read them.
  auto constantTable = [&](const std::string &cache) -> std::optional<std::string> {
    auto data = ctx.floats(cache);
    auto cs = ctx.shape(cache);
    if (!data || !cs || cs->empty() || cs->back() != rd / 2)
      return std::nullopt;
    std::vector<int64_t> pos;
    int64_t batch = 1, seq = threeD ? (*xs)[1] : (*xs)[2];
    if (hasInput(n, 3)) {
      auto p = ctx.ints(n.input(3));
      auto ps = ctx.shape(n.input(3));
      if (!p || !ps || ps->size() != 2 || (*ps)[1] != seq)
        return std::nullopt;
      pos = *p;
      batch = (*ps)[0];
    } else {
      if (cs->size() != 3 || (*cs)[1] != seq)
        return std::nullopt;
      batch = (*cs)[0];
    }
    std::vector<float> full(size_t(batch * seq * rd));
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t s = 0; s < seq; ++s) {
        int64_t row = pos.empty() ? b * seq + s : pos[size_t(b * seq + s)];
        if (row < 0 || (row + 1) * (rd / 2) > int64_t(data->size()))
          return std::nullopt;
        for (int64_t k = 0; k < rd; ++k) {
          int64_t j = interleaved ? k / 2 : k % (rd / 2);
          full[size_t((b * seq + s) * rd + k)] = float((*data)[size_t(row * (rd / 2) + j)]);
        }
      }
    std::vector<int64_t> dims = threeD ? std::vector<int64_t>{batch, seq, 1, rd}
                                       : std::vector<int64_t>{batch, 1, seq, rd};
    ctx.constants.insert(cache); // its values now live in the table: never trained
    return ctx.addFloat(full, dims, "rotary_table", ctx.elemType(cache), true);
  };
  auto table = [&](const std::string &cache) {
    if (auto c = constantTable(cache))
      return *c;
    std::string t = cache;
    if (hasInput(n, 3))
      t = ctx.op1(out, "Gather", {cache, n.input(3)}, name); // [B, S, rd/2]
    t = ctx.op1(out, "Unsqueeze", {t, ints({headAxis})}, name);
    if (!interleaved) {
      std::string c = ctx.op1(out, "Concat", {t, t}, name);
      setInt(out.back(), "axis", -1);
      return c;
    }
    std::string u = ctx.op1(out, "Unsqueeze", {t, ints({-1})}, name);
    std::string c = ctx.op1(out, "Concat", {u, u}, name);
    setInt(out.back(), "axis", -1);
    return ctx.op1(out, "Reshape", {c, ints({0, 0, 0, -1})}, name);
  };
  std::string cos = table(n.input(1));
  std::string sin = table(n.input(2));
  std::string xr = rd < d ? slice(x, 0, rd, 1) : x;
  std::string rot;
  if (!interleaved) {
    std::string x1 = slice(xr, 0, rd / 2, 1), x2 = slice(xr, rd / 2, rd, 1);
    rot = ctx.op1(out, "Concat", {ctx.op1(out, "Neg", {x2}, name), x1}, name);
    setInt(out.back(), "axis", -1);
  } else {
    std::string even = slice(xr, 0, rd, 2), odd = slice(xr, 1, rd, 2);
    std::string a = ctx.op1(out, "Unsqueeze", {ctx.op1(out, "Neg", {odd}, name), ints({-1})}, name);
    std::string b = ctx.op1(out, "Unsqueeze", {even, ints({-1})}, name);
    std::string c = ctx.op1(out, "Concat", {a, b}, name);
    setInt(out.back(), "axis", -1);
    rot = ctx.op1(out, "Reshape", {c, ints({0, 0, 0, -1})}, name);
  }
  std::string y = ctx.op1(out, "Add",
                          {ctx.op1(out, "Mul", {xr, cos}, name), ctx.op1(out, "Mul", {rot, sin}, name)},
                          name);
  if (rd < d) {
    y = ctx.op1(out, "Concat", {y, slice(x, rd, d, 1)}, name);
    setInt(out.back(), "axis", -1);
  }
  if (threeD)
    ctx.node(out, "Reshape", {y, ints({0, 0, -1})}, {n.output(0)}, name);
  else
    ctx.node(out, "Identity", {y}, {n.output(0)}, name);
}

} // namespace

void addRotary(Table &t) { t[{"RotaryEmbedding", 23}] = rotary; }

} // namespace adapter
} // namespace symoc
