//===- Importer.cpp - ONNX to the graph dialect ---------------------------===//
//
// Keyed by op type: an op type with a curated graph op becomes that op (found
// by name in the dialect, so the list lives only in GraphOps.td); anything else
// becomes graph.onnx carrying its op_type, domain, opset and attributes.
//
//===----------------------------------------------------------------------===//

#include "symoc/Importer/Importer.h"

#include "ShapeFolding.h"
#include "ShapeInference.h"
#include "symoc/Dialect/Graph/GraphDialect.h"
#include "symoc/Dialect/Graph/GraphOps.h"
#include "symoc/Importer/ShapeFunctions.h"
#include "symoc/ModelIO/ModelIO.h"
#include "symoc/OpsetAdapter/OpsetAdapter.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Verifier.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fnmatch.h>
#include <map>
#include <set>

using namespace mlir;

namespace symoc {

void registerImportDialects(MLIRContext &ctx) {
  ctx.loadDialect<graph::GraphDialect, func::FuncDialect>();
}

bool isCuratedOp(const std::string &opType) {
  MLIRContext ctx;
  registerImportDialects(ctx);
  return RegisteredOperationName::lookup("graph." + opType, &ctx).has_value();
}

namespace {

// Integer tensors up to this many elements are read into the IR (shapes,
// axes, indices); float tensors when they are scalars, splats (one repeated
// value) or short lists (kMaxSmallFloats: Resize's scales and roi).
constexpr int64_t kMaxIntConstant = 4096;
constexpr int64_t kMaxSplatScan = 1 << 16; // float constants checked for one repeated value
constexpr int64_t kMaxSmallFloats = 16;     // float constants of different values kept whole
constexpr int64_t kMaxUniformScan = 1 << 22; // constants scanned for axes they do not vary along (uniform_axes)

class Importer {
public:
  Importer(MLIRContext &ctx, const onnx::ModelProto &model,
           const std::string &path, const ImportOptions &opts,
           ImportNotes &notes)
      : ctx(ctx), b(&ctx), model(model), path(path), opts(opts),
        notes(notes) {}

  OwningOpRef<ModuleOp> run() {
    const auto &g = model.graph();
    opset = opsetVersion(model, "");
    if (opset < 0)
      fail(path, "model does not import the default ONNX domain");
    // adaptModel brought opsets 18-24 to 17 and refused the rest.
    if (opset > kNativeOpset || opset < kMinOpset)
      fail(path, "internal error: opset " + std::to_string(opset) + " was not adapted");

    Location loc = FileLineColLoc::get(&ctx, path, 0, 0);
    OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
    module->getOperation()->setAttr("graph.opset", b.getI64IntegerAttr(opset));
    if (!model.producer_name().empty())
      module->getOperation()->setAttr(
          "graph.producer",
          b.getStringAttr(model.producer_name() + " " + model.producer_version()));

    for (const auto &t : g.initializer())
      initializers[t.name()] = &t;
    // Only ArgMax, ArgMin and TopK read repeated_axes: the scan costs nothing elsewhere.
    for (const auto &n : g.node())
      selectsPositions |= n.op_type() == "ArgMax" || n.op_type() == "ArgMin" || n.op_type() == "TopK";
    resolveFrozen();
    // Tensors the exporter computed (masks, tables, buffers) and those the opset adapter
    // copied into tables of its own or stopped reading (rotary caches, Resize-18's roi): never
    // trained, initializers and Constant nodes alike (under --constant-params).
    for (const auto &name : adapterConstants(model))
      frozen.insert(name);
    countFloatInitializers();

    // Graph inputs that are not initializers are the function's arguments.
    SmallVector<Type> argTypes;
    SmallVector<std::string> argNames;
    for (const auto &vi : g.input()) {
      if (initializers.count(vi.name()))
        continue;
      argTypes.push_back(typeOfInput(vi));
      argNames.push_back(vi.name());
    }
    SmallVector<Type> resultTypes;
    for (const auto &vi : g.output())
      resultTypes.push_back(typeOf(vi.name(), &vi));

    b.setInsertionPointToEnd(module->getBody());
    auto fn = b.create<func::FuncOp>(loc, "main",
                                     b.getFunctionType(argTypes, resultTypes));
    Block *entry = fn.addEntryBlock();
    for (unsigned i = 0; i < argNames.size(); ++i) {
      fn.setArgAttr(i, "graph.name", b.getStringAttr(argNames[i]));
      values[argNames[i]] = entry->getArgument(i);
    }
    for (unsigned i = 0; i < resultTypes.size(); ++i)
      fn.setResultAttr(i, "graph.name", b.getStringAttr(g.output(i).name()));
    b.setInsertionPointToEnd(entry);

    for (const auto &t : g.initializer())
      values[t.name()] = importInitializer(t);
    for (const auto &n : g.node())
      importNode(n);

    SmallVector<Value> results;
    for (const auto &o : g.output())
      results.push_back(lookup(o.name(), "graph output"));
    b.create<func::ReturnOp>(loc, results);
    // Types computed from outputs may differ from the declared ones (e.g. an
    // output without shape info): make the signature agree with the body.
    fn.setType(b.getFunctionType(argTypes, ValueRange(results).getTypes()));

    if (failed(verify(*module)))
      fail(path, "internal error: the imported IR does not verify");
    return module;
  }

private:
  /// --frozen takes names or fnmatch patterns (HF exports have one rotary
  /// cos/sin buffer per layer: `--frozen '*cos_cached'`). Each must match an
  /// initializer: a typo would silently train a buffer.
  void resolveFrozen() {
    for (const std::string &pattern : opts.frozen) {
      bool glob = pattern.find_first_of("*?[") != std::string::npos;
      bool matched = false;
      for (auto &[name, t] : initializers)
        if (glob ? fnmatch(pattern.c_str(), name.c_str(), 0) == 0 : name == pattern) {
          frozen.insert(name);
          matched = true;
        }
      if (!matched)
        fail(path, "--frozen '" + pattern + "' matches no initializer");
    }
  }

