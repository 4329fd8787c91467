//===- Versions.cpp - Default-domain op versions after opset 17 -----------===//
//
// From onnx/onnx docs/Changelog.md (every `### Op-N` entry with N >= 18 up to
// opset 24; see shared research onnx-opset-delta.md section 2). A node's schema
// version is the newest of its op's versions <= the model's opset; when that
// is <= 17 the node is already in its opset-17 form.
//
//===----------------------------------------------------------------------===//

#include "Rewrite.h"

namespace symoc {
namespace adapter {

const std::map<std::string, std::vector<int64_t>> &versionsAfter17() {
  static const std::map<std::string, std::vector<int64_t>> table = [] {
    std::map<std::string, std::vector<int64_t>> t;
    auto add = [&](int64_t v, std::initializer_list<const char *> ops) {
      for (const char *op : ops)
        t[op].push_back(v);
    };
    add(18, {"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
             "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare", "Split", "Pad",
             "Resize", "ScatterElements", "ScatterND", "LpPool", "OptionalHasElement",
             "OptionalGetElement", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot",
             "CenterCropPad", "Col2Im", "GroupNormalization", "Mish"});
    add(19, {"Pad", "Resize", "AveragePool", "Cast", "CastLike", "DequantizeLinear",
             "QuantizeLinear", "DeformConv", "Constant", "Equal", "Identity", "If", "Loop",
             "Reshape", "Scan", "Shape", "Size"});
    add(20, {"Gelu", "DFT", "GridSample", "AffineGrid", "ImageDecoder", "RegexFullMatch",
             "StringConcat", "StringSplit", "ConstantOfShape", "IsInf", "IsNaN", "ReduceMax",
             "ReduceMin"});
    add(21, {"GroupNormalization", "DequantizeLinear", "QuantizeLinear", "QLinearMatMul",
             "Cast", "CastLike", "Constant", "ConstantOfShape", "Flatten", "Identity", "If",
             "Loop", "Pad", "Reshape", "Scan", "Shape", "Size", "Squeeze", "Transpose",
             "Unsqueeze"});
    add(22, {"Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "AveragePool", "Bernoulli",
             "Conv", "ConvTranspose", "Cos", "Cosh", "DeformConv", "Det", "Dropout", "Elu",
             "EyeLike", "GRU", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool",
             "GridSample", "HardSigmoid", "HardSwish", "InstanceNormalization", "LSTM",
             "LpNormalization", "LpPool", "MaxPool", "MaxRoiPool", "MaxUnpool", "Mish",
             "Multinomial", "NegativeLogLikelihoodLoss", "RNN", "RandomNormal",
             "RandomNormalLike", "RandomUniform", "RandomUniformLike", "RoiAlign", "Round",
             "Selu", "Sin", "Sinh", "Softplus", "Softsign", "Tan", "ThresholdedRelu"});
    add(23, {"Attention", "RMSNormalization", "RotaryEmbedding", "DequantizeLinear",
             "QuantizeLinear", "Cast", "CastLike", "Constant", "ConstantOfShape", "Flatten",
             "Identity", "If", "Loop", "Pad", "Reshape", "Scan", "Shape", "Size", "Squeeze",
             "Transpose", "Unsqueeze"});
    add(24, {"Attention", "Cast", "CastLike", "Swish", "TensorScatter", "Constant",
             "ConstantOfShape", "DequantizeLinear", "Flatten", "Identity", "If", "Loop", "Pad",
             "QuantizeLinear", "Reshape", "Scan", "Shape", "Size", "SplitToSequence",
             "Squeeze", "TopK", "Transpose", "Unsqueeze"});
    return t;
  }();
  return table;
}

} // namespace adapter
} // namespace symoc
