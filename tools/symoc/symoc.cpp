//===- symoc.cpp - The symoc driver ---------------------------------------===//
//
// symoc import  model.onnx   prints the imported graph-dialect IR
// (analyze, verify and compile arrive with their libraries)
//
//===----------------------------------------------------------------------===//

#include "symoc/Importer/Importer.h"
#include "symoc/ModelIO/ModelIO.h"
#ifdef SYMOC_HAVE_ANALYSIS
#include "symoc/Analysis/SpaceAnalysis.h"
#endif
#ifdef SYMOC_HAVE_VERIFY
#include "symoc/Verify/Verify.h"
#endif
#ifdef SYMOC_HAVE_TRANSFORMS
#include "symoc/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#endif
#ifdef SYMOC_HAVE_COMPILE
#include "symoc/Emit/EmitCpp.h"
#include "symoc/Plan/Claims.h"
#include "symoc/Plan/Policy.h"
#ifdef SYMOC_HAVE_PLAN_IR
#include "symoc/Plan/PlanIR.h"
#endif
#endif

#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "llvm/Support/raw_ostream.h"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <malloc.h>
#include <map>
#include <set>

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
                    "initializer that is not trained (a buffer): a name or a pattern "
                    "('*cos_cached'); repeatable");
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

/// Names inside notes come from the file and may hold any byte: keep every
/// note on one line.
std::string oneLine(const std::string &text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else out += c;
  }
  return out;
}

void printNotes(const symoc::ImportNotes &notes, const std::string &path) {
  for (const auto &line : notes.lines)
    std::cerr << "symoc: note: " << oneLine(path) << ": " << oneLine(line) << "\n";
}

/// The model in its opset-17 form, as the importer sees it: verify evaluates
/// the same graph the claims were found on.
onnx::ModelProto loadAdapted(const std::string &path, symoc::ImportNotes &notes) {
  onnx::ModelProto model = symoc::loadModel(path);
  symoc::AdapterNotes adapted;
  symoc::adaptOpset(model, path, adapted);
  notes.lines.insert(notes.lines.end(), adapted.lines.begin(), adapted.lines.end());
  return model;
}

/// Writes `text` to `path`, never over the model being read (`symoc import m.onnx -o m.onnx`
/// replaced the model with MLIR text; a session-35 audit).
void writeFile(const std::string &path, const std::string &text, const std::string &model) {
  std::error_code ec;
  if (!model.empty() && std::filesystem::equivalent(path, model, ec))
    throw symoc::Error(path + ": is the model being read; write elsewhere");
  std::ofstream out(path);
  if (!out)
    throw symoc::Error(path + ": cannot write (" + std::strerror(errno) + ")");
  out << text;
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
  if (output.empty() || output == "-")
    std::cout << text;
  else
    writeFile(output, text, common.model);
  return 0;
}

#ifdef SYMOC_HAVE_ANALYSIS
struct AnalyzeOptions {
  std::string loss = "auto";
  std::string json, dot;
  bool verify = false;
  bool oneByOne = false; // verify each claim alone instead of by composition
  uint64_t seed = 0;
  int trials = 3;
};

#ifdef SYMOC_HAVE_TRANSFORMS
/// The values of an initializer or a Constant node's tensor, by name.
std::optional<std::vector<double>> constantValues(const onnx::ModelProto &model,
                                                  const std::string &path,
                                                  const std::string &name) {
  try {
    for (const auto &t : model.graph().initializer())
      if (t.name() == name) return symoc::tensorToDouble(t, path);
    for (const auto &n : model.graph().node())
      if (n.op_type() == "Constant" && n.output_size() == 1 && n.output(0) == name)
        for (const auto &a : n.attribute())
          if (a.name() == "value") return symoc::tensorToDouble(a.t(), path);
  } catch (const std::exception &) {
  }
  return std::nullopt;
}
#endif

