//===- ShapeInference.cpp - ONNX shape inference, crash-proof -------------===//

#include "ShapeInference.h"

#include "symoc/ModelIO/ModelIO.h"

#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <functional>

namespace symoc {
namespace {

/// A Cast to an integer type narrower than 64 bits or unsigned: ONNX 1.12's data propagation
/// copies the values through it without wrapping (Cast(260, uint8) propagated as 260, where
/// the op gives 4: a Reshape target, then a wrong result shape and a false S(260); a session-35
/// audit), so values are not propagated in a graph that has one.
bool hasNarrowIntegerCast(const onnx::GraphProto &g) {
  using TP = onnx::TensorProto;
  for (const auto &n : g.node()) {
    if (n.op_type() == "Cast" && (n.domain().empty() || n.domain() == "ai.onnx"))
      for (const auto &a : n.attribute())
        if (a.name() == "to" && (a.i() == TP::INT8 || a.i() == TP::UINT8 || a.i() == TP::INT16 ||
                                 a.i() == TP::UINT16 || a.i() == TP::UINT32 || a.i() == TP::UINT64))
          return true;
    for (const auto &a : n.attribute())
      if (a.has_g() && hasNarrowIntegerCast(a.g()))
        return true;
  }
  return false;
}

/// Runs ONNX's inference in place; returns an error text or "".
std::string inferInPlace(onnx::ModelProto &model) {
  try {
    onnx::ShapeInferenceOptions options{/*check_type=*/false, /*error_mode=*/0,
                                        /*enable_data_propagation=*/!hasNarrowIntegerCast(model.graph())};
    onnx::shape_inference::InferShapes(model, onnx::OpSchemaRegistry::Instance(),
                                       options);
  } catch (const std::exception &e) {
    return e.what();
  }
  return "";
}

struct ChildResult {
  bool died = false; // by a signal, or without sending a complete answer
  int signal = 0;
  std::string payload;
};

/// Runs `work` in a forked child and returns what it wrote. When fork or pipe
/// fail (no processes left), `work` runs here instead.
ChildResult inChild(const std::function<std::string()> &work) {
  int fds[2];
  if (pipe(fds) != 0)
    return {false, 0, work()};
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return {false, 0, work()};
  }
  if (pid == 0) {
    close(fds[0]);
    std::string out = work();
    // A length prefix tells a complete answer from one cut short.
    uint64_t n = out.size();
    std::string msg(reinterpret_cast<const char *>(&n), sizeof n);
    msg += out;
    for (size_t done = 0; done < msg.size();) {
      ssize_t w = write(fds[1], msg.data() + done, msg.size() - done);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        _exit(3);
      done += size_t(w);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string data;
  char buf[1 << 16];
  for (;;) {
    ssize_t r = read(fds[0], buf, sizeof buf);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    data.append(buf, size_t(r));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ChildResult res;
  uint64_t n = 0;
  if (WIFSIGNALED(status)) {
    res.died = true;
    res.signal = WTERMSIG(status);
    return res;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || data.size() < sizeof n) {
    res.died = true;
    return res;
  }
  std::memcpy(&n, data.data(), sizeof n);
  if (data.size() - sizeof n != n) {
    res.died = true;
    return res;
  }
  res.payload = data.substr(sizeof n);
  return res;
}

/// The child's answer: the error text, then the inferred value_info and
/// outputs as a serialized GraphProto.
std::string inferAndPack(onnx::ModelProto &model) {
  std::string err = inferInPlace(model);
  onnx::GraphProto g;
  *g.mutable_value_info() = model.graph().value_info();
  *g.mutable_output() = model.graph().output();
  uint64_t n = err.size();
  std::string out(reinterpret_cast<const char *>(&n), sizeof n);
  return out + err + g.SerializeAsString();
}

/// Whether inference on the first `count` nodes (no outputs) kills the child.
bool prefixDies(const onnx::ModelProto &model, int count) {
  return inChild([&]() {
           onnx::ModelProto m = model;
           auto *nodes = m.mutable_graph()->mutable_node();
           nodes->DeleteSubrange(count, nodes->size() - count);
           m.mutable_graph()->clear_output();
           inferInPlace(m);
           return std::string("ok");
         })
      .died;
}

} // namespace

std::string inferShapes(onnx::ModelProto &model, const std::string &path) {
  // The schema registry is built on first use: build it here, so a child
  // never starts in the middle of that (its locks held by another thread).
  (void)onnx::OpSchemaRegistry::Instance();
  ChildResult res = inChild([&]() { return inferAndPack(model); });
  if (!res.died) {
    uint64_t n = 0;
    onnx::GraphProto g;
    if (res.payload.size() >= sizeof n) {
      std::memcpy(&n, res.payload.data(), sizeof n);
      if (res.payload.size() - sizeof n >= n &&
          g.ParseFromString(res.payload.substr(sizeof n + n))) {
        *model.mutable_graph()->mutable_value_info() = g.value_info();
        *model.mutable_graph()->mutable_output() = g.output();
        return res.payload.substr(sizeof n, n);
      }
    }
    res.died = true;
  }
  // The child died: find the first node whose inference kills it (inference
  // runs node by node in graph order, so a prefix dies once it holds it).
  const int total = model.graph().node_size();
  int lo = 0, hi = total; // prefix lo survives, prefix hi dies
  if (!prefixDies(model, hi)) {
    fail(path, "ONNX shape inference failed in a child process" +
                   (res.signal ? " (signal " + std::to_string(res.signal) + ")"
                               : std::string()));
  }
  while (hi - lo > 1) {
    int mid = lo + (hi - lo) / 2;
    (prefixDies(model, mid) ? hi : lo) = mid;
  }
  const onnx::NodeProto &n = model.graph().node(hi - 1);
  std::string name = n.name().empty() ? (n.output_size() ? n.output(0) : "") : n.name();
  fail(path, "ONNX shape inference crashed" +
                 (res.signal ? " (" + std::string(strsignal(res.signal)) + ")" : std::string()) +
                 " on node '" + name + "' (" + n.op_type() + "): the node is malformed");
}

} // namespace symoc
