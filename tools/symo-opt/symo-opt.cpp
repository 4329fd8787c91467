//===- symo-opt.cpp - mlir-opt for symoc's dialects and passes ------------===//

#include "symoc/Dialect/Graph/GraphDialect.h"
#ifdef SYMOC_HAVE_TRANSFORMS
#include "symoc/Transforms/Passes.h"
#endif

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  registry.insert<symoc::graph::GraphDialect, mlir::func::FuncDialect>();
#ifdef SYMOC_HAVE_TRANSFORMS
  symoc::registerSymocPasses();
#endif
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "symoc optimizer driver\n", registry));
}