  void countFloatInitializers() {
    int floats = 0;
    for (auto &[name, t] : initializers)
      if (isFloat(t->data_type()) && !frozen.count(name))
        ++floats;
    switch (opts.constantParams) {
    case ImportOptions::ConstantParams::Yes: constantParams = true; break;
    case ImportOptions::ConstantParams::No: constantParams = false; break;
    case ImportOptions::ConstantParams::Auto: constantParams = floats == 0; break;
    }
  }

  static bool isFloat(int32_t dt) {
    return dt == onnx::TensorProto::FLOAT || dt == onnx::TensorProto::DOUBLE ||
           dt == onnx::TensorProto::FLOAT16 || dt == onnx::TensorProto::BFLOAT16;
  }

  Type elementType(int32_t dt) {
    switch (dt) {
    case onnx::TensorProto::FLOAT: return b.getF32Type();
    case onnx::TensorProto::DOUBLE: return b.getF64Type();
    case onnx::TensorProto::FLOAT16: return b.getF16Type();
    case onnx::TensorProto::BFLOAT16: return b.getBF16Type();
    case onnx::TensorProto::INT64: case onnx::TensorProto::UINT64: return b.getI64Type();
    case onnx::TensorProto::INT32: case onnx::TensorProto::UINT32: return b.getI32Type();
    case onnx::TensorProto::INT16: case onnx::TensorProto::UINT16: return b.getIntegerType(16);
    case onnx::TensorProto::INT8: case onnx::TensorProto::UINT8: return b.getIntegerType(8);
    case onnx::TensorProto::BOOL: return b.getI1Type();
    case onnx::TensorProto::STRING: return b.getType<NoneType>(); // no tensor of strings
    default: return Type();
    }
  }

  Type tensorType(const onnx::TypeProto &tp, const std::string &name,
                  bool isInput) {
    if (!tp.has_tensor_type())
      return UnrankedTensorType::get(b.getF32Type());
    const auto &tt = tp.tensor_type();
    Type elt = elementType(tt.elem_type());
    if (!elt || isa<NoneType>(elt))
      elt = b.getF32Type();
    if (!tt.has_shape())
      return UnrankedTensorType::get(elt);
    SmallVector<int64_t> dims;
    for (const auto &d : tt.shape().dim()) {
      if (d.has_dim_value() && d.dim_value() >= 0) {
        dims.push_back(d.dim_value());
      } else if (d.has_dim_param() && opts.dims.count(d.dim_param())) {
        dims.push_back(opts.dims.at(d.dim_param()));
      } else {
        dims.push_back(ShapedType::kDynamic);
      }
    }
    return RankedTensorType::get(dims, elt);
  }

  Type typeOfInput(const onnx::ValueInfoProto &vi) {
    return tensorType(vi.type(), vi.name(), true);
  }