/// Every barrier, whatever its cause, as notes: one line per op type and
/// reason (with a count), its hint, and the first node.
void printBarrierNotes(const symoc::AnalysisResult &r, const std::string &path) {
  struct Group {
    int count = 0;
    const symoc::Barrier *first = nullptr;
  };
  std::map<std::pair<std::string, std::string>, Group> groups;
  std::vector<std::pair<std::string, std::string>> order;
  for (const auto &b : r.barriers) {
    auto key = std::make_pair(b.opType, b.reason);
    Group &g = groups[key];
    if (g.count++ == 0) {
      g.first = &b;
      order.push_back(key);
    }
  }
  for (const auto &key : order) {
    const Group &g = groups[key];
    std::string line = "barrier: " + std::to_string(g.count) + " x " + key.first + " (" +
                       (g.count > 1 ? "first '" : "'") + g.first->node + "'): " + key.second +
                       "; hint: " + g.first->hint;
    std::cerr << "symoc: note: " << oneLine(path) << ": " << oneLine(line) << "\n";
  }
}

symoc::AnalysisResult analyze(const CommonOptions &common, const AnalyzeOptions &a,
                              onnx::ModelProto &model) {
  mlir::MLIRContext ctx;
  symoc::ImportNotes notes;
  model = loadAdapted(common.model, notes);
  auto module = symoc::importModel(ctx, model, common.model, common.importOptions(), notes);
  printNotes(notes, common.model);
#ifdef SYMOC_HAVE_TRANSFORMS
  // Recompose decomposed norms and activations so their rules apply (verify
  // still checks every claim on the original graph).
  auto pm = mlir::PassManager::on<mlir::ModuleOp>(&ctx);
  // Rotary tables are large float constants the importer keeps shape-only:
  // the rotary pass reads them from the model by name.
  symoc::addNormalizationPasses(pm, [&](llvm::StringRef name) {
    return constantValues(model, common.model, name.str());
  });
  if (mlir::failed(pm.run(*module)))
    throw symoc::Error(common.model + ": normalization passes failed");
#endif
  symoc::AnalysisOptions opts;
  opts.loss = a.loss == "cross-entropy" ? symoc::LossKind::CrossEntropy
              : a.loss == "mse"         ? symoc::LossKind::MSE
              : a.loss == "none"        ? symoc::LossKind::None
                                        : symoc::LossKind::Auto;
  symoc::AnalysisResult r = symoc::analyzeSpaces(*module, opts);
  r.model = common.model;
  printBarrierNotes(r, common.model);
  return r;
}

#ifdef SYMOC_HAVE_VERIFY
/// Whether verify compares a shift claim's named output after a softmax (what cross-entropy
/// sees) or raw: --loss cross-entropy yes, mse and none no, auto as the claims document's
/// "loss" says (symoc's own documents record the analysis' loss; a hand-written one without
/// it is taken at its word).
bool outputsSeeSoftmax(const std::string &loss, const nlohmann::json &doc) {
  if (loss == "mse" || loss == "none")
    return false;
  if (loss != "auto" || !doc.is_object() || !doc.contains("loss") || !doc["loss"].is_string())
    return true;
  return doc["loss"].get<std::string>().rfind("cross-entropy", 0) == 0;
}

int runVerifyOn(const onnx::ModelProto &model, const std::string &path,
                const nlohmann::json &claims, const CommonOptions &common,
                const AnalyzeOptions &a, const std::string &jsonOut,
                const std::string &claimsName) {
  symoc::VerifyOptions vo;
  vo.seed = a.seed;
  vo.trials = a.trials;
  vo.compose = !a.oneByOne;
  vo.dims = parseDims(common.dims);
  vo.claimsName = claimsName;
  vo.outputsSeeSoftmax = outputsSeeSoftmax(a.loss, claims);
  symoc::VerifyReport rep = symoc::verify(model, path, claims, vo);
  symoc::printReport(rep, std::cout);
  if (!jsonOut.empty())
    writeFile(jsonOut, symoc::toJson(rep).dump(2) + "\n", path);
  return rep.ok() ? 0 : 1;
}
#endif

int runAnalyze(const CommonOptions &common, const AnalyzeOptions &a) {
  onnx::ModelProto model;
  symoc::AnalysisResult r = analyze(common, a, model);
  std::cout << symoc::formatReport(r);
  nlohmann::json j = symoc::toJson(r);
  if (!a.json.empty()) {
    writeFile(a.json, j.dump(2) + "\n", common.model);
    std::cerr << "symoc: wrote " << a.json << "\n";
  }
  if (!a.dot.empty()) {
    writeFile(a.dot, symoc::formatDot(r), common.model);
    std::cerr << "symoc: wrote " << a.dot << " (render: dot -Tpng " << a.dot << " -o spaces.png)\n";
  }
#ifdef SYMOC_HAVE_VERIFY
  if (a.verify) {
    std::cout << "\nverification (seed " << a.seed << ", " << a.trials << " trials):\n";
    return runVerifyOn(model, common.model, j, common, a, "", "analysis");
  }
#endif
  return 0;
}

