//===- ParameterNames.cpp - Torch parameter names in dynamo exports -------===//
//
// torch's dynamo exporter records, per initializer, value_info metadata
// (ValueInfoProto.metadata_props, field 4, newer than ONNX 1.12's proto, so
// read from the unknown fields protobuf keeps):
//   pkg.torch.export.graph_signature.InputSpec.kind = PARAMETER | BUFFER | ...
//   pkg.onnxscript.optimizer.folded_from = "['model.layers.0.mlp.up_proj.weight']"
// With optimize=True (the default) the optimizer folds Transpose(W) of every
// Linear weight into a new initializer val_N, and Unsqueeze(g) of norm gains
// into another; only folded_from still names the parameter. Such an
// initializer becomes the parameter again, seen through a Transpose (or a
// Reshape), so claims, plans and generated code are keyed by the torch name
// and the optimizer steps the tensor in its torch layout.
//
// Everything else float that is not a PARAMETER is a constant (buffers, masks
// and tables the exporter computed). What the file no longer separates
// (merged equal initializers, BatchNorm folded into a conv, parameters folded
// together with constants) is reported as a note.
//
//===----------------------------------------------------------------------===//

#include "Rewrite.h"

#include "symoc/ModelIO/ModelIO.h"

#include <google/protobuf/unknown_field_set.h>

#include <algorithm>
#include <cstring>
#include <map>

namespace symoc {
namespace adapter {
namespace {

constexpr const char *kKind = "pkg.torch.export.graph_signature.InputSpec.kind";
constexpr const char *kFoldedFrom = "pkg.onnxscript.optimizer.folded_from";

using Props = std::map<std::string, std::string>;

/// metadata_props (field 4) of a ValueInfoProto, from its unknown fields.
Props metadataOf(const onnx::ValueInfoProto &vi) {
  Props p;
  const auto &fields = vi.unknown_fields();
  for (int i = 0; i < fields.field_count(); ++i) {
    const auto &f = fields.field(i);
    if (f.number() != 4 || f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED)
      continue;
    onnx::StringStringEntryProto e;
    if (e.ParseFromString(f.length_delimited()))
      p[e.key()] = e.value();
  }
  return p;
}

/// "['a.b', 'c']" -> {"a.b", "c"}
std::vector<std::string> parseList(const std::string &s) {
  std::vector<std::string> out;
  size_t i = 0;
  while ((i = s.find_first_of("'\"", i)) != std::string::npos) {
    char q = s[i];
    size_t j = s.find(q, i + 1);
    if (j == std::string::npos)
      break;
    out.push_back(s.substr(i + 1, j - i - 1));
    i = j + 1;
  }
  return out;
}

bool isFloat(int32_t dt) {
  return dt == onnx::TensorProto::FLOAT || dt == onnx::TensorProto::DOUBLE ||
         dt == onnx::TensorProto::FLOAT16 || dt == onnx::TensorProto::BFLOAT16;
}

/// A torch module path: dotted (val_12, add_3, arange are exporter values).
bool looksLikeTorchName(const std::string &s) { return s.find('.') != std::string::npos; }

size_t elementBytes(int32_t dt) {
  switch (dt) {
  case onnx::TensorProto::DOUBLE: return 8;
  case onnx::TensorProto::FLOAT16: case onnx::TensorProto::BFLOAT16: return 2;
  default: return 4;
  }
}

/// Makes a [a, b] tensor hold its [b, a] transpose.
void transposeInPlace(onnx::TensorProto &t) {
  int64_t a = t.dims(0), b = t.dims(1);
  t.set_dims(0, b);
  t.set_dims(1, a);
  if (t.data_location() == onnx::TensorProto::EXTERNAL) {
    // Bytes stay in the file; ModelIO transposes them when it reads them.
    auto *kv = t.add_external_data();
    kv->set_key(kTransposedKey);
    kv->set_value("1");
    return;
  }
  if (t.has_raw_data()) {
    size_t eb = elementBytes(t.data_type());
    const std::string &src = t.raw_data();
    std::string dst(src.size(), '\0');
    for (int64_t i = 0; i < a; ++i)
      for (int64_t j = 0; j < b; ++j)
        std::memcpy(&dst[size_t(j * a + i) * eb], &src[size_t(i * b + j) * eb], eb);
    t.set_raw_data(dst);
    return;
  }
  auto permute = [&](auto *field) {
    auto copy = *field;
    for (int64_t i = 0; i < a; ++i)
      for (int64_t j = 0; j < b; ++j)
        field->Set(int(j * a + i), copy.Get(int(i * b + j)));
  };
  if (t.float_data_size())
    permute(t.mutable_float_data());
  else if (t.double_data_size())
    permute(t.mutable_double_data());
  else if (t.int32_data_size())
    permute(t.mutable_int32_data());
}

std::string joinNames(const std::vector<std::string> &v, size_t limit = 4) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < limit; ++i)
    s += (i ? ", " : "") + v[i];
  if (v.size() > limit)
    s += ", ... (" + std::to_string(v.size()) + " in all)";
  return s;
}

} // namespace

