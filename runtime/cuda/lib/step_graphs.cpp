// DeviceOptimizer's automatic CUDA graphs (step_graphs.h).
#include "step_graphs.h"

#include "env.h"
#include "kernels.h"

#include <cstdio>
#include <cstdlib>

namespace symoc::rt::cuda::detail {

StepGraphs::StepGraphs() {
  const std::string v = env_choice("SYMOC_CUDA_GRAPH", {"1", "0", "log"});
  mode_ = v == "0" ? Mode::Off : v == "log" ? Mode::Log : Mode::On;
}

StepGraphs::~StepGraphs() {
  clear();
  if (capture_stream_) cudaStreamDestroy(capture_stream_);
  cudaFree(lr_dev_);
}

void StepGraphs::clear() {
  for (Entry &e : graphs_) cudaGraphExecDestroy(e.exec);
  graphs_.clear();
  seen_.clear();
}

void StepGraphs::remember(Key k) {
  if (!enabled()) return;
  if (seen_.size() == kMaxGraphs) seen_.erase(seen_.begin());
  seen_.push_back(std::move(k));
}

void StepGraphs::refuse(const std::string &why) {
  refused_ = why.empty() ? "the stream capture failed" : why;
  clear();
  if (mode_ == Mode::Log) std::fprintf(stderr, "symoc: steps not captured in a CUDA graph: %s\n", refused_.c_str());
}

bool StepGraphs::step(const Key &k, float lr, cudaStream_t s, const Body &body) {
  if (!enabled()) return false;
  // A caller capturing its own graph gets the eager launches (with the lr of this step).
  cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) {
    cudaGetLastError();
    return false;
  }
  Entry *hit = nullptr;
  for (Entry &e : graphs_)
    if (e.key == k) hit = &e;
  if (!hit) {
    bool repeat = false;
    for (const Key &old : seen_) repeat = repeat || old == k;
    if (!repeat) return false;
    if (!capture(k, body)) return false;
    hit = &graphs_.back();
  }
  hit->used = ++clock_;
  launch_set_scalar(lr_dev_, lr, s);
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaGraphLaunch(hit->exec, s);
  if (e != cudaSuccess) {
    // Nothing of the step ran (the scalar write alone is harmless): step eagerly instead.
    cudaGetLastError();
    refuse(std::string("cudaGraphLaunch: ") + cudaGetErrorString(e));
    return false;
  }
  return true;
}

bool StepGraphs::capture(const Key &k, const Body &body) {
  if (!capture_stream_ && cudaStreamCreateWithFlags(&capture_stream_, cudaStreamNonBlocking) != cudaSuccess) {
    cudaGetLastError();
    refuse("cudaStreamCreate failed");
    return false;
  }
  if (!lr_dev_ && cudaMalloc(&lr_dev_, sizeof(float)) != cudaSuccess) {
    cudaGetLastError();
    refuse("cudaMalloc failed");
    return false;
  }
  // Captured on a private stream (the caller's may be the legacy default stream, which cannot
  // be captured); nothing runs during a capture, the replay goes to the caller's stream.
  if (cudaStreamBeginCapture(capture_stream_, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
    cudaGetLastError();
    refuse("cudaStreamBeginCapture failed");
    return false;
  }
  std::string failed;
  try {
    body(capture_stream_, lr_dev_);
  } catch (const std::exception &ex) {
    failed = ex.what();
  }
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(capture_stream_, &graph);
  if (failed.empty() && e != cudaSuccess) failed = std::string("cudaStreamEndCapture: ") + cudaGetErrorString(e);
  cudaGraphExec_t exec = nullptr;
  if (failed.empty()) {
    e = cudaGraphInstantiate(&exec, graph, 0);
    if (e != cudaSuccess) failed = std::string("cudaGraphInstantiate: ") + cudaGetErrorString(e);
  }
  size_t nodes = 0;
  if (graph) cudaGraphGetNodes(graph, nullptr, &nodes), cudaGraphDestroy(graph);
  cudaGetLastError();
  if (!failed.empty()) {
    refuse(failed);
    return false;
  }
  if (graphs_.size() == kMaxGraphs) { // replace the least recently used
    size_t old = 0;
    for (size_t i = 1; i < graphs_.size(); ++i)
      if (graphs_[i].used < graphs_[old].used) old = i;
    cudaGraphExecDestroy(graphs_[old].exec);
    graphs_.erase(graphs_.begin() + long(old));
  }
  graphs_.push_back(Entry{k, exec, 0});
  if (mode_ == Mode::Log)
    std::fprintf(stderr, "symoc: step captured in a CUDA graph (%zu nodes; %zu graph(s) cached)\n", nodes,
                 graphs_.size());
  return true;
}

} // namespace symoc::rt::cuda::detail
