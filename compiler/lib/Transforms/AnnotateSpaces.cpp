//===- AnnotateSpaces.cpp - Test pass: the space analysis as attributes ---===//
//
// Like onnx-mlir's dim-analysis test pass: runs the analysis and writes what
// it found into the IR, so that lit tests can FileCheck it next to the ops.
//   graph.param:  graph.spaces = ["s1", "s2,s3"]   space per axis (pieces of a
//                                                  cut axis joined with ","; a
//                                                  head factor is "heads:sN")
//                 graph.groups = ["1", "S x Scale+"] the group of each of them
//   module:       graph.space_groups = {s1 = "1", s2 = "S x Scale+", ...}
//
//===----------------------------------------------------------------------===//

#include "symoc/Analysis/SpaceAnalysis.h"
#include "symoc/Dialect/Graph/GraphOps.h"
#include "symoc/Transforms/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <map>

namespace symoc {
#define GEN_PASS_DEF_ANNOTATESPACES
#include "symoc/Transforms/Passes.h.inc"
} // namespace symoc

using namespace mlir;

namespace symoc {
namespace {

struct AnnotateSpacesPass : public impl::AnnotateSpacesBase<AnnotateSpacesPass> {
  using AnnotateSpacesBase::AnnotateSpacesBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    AnalysisOptions opts;
    if (loss == "auto")
      opts.loss = LossKind::Auto;
    else if (loss == "cross-entropy")
      opts.loss = LossKind::CrossEntropy;
    else if (loss == "mse")
      opts.loss = LossKind::MSE;
    else if (loss == "none")
      opts.loss = LossKind::None;
    else {
      module.emitError() << "symoc-annotate-spaces: unknown loss '" << loss
                         << "' (expected auto, cross-entropy, mse or none)";
      return signalPassFailure();
    }

    AnalysisResult result = analyzeSpaces(module, opts);
    if (!claimsJson.empty()) {
      std::error_code ec;
      llvm::raw_fd_ostream out(claimsJson, ec);
      if (ec) {
        module.emitError() << "symoc-annotate-spaces: cannot write '" << claimsJson
                           << "': " << ec.message();
        return signalPassFailure();
      }
      out << toJson(result).dump(2) << "\n";
    }
    Builder b(&getContext());

    std::map<std::string, std::string> groupOf;
    SmallVector<NamedAttribute> groups;
    for (const Space &s : result.spaces) {
      groupOf[s.id] = s.group;
      groups.push_back(b.getNamedAttr(s.id, b.getStringAttr(s.group)));
    }
    module->setAttr("graph.space_groups", b.getDictionaryAttr(groups));

    std::map<std::string, const Block *> blocks;
    for (const Block &blk : result.blocks)
      blocks[blk.name] = &blk;
    module.walk([&](graph::ParamOp p) {
      auto it = blocks.find(p.getName().str());
      if (it == blocks.end())
        return;
      SmallVector<Attribute> spaces, groupNames;
      for (const std::vector<std::string> &pieces : it->second->axisSpaces) {
        std::vector<std::string> g;
        for (const std::string &id : pieces) {
          // "heads:sN" is the head factor of a factored axis, in space sN.
          StringRef ref(id), prefix;
          if (ref.consume_front("heads:"))
            prefix = "heads:";
          auto f = groupOf.find(ref.str());
          g.push_back(prefix.str() + (f == groupOf.end() ? "?" : f->second));
        }
        spaces.push_back(b.getStringAttr(llvm::join(pieces, ",")));
        groupNames.push_back(b.getStringAttr(llvm::join(g, ",")));
      }
      p->setAttr("graph.spaces", b.getArrayAttr(spaces));
      p->setAttr("graph.groups", b.getArrayAttr(groupNames));
    });
  }
};

} // namespace
} // namespace symoc
