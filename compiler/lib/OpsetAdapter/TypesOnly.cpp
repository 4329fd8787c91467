//===- TypesOnly.cpp - Op versions after 17 that only added element types -===//
//
// The node is kept as it is: ONNX 1.12 infers it with the opset-17 schema,
// which is right as long as its tensors use types ONNX 1.12 has (bfloat16 and
// float16 included: the analysis does not look at element types). float8,
// int4 and float4 tensors cannot be imported at all: the importer refuses
// them by name.
//
//===----------------------------------------------------------------------===//

#include "Rewrite.h"

namespace symoc {
namespace adapter {

void addTypesOnly(Table &t) {
  Rewrite keep = [](Context &ctx, const onnx::NodeProto &n, int64_t v,
                    std::vector<onnx::NodeProto> &out) {
    // A Constant of a type newer than ONNX 1.12 (float8, int4, ...).
    if (n.op_type() == "Constant")
      if (auto *a = attr(n, "value"); a && a->t().data_type() > onnx::TensorProto::BFLOAT16)
        ctx.fail(n, v, "tensor of data type " + std::to_string(a->t().data_type()) +
                           " (float8/int4/float4), which symoc cannot read");
    out.push_back(n);
  };
  const std::vector<std::pair<const char *, std::vector<int64_t>>> kept = {
      {"Constant", {19, 21, 23, 24}},  {"Equal", {19}},
      {"Identity", {19, 21, 23, 24}},  {"If", {19, 21, 23, 24}},
      {"Loop", {19, 21, 23, 24}},      {"Scan", {19, 21, 23, 24}},
      {"Reshape", {19, 21, 23, 24}},   {"Shape", {19, 21, 23, 24}},
      {"Size", {19, 21, 23, 24}},      {"ConstantOfShape", {20, 21, 23, 24}},
      {"IsInf", {20}},                 {"IsNaN", {20}},
      {"Flatten", {21, 23, 24}},       {"Squeeze", {21, 23, 24}},
      {"Unsqueeze", {21, 23, 24}},     {"Transpose", {21, 23, 24}},
      {"SplitToSequence", {24}},       {"TopK", {24}},
      {"QLinearMatMul", {21}},
  };
  for (const auto &[op, versions] : kept)
    for (int64_t v : versions)
      t[{op, v}] = keep;
  // Opset 22 added bfloat16 to these; Mish, GridSample, LpPool, AveragePool
  // and DeformConv have rewrites (or none) of their own.
  for (const char *op :
       {"Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "Bernoulli", "Conv",
        "ConvTranspose", "Cos", "Cosh", "Det", "Dropout", "Elu", "EyeLike", "GRU",
        "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "HardSigmoid", "HardSwish",
        "InstanceNormalization", "LSTM", "LpNormalization", "MaxPool", "MaxRoiPool",
        "MaxUnpool", "Multinomial", "NegativeLogLikelihoodLoss", "RNN", "RandomNormal",
        "RandomNormalLike", "RandomUniform", "RandomUniformLike", "RoiAlign", "Round", "Selu",
        "Sin", "Sinh", "Softplus", "Softsign", "Tan", "ThresholdedRelu"})
    t[{op, 22}] = keep;
}

} // namespace adapter
} // namespace symoc
