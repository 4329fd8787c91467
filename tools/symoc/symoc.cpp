//===- symoc.cpp - The symoc driver ---------------------------------------===//
//
// symoc import  model.onnx   prints the imported graph-dialect IR
// (analyze, verify and compile arrive with their libraries)
//
//===----------------------------------------------------------------------===//

#include "symoc/Importer/Importer.h"
#include "symoc/ModelIO/ModelIO.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/raw_ostream.h"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <fstream>
#include <iostream>

namespace {

/// Parses NAME=N pairs given to --dim.
std::map<std::string, int64_t> parseDims(const std::vector<std::string> &specs) {
  std::map<std::string, int64_t> dims;
  for (const auto &s : specs) {
    auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0)
      throw symoc::Error("--dim " + s + ": expected NAME=N");
    try {
      size_t used = 0;
      int64_t v = std::stoll(s.substr(eq + 1), &used);
      if (used != s.size() - eq - 1 || v <= 0)
        throw std::invalid_argument("");
      dims[s.substr(0, eq)] = v;
    } catch (const std::logic_error &) {
      throw symoc::Error("--dim " + s + ": N must be a positive integer");
    }
  }
  return dims;
}

struct CommonOptions {
  std::string model;
  std::vector<std::string> dims;
  std::vector<std::string> frozen;
  std::string constantParams = "auto";

  void add(CLI::App *app) {
    app->add_option("model", model, "ONNX model (.onnx, or ONNX text .onnxtxt)")->required();
    app->add_option("--dim", dims, "value of a symbolic dimension, NAME=N (repeatable)");
    app->add_option("--frozen", frozen,
                    "initializer that is not trained (a buffer); repeatable");
    app->add_option("--constant-params", constantParams,
                    "treat float Constant nodes as parameters: auto|yes|no")
        ->check(CLI::IsMember({"auto", "yes", "no"}));
  }

  symoc::ImportOptions importOptions() const {
    symoc::ImportOptions o;
    o.dims = parseDims(dims);
    o.frozen.insert(frozen.begin(), frozen.end());
    o.constantParams = constantParams == "yes"
                           ? symoc::ImportOptions::ConstantParams::Yes
                       : constantParams == "no"
                           ? symoc::ImportOptions::ConstantParams::No
                           : symoc::ImportOptions::ConstantParams::Auto;
    return o;
  }
};

void printNotes(const symoc::ImportNotes &notes, const std::string &path) {
  for (const auto &line : notes.lines)
    std::cerr << "symoc: note: " << path << ": " << line << "\n";
}

int runImport(const CommonOptions &common, const std::string &output) {
  mlir::MLIRContext ctx;
  symoc::ImportNotes notes;
  auto module = symoc::importModelFile(ctx, common.model, common.importOptions(), notes);
  printNotes(notes, common.model);
  std::string text;
  llvm::raw_string_ostream os(text);
  module->print(os, mlir::OpPrintingFlags().elideLargeElementsAttrs(64));
  os.flush();
  if (output.empty() || output == "-") {
    std::cout << text;
  } else {
    std::ofstream out(output);
    if (!out)
      throw symoc::Error(output + ": cannot write");
    out << text;
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"symoc: turns a network's weight-space symmetries into an optimizer"};
  app.set_version_flag("--version", std::string("symoc ") + SYMOC_VERSION);
  app.require_subcommand(1);

  CommonOptions importOpts;
  std::string importOut;
  CLI::App *import = app.add_subcommand("import", "print the imported graph-dialect IR");
  importOpts.add(import);
  import->add_option("-o,--output", importOut, "write the IR here instead of stdout");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &e) {
    return app.exit(e);
  }

  try {
    if (*import)
      return runImport(importOpts, importOut);
  } catch (const symoc::Error &e) {
    std::cerr << "symoc: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception &e) {
    std::cerr << "symoc: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
