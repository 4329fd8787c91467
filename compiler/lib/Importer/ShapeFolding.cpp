//===- ShapeFolding.cpp - Folding shape arithmetic in an ONNX graph -------===//

#include "ShapeFolding.h"
#include "ShapeCompletion.h"
#include "ShapeInference.h"

#include "symoc/Importer/ShapeFunctions.h"
#include "symoc/ModelIO/Attributes.h"

#include "symoc/ModelIO/ModelIO.h"

#include <onnx/defs/schema.h>

#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <set>

namespace symoc {
namespace {

/// A small integer tensor known at import time.
struct IntTensor {
  std::vector<int64_t> dims;
  std::vector<int64_t> data;
  int32_t dtype = onnx::TensorProto::INT64;
};

constexpr size_t kMaxFoldElements = 4096;

int64_t product(const std::vector<int64_t> &d) {
  return std::accumulate(d.begin(), d.end(), int64_t(1), std::multiplies<>());
}

/// The element count of dims, or -1 when a dim is negative or the count
/// exceeds what is folded.
int64_t boundedCount(const std::vector<int64_t> &dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0 || (d > 0 && n > int64_t(kMaxFoldElements) / d))
      return -1;
    n *= d;
  }
  return n;
}

bool wellFormed(const IntTensor &t) {
  int64_t n = 1;
  for (int64_t d : t.dims) {
    if (d < 0 || (d > 0 && n > int64_t(kMaxFoldElements) / d + 1))
      return false;
    n *= d;
  }
  return n == int64_t(t.data.size());
}

bool isIntType(int32_t dt) {
  switch (dt) {
  case onnx::TensorProto::INT64: case onnx::TensorProto::INT32:
  case onnx::TensorProto::INT16: case onnx::TensorProto::INT8:
  case onnx::TensorProto::UINT8: case onnx::TensorProto::UINT16:
  case onnx::TensorProto::UINT32: case onnx::TensorProto::UINT64:
  case onnx::TensorProto::BOOL:
    return true;
  default:
    return false;
  }
}

/// numpy-style broadcast of two int tensors through a binary function.
std::optional<IntTensor> broadcast2(const IntTensor &a, const IntTensor &b,
                                    const std::function<int64_t(int64_t, int64_t)> &f) {
  size_t r = std::max(a.dims.size(), b.dims.size());
  std::vector<int64_t> dims(r);
  for (size_t i = 0; i < r; ++i) {
    int64_t da = i + a.dims.size() >= r ? a.dims[i + a.dims.size() - r] : 1;
    int64_t db = i + b.dims.size() >= r ? b.dims[i + b.dims.size() - r] : 1;
    if (da != db && da != 1 && db != 1)
      return std::nullopt;
    dims[i] = da == 1 ? db : da; // 0 broadcast with 1 is 0
  }
  if (boundedCount(dims) < 0)
    return std::nullopt;
  IntTensor out;
  out.dims = dims;
  out.dtype = a.dtype;
  int64_t n = product(dims);
  out.data.resize(n);
  for (int64_t k = 0; k < n; ++k) {
    int64_t rem = k, ia = 0, ib = 0, sa = 1, sb = 1;
    for (size_t i = r; i-- > 0;) {
      int64_t idx = rem % dims[i];
      rem /= dims[i];
      if (i + a.dims.size() >= r) {
        int64_t d = a.dims[i + a.dims.size() - r];
        ia += (d == 1 ? 0 : idx) * sa;
        sa *= d;
      }
      if (i + b.dims.size() >= r) {
        int64_t d = b.dims[i + b.dims.size() - r];
        ib += (d == 1 ? 0 : idx) * sb;
        sb *= d;
      }
    }
    out.data[k] = f(a.data[ia], b.data[ib]);
  }
  return out;
}

class Folder {
public:
  Folder(onnx::ModelProto &m, const std::string &path, ShapeCompleter *completer = nullptr)
      : model(m), path(path), completer(completer) {
    opset = opsetVersion(m, "");
    auto &g = *m.mutable_graph();
    for (const auto &t : g.initializer())
      if (isIntType(t.data_type()) && size_t(numElements(t)) <= kMaxFoldElements)
        known[t.name()] = fromProto(t);
    auto addShape = [&](const onnx::ValueInfoProto &vi) {
      if (!vi.type().has_tensor_type() || !vi.type().tensor_type().has_shape())
        return;
      std::vector<int64_t> dims;
      for (const auto &d : vi.type().tensor_type().shape().dim()) {
        if (!d.has_dim_value())
          return;
        dims.push_back(d.dim_value());
      }
      shapes[vi.name()] = dims;
    };
    for (const auto &vi : g.input()) addShape(vi);
    for (const auto &vi : g.value_info()) addShape(vi);
    for (const auto &vi : g.output()) addShape(vi);
    for (const auto &t : g.initializer())
      shapes[t.name()] = std::vector<int64_t>(t.dims().begin(), t.dims().end());
  }