#ifdef SYMOC_HAVE_VERIFY
int runVerify(const CommonOptions &common, const AnalyzeOptions &a,
              const std::string &claimsFile, const std::string &jsonOut) {
  onnx::ModelProto model;
  nlohmann::json claims;
  std::string name = "analysis";
  if (!claimsFile.empty()) {
    symoc::ImportNotes notes;
    model = loadAdapted(common.model, notes);
    printNotes(notes, common.model);
    std::ifstream in(claimsFile);
    if (!in)
      throw symoc::Error(claimsFile + ": cannot read");
    try {
      claims = nlohmann::json::parse(in);
    } catch (const std::exception &e) {
      throw symoc::Error(claimsFile + ": not valid JSON: " + e.what());
    }
    name = claimsFile;
  } else {
    claims = symoc::toJson(analyze(common, a, model));
  }
  return runVerifyOn(model, common.model, claims, common, a, jsonOut, name);
}
#endif
#endif

#if defined(SYMOC_HAVE_ANALYSIS) && defined(SYMOC_HAVE_COMPILE)
// ---- symoc compile and the one-word path `symoc model.onnx` (owner: compile) ----
struct CompileOptions {
  // The plan's defaults (one place: PolicyOptions).
  std::string policy = symoc::plan::PolicyOptions().policy;
  std::string output;          // default ./<model>_optimizer
  std::string emit = "cpp";    // cpp | plan | json
  std::string config;
  std::vector<std::string> overrides;
  std::string budget;          // bytes, with an optional K/M/G suffix (powers of 1024)
  std::string name;
  std::string runtimeDir;
  int64_t maxDense = symoc::plan::PolicyOptions().maxDense;
  std::string granularity = symoc::plan::PolicyOptions().granularity;
  std::string lineNorm = symoc::plan::PolicyOptions().lineNorm ? "on" : "off";
  std::string embedding = symoc::plan::PolicyOptions().embedding;
  bool dryRun = false;
  bool noVerify = false;    // build on the claims without checking them (recorded in the plan)
  std::string claimsFile;   // the claims to build on, instead of the analysis' own

  void add(CLI::App *cmd, AnalyzeOptions &a) {
    cmd->add_option("--policy", policy, "how blocks are stepped: symo (default), symo-large, symo-coupled, "
                                        "muon, shampoo, lau-su, adam-mini, adamw, ddc-adam, ddc-muon, auto, "
                                        "auto-norm (= auto with --line-norm on)");
    cmd->add_option("-o,--output", output, "output folder (default ./<model>_optimizer)");
    cmd->add_option("--emit", emit, "cpp: write the optimizer sources; plan: print the plan; json: print plan.json; "
                                    "mlir: print the plan as `plan` dialect IR")
        ->check(CLI::IsMember({"cpp", "plan", "json", "mlir"}));
    cmd->add_flag("--dry-run", dryRun, "print the per-block table (state bytes, FLOPs) and write nothing");
    cmd->add_option("--config", config, "JSON file of per-block steps: {\"name or glob\": \"STEP\"}");
    cmd->add_option("--override", overrides, "NAME=STEP for one block or a glob (repeatable; wins over --config)");
    cmd->add_option("--budget-bytes", budget, "optimizer state budget for --policy auto (e.g. 64M)");
    cmd->add_option("--name", name, "model name used for files and targets (default: the file name)");
    cmd->add_option("--runtime-dir", runtimeDir, "default SYMOC_RUNTIME_DIR written into the generated CMakeLists.txt");
    cmd->add_option("--max-dense", maxDense, "largest n x n matrix a Symo step may keep (default 4096)");
    cmd->add_option("--granularity", granularity, "components of head-structured axes under symo: "
                                                  "matrix, kv-group, head-pair, head, "
                                                  "whole (a whole-axis side wins over pieces), "
                                                  "whole-head-pair (default: whole, fused-axis role pieces per head pair)");
    cmd->add_option("--line-norm", lineNorm, "auto: NorMuon's per-line normalization on Muon blocks whose claims "
                                             "allow it (default on, by measurement; off: plain Muon)")
        ->check(CLI::IsMember({"on", "off"}));
    cmd->add_option("--embedding", embedding, "auto: the rule of untied token embeddings: row (default, by measurement: "
                                              "Lau-Su row normalization at lr x 0.3 sqrt(d)) or adamw")
        ->check(CLI::IsMember({"adamw", "row"}));
    cmd->add_option("--loss", a.loss, "the training loss: auto|cross-entropy|mse|none")
        ->check(CLI::IsMember({"auto", "cross-entropy", "mse", "none"}));
    cmd->add_option("--claims", claimsFile,
                    "build on the claims of this file (docs/symmetry-schema.md) instead of the analysis'");
    cmd->add_flag("--no-verify", noVerify,
                  "do not check the claims numerically before building on them (the plan notes it)");
    cmd->add_option("--seed", a.seed, "random seed of the verification");
    cmd->add_option("--trials", a.trials,
                    "trials of the verification (random inputs and group elements; "
                    "sign-flip claims get one element more)");
    cmd->add_flag("--one-by-one", a.oneByOne, "verify each claim alone (default: by composition)");
  }
};