  Type typeOf(const std::string &name, const onnx::ValueInfoProto *hint) {
    if (!valueInfo.size()) {
      for (const auto &vi : model.graph().value_info())
        valueInfo[vi.name()] = &vi;
      for (const auto &vi : model.graph().output())
        valueInfo[vi.name()] = &vi;
      for (const auto &vi : model.graph().input())
        valueInfo[vi.name()] = &vi;
    }
    auto it = valueInfo.find(name);
    if (it != valueInfo.end())
      return tensorType(it->second->type(), name, false);
    if (hint)
      return tensorType(hint->type(), name, false);
    return UnrankedTensorType::get(b.getF32Type());
  }

  RankedTensorType typeOfTensor(const onnx::TensorProto &t) {
    Type elt = elementType(t.data_type());
    if (!elt || isa<NoneType>(elt))
      fail(path, "tensor '" + t.name() + "' has unsupported type " +
                     dataTypeName(t.data_type()));
    SmallVector<int64_t> dims(t.dims().begin(), t.dims().end());
    return RankedTensorType::get(dims, elt);
  }

  /// Small integer tensors and float scalars are read; everything else is
  /// shape only.
  std::optional<DenseElementsAttr> readSmall(const onnx::TensorProto &t,
                                             RankedTensorType type) {
    int64_t n = numElements(t);
    Type elt = type.getElementType();
    if (isa<IntegerType>(elt) && n <= kMaxIntConstant) {
      std::vector<int64_t> v = tensorToInt64(t, path);
      if (elt.isInteger(1)) {
        SmallVector<bool> bits(v.begin(), v.end());
        return DenseElementsAttr::get(type, ArrayRef<bool>(bits));
      }
      SmallVector<APInt> vals;
      for (int64_t x : v)
        vals.push_back(APInt(elt.getIntOrFloatBitWidth(), uint64_t(x), true));
      return DenseElementsAttr::get(type, vals);
    }
    if (isa<FloatType>(elt) && n > 1 && n <= kMaxSplatScan) {
      // A float tensor with one value repeated (zeros to scatter into) is
      // kept as a splat: rules may rely on it being uniform.
      std::vector<double> v = tensorToDouble(t, path);
      if (v.empty() || std::any_of(v.begin(), v.end(), [](double x) { return std::isnan(x); }))
        return std::nullopt;
      auto ft = cast<FloatType>(elt);
      auto toFloat = [&](double x) {
        bool lost = false;
        APFloat f(x);
        f.convert(ft.getFloatSemantics(), APFloat::rmNearestTiesToEven, &lost);
        return f;
      };
      if (std::all_of(v.begin(), v.end(), [&](double x) { return x == v[0]; }))
        return DenseElementsAttr::get(type, ArrayRef<APFloat>{toFloat(v[0])});
      // A short list of different values (Resize's scales and roi) is kept whole.
      if (n > kMaxSmallFloats)
        return std::nullopt;
      SmallVector<APFloat> vals;
      for (double x : v)
        vals.push_back(toFloat(x));
      return DenseElementsAttr::get(type, vals);
    }
    if (isa<FloatType>(elt) && n == 1) {
      double x = tensorToDouble(t, path).at(0);
      auto ft = cast<FloatType>(elt);
      bool lost = false;
      APFloat f(x);
      f.convert(ft.getFloatSemantics(), APFloat::rmNearestTiesToEven, &lost);
      return DenseElementsAttr::get(type, ArrayRef<APFloat>{f});
    }
    return std::nullopt;
  }

