//===- PlanIR.cpp - The plan as `plan` dialect IR -------------------------===//

#include "symoc/Plan/PlanIR.h"
#include "symoc/Dialect/Plan/PlanDialect.h"
#include "symoc/ModelIO/ModelIO.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "llvm/Support/raw_ostream.h"

namespace symoc::plan {

using namespace mlir;

OwningOpRef<ModuleOp> toPlanIR(MLIRContext &ctx, const Plan &plan) {
  ctx.getOrLoadDialect<planir::PlanDialect>();
  OpBuilder b(&ctx);
  Location loc = FileLineColLoc::get(&ctx, plan.modelPath, 0, 0);
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  b.setInsertionPointToEnd(module->getBody());
  auto opt = b.create<planir::OptimizerOp>(loc, b.getStringAttr(plan.model), b.getStringAttr(plan.policy),
                                           b.getStringAttr(plan.fingerprint), b.getI64IntegerAttr(plan.stateBytes()),
                                           b.getI64IntegerAttr(plan.adamwBytes()));
  Block *body = new Block();
  opt.getBody().push_back(body);
  b.setInsertionPointToEnd(body);
  std::vector<Value> values;
  for (const Param &p : plan.params) {
    auto type = RankedTensorType::get(p.shape, b.getF32Type());
    values.push_back(b.create<planir::ParamOp>(NameLoc::get(b.getStringAttr(p.name)), type, b.getStringAttr(p.name),
                                               b.getStringAttr(p.cls), b.getStringAttr(p.left),
                                               b.getStringAttr(p.right)));
  }
  for (const Unit &u : plan.units) {
    std::vector<Value> operands;
    for (int i : u.params) operands.push_back(values[size_t(i)]);
    std::vector<Attribute> groups;
    if (u.step.kind == "symo") groups = {b.getStringAttr(u.step.left), b.getStringAttr(u.step.right)};
    if (u.step.kind == "symo_coupled") {
      groups.push_back(b.getStringAttr(u.step.left));
      for (int a : u.axes) groups.push_back(b.getI64IntegerAttr(a));
    }
    if (u.step.kind == "lausu") groups.push_back(b.getStringAttr(u.step.lausu));
    std::vector<NamedAttribute> hyper;
    for (auto &[k, v] : u.step.hp) hyper.push_back(b.getNamedAttr(k, b.getF64FloatAttr(v)));
    std::vector<Attribute> gauges;
    for (const Gauge &g : u.step.gauges)
      gauges.push_back(b.getStringAttr(g.kind + "(" + std::to_string(g.a) + ", " + std::to_string(g.b) + ", " +
                                       std::to_string(g.c) + ")"));
    b.create<planir::StepOp>(loc, operands, b.getStringAttr(u.step.kind), b.getArrayAttr(groups),
                             b.getDictionaryAttr(hyper), b.getArrayAttr(gauges), b.getI64IntegerAttr(u.stateBytes),
                             b.getF64FloatAttr(u.flops), b.getStringAttr(u.source));
  }
  return module;
}

std::string formatPlanIR(const Plan &plan) {
  MLIRContext ctx;
  OwningOpRef<ModuleOp> m = toPlanIR(ctx, plan);
  if (failed(verify(*m))) throw Error("internal: the plan IR of " + plan.model + " does not verify");
  std::string text;
  llvm::raw_string_ostream os(text);
  m->print(os);
  os.flush();
  // Round trip: the printed form must parse back to the same text.
  MLIRContext ctx2;
  ctx2.getOrLoadDialect<planir::PlanDialect>();
  OwningOpRef<ModuleOp> back = parseSourceString<ModuleOp>(text, &ctx2);
  std::string again;
  if (back) {
    llvm::raw_string_ostream os2(again);
    back->print(os2);
  }
  if (!back || again != text) throw Error("internal: the plan IR of " + plan.model + " does not round-trip");
  return text;
}

} // namespace symoc::plan