int64_t parseBytes(const std::string &s) {
  if (s.empty()) return -1;
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::logic_error &) {
    throw symoc::Error("--budget-bytes " + s + ": expected a number of bytes, e.g. 1048576 or 64M");
  }
  std::string suf = s.substr(used);
  double mul = suf.empty() || suf == "B" ? 1 : suf == "K" || suf == "KiB" ? 1024.0
               : suf == "M" || suf == "MiB" ? 1048576.0 : suf == "G" || suf == "GiB" ? 1073741824.0 : -1;
  // NaN, infinities and sizes past int64 (1e300G) are not sizes (converting them is undefined).
  if (mul < 0 || !(v >= 0) || !std::isfinite(v * mul) || v * mul >= 9.2e18)
    throw symoc::Error("--budget-bytes " + s + ": expected a number of bytes, e.g. 1048576 or 64M");
  return int64_t(v * mul);
}

std::string defaultRuntimeDir() {
#ifdef SYMOC_RUNTIME_SOURCE_DIR
  std::ifstream probe(std::string(SYMOC_RUNTIME_SOURCE_DIR) + "/include/symoc/runtime/optimizer_api.h");
  if (probe) return SYMOC_RUNTIME_SOURCE_DIR;
#endif
  return "";
}

int compileFrom(const symoc::AnalysisResult &r, const CompileOptions &c,
                const std::vector<std::string> &notes) {
  symoc::plan::PolicyOptions po;
  po.policy = c.policy;
  po.modelName = c.name;
  po.configFile = c.config;
  po.overrides = c.overrides;
  po.budgetBytes = parseBytes(c.budget);
  po.maxDense = c.maxDense;
  po.granularity = c.granularity;
  po.lineNorm = c.lineNorm == "on";
  po.embedding = c.embedding;
  symoc::plan::Plan plan = symoc::plan::buildPlan(r, po);
  plan.notes.insert(plan.notes.begin(), notes.begin(), notes.end());
  if (c.dryRun) {
    std::cout << symoc::plan::formatDryRun(plan);
    return 0;
  }
  if (c.emit == "plan") {
    std::cout << symoc::plan::formatPlan(plan);
    return 0;
  }
  if (c.emit == "json") {
    std::cout << symoc::plan::toJson(plan).dump(2) << "\n";
    return 0;
  }
  if (c.emit == "mlir") {
#ifdef SYMOC_HAVE_PLAN_IR
    std::cout << symoc::plan::formatPlanIR(plan);
    return 0;
#else
    throw symoc::Error("--emit mlir: this symoc was built without the plan dialect");
#endif
  }
  std::string dir = c.output.empty() ? "./" + plan.model + "_optimizer" : c.output;
  std::string rt = c.runtimeDir.empty() ? defaultRuntimeDir() : c.runtimeDir;
  auto files = symoc::emit::writeOptimizer(plan, dir, rt);
  std::cerr << "symoc: " << plan.model << ", policy " << plan.policy << ": " << plan.params.size()
            << " parameters in " << plan.units.size() << " blocks; optimizer state "
            << symoc::plan::formatBytes(plan.stateBytes()) << " (AdamW "
            << symoc::plan::formatBytes(plan.adamwBytes()) << ")\n";
  for (const auto &f : files.written) std::cerr << "symoc: wrote " << f << "\n";
  std::cerr << "symoc: use it from CMake: add_subdirectory(" << dir << ") + target_link_libraries(app "
            << plan.model << "_optimizer)" << (rt.empty() ? " with -DSYMOC_RUNTIME_DIR=<symoc>/runtime" : "")
            << "\n";
  return 0;
}