void recoverParameterNames(onnx::ModelProto &model, Context &ctx,
                           std::vector<std::string> &notes) {
  auto &g = *model.mutable_graph();
  std::map<std::string, Props> meta;
  bool torch = false;
  for (const auto &vi : g.value_info()) {
    Props p = metadataOf(vi);
    if (p.count(kKind) || p.count(kFoldedFrom))
      torch = true;
    if (!p.empty())
      meta[vi.name()] = std::move(p);
  }
  if (!torch)
    return;

  // Op types and operand positions of each value's uses (the node list is
  // replaced below, so no pointers into it).
  std::map<std::string, std::vector<std::string>> users;
  std::map<std::string, std::vector<int>> userIndex;
  for (const auto &n : g.node())
    for (int k = 0; k < n.input_size(); ++k)
      users[n.input(k)].push_back(n.op_type()), userIndex[n.input(k)].push_back(k);
  std::set<std::string> names;
  for (const auto &t : g.initializer())
    names.insert(t.name());

  std::vector<onnx::NodeProto> views;       // Transpose / Reshape to the folded name
  std::vector<std::string> recovered, foldedParams, fusedBN, constants, unnamed;
  std::set<int> dropped;
  std::set<std::string> knownParams;
  for (int i = 0; i < g.initializer_size(); ++i) {
    onnx::TensorProto &t = *g.mutable_initializer(i);
    if (!isFloat(t.data_type()) || numElements(t) <= 1)
      continue;
    const Props &p = meta[t.name()];
    auto kind = p.find(kKind);
    if (kind != p.end()) {
      if (kind->second == "PARAMETER")
        knownParams.insert(t.name());
      else
        ctx.constants.insert(t.name()); // buffers and constant tensors
      continue;
    }
    auto folded = p.find(kFoldedFrom);
    if (folded == p.end()) {
      // No metadata: the BatchNorm fusion rewrote a conv's weight (kept name,
      // new values) and made up its bias "<weight>_bias".
      std::string base = t.name().size() > 5 ? t.name().substr(0, t.name().size() - 5) : "";
      if (t.name().size() > 5 && t.name().compare(t.name().size() - 5, 5, "_bias") == 0 &&
          names.count(base)) {
        fusedBN.push_back(base);
        ctx.constants.insert(t.name());
      } else if (!looksLikeTorchName(t.name())) {
        ctx.constants.insert(t.name());
        // A matrix used as a MatMul weight is a folded Linear weight whose name
        // the exporter did not record (onnxscript before 0.5.3).
        const auto &use = users[t.name()];
        bool weight = t.dims_size() == 2 && !use.empty();
        for (size_t u = 0; weight && u < use.size(); ++u)
          weight = use[u] == "MatMul" && userIndex[t.name()][u] == 1;
        (weight ? unnamed : constants).push_back(t.name());
      }
      continue;
    }
    std::vector<std::string> sources = parseList(folded->second);
    std::vector<std::string> params;
    for (const auto &s : sources)
      if (looksLikeTorchName(s))
        params.push_back(s);
    const auto &use = users[t.name()];
    bool single = sources.size() == 1 && params.size() == 1;
    bool linear = single && t.dims_size() == 2 && !use.empty();
    for (size_t u = 0; linear && u < use.size(); ++u)
      linear = use[u] == "MatMul" && userIndex[t.name()][u] == 1;
    int nonUnit = 0;
    for (auto d : t.dims())
      nonUnit += d != 1;
    bool vector = single && !linear && nonUnit <= 1;
    if (!linear && !vector) {
      ctx.constants.insert(t.name());
      if (!params.empty())
        foldedParams.push_back(t.name() + " (from " + joinNames(params, 2) + ")");
      else
        constants.push_back(t.name());
      continue;
    }
    // The parameter, seen through a Transpose (Linear) or a Reshape (vector).
    const std::string &param = params[0];
    std::string folded_name = t.name();
    std::vector<int64_t> viewShape(t.dims().begin(), t.dims().end());
    onnx::NodeProto view;
    view.set_name("symoc_view_of_" + param);
    view.add_input(param);
    view.add_output(folded_name);
    if (linear) {
      view.set_op_type("Transpose");
      auto *perm = view.add_attribute();
      perm->set_name("perm");
      perm->set_type(onnx::AttributeProto::INTS);
      perm->add_ints(1);
      perm->add_ints(0);
    } else {
      view.set_op_type("Reshape");
      view.add_input(ctx.addInts(viewShape, {int64_t(viewShape.size())}, "view_shape"));
    }
    views.push_back(view);
    recovered.push_back(param);
    knownParams.insert(param);
    if (names.count(param)) {
      dropped.insert(i); // tied: the parameter is already an initializer
      continue;
    }
    t.set_name(param);
    names.insert(param);
    if (linear) {
      transposeInPlace(t);
    } else {
      int64_t n = numElements(t);
      t.clear_dims();
      t.add_dims(n);
    }
  }
  if (!dropped.empty()) {
    google::protobuf::RepeatedPtrField<onnx::TensorProto> kept;
    for (int i = 0; i < g.initializer_size(); ++i)
      if (!dropped.count(i))
        *kept.Add() = g.initializer(i);
    g.mutable_initializer()->Swap(&kept);
  }
  if (!views.empty()) {
    google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
    for (auto &v : views)
      *nodes.Add() = v;
    for (const auto &n : g.node())
      *nodes.Add() = n;
    g.mutable_node()->Swap(&nodes);
  }

  // Parameters that feed several nodes of one kind: equal initializers the
  // optimizer merged (fresh norm gains, zero biases), or weights tied in torch.
  std::vector<std::string> merged;
  for (const auto &t : g.initializer()) {
    if (!isFloat(t.data_type()) || numElements(t) <= 1 || ctx.constants.count(t.name()) ||
        numElements(t) > 4096)
      continue;
    std::map<std::string, int> byOp;
    for (const auto &op : users[t.name()])
      ++byOp[op];
    bool shared = std::any_of(byOp.begin(), byOp.end(), [](auto &kv) { return kv.second > 1; });
    if (!shared)
      continue;
    std::vector<double> v = tensorToDouble(t, ctx.path());
    if (std::all_of(v.begin(), v.end(), [&](double x) { return x == v[0]; }))
      merged.push_back(t.name());
  }

  if (!recovered.empty())
    notes.push_back("recovered " + std::to_string(recovered.size()) +
                    " torch parameter names from exporter metadata (folded_from), e.g. " +
                    joinNames(recovered, 2));
  if (!merged.empty())
    notes.push_back("the file no longer separates parameters with equal values: " +
                    joinNames(merged) + " feed several layers (torch's exporter merges "
                    "equal initializers); export with optimize=False or after training");
  if (!fusedBN.empty())
    notes.push_back("the file no longer separates BatchNorm from its conv: " +
                    joinNames(fusedBN) + " hold conv and BatchNorm folded together (the "
                    "BatchNorm parameters are gone); export with optimize=False");
  if (!foldedParams.empty())
    notes.push_back("parameters folded by the exporter into constants (not trained): " +
                    joinNames(foldedParams, 3) + "; export with optimize=False to train them");
  if (!constants.empty())
    notes.push_back(std::to_string(constants.size()) +
                    " float initializers made by the exporter are constants, not "
                    "parameters: " + joinNames(constants, 3));
  // Names that still look like exporter values are not torch names.
  for (const auto &t : g.initializer())
    if (isFloat(t.data_type()) && numElements(t) > 1 && !ctx.constants.count(t.name()) &&
        !knownParams.count(t.name()) && !looksLikeTorchName(t.name()))
      unnamed.push_back(t.name());
  if (!unnamed.empty())
    notes.push_back("parameter names could not be recovered for " + joinNames(unnamed) +
                    " (not trained): export with torch.onnx.export(..., dynamo=True, "
                    "optimize=False) to keep every parameter under its torch name");
}

} // namespace adapter
} // namespace symoc
