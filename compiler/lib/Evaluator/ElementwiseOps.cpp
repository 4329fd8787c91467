//===- ElementwiseOps.cpp - Unary, binary and variadic elementwise ops ----===//
#include "Ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace symoc {

using TP = onnx::TensorProto;

namespace {

using Unary = std::function<double(double, const OpContext &)>;

// A unary float op: computed in float64; integer inputs are refused unless
// the op is exact on integers (allowInt).
void unary(std::map<std::string, OpInfo> &r, const std::string &name, Unary f,
           std::set<std::string> attrs = {}, bool allowInt = false) {
  OpInfo info;
  info.attrs = std::move(attrs);
  info.kernel = [f, allowInt](OpContext &ctx) {
    const Tensor &x = ctx.in(0);
    if (!x.isFloat() && !(allowInt && x.isInteger()))
      ctx.unsupported("element type " + dtypeName(x.dtype));
    Tensor y = x;
    if (x.isFloat())
      for (double &v : y.data)
        v = f(v, ctx);
    else
      for (double &v : y.data)
        v = castValue(f(v, ctx), x.dtype);
    return std::vector<Tensor>{std::move(y)};
  };
  r[name] = std::move(info);
}

double sigmoid(double x) {
  return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x));
}

// Binary arithmetic with numpy broadcasting; both inputs have the same type.
template <class F>
void binary(std::map<std::string, OpInfo> &r, const std::string &name, F f,
            std::set<std::string> attrs = {}) {
  OpInfo info;
  info.attrs = std::move(attrs);
  info.kernel = [f](OpContext &ctx) {
    const Tensor &a = ctx.in(0), &b = ctx.in(1);
    if (ctx.hasAttr("broadcast") || ctx.hasAttr("axis"))
      ctx.unsupported("legacy broadcast attributes (opset < 7)");
    if (a.isBool() || b.isBool())
      ctx.unsupported("bool operands");
    DType t = a.dtype;
    return std::vector<Tensor>{broadcastApply(
        ctx, {&a, &b}, t, [&](const double *v) { return f(v[0], v[1], t); })};
  };
  r[name] = std::move(info);
}

void compare(std::map<std::string, OpInfo> &r, const std::string &name,
             std::function<bool(double, double)> f) {
  OpInfo info;
  info.kernel = [f](OpContext &ctx) {
    const Tensor &a = ctx.in(0), &b = ctx.in(1);
    return std::vector<Tensor>{broadcastMap(ctx, {&a, &b}, TP::BOOL, [&](const double *v) {
      return f(v[0], v[1]) ? 1.0 : 0.0;
    })};
  };
  r[name] = std::move(info);
}

void logical(std::map<std::string, OpInfo> &r, const std::string &name,
             std::function<bool(bool, bool)> f) {
  OpInfo info;
  info.kernel = [f](OpContext &ctx) {
    const Tensor &a = ctx.in(0), &b = ctx.in(1);
    if (!a.isBool() || !b.isBool())
      ctx.fail("operands must be bool");
    return std::vector<Tensor>{broadcastMap(ctx, {&a, &b}, TP::BOOL, [&](const double *v) {
      return f(v[0] != 0, v[1] != 0) ? 1.0 : 0.0;
    })};
  };
  r[name] = std::move(info);
}

// Min / Max / Sum / Mean over any number of broadcast inputs.
void variadic(std::map<std::string, OpInfo> &r, const std::string &name,
              std::function<double(const double *, size_t)> f) {
  OpInfo info;
  info.kernel = [f](OpContext &ctx) {
    std::vector<const Tensor *> ins;
    for (size_t i = 0; i < ctx.numInputs(); ++i)
      ins.push_back(&ctx.in(i));
    if (ins.empty())
      ctx.fail("needs at least one input");
    size_t k = ins.size();
    return std::vector<Tensor>{broadcastMap(
        ctx, ins, ins[0]->dtype, [&](const double *v) { return f(v, k); })};
  };
  r[name] = std::move(info);
}

