//===- evaluator_run.cpp - Run a model with the reference evaluator -------===//
//
// Usage: evaluator-run MODEL.onnx OUT_DIR [INPUT.pb ...]
// Feeds the TensorProto files to the graph's non-initializer inputs in order and
// writes OUT_DIR/output_<i>.pb (float outputs as DOUBLE) in graph output order.
// Used by test_torch_models.py to compare against torch, and by
// test_opset_adapter.py (opset 18-24 models are adapted first, as symoc does).
//
//===----------------------------------------------------------------------===//
#include "symoc/Evaluator/Evaluator.h"
#include "symoc/Importer/Importer.h"
#include "symoc/ModelIO/ModelIO.h"

#include <fstream>
#include <iostream>

using namespace symoc;

int main(int argc, char **argv) {
  if (argc < 3) {
    std::cerr << "usage: evaluator-run MODEL.onnx OUT_DIR [INPUT.pb ...]\n";
    return 2;
  }
  try {
    std::string path = argv[1];
    onnx::ModelProto m = loadModel(path);
    AdapterNotes notes; // opset 18-24 models run in their opset-17 form
    adaptOpset(m, path, notes);
    Evaluator ev(m, path);
    std::map<std::string, Tensor> ins;
    const auto &gi = ev.graphInputs();
    if (size_t(argc - 3) != gi.size())
      fail(path, "model has " + std::to_string(gi.size()) + " inputs, " +
                     std::to_string(argc - 3) + " given");
    for (size_t i = 0; i < gi.size(); ++i) {
      std::string f = argv[3 + i];
      std::ifstream in(f, std::ios::binary);
      onnx::TensorProto t;
      if (!in || !t.ParseFromIstream(&in))
        fail(f, "cannot read a TensorProto");
      ins[gi[i]->name()] = tensorFromProto(t, f);
    }
    auto outs = ev.run(ins);
    const auto &g = m.graph();
    for (int i = 0; i < g.output_size(); ++i) {
      Tensor t = outs.at(g.output(i).name());
      if (t.isFloat())
        t.dtype = onnx::TensorProto::DOUBLE;
      std::string f = std::string(argv[2]) + "/output_" + std::to_string(i) + ".pb";
      std::ofstream out(f, std::ios::binary);
      if (!tensorToProto(t, g.output(i).name()).SerializeToOstream(&out))
        fail(f, "cannot write");
    }
  } catch (const std::exception &e) {
    std::cerr << "evaluator-run: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