  /// The axes (of size > 1) along which a constant does not vary (a broadcast
  /// folded into the file: a mask expanded over the heads, indices expanded over
  /// the hidden units), as the attribute `uniform_axes` the analysis reads, whether
  /// the value is kept or read as shape only: a permutation of such an axis leaves
  /// the constant as it is. Entries compared exactly (a float's sign of zero too);
  /// NaN anywhere: none.
  void markUniformAxes(graph::ConstantOp c, const onnx::TensorProto &t, RankedTensorType type) {
    if (!type.hasStaticShape() || type.getNumElements() > kMaxUniformScan ||
        type.getNumElements() < 2)
      return;
    ArrayRef<int64_t> dims = type.getShape();
    if (std::none_of(dims.begin(), dims.end(), [](int64_t d) { return d > 1; }))
      return;
    bool isInt = isa<IntegerType>(type.getElementType());
    std::vector<int64_t> iv;
    std::vector<double> fv;
    if (isInt)
      iv = tensorToInt64(t, path);
    else
      fv = tensorToDouble(t, path);
    const size_t n = size_t(type.getNumElements());
    if ((isInt ? iv.size() : fv.size()) != n)
      return;
    if (!isInt && std::any_of(fv.begin(), fv.end(), [](double x) { return std::isnan(x); }))
      return;
    auto same = [&](size_t i, size_t j) {
      return isInt ? iv[i] == iv[j] : fv[i] == fv[j] && std::signbit(fv[i]) == std::signbit(fv[j]);
    };
    SmallVector<int64_t> axes;
    for (size_t a = 0; a < dims.size(); ++a) {
      if (dims[a] <= 1)
        continue;
      size_t inner = 1, outer = 1;
      for (size_t k = a + 1; k < dims.size(); ++k)
        inner *= size_t(dims[k]);
      for (size_t k = 0; k < a; ++k)
        outer *= size_t(dims[k]);
      bool uniform = true;
      for (size_t o = 0; o < outer && uniform; ++o)
        for (size_t i = 1; i < size_t(dims[a]) && uniform; ++i)
          for (size_t k = 0; k < inner && uniform; ++k)
            uniform = same((o * size_t(dims[a])) * inner + k, (o * size_t(dims[a]) + i) * inner + k);
      if (uniform)
        axes.push_back(int64_t(a));
    }
    if (!axes.empty())
      c->setAttr("uniform_axes", b.getI64ArrayAttr(axes));
  }

  /// A weight's axes along which two slices are equal, or equal up to sign (a
  /// zero-initialized weight, copied rows, w and -w): `repeated_axes`. Negated copies tie
  /// after an even function (|x W| has equal columns where W's are w and -w); the tie walk
  /// does not follow signs, so they count as copies (conservative: a linear map of them
  /// alone would not tie). Ties are then certain where a rule counts on their having
  /// probability zero (ArgMax / TopK positions, PositionRules.cpp's TieWalk), which the
  /// analysis otherwise assumes of every parameter. Weights stored in the file with up to
  /// kMaxUniformScan entries (a router, not an embedding) are scanned, biases too: a bias
  /// with distinct entries breaks the ties of equal router columns, an all-zero one does not.
  void markRepeatedAxes(graph::ParamOp p, const onnx::TensorProto &t, RankedTensorType type) {
    if (!selectsPositions || !type.hasStaticShape() || type.getRank() < 1 ||
        type.getNumElements() > kMaxUniformScan || isExternal(t))
      return;
    std::vector<double> v = tensorToDouble(t, path);
    if (int64_t(v.size()) != type.getNumElements() ||
        std::any_of(v.begin(), v.end(), [](double x) { return std::isnan(x); }))
      return;
    for (double &x : v)
      x += 0.0; // -0 == +0, as the ties it makes
    ArrayRef<int64_t> dims = type.getShape();
    SmallVector<int64_t> axes;
    for (size_t a = 0; a < dims.size(); ++a) {
      const size_t n = size_t(dims[a]);
      size_t inner = 1, blocks = 1; // index = (o * n + i) * inner + k
      for (size_t k = a + 1; k < dims.size(); ++k)
        inner *= size_t(dims[k]);
      for (size_t k = 0; k < a; ++k)
        blocks *= size_t(dims[k]);
      // One pass: a hash of each slice's magnitudes along `a`; equal hashes are then
      // compared in full, as they are or negated.
      std::vector<uint64_t> h(n, 1469598103934665603ull);
      const double *d = v.data();
      for (size_t o = 0; o < blocks; ++o)
        for (size_t i = 0; i < n; ++i) {
          uint64_t x = h[i];
          for (size_t k = 0; k < inner; ++k, ++d) {
            uint64_t bits;
            const double m = std::fabs(*d);
            std::memcpy(&bits, &m, sizeof bits);
            x = (x ^ bits) * 1099511628211ull;
          }
          h[i] = x;
        }
      auto sameUpTo = [&](size_t i, size_t j, double sign) {
        for (size_t o = 0; o < blocks; ++o)
          for (size_t k = 0; k < inner; ++k)
            if (v[(o * n + i) * inner + k] != sign * v[(o * n + j) * inner + k])
              return false;
        return true;
      };
      auto same = [&](size_t i, size_t j) { return sameUpTo(i, j, 1.0) || sameUpTo(i, j, -1.0); };
      // Every earlier slice with the same hash is compared: (a, b), (a, -b), (a, -b) share
      // one hash, and the third repeats the second, not the first.
      std::map<uint64_t, std::vector<size_t>> byHash;
      bool repeated = false;
      for (size_t i = 0; i < n && !repeated; ++i) {
        std::vector<size_t> &earlier = byHash[h[i]];
        repeated = llvm::any_of(earlier, [&](size_t j) { return same(j, i); });
        earlier.push_back(i);
      }
      if (repeated)
        axes.push_back(int64_t(a));
    }
    if (!axes.empty())
      p->setAttr("repeated_axes", b.getI64ArrayAttr(axes));
  }