  int run() {
    auto &g = *model.mutable_graph();
    std::set<int> folded;
    for (int i = 0; i < g.node_size(); ++i) {
      const auto &n = g.node(i);
      std::optional<std::vector<IntTensor>> outs = fold(n);
      // Every folded tensor must be well formed (no negative dims, as many
      // elements as its dims say): later folds index it by its dims.
      bool ok = outs && outs->size() == size_t(n.output_size());
      if (ok)
        for (auto &o : *outs)
          ok &= o.data.size() <= kMaxFoldElements && wellFormed(o);
      if (!ok) {
        // Not foldable: its shape function may still make its outputs'
        // shapes static, and with them the Shape nodes further down.
        if (completer) {
          completed += completer->visit(n);
          for (const auto &out : n.output())
            if (ShapeInfo s = completer->shape(out); s.isStatic())
              shapes[out] = s.dims;
        }
        continue;
      }
      for (int k = 0; k < n.output_size(); ++k) {
        known[n.output(k)] = (*outs)[k];
        shapes[n.output(k)] = (*outs)[k].dims;
        if (completer)
          completer->setValue(n.output(k), (*outs)[k].dims, (*outs)[k].data,
                              (*outs)[k].dtype);
      }
      folded.insert(i);
    }
    if (folded.empty())
      return 0;
    // Values still needed by the remaining nodes or the graph outputs.
    std::set<std::string> needed;
    for (int i = 0; i < g.node_size(); ++i)
      if (!folded.count(i))
        for (const auto &in : g.node(i).input())
          needed.insert(in);
    for (const auto &o : g.output())
      needed.insert(o.name());
    std::set<std::string> existing;
    for (const auto &t : g.initializer())
      existing.insert(t.name());
    google::protobuf::RepeatedPtrField<onnx::NodeProto> kept;
    for (int i = 0; i < g.node_size(); ++i) {
      if (!folded.count(i)) {
        *kept.Add() = g.node(i);
        continue;
      }
      for (const auto &out : g.node(i).output()) {
        if (!needed.count(out) || existing.count(out))
          continue;
        onnx::TensorProto *t = g.add_initializer();
        const IntTensor &v = known[out];
        t->set_name(out);
        t->set_data_type(v.dtype == onnx::TensorProto::BOOL ? onnx::TensorProto::BOOL
                         : v.dtype == onnx::TensorProto::INT32 ? onnx::TensorProto::INT32
                                                               : onnx::TensorProto::INT64);
        for (auto d : v.dims)
          t->add_dims(d);
        if (t->data_type() == onnx::TensorProto::INT64)
          for (auto x : v.data) t->add_int64_data(x);
        else
          for (auto x : v.data) t->add_int32_data(int32_t(x));
        existing.insert(out);
      }
    }
    // A folded value's value_info may be rank-less from an earlier inference;
    // ONNX 1.12 prefers it to the initializer's dims and then takes a Slice's
    // computed axes for absent (default) ones: Slice(x[2,8], axes=[1]) came
    // out [1,8] (qwen3_noopt). The initializer now says it all. (Only the
    // folded values: an exporter's value_info of its own initializers carries
    // metadata that ParameterNames.cpp reads.)
    std::set<std::string> foldedNames;
    for (int i : folded)
      for (const auto &out : g.node(i).output())
        foldedNames.insert(out);
    g.mutable_node()->Swap(&kept);
    google::protobuf::RepeatedPtrField<onnx::ValueInfoProto> infos;
    for (const auto &vi : g.value_info())
      if (!foldedNames.count(vi.name()))
        *infos.Add() = vi;
    g.mutable_value_info()->Swap(&infos);
    return int(folded.size());
  }

private:
  IntTensor fromProto(const onnx::TensorProto &t) {
    IntTensor v;
    v.dims.assign(t.dims().begin(), t.dims().end());
    v.data = tensorToInt64(t, path);
    v.dtype = t.data_type();
    return v;
  }