/// The claims a compile builds on: the analysis' own or those of --claims FILE,
/// checked numerically unless --no-verify. A claim that fails is dropped (each
/// one named on stderr) and no step is built on it; the plan's notes say what
/// was verified, dropped or skipped.
std::vector<std::string> gateClaims(symoc::AnalysisResult &r, const onnx::ModelProto &model,
                                    const CommonOptions &common, const AnalyzeOptions &a,
                                    const CompileOptions &c) {
  nlohmann::json doc;
  std::string docName = "analysis";
  if (!c.claimsFile.empty()) {
    std::ifstream in(c.claimsFile);
    if (!in)
      throw symoc::Error(c.claimsFile + ": cannot read");
    try {
      doc = nlohmann::json::parse(in);
    } catch (const std::exception &e) {
      throw symoc::Error(c.claimsFile + ": not valid JSON: " + e.what());
    }
    docName = c.claimsFile;
    r.claims = symoc::plan::claimsFromJson(doc, docName);
    // A claim that moves a tensor no step trains (a --frozen name, a constant) is not a
    // symmetry of the training problem: verify moved the buffer too, and the plan would have
    // built its step on the trained members alone (a session-35 audit).
    std::set<std::string> trained, untrained;
    for (const symoc::Block &b : r.blocks)
      trained.insert(b.name);
    for (const symoc::Claim &cl : r.claims)
      for (const symoc::Member &m : cl.members)
        if (!trained.count(m.initializer)) {
          std::cerr << "symoc: warning: " << oneLine(docName) << ": claim " << oneLine(cl.id) << " moves '"
                    << oneLine(m.initializer) << "', which is not a trained parameter: dropped, no step is built on it\n";
          untrained.insert(cl.id);
          break;
        }
    if (!untrained.empty()) {
      r.claims.erase(std::remove_if(r.claims.begin(), r.claims.end(),
                                    [&](const symoc::Claim &cl) { return untrained.count(cl.id) > 0; }),
                     r.claims.end());
      nlohmann::json kept = nlohmann::json::array();
      for (const auto &j : doc["claims"])
        if (!(j.is_object() && j.contains("id") && j["id"].is_string() &&
              untrained.count(j["id"].get<std::string>())))
          kept.push_back(j);
      doc["claims"] = kept;
    }
    for (symoc::Space &s : r.spaces) {
      s.claimIds.clear();
      for (const symoc::Claim &cl : r.claims)
        if (cl.space == s.id)
          s.claimIds.push_back(cl.id);
    }
  } else {
    doc = symoc::toJson(r);
  }
  std::vector<std::string> notes;
  if (c.noVerify) {
#ifdef SYMOC_HAVE_VERIFY
    // Not run, but they must fit the model: a member past its axis was dropped silently.
    if (!c.claimsFile.empty())
      symoc::checkClaimsFit(model, docName, doc);
#endif
    notes.push_back(fmt::format("claims NOT verified (--no-verify): {} claim(s) of {} used as given",
                                r.claims.size(), docName));
    return notes;
  }
#ifdef SYMOC_HAVE_VERIFY
  if (r.claims.empty())
    return {"no claims to verify"};
  symoc::VerifyOptions vo;
  vo.seed = a.seed;
  vo.trials = a.trials;
  vo.compose = !a.oneByOne;
  vo.dims = parseDims(common.dims);
  vo.claimsName = docName;
  vo.defaultDim = 2; // symbolic sizes not given with --dim (noted in the plan)
  // The loss decides what a shifted output must keep, here as in `symoc verify` (a gauge was
  // built on a shift claim that `verify --loss mse` refutes; a session-35 audit).
  vo.outputsSeeSoftmax = outputsSeeSoftmax(a.loss, doc);
  symoc::VerifyReport rep;
  try {
    rep = symoc::verify(model, common.model, doc, vo);
  } catch (const std::exception &e) {
    throw symoc::Error(std::string(e.what()) +
                       " (symoc compile verifies every claim first: give --dim NAME=N for symbolic "
                       "dimensions, or --no-verify to build on unverified claims)");
  }
  if (rep.controlRan && rep.control.pass && rep.controlInconclusive.empty())
    throw symoc::Error(common.model + ": the verification's negative control passed, so no claim "
                       "can be trusted (--no-verify to build on unverified claims)");
  std::set<std::string> dropped;
  for (const symoc::ClaimResult &cr : rep.claims) {
    if (cr.pass)
      continue;
    dropped.insert(cr.id);
    if (cr.unresolved)
      std::cerr << fmt::format("symoc: warning: {}: claim {} ({}) cannot be verified: rounding-level "
                               "noise moves the outputs by {:.1e}, the claim's check by {:.1e} "
                               "(> {:.0e}): dropped, no step is built on it\n",
                               docName, cr.id, cr.description, cr.roundingRelErr, cr.maxRelErr,
                               cr.tol);
    else
      std::cerr << fmt::format("symoc: warning: {}: claim {} ({}) fails verification (rel err {:.1e} > "
                               "{:.0e}): dropped, no step is built on it\n",
                               docName, cr.id, cr.description, cr.maxRelErr, cr.tol);
  }
  symoc::plan::dropClaims(r, dropped);
  std::string note = fmt::format("claims verified: {} of {} hold (seed {}, {} trials, {} forward runs)",
                                 rep.claims.size() - dropped.size(), rep.claims.size(), rep.seed,
                                 rep.trials, rep.forwards);
  if (!dropped.empty()) {
    std::string ids;
    for (const auto &id : dropped)
      ids += (ids.empty() ? "" : ", ") + id;
    note += "; dropped (failed): " + ids;
  }
  if (!rep.assumedDims.empty()) {
    std::string dims;
    for (const auto &d : rep.assumedDims)
      dims += (dims.empty() ? "" : ", ") + d;
    note += "; symbolic sizes taken as " + dims + " (--dim to choose)";
  }
  notes.push_back(note);
  for (const auto &n : rep.notes)
    notes.push_back("verify: " + n);
#else
  throw symoc::Error("this symoc was built without verify: pass --no-verify");
#endif
  return notes;
}

