//===- WireScan.h - Shape-only copy of a binary ONNX model ------*- C++ -*-===//
//
// Private to ModelIO. Walks the protobuf wire format of a ModelProto without
// decoding weight payloads and writes a copy in which every large floating
// point tensor payload (raw_data, packed float_data / double_data) of graph
// initializers and node tensor attributes is replaced by a reference into the
// model file itself (the "deferred" marker documented in ModelIO.h). Parsing
// that copy with protobuf then costs time and memory proportional to the graph,
// not to the weights.
//
//===----------------------------------------------------------------------===//
#ifndef SYMOC_LIB_MODELIO_WIRESCAN_H
#define SYMOC_LIB_MODELIO_WIRESCAN_H

#include <cstdint>
#include <string>

namespace symoc {
namespace wire {

struct ScanResult {
  /// False when the bytes are not well-formed wire format as far as the scan
  /// looked (or use groups); the caller then parses the file with protobuf,
  /// which gives the usual error or, for constructs the scan does not handle,
  /// the usual model.
  bool ok = false;
  /// Non-empty when the model is well formed but must be refused (it uses a
  /// key symoc reserves for its own marker); one line, without the file name.
  std::string error;
  /// The model with deferred payloads.
  std::string stripped;
  int64_t deferredTensors = 0;
  uint64_t deferredBytes = 0;
};

/// Scans `size` bytes at `data` (the whole model file). Payloads of at least
/// `threshold` bytes are deferred; `canonicalPath` is recorded in the marker.
/// With `releaseBehind`, `data` must be a private read-only file mapping: the
/// scan drops its pages behind the cursor (madvise MADV_DONTNEED) as it goes,
/// because each page it touches next to a payload can bring a whole large
/// folio of weight bytes into the resident set (37 MB of vit_b_16's 330 MB
/// otherwise).
ScanResult stripPayloads(const uint8_t *data, uint64_t size, uint64_t threshold,
                         const std::string &canonicalPath, bool releaseBehind = false);

} // namespace wire
} // namespace symoc

#endif // SYMOC_LIB_MODELIO_WIRESCAN_H