  bool selectsPositions = false; // the graph has an ArgMax, ArgMin or TopK

  Value importInitializer(const onnx::TensorProto &t) {
    RankedTensorType type = typeOfTensor(t);
    Location loc = NameLoc::get(b.getStringAttr(t.name()));
    bool trainable = isFloat(t.data_type()) && !frozen.count(t.name()) &&
                     numElements(t) > 1;
    if (trainable) {
      auto p = b.create<graph::ParamOp>(loc, type, b.getStringAttr(t.name()), StringAttr(),
                                        UnitAttr());
      if (isExternal(t))
        p.setLocationAttr(b.getStringAttr(externalDataPath(path, t)));
      markRepeatedAxes(p, t, type);
      return p;
    }
    auto value = readSmall(t, type);
    auto c = b.create<graph::ConstantOp>(
        loc, type, value ? ElementsAttr(*value) : ElementsAttr(),
        b.getStringAttr(t.name()));
    if (frozen.count(t.name()))
      c->setAttr("frozen", b.getUnitAttr());
    markUniformAxes(c, t, type);
    return c;
  }

  Value importConstantNode(const onnx::NodeProto &n) {
    Location loc = NameLoc::get(b.getStringAttr(n.output(0)));
    for (const auto &a : n.attribute()) {
      RankedTensorType type;
      std::optional<DenseElementsAttr> value;
      const onnx::TensorProto *scanned = nullptr; // a tensor value: scanned for uniform axes
      if (a.name() == "value") {
        type = typeOfTensor(a.t());
        bool asParam = constantParams && isFloat(a.t().data_type()) &&
                       numElements(a.t()) > 1 && !frozen.count(n.output(0));
        if (asParam) {
          auto p = b.create<graph::ParamOp>(loc, type, b.getStringAttr(n.output(0)),
                                            StringAttr(), b.getUnitAttr());
          ++paramsFromConstants;
          return p;
        }
        value = readSmall(a.t(), type);
        scanned = &a.t();
      } else if (a.name() == "value_float") {
        type = RankedTensorType::get({}, b.getF32Type());
        value = DenseElementsAttr::get(type, ArrayRef<float>{a.f()});
      } else if (a.name() == "value_int") {
        type = RankedTensorType::get({}, b.getI64Type());
        value = DenseElementsAttr::get(type, ArrayRef<int64_t>{a.i()});
      } else if (a.name() == "value_ints") {
        type = RankedTensorType::get({a.ints_size()}, b.getI64Type());
        std::vector<int64_t> v(a.ints().begin(), a.ints().end());
        value = DenseElementsAttr::get(type, ArrayRef<int64_t>(v));
      } else if (a.name() == "value_floats") {
        type = RankedTensorType::get({a.floats_size()}, b.getF32Type());
        std::vector<float> v(a.floats().begin(), a.floats().end());
        if (constantParams && v.size() > 1 && !frozen.count(n.output(0))) {
          ++paramsFromConstants;
          return b.create<graph::ParamOp>(loc, type, b.getStringAttr(n.output(0)), StringAttr(),
                                          b.getUnitAttr());
        }
        value = DenseElementsAttr::get(type, ArrayRef<float>(v));
      } else {
        fail(path, "Constant node '" + n.output(0) + "' has unsupported attribute '" +
                       a.name() + "'");
      }
      auto c = b.create<graph::ConstantOp>(
          loc, type, value ? ElementsAttr(*value) : ElementsAttr(),
          b.getStringAttr(n.output(0)));
      if (scanned)
        markUniformAxes(c, *scanned, type);
      return c;
    }
    fail(path, "Constant node '" + n.output(0) + "' has no value");
  }