int runCompile(const CommonOptions &common, const AnalyzeOptions &a, const CompileOptions &c) {
  onnx::ModelProto model;
  symoc::AnalysisResult r = analyze(common, a, model);
  std::vector<std::string> notes = gateClaims(r, model, common, a, c);
  return compileFrom(r, c, notes);
}

bool isOneWord(int argc, char **argv) {
  if (argc < 2 || argv[1][0] == '-') return false;
  std::string a = argv[1];
  for (const char *cmd : {"import", "analyze", "verify", "compile"})
    if (a == cmd) return false;
  auto ends = [&](const std::string &s) { return a.size() > s.size() && a.compare(a.size() - s.size(), s.size(), s) == 0; };
  return ends(".onnx") || ends(".onnxtxt");
}

/// `symoc model.onnx [compile options]`: the report summary, then the default policy's
/// optimizer in ./<model>_optimizer/.
int runOneWord(int argc, char **argv) {
  CLI::App app{"symoc MODEL.onnx: analyze the model and compile its optimizer (policy symo)"};
  CommonOptions common;
  AnalyzeOptions a;
  CompileOptions c;
  common.add(&app);
  c.add(&app, a);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &e) {
    return app.exit(e);
  }
  try {
    if (c.dryRun || c.emit != "cpp") return runCompile(common, a, c);
    onnx::ModelProto model;
    symoc::AnalysisResult r = analyze(common, a, model);
    std::cout << symoc::formatReport(r) << "\n";
    std::vector<std::string> notes = gateClaims(r, model, common, a, c);
    return compileFrom(r, c, notes);
  } catch (const std::exception &e) {
    std::cerr << "symoc: error: " << e.what() << "\n";
    return 1;
  }
}
#endif

} // namespace