  const IntTensor *in(const onnx::NodeProto &n, int k) {
    if (k >= n.input_size() || n.input(k).empty())
      return nullptr;
    auto it = known.find(n.input(k));
    return it == known.end() ? nullptr : &it->second;
  }

  std::optional<std::vector<IntTensor>> one(IntTensor t) {
    return std::vector<IntTensor>{std::move(t)};
  }

  std::optional<std::vector<IntTensor>> fold(const onnx::NodeProto &n) {
    if (!n.domain().empty() && n.domain() != "ai.onnx")
      return std::nullopt;
    const std::string &op = n.op_type();
    if (op == "Constant") {
      if (auto *a = attr(n, "value")) {
        if (isIntType(a->t().data_type()) &&
            size_t(numElements(a->t())) <= kMaxFoldElements)
          return one(fromProto(a->t()));
        return std::nullopt;
      }
      if (auto *a = attr(n, "value_int"))
        return one(IntTensor{{}, {a->i()}});
      if (auto *a = attr(n, "value_ints"))
        return one(IntTensor{{a->ints_size()}, {a->ints().begin(), a->ints().end()}});
      return std::nullopt;
    }
    if (op == "Shape") {
      auto it = shapes.find(n.input(0));
      if (it == shapes.end())
        return std::nullopt;
      std::vector<int64_t> d = it->second;
      int64_t r = d.size();
      int64_t s = attrInt(n, "start", 0), e = attrInt(n, "end", r);
      if (s < 0) s += r;
      if (e < 0) e += r;
      s = std::clamp<int64_t>(s, 0, r);
      e = std::clamp<int64_t>(e, s, r);
      IntTensor t;
      t.data.assign(d.begin() + s, d.begin() + e);
      t.dims = {int64_t(t.data.size())};
      return one(t);
    }
    if (op == "Size") {
      auto it = shapes.find(n.input(0));
      if (it == shapes.end())
        return std::nullopt;
      return one(IntTensor{{}, {product(it->second)}});
    }
    if (op == "Identity") {
      if (auto *a = in(n, 0)) return one(*a);
      return std::nullopt;
    }
    if (op == "Cast") {
      auto *a = in(n, 0);
      int64_t to = attrInt(n, "to", 0);
      if (!a || !isIntType(int32_t(to)))
        return std::nullopt;
      // Only to types the folded initializer is written as (INT64, INT32, BOOL) and only
      // values the target holds: a Cast to uint8 wraps 260 to 4, which folding as 260 got
      // wrong (a session-35 audit: a Reshape target, then a false S(260)).
      if (to != onnx::TensorProto::INT64 && to != onnx::TensorProto::INT32 && to != onnx::TensorProto::BOOL)
        return std::nullopt;
      if (to == onnx::TensorProto::INT32)
        for (int64_t x : a->data)
          if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max())
            return std::nullopt;
      IntTensor t = *a;
      t.dtype = int32_t(to);
      if (to == onnx::TensorProto::BOOL)
        for (auto &x : t.data) x = x != 0;
      return one(t);
    }
    if (op == "Gather") {
      auto *d = in(n, 0), *idx = in(n, 1);
      if (!d || !idx || d->dims.size() != 1 || attrInt(n, "axis", 0) != 0)
        return std::nullopt;
      IntTensor t;
      t.dims = idx->dims;
      t.dtype = d->dtype;
      for (int64_t i : idx->data) {
        int64_t j = i < 0 ? i + d->dims[0] : i;
        if (j < 0 || j >= d->dims[0])
          return std::nullopt;
        t.data.push_back(d->data[j]);
      }
      return one(t);
    }
    if (op == "Unsqueeze" || op == "Squeeze") {
      auto *a = in(n, 0);
      if (!a)
        return std::nullopt;
      std::optional<std::vector<int64_t>> axes = attrInts(n, "axes");
      if (!axes && in(n, 1))
        axes = in(n, 1)->data;
      // Axes named but known only at run time: not "every size-1 axis".
      if (!axes && n.input_size() > 1 && !n.input(1).empty())
        return std::nullopt;
      IntTensor t = *a;
      if (op == "Unsqueeze") {
        if (!axes)
          return std::nullopt;
        int64_t r = int64_t(a->dims.size() + axes->size());
        std::vector<bool> isNew(r, false);
        for (int64_t ax : *axes) {
          int64_t k = ax < 0 ? ax + r : ax;
          if (k < 0 || k >= r || isNew[k])
            return std::nullopt; // invalid axes: leave the node to inference
          isNew[k] = true;
        }
        t.dims.clear();
        size_t k = 0;
        for (int64_t i = 0; i < r; ++i)
          t.dims.push_back(isNew[i] ? 1 : a->dims[k++]);
      } else {
        int64_t r = a->dims.size();
        if (axes)
          for (int64_t ax : *axes) {
            int64_t k = ax < 0 ? ax + r : ax;
            if (k < 0 || k >= r || a->dims[k] != 1)
              return std::nullopt; // invalid: leave it to shape inference
          }
        t.dims.clear();
        for (int64_t i = 0; i < r; ++i) {
          bool drop = false;
          if (axes) {
            for (int64_t ax : *axes)
              drop |= (ax < 0 ? ax + r : ax) == i;
          } else {
            drop = a->dims[i] == 1;
          }
          if (!drop)
            t.dims.push_back(a->dims[i]);
        }
      }
      return one(t);
    }
    if (op == "Concat") {
      IntTensor t;
      int64_t total = 0;
      for (int k = 0; k < n.input_size(); ++k) {
        auto *a = in(n, k);
        if (!a || a->dims.size() != 1)
          return std::nullopt;
        t.data.insert(t.data.end(), a->data.begin(), a->data.end());
        total += a->dims[0];
        t.dtype = a->dtype;
      }
      t.dims = {total};
      return one(t);
    }
    if (op == "Slice") {
      // Any rank (torch's F.pad reverses its pads with a 2-D step -1 Slice).
      auto *a = in(n, 0);
      if (!a || !wellFormed(*a))
        return std::nullopt;
      std::optional<std::vector<int64_t>> starts, ends, axes, steps;
      if (opset < 10) {
        starts = attrInts(n, "starts");
        ends = attrInts(n, "ends");
        axes = attrInts(n, "axes");
      } else {
        if (auto *v = in(n, 1)) starts = v->data;
        if (auto *v = in(n, 2)) ends = v->data;
        if (auto *v = in(n, 3)) axes = v->data;
        if (auto *v = in(n, 4)) steps = v->data;
        if ((n.input_size() > 3 && !n.input(3).empty() && !axes) ||
            (n.input_size() > 4 && !n.input(4).empty() && !steps))
          return std::nullopt;
      }
      if (!starts || !ends)
        return std::nullopt;
      auto ranges = resolveSlice(a->dims, *starts, *ends, axes ? &*axes : nullptr,
                                 steps ? &*steps : nullptr);
      if (!ranges)
        return std::nullopt;
      IntTensor t;
      t.dtype = a->dtype;
      for (const SliceAxis &r : *ranges)
        t.dims.push_back(r.count);
      std::vector<int64_t> strides(a->dims.size(), 1);
      for (size_t i = a->dims.size(); i-- > 1;)
        strides[i - 1] = strides[i] * a->dims[i];
      const int64_t count = product(t.dims);
      for (int64_t k = 0; k < count; ++k) {
        int64_t rem = k, src = 0;
        for (size_t i = t.dims.size(); i-- > 0;) {
          int64_t idx = rem % t.dims[i];
          rem /= t.dims[i];
          src += ((*ranges)[i].first + idx * (*ranges)[i].step) * strides[i];
        }
        t.data.push_back(a->data[src]);
      }
      return one(t);
    }
    if (op == "Transpose") {
      auto *a = in(n, 0);
      if (!a || !wellFormed(*a))
        return std::nullopt;
      const int64_t r = a->dims.size();
      std::vector<int64_t> perm(r);
      for (int64_t i = 0; i < r; ++i)
        perm[i] = r - 1 - i;
      if (auto p = attrInts(n, "perm"))
        perm = *p;
      std::vector<bool> used(r, false);
      if (int64_t(perm.size()) != r)
        return std::nullopt;
      for (int64_t p : perm) {
        if (p < 0 || p >= r || used[p])
          return std::nullopt;
        used[p] = true;
      }
      IntTensor t;
      t.dtype = a->dtype;
      std::vector<int64_t> strides(r, 1);
      for (int64_t i = r - 1; i > 0; --i)
        strides[i - 1] = strides[i] * a->dims[i];
      for (int64_t i = 0; i < r; ++i)
        t.dims.push_back(a->dims[perm[i]]);
      const int64_t count = product(t.dims);
      for (int64_t k = 0; k < count; ++k) {
        int64_t rem = k, src = 0;
        for (int64_t i = r - 1; i >= 0; --i) {
          src += (rem % t.dims[i]) * strides[perm[i]];
          rem /= t.dims[i];
        }
        t.data.push_back(a->data[src]);
      }
      return one(t);
    }
    static const std::map<std::string, std::function<int64_t(int64_t, int64_t)>> binary = {
        {"Add", [](int64_t x, int64_t y) { return x + y; }},
        {"Sub", [](int64_t x, int64_t y) { return x - y; }},
        {"Mul", [](int64_t x, int64_t y) { return x * y; }},
        {"Div", [](int64_t x, int64_t y) { return y ? x / y : 0; }},
        {"Equal", [](int64_t x, int64_t y) { return int64_t(x == y); }},
        {"Less", [](int64_t x, int64_t y) { return int64_t(x < y); }},
        {"Greater", [](int64_t x, int64_t y) { return int64_t(x > y); }},
        {"Max", [](int64_t x, int64_t y) { return std::max(x, y); }},
        {"Min", [](int64_t x, int64_t y) { return std::min(x, y); }},
    };
    // Mod: fmod = 0 takes the divisor's sign (Python's %), fmod = 1 the
    // dividend's (C's %); torch's padding to a window multiple uses it.
    static const std::function<int64_t(int64_t, int64_t)> pyMod = [](int64_t x, int64_t y) {
      int64_t r = x % y;
      return r != 0 && ((r < 0) != (y < 0)) ? r + y : r;
    };
    static const std::function<int64_t(int64_t, int64_t)> cMod = [](int64_t x, int64_t y) {
      return x % y;
    };
    auto it = binary.find(op);
    const std::function<int64_t(int64_t, int64_t)> *f =
        it != binary.end() ? &it->second
        : op == "Mod"      ? (attrInt(n, "fmod", 0) ? &cMod : &pyMod)
                           : nullptr;
    if (f && n.input_size() == 2) {
      auto *a = in(n, 0), *b = in(n, 1);
      if (!a || !b)
        return std::nullopt;
      if (op == "Div" || op == "Mod") {
        for (auto x : b->data)
          if (x == 0 || x == -1) // -1: INT64_MIN / -1 overflows; rare in shapes
            return std::nullopt;
      }
      auto r = broadcast2(*a, *b, *f);
      if (!r)
        return std::nullopt;
      if (op == "Equal" || op == "Less" || op == "Greater")
        r->dtype = onnx::TensorProto::BOOL;
      return one(*r);
    }
    if (op == "Not") {
      auto *a = in(n, 0);
      if (!a) return std::nullopt;
      IntTensor t = *a;
      for (auto &x : t.data) x = !x;
      return one(t);
    }
    if (op == "Where") {
      auto *c = in(n, 0), *a = in(n, 1), *b = in(n, 2);
      if (!c || !a || !b)
        return std::nullopt;
      auto ab = broadcast2(*a, *b, [](int64_t x, int64_t) { return x; });
      auto ba = broadcast2(*b, *a, [](int64_t x, int64_t) { return x; });
      if (!ab || !ba)
        return std::nullopt;
      auto r = broadcast2(*c, *ab, [](int64_t cc, int64_t x) { return cc; });
      auto ra = broadcast2(*ab, *c, [](int64_t x, int64_t) { return x; });
      auto rb = broadcast2(*ba, *c, [](int64_t x, int64_t) { return x; });
      if (!r || !ra || !rb)
        return std::nullopt;
      IntTensor t = *ra;
      for (size_t k = 0; k < t.data.size(); ++k)
        t.data[k] = r->data[k] ? ra->data[k] : rb->data[k];
      return one(t);
    }
    if (op == "Expand") {
      // numpy broadcast of the data against the target shape (torch's
      // repeat_interleave expands its repeat counts this way).
      auto *a = in(n, 0), *s = in(n, 1);
      if (!a || !s || s->dims.size() != 1)
        return std::nullopt;
      if (boundedCount(s->data) < 0)
        return std::nullopt;
      IntTensor ones;
      ones.dims = s->data;
      ones.data.assign(product(s->data), 0);
      auto r = broadcast2(*a, ones, [](int64_t x, int64_t) { return x; });
      if (!r)
        return std::nullopt;
      r->dtype = a->dtype;
      return one(*r);
    }
    if (op == "Split") {
      // A 1-D int tensor split into pieces (sizes from the input, the
      // attribute, or equal parts).
      auto *a = in(n, 0);
      if (!a || a->dims.size() != 1 || n.output_size() < 1)
        return std::nullopt;
      int64_t axis = attrInt(n, "axis", 0);
      if (axis != 0 && axis != -1)
        return std::nullopt;
      std::vector<int64_t> sizes;
      if (auto *sp = in(n, 1))
        sizes = sp->data;
      else if (auto s = attrInts(n, "split"))
        sizes = *s;
      else if (n.input_size() < 2 || n.input(1).empty()) {
        if (a->dims[0] % n.output_size() != 0)
          return std::nullopt;
        sizes.assign(n.output_size(), a->dims[0] / n.output_size());
      } else {
        return std::nullopt;
      }
      if (int64_t(sizes.size()) != n.output_size())
        return std::nullopt;
      std::vector<IntTensor> outs;
      int64_t offset = 0;
      for (int64_t sz : sizes) {
        if (sz < 0 || offset + sz > a->dims[0])
          return std::nullopt;
        IntTensor t;
        t.dtype = a->dtype;
        t.dims = {sz};
        t.data.assign(a->data.begin() + offset, a->data.begin() + offset + sz);
        outs.push_back(t);
        offset += sz;
      }
      if (offset != a->dims[0])
        return std::nullopt;
      return outs;
    }
    if (op == "ConstantOfShape") {
      auto *s = in(n, 0);
      if (!s)
        return std::nullopt;
      int64_t fill = 0;
      int32_t dt = onnx::TensorProto::FLOAT;
      if (auto *a = attr(n, "value")) {
        dt = a->t().data_type();
        if (!isIntType(dt))
          return std::nullopt;
        const std::vector<int64_t> value = tensorToInt64(a->t(), path);
        if (value.size() != 1) // the spec's one-element tensor; else not folded (the importer says why)
          return std::nullopt;
        fill = value[0];
      } else {
        return std::nullopt; // float zeros: not shape data
      }
      if (boundedCount(s->data) < 0)
        return std::nullopt;
      IntTensor t;
      t.dims = s->data;
      t.dtype = dt;
      t.data.assign(product(s->data), fill);
      return one(t);
    }
    if (op == "Range") {
      auto *s = in(n, 0), *l = in(n, 1), *d = in(n, 2);
      // Scalars by the spec; anything else is left to the importer's checks.
      if (!s || !l || !d || s->data.size() != 1 || l->data.size() != 1 || d->data.size() != 1 || d->data[0] == 0)
        return std::nullopt;
      IntTensor t;
      t.dtype = s->dtype;
      int64_t st = s->data[0], lim = l->data[0], dl = d->data[0];
      int64_t count = std::max<int64_t>(0, (lim - st + dl + (dl > 0 ? -1 : 1)) / dl);
      if (count > int64_t(kMaxFoldElements))
        return std::nullopt;
      for (int64_t i = 0; i < count; ++i) t.data.push_back(st + i * dl);
      t.dims = {count};
      return one(t);
    }
    if (op == "Reshape") {
      auto *a = in(n, 0), *s = in(n, 1);
      if (!a || !s)
        return std::nullopt;
      std::vector<int64_t> dims = s->data;
      int64_t known = 1, neg = -1;
      const bool allowZero = opset >= 14 && attrInt(n, "allowzero", 0) != 0; // 0 is a size then
      for (size_t i = 0; i < dims.size(); ++i) {
        if (dims[i] == 0 && !allowZero && i < a->dims.size()) dims[i] = a->dims[i];
        if (dims[i] == -1) neg = int64_t(i);
        else known *= dims[i];
      }
      if (neg >= 0)
        dims[neg] = known ? int64_t(a->data.size()) / known : 0;
      if (product(dims) != int64_t(a->data.size()))
        return std::nullopt;
      IntTensor t = *a;
      t.dims = dims;
      return one(t);
    }
    return std::nullopt;
  }

public:
  int completed = 0; // values the completer gave more shape

private:
  onnx::ModelProto &model;
  std::string path;
  ShapeCompleter *completer;
  int64_t opset;
  std::map<std::string, IntTensor> known;
  std::map<std::string, std::vector<int64_t>> shapes;
};

} // namespace

int foldAndCompleteShapes(onnx::ModelProto &model, const std::string &path, int &completed) {
  ShapeCompleter completer(model, path);
  Folder folder(model, path, &completer);
  int folded = folder.run();
  completed = folder.completed;
  return folded;
}

int foldShapeArithmetic(onnx::ModelProto &model, const std::string &path) {
  int total = 0;
  // Folding can make new shapes static, which can enable more folding.
  for (int round = 0; round < 4; ++round) {
    int n = Folder(model, path).run();
    total += n;
    if (n == 0)
      break;
    inferShapes(model, path);
  }
  return total;
}

} // namespace symoc