  Attribute convertAttr(const onnx::AttributeProto &a) {
    switch (a.type()) {
    case onnx::AttributeProto::INT: return b.getI64IntegerAttr(a.i());
    case onnx::AttributeProto::FLOAT: return b.getF32FloatAttr(a.f());
    case onnx::AttributeProto::STRING: return b.getStringAttr(a.s());
    case onnx::AttributeProto::INTS: {
      SmallVector<int64_t> v(a.ints().begin(), a.ints().end());
      return b.getI64ArrayAttr(v);
    }
    case onnx::AttributeProto::FLOATS: {
      SmallVector<Attribute> v;
      for (float f : a.floats()) v.push_back(b.getF32FloatAttr(f));
      return b.getArrayAttr(v);
    }
    case onnx::AttributeProto::STRINGS: {
      SmallVector<Attribute> v;
      for (const auto &s : a.strings()) v.push_back(b.getStringAttr(s));
      return b.getArrayAttr(v);
    }
    case onnx::AttributeProto::TENSOR: {
      RankedTensorType type = typeOfTensor(a.t());
      if (auto v = readSmall(a.t(), type))
        return *v;
      return TypeAttr::get(type); // a large tensor attribute: shape only
    }
    case onnx::AttributeProto::GRAPH:
    case onnx::AttributeProto::GRAPHS:
      return b.getStringAttr("<subgraph>");
    default:
      return b.getStringAttr("<unsupported attribute>");
    }
  }

  Value lookup(const std::string &name, const std::string &user) {
    auto it = values.find(name);
    if (it == values.end())
      fail(path, user + " uses undefined value '" + name + "'");
    return it->second;
  }

  void importNode(const onnx::NodeProto &n) {
    bool defaultDomain = n.domain().empty() || n.domain() == "ai.onnx";
    std::string nodeName = n.name().empty() ? n.op_type() : n.name();
    if (defaultDomain && n.op_type() == "Constant") {
      values[n.output(0)] = importConstantNode(n);
      return;
    }
    Location loc = NameLoc::get(b.getStringAttr(nodeName));
    SmallVector<Value> operands;
    for (const auto &in : n.input()) {
      if (in.empty()) {
        if (!none)
          none = b.create<graph::NoneOp>(loc, b.getType<NoneType>());
        operands.push_back(none);
      } else {
        operands.push_back(lookup(in, "node '" + nodeName + "' (" + n.op_type() + ")"));
      }
    }
    SmallVector<Type> resultTypes;
    for (const auto &out : n.output())
      resultTypes.push_back(typeOf(out, nullptr));

    std::string name = "graph." + n.op_type();
    // Upsample (opsets 7-9, deprecated at 10) is Resize-10 under another name: X and scales
    // (opset 9; opset 7 holds them in an attribute), nearest or linear, no coordinate modes.
    // Resize's rule reads both spellings (ResizeOp::applySymmetryRule).
    if (defaultDomain && n.op_type() == "Upsample")
      name = "graph.Resize";
    std::optional<RegisteredOperationName> curated;
    if (defaultDomain)
      curated = RegisteredOperationName::lookup(name, &ctx);
    if (!curated || name == "graph.param" || name == "graph.constant" ||
        name == "graph.none" || name == "graph.onnx") {
      NamedAttrList attrs;
      for (const auto &a : n.attribute())
        attrs.set(a.name(), convertAttr(a));
      std::string domain = n.domain();
      int64_t version = opsetVersion(model, domain);
      auto op = b.create<graph::GenericOp>(
          loc, resultTypes, operands, n.op_type(), domain,
          version < 0 ? 0 : version, attrs.getDictionary(&ctx));
      generic.insert(n.op_type());
      bindResults(n, op->getResults());
      return;
    }
    OperationState state(loc, *curated);
    state.addOperands(operands);
    state.addTypes(resultTypes);
    for (const auto &a : n.attribute())
      state.addAttribute(a.name(), convertAttr(a));
    Operation *op = b.create(state);
    bindResults(n, op->getResults());
  }