int main(int argc, char **argv) {
  // The reference evaluator allocates and frees activation-sized tensors on every
  // forward run; with glibc's defaults each one is a fresh mmap that page-faults in
  // again (a quarter of verify's time on vit_b_16). Keep freed memory in the heap.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#if defined(SYMOC_HAVE_ANALYSIS) && defined(SYMOC_HAVE_COMPILE)
  if (isOneWord(argc, argv))
    return runOneWord(argc, argv);
#endif
  CLI::App app{"symoc: turns a network's weight-space symmetries into an optimizer"};
  app.set_version_flag("--version", std::string("symoc ") + SYMOC_VERSION);
  app.require_subcommand(1);

  CommonOptions importOpts;
  std::string importOut;
  CLI::App *import = app.add_subcommand("import", "print the imported graph-dialect IR");
  importOpts.add(import);
  import->add_option("-o,--output", importOut, "write the IR here instead of stdout");

#ifdef SYMOC_HAVE_ANALYSIS
  CommonOptions analyzeCommon;
  AnalyzeOptions analyzeOpts;
  CLI::App *analyzeCmd = app.add_subcommand(
      "analyze", "report which symmetries hold, per space and per parameter");
  analyzeCommon.add(analyzeCmd);
  auto addLoss = [](CLI::App *cmd, AnalyzeOptions &o) {
    cmd->add_option("--loss", o.loss,
                    "the training loss applied to the outputs: auto|cross-entropy|mse|none "
                    "(auto: outputs fixed unless the graph ends in Softmax)")
        ->check(CLI::IsMember({"auto", "cross-entropy", "mse", "none"}));
  };
  addLoss(analyzeCmd, analyzeOpts);
  analyzeCmd->add_option("--json", analyzeOpts.json, "write the claims document (docs/symmetry-schema.md)");
  analyzeCmd->add_option("--dot", analyzeOpts.dot, "write a Graphviz picture of parameters and spaces");
#ifdef SYMOC_HAVE_VERIFY
  analyzeCmd->add_flag("--verify", analyzeOpts.verify, "check every claim numerically");
  analyzeCmd->add_option("--seed", analyzeOpts.seed, "random seed for --verify");
  analyzeCmd->add_option("--trials", analyzeOpts.trials,
                         "trials for --verify (random inputs and group elements; "
                         "sign-flip claims get one element more)");
  analyzeCmd->add_flag("--one-by-one", analyzeOpts.oneByOne,
                       "--verify checks each claim alone (default: batches of claims by composition)");

  CommonOptions verifyCommon;
  AnalyzeOptions verifyOpts;
  std::string verifyClaims, verifyJson;
  CLI::App *verifyCmd = app.add_subcommand(
      "verify", "check each claimed symmetry numerically on the model");
  verifyCommon.add(verifyCmd);
  addLoss(verifyCmd, verifyOpts);
  verifyCmd->add_option("--claims", verifyClaims, "check this claims file instead of the analysis");
  verifyCmd->add_option("--json", verifyJson, "write the results as JSON");
  verifyCmd->add_option("--seed", verifyOpts.seed, "random seed");
  verifyCmd->add_option("--trials", verifyOpts.trials,
                        "trials (random inputs and group elements; sign-flip claims get one "
                        "element more)");
  verifyCmd->add_flag("--one-by-one", verifyOpts.oneByOne,
                      "check each claim alone (default: batches of claims by composition)");
#endif
#endif
#if defined(SYMOC_HAVE_ANALYSIS) && defined(SYMOC_HAVE_COMPILE)
  CommonOptions compileCommon;
  AnalyzeOptions compileAnalyze;
  CompileOptions compileOpts;
  CLI::App *compileCmd = app.add_subcommand(
      "compile", "generate the model's optimizer (C++ sources, CMakeLists.txt, plan.json)");
  compileCommon.add(compileCmd);
  compileOpts.add(compileCmd, compileAnalyze);
#endif

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &e) {
    return app.exit(e);
  }

  try {
    if (*import)
      return runImport(importOpts, importOut);
#ifdef SYMOC_HAVE_ANALYSIS
    if (*analyzeCmd)
      return runAnalyze(analyzeCommon, analyzeOpts);
#ifdef SYMOC_HAVE_VERIFY
    if (*verifyCmd)
      return runVerify(verifyCommon, verifyOpts, verifyClaims, verifyJson);
#endif
#endif
#if defined(SYMOC_HAVE_ANALYSIS) && defined(SYMOC_HAVE_COMPILE)
    if (*compileCmd)
      return runCompile(compileCommon, compileAnalyze, compileOpts);
#endif
  } catch (const symoc::Error &e) {
    std::cerr << "symoc: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception &e) {
    std::cerr << "symoc: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
