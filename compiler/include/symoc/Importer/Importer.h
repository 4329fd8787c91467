//===- Importer.h - ONNX to the graph dialect --------------------*- C++ -*-===//
#ifndef SYMOC_IMPORTER_IMPORTER_H
#define SYMOC_IMPORTER_IMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/OwningOpRef.h"

#include "symoc/OpsetAdapter/OpsetAdapter.h"

#include <onnx/onnx_pb.h>

#include <map>
#include <set>
#include <string>
#include <vector>

namespace symoc {

struct ImportOptions {
  /// Values for symbolic dimensions (dim_param names) of the graph inputs.
  std::map<std::string, int64_t> dims;
  /// Initializers that are not trained (buffers): imported as constants. Names
  /// or fnmatch patterns; each must match an initializer.
  std::set<std::string> frozen;
  /// Treat float Constant nodes with more than one element as parameters.
  /// "auto": only when the model has no float initializers at all.
  enum class ConstantParams { Auto, Yes, No } constantParams = ConstantParams::Auto;
};

/// What the importer noticed and the user should know.
struct ImportNotes {
  std::vector<std::string> lines;
  std::vector<std::string> genericOps; // op types imported without a rule
};

/// Imports an ONNX model into the graph dialect (a module holding func @main).
/// Runs ONNX shape inference, folds shape arithmetic into constants, and
/// records parameters shape-only. Throws symoc::Error on bad input.
mlir::OwningOpRef<mlir::ModuleOp>
importModel(mlir::MLIRContext &ctx, const onnx::ModelProto &model,
            const std::string &path, const ImportOptions &options,
            ImportNotes &notes);

/// Brings a model of opset 7..24 into its opset-17 form (symoc::adaptModel,
/// with the importer's shape folding for constant axes); importModel calls it,
/// and so should anyone who evaluates the model (verify). Idempotent.
void adaptOpset(onnx::ModelProto &model, const std::string &path, AdapterNotes &notes);

/// Loads and imports a model file.
mlir::OwningOpRef<mlir::ModuleOp>
importModelFile(mlir::MLIRContext &ctx, const std::string &path,
                const ImportOptions &options, ImportNotes &notes);

/// Registers every dialect an imported module uses.
void registerImportDialects(mlir::MLIRContext &ctx);

/// The ONNX op types that have a curated op in the graph dialect.
bool isCuratedOp(const std::string &opType);

} // namespace symoc

#endif