  void bindResults(const onnx::NodeProto &n, ResultRange results) {
    for (int k = 0; k < n.output_size(); ++k)
      if (!n.output(k).empty())
        values[n.output(k)] = results[k];
  }

public:
  int paramsFromConstants = 0;
  std::set<std::string> generic;

private:
  MLIRContext &ctx;
  OpBuilder b;
  const onnx::ModelProto &model;
  std::string path;
  const ImportOptions &opts;
  ImportNotes &notes;
  int64_t opset = 0;
  bool constantParams = false;
  Value none;
  std::map<std::string, const onnx::TensorProto *> initializers;
  // Never trained: initializers named by --frozen (patterns resolved) and the names the opset
  // adapter recorded (initializers or Constant-node outputs).
  std::set<std::string> frozen;
  std::map<std::string, const onnx::ValueInfoProto *> valueInfo;
  std::map<std::string, Value> values;
};

} // namespace

namespace {
/// Folding shape arithmetic and symoc's own shape functions, in one pass, go on where ONNX's
/// inference stopped; ONNX's inference then runs again for the ops symoc has no shape
/// function for, until a pass finds nothing new (at most 8). Adds to the counts; returns the
/// last inference's error text, or nothing when no pass found anything.
std::optional<std::string> completeShapes(onnx::ModelProto &model, const std::string &path, int &folded,
                                          int &completed) {
  std::optional<std::string> err;
  for (int round = 0; round < 8; ++round) {
    int c = 0;
    int f = foldAndCompleteShapes(model, path, c);
    folded += f;
    completed += c;
    if (f + c == 0)
      break;
    err = inferShapes(model, path);
  }
  return err;
}
} // namespace

OwningOpRef<ModuleOp> importModel(MLIRContext &ctx,
                                  const onnx::ModelProto &original,
                                  const std::string &path,
                                  const ImportOptions &options,
                                  ImportNotes &notes) {
  registerImportDialects(ctx);
  onnx::ModelProto model = original;
  AdapterNotes adapted;
  adaptOpset(model, path, adapted);
  notes.lines.insert(notes.lines.end(), adapted.lines.begin(), adapted.lines.end());
  // Bind symbolic input dims the user gave, so inference can use them.
  for (auto &vi : *model.mutable_graph()->mutable_input()) {
    if (!vi.type().has_tensor_type() || !vi.type().tensor_type().has_shape())
      continue;
    for (auto &d : *vi.mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim())
      if (d.has_dim_param() && options.dims.count(d.dim_param()))
        d.set_dim_value(options.dims.at(d.dim_param()));
  }
  std::string err = inferShapes(model, path);
  if (!err.empty())
    notes.lines.push_back("shape inference stopped early: " + err.substr(0, 200));
  // Folding shape arithmetic and symoc's own shape functions, in one pass,
  // go on where ONNX's inference stopped (a computed Pad width, a rank-only
  // Einsum); ONNX's inference then runs again for the ops symoc has no shape
  // function for, until a pass finds nothing new.
  int folded = 0, completed = 0;
  completeShapes(model, path, folded, completed);
  if (completed)
    notes.lines.push_back("symoc's shape functions completed " + std::to_string(completed) +
                          " shapes that ONNX shape inference left open");
  if (folded)
    notes.lines.push_back("folded " + std::to_string(folded) +
                          " shape-arithmetic nodes into constants");
  Importer imp(ctx, model, path, options, notes);
  OwningOpRef<ModuleOp> module = imp.run();
  if (imp.paramsFromConstants)
    notes.lines.push_back(
        std::to_string(imp.paramsFromConstants) +
        " weights were stored as float Constant nodes; imported as parameters");
  notes.genericOps.assign(imp.generic.begin(), imp.generic.end());
  if (!imp.generic.empty()) {
    std::string list;
    for (const auto &g : imp.generic)
      list += (list.empty() ? "" : ", ") + g;
    notes.lines.push_back("ops without a symmetry rule (barriers): " + list);
  }
  return module;
}

void adaptOpset(onnx::ModelProto &model, const std::string &path, AdapterNotes &notes) {
  adaptModel(
      model, path,
      [&](onnx::ModelProto &m, bool complete) {
        std::string err = inferShapes(m, path);
        if (!complete) {
          foldShapeArithmetic(m, path);
          return err;
        }
        int folded = 0, completed = 0;
        if (auto later = completeShapes(m, path, folded, completed))
          err = *later;
        return err;
      },
      notes);
}

OwningOpRef<ModuleOp> importModelFile(MLIRContext &ctx, const std::string &path,
                                      const ImportOptions &options,
                                      ImportNotes &notes) {
  onnx::ModelProto model = loadModel(path);
  return importModel(ctx, model, path, options, notes);
}

} // namespace symoc