double roundHalfEven(double x) {
  double r = std::round(x);
  if (std::fabs(x - std::trunc(x)) == 0.5)
    r = 2.0 * std::round(x / 2.0);
  return r;
}

} // namespace

void registerElementwiseOps(std::map<std::string, OpInfo> &r) {
  using C = const OpContext &;
  // Exact on integers too.
  unary(r, "Abs", [](double x, C) { return std::fabs(x); }, {}, true);
  unary(r, "Neg", [](double x, C) { return -x; }, {}, true);
  unary(r, "Sign", [](double x, C) { return double((x > 0) - (x < 0)); }, {}, true);
  unary(r, "Relu", [](double x, C) { return x > 0 ? x : 0.0; }, {}, true);
  unary(r, "Identity", [](double x, C) { return x; }, {}, true);
  r["Identity"].kernel = [](OpContext &ctx) { return std::vector<Tensor>{ctx.in(0)}; };
  // Float-only math.
  unary(r, "Reciprocal", [](double x, C) { return 1.0 / x; });
  unary(r, "Sqrt", [](double x, C) { return std::sqrt(x); });
  unary(r, "Exp", [](double x, C) { return std::exp(x); });
  unary(r, "Log", [](double x, C) { return std::log(x); });
  unary(r, "Cos", [](double x, C) { return std::cos(x); });
  unary(r, "Sin", [](double x, C) { return std::sin(x); });
  unary(r, "Tan", [](double x, C) { return std::tan(x); });
  unary(r, "Acos", [](double x, C) { return std::acos(x); });
  unary(r, "Asin", [](double x, C) { return std::asin(x); });
  unary(r, "Atan", [](double x, C) { return std::atan(x); });
  unary(r, "Cosh", [](double x, C) { return std::cosh(x); });
  unary(r, "Sinh", [](double x, C) { return std::sinh(x); });
  unary(r, "Acosh", [](double x, C) { return std::acosh(x); });
  unary(r, "Asinh", [](double x, C) { return std::asinh(x); });
  unary(r, "Atanh", [](double x, C) { return std::atanh(x); });
  unary(r, "Tanh", [](double x, C) { return std::tanh(x); });
  unary(r, "Erf", [](double x, C) { return std::erf(x); });
  unary(r, "Sigmoid", [](double x, C) { return sigmoid(x); });
  unary(r, "Floor", [](double x, C) { return std::floor(x); });
  unary(r, "Ceil", [](double x, C) { return std::ceil(x); });
  unary(r, "Round", [](double x, C) { return roundHalfEven(x); });
  unary(r, "Softplus", [](double x, C) {
    return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
  });
  unary(r, "Softsign", [](double x, C) { return x / (1.0 + std::fabs(x)); });
  unary(r, "LeakyRelu", [](double x, C c) {
    return x >= 0 ? x : c.attrFloat("alpha", 0.01) * x;
  }, {"alpha"});
  unary(r, "Elu", [](double x, C c) {
    return x >= 0 ? x : c.attrFloat("alpha", 1.0) * (std::exp(x) - 1.0);
  }, {"alpha"});
  unary(r, "Celu", [](double x, C c) {
    double a = c.attrFloat("alpha", 1.0);
    return std::max(0.0, x) + std::min(0.0, a * (std::exp(x / a) - 1.0));
  }, {"alpha"});
  unary(r, "Selu", [](double x, C c) {
    double a = c.attrFloat("alpha", 1.67326319217681884765625);
    double g = c.attrFloat("gamma", 1.05070102214813232421875);
    return x > 0 ? g * x : g * (a * std::exp(x) - a);
  }, {"alpha", "gamma"});
  unary(r, "ThresholdedRelu", [](double x, C c) {
    return x > c.attrFloat("alpha", 1.0) ? x : 0.0;
  }, {"alpha"});
  unary(r, "HardSigmoid", [](double x, C c) {
    return std::max(0.0, std::min(1.0, c.attrFloat("alpha", 0.2) * x +
                                           c.attrFloat("beta", 0.5)));
  }, {"alpha", "beta"});
  unary(r, "Mish", [](double x, C) { // x tanh(softplus(x))
    return x * std::tanh(x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)));
  });
  unary(r, "HardSwish", [](double x, C) {
    return x * std::max(0.0, std::min(1.0, x / 6.0 + 0.5));
  });
  unary(r, "Shrink", [](double x, C c) {
    double l = c.attrFloat("lambd", 0.5), b = c.attrFloat("bias", 0.0);
    return x < -l ? x + b : (x > l ? x - b : 0.0);
  }, {"lambd", "bias"}, true);

  // Integer division truncates (C semantics, as ONNX runtimes do).
  binary(r, "Add", [](double a, double b, DType) { return a + b; });
  binary(r, "Sub", [](double a, double b, DType) { return a - b; });
  binary(r, "Mul", [](double a, double b, DType) { return a * b; });
  binary(r, "Div", [](double a, double b, DType t) {
    if (isIntegerDType(t))
      return b == 0 ? 0.0 : std::trunc(a / b);
    return a / b;
  });
  // Pow: result has the base's type; exponent may be of another type.
  {
    OpInfo info;
    info.kernel = [](OpContext &ctx) {
      const Tensor &a = ctx.in(0), &b = ctx.in(1);
      if (a.isBool() || b.isBool())
        ctx.unsupported("bool operands");
      // x^2 (written-out norms' variance) as x * x: the correctly rounded square.
      return std::vector<Tensor>{broadcastApply(ctx, {&a, &b}, a.dtype, [](const double *v) {
        return v[1] == 2.0 ? v[0] * v[0] : std::pow(v[0], v[1]);
      })};
    };
    r["Pow"] = std::move(info);
  }
  {
    OpInfo info;
    info.attrs = {"fmod"};
    info.kernel = [](OpContext &ctx) {
      const Tensor &a = ctx.in(0), &b = ctx.in(1);
      bool fm = ctx.attrInt("fmod", 0) != 0;
      if (a.isFloat() && !fm)
        ctx.fail("fmod must be 1 for floating-point inputs");
      return std::vector<Tensor>{broadcastMap(ctx, {&a, &b}, a.dtype, [fm](const double *v) {
        if (v[1] == 0)
          return fm ? std::nan("") : 0.0;
        double m = std::fmod(v[0], v[1]);
        // Integer Mod takes the sign of the divisor (Python semantics).
        if (!fm && m != 0 && ((m < 0) != (v[1] < 0)))
          m += v[1];
        return m;
      })};
    };
    r["Mod"] = std::move(info);
  }
  {
    // PRelu: slope broadcasts to X (unidirectional).
    OpInfo info;
    info.kernel = [](OpContext &ctx) {
      const Tensor &x = ctx.in(0), &s = ctx.in(1);
      Tensor y = broadcastMap(ctx, {&x, &s}, x.dtype, [](const double *v) {
        return v[0] < 0 ? v[0] * v[1] : v[0];
      });
      if (y.dims != x.dims)
        ctx.fail("slope " + shapeString(s.dims) + " does not broadcast to " +
                 shapeString(x.dims));
      return std::vector<Tensor>{std::move(y)};
    };
    r["PRelu"] = std::move(info);
  }

  compare(r, "Equal", [](double a, double b) { return a == b; });
  compare(r, "Less", [](double a, double b) { return a < b; });
  compare(r, "Greater", [](double a, double b) { return a > b; });
  compare(r, "LessOrEqual", [](double a, double b) { return a <= b; });
  compare(r, "GreaterOrEqual", [](double a, double b) { return a >= b; });
  logical(r, "And", [](bool a, bool b) { return a && b; });
  logical(r, "Or", [](bool a, bool b) { return a || b; });
  logical(r, "Xor", [](bool a, bool b) { return a != b; });
  {
    OpInfo info;
    info.kernel = [](OpContext &ctx) {
      Tensor y = ctx.in(0);
      if (!y.isBool())
        ctx.fail("input must be bool");
      for (double &v : y.data)
        v = v != 0 ? 0.0 : 1.0;
      return std::vector<Tensor>{std::move(y)};
    };
    r["Not"] = std::move(info);
  }
  {
    OpInfo info;
    info.kernel = [](OpContext &ctx) {
      Tensor y = ctx.in(0);
      for (double &v : y.data)
        v = std::isnan(v) ? 1.0 : 0.0;
      y.dtype = TP::BOOL;
      return std::vector<Tensor>{std::move(y)};
    };
    r["IsNaN"] = std::move(info);
  }
  {
    OpInfo info;
    info.attrs = {"detect_negative", "detect_positive"};
    info.kernel = [](OpContext &ctx) {
      Tensor y = ctx.in(0);
      bool neg = ctx.attrInt("detect_negative", 1), pos = ctx.attrInt("detect_positive", 1);
      for (double &v : y.data)
        v = std::isinf(v) && ((v > 0 && pos) || (v < 0 && neg)) ? 1.0 : 0.0;
      y.dtype = TP::BOOL;
      return std::vector<Tensor>{std::move(y)};
    };
    r["IsInf"] = std::move(info);
  }

  variadic(r, "Max", [](const double *v, size_t k) {
    double m = v[0];
    for (size_t i = 1; i < k; ++i)
      m = (std::isnan(m) || std::isnan(v[i])) ? std::nan("") : std::max(m, v[i]);
    return m;
  });
  variadic(r, "Min", [](const double *v, size_t k) {
    double m = v[0];
    for (size_t i = 1; i < k; ++i)
      m = (std::isnan(m) || std::isnan(v[i])) ? std::nan("") : std::min(m, v[i]);
    return m;
  });
  variadic(r, "Sum", [](const double *v, size_t k) {
    double s = 0;
    for (size_t i = 0; i < k; ++i)
      s += v[i];
    return s;
  });
  variadic(r, "Mean", [](const double *v, size_t k) {
    double s = 0;
    for (size_t i = 0; i < k; ++i)
      s += v[i];
    return s / double(k);
  });

  {
    // Where(cond, X, Y) with three-way broadcasting.
    OpInfo info;
    info.kernel = [](OpContext &ctx) {
      const Tensor &c = ctx.in(0), &x = ctx.in(1), &y = ctx.in(2);
      return std::vector<Tensor>{broadcastMap(ctx, {&c, &x, &y}, x.dtype, [](const double *v) {
        return v[0] != 0 ? v[1] : v[2];
      })};
    };
    r["Where"] = std::move(info);
  }
  {
    // Clip: min/max as attributes before opset 11, optional inputs after.
    OpInfo info;
    info.attrs = {"min", "max"};
    info.kernel = [](OpContext &ctx) {
      const Tensor &x = ctx.in(0);
      double lo = -std::numeric_limits<double>::infinity(), hi = -lo;
      if (ctx.opset < 11) {
        lo = ctx.attrFloat("min", lo);
        hi = ctx.attrFloat("max", hi);
      } else {
        if (ctx.hasInput(1))
          lo = ctx.scalar(1, "min");
        if (ctx.hasInput(2))
          hi = ctx.scalar(2, "max");
      }
      Tensor y = x;
      for (double &v : y.data)
        v = std::min(std::max(v, lo), hi);
      return std::vector<Tensor>{std::move(y)};
    };
    r["Clip"] = std::move(info);
  }
  {
    OpInfo info;
    info.attrs = {"to", "saturate"};
    info.kernel = [](OpContext &ctx) {
      DType to = DType(ctx.attrInt("to", 0));
      if (!isSupportedDType(to))
        ctx.unsupported("cast to " + dtypeName(to));
      Tensor y = ctx.in(0);
      castInPlace(y, to);
      return std::vector<Tensor>{std::move(y)};
    };
    r["Cast"] = std::move(info);
  }
  {
    OpInfo info;
    info.attrs = {"saturate"};
    info.kernel = [](OpContext &ctx) {
      DType to = ctx.in(1).dtype;
      Tensor y = ctx.in(0);
      castInPlace(y, to);
      return std::vector<Tensor>{std::move(y)};
    };
    r["CastLike"] = std::move(info);
  }
}

} // namespace symoc
