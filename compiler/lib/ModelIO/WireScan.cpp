//===- WireScan.cpp - Shape-only copy of a binary ONNX model ---------------===//
//
// Field numbers are those of onnx/onnx.proto (ONNX 1.12):
//   ModelProto.graph = 7
//   GraphProto.node = 1, .initializer = 5
//   NodeProto.attribute = 5
//   AttributeProto.t = 5, .g = 6, .tensors = 10, .graphs = 11
//   TensorProto.dims = 1, .data_type = 2, .float_data = 4, .int32_data = 5,
//     .string_data = 6, .int64_data = 7, .name = 8, .raw_data = 9,
//     .double_data = 10, .uint64_data = 11, .external_data = 13,
//     .data_location = 14
//   StringStringEntryProto.key = 1, .value = 2
// Everything else (training_info, functions, sparse initializers, value infos)
// is copied byte for byte.
//
//===----------------------------------------------------------------------===//

#include "WireScan.h"

#include "symoc/ModelIO/ModelIO.h"

#include <string_view>

#include <sys/mman.h>
#include <unistd.h>

namespace symoc {
namespace wire {
namespace {

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5 };

struct Field {
  uint32_t number = 0;
  uint32_t wire = 0;
  const uint8_t *start = nullptr;   // first byte of the tag
  const uint8_t *payload = nullptr; // kBytes: first byte after the length
  uint64_t length = 0;              // kBytes: payload length
  uint64_t value = 0;               // kVarint: the value
  const uint8_t *end = nullptr;     // one past the field
};

bool readVarint(const uint8_t *&p, const uint8_t *end, uint64_t &v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p >= end)
      return false;
    uint8_t b = *p++;
    v |= uint64_t(b & 0x7f) << shift;
    if (!(b & 0x80))
      return true;
  }
  return false; // more than 10 bytes
}

void writeVarint(std::string &out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char(uint8_t(v) | 0x80));
    v >>= 7;
  }
  out.push_back(char(v));
}

/// Reads the field at p; false on malformed input or a group (wire types 3/4,
/// which ONNX never uses; protobuf then decides).
bool nextField(const uint8_t *&p, const uint8_t *end, Field &f) {
  f.start = p;
  uint64_t tag;
  if (!readVarint(p, end, tag) || tag > 0xffffffffu)
    return false;
  f.number = uint32_t(tag >> 3);
  f.wire = uint32_t(tag & 7);
  if (f.number == 0)
    return false;
  switch (f.wire) {
  case kVarint:
    if (!readVarint(p, end, f.value))
      return false;
    break;
  case kFixed64:
    if (end - p < 8)
      return false;
    p += 8;
    break;
  case kFixed32:
    if (end - p < 4)
      return false;
    p += 4;
    break;
  case kBytes:
    if (!readVarint(p, end, f.length) || f.length > uint64_t(end - p))
      return false;
    f.payload = p;
    p += f.length;
    break;
  default:
    return false;
  }
  f.end = p;
  return true;
}

void append(std::string &out, const Field &f) {
  out.append(reinterpret_cast<const char *>(f.start), f.end - f.start);
}

void appendMessage(std::string &out, uint32_t number, const std::string &body) {
  writeVarint(out, (uint64_t(number) << 3) | kBytes);
  writeVarint(out, body.size());
  out += body;
}

void appendEntry(std::string &out, const std::string &key, const std::string &value) {
  std::string e;
  appendMessage(e, 1, key);
  appendMessage(e, 2, value);
  appendMessage(out, 13, e);
}

class Scanner {
public:
  Scanner(const uint8_t *base, uint64_t threshold, const std::string &canonicalPath,
          bool releaseBehind, ScanResult &result)
      : base(base), threshold(threshold), canonicalPath(canonicalPath),
        releaseBehind(releaseBehind), r(result) {}

  // Each returns false when the bytes are malformed (or r.error is set).
  bool model(const uint8_t *p, const uint8_t *end, std::string &out) {
    return message(p, end, out, [&](const Field &f, std::string &o) {
      return f.number == 7 ? sub(f, o, &Scanner::graph) : copy(f, o);
    });
  }

private:
  using Handler = bool (Scanner::*)(const uint8_t *, const uint8_t *, std::string &);

  template <typename F>
  bool message(const uint8_t *p, const uint8_t *end, std::string &out, F &&onField) {
    Field f;
    while (p < end) {
      if (!nextField(p, end, f) || !onField(f, out))
        return false;
    }
    return true;
  }

  static bool copy(const Field &f, std::string &out) {
    append(out, f);
    return true;
  }

  /// Rewrites a length-delimited submessage with `h` (other wire types are
  /// copied: protobuf reports them).
  bool sub(const Field &f, std::string &out, Handler h) {
    if (f.wire != kBytes)
      return copy(f, out);
    std::string body;
    body.reserve(f.length < 4096 ? f.length : 4096);
    if (!(this->*h)(f.payload, f.payload + f.length, body))
      return false;
    appendMessage(out, f.number, body);
    release(f.end);
    return true;
  }

  /// Drops the mapped pages before `upTo` once 8 MiB have accumulated: every
  /// byte before the cursor has been copied to the output or is a payload.
  void release(const uint8_t *upTo) {
    if (!releaseBehind)
      return;
    static const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
    uint64_t off = uint64_t(upTo - base) / page * page;
    if (off < released + (uint64_t(8) << 20))
      return;
    ::madvise(const_cast<uint8_t *>(base) + released, off - released, MADV_DONTNEED);
    released = off;
  }

  bool graph(const uint8_t *p, const uint8_t *end, std::string &out) {
    return message(p, end, out, [&](const Field &f, std::string &o) {
      if (f.number == 1)
        return sub(f, o, &Scanner::node);
      if (f.number == 5)
        return sub(f, o, &Scanner::tensor);
      return copy(f, o);
    });
  }

  bool node(const uint8_t *p, const uint8_t *end, std::string &out) {
    return message(p, end, out, [&](const Field &f, std::string &o) {
      return f.number == 5 ? sub(f, o, &Scanner::attribute) : copy(f, o);
    });
  }

  bool attribute(const uint8_t *p, const uint8_t *end, std::string &out) {
    return message(p, end, out, [&](const Field &f, std::string &o) {
      switch (f.number) {
      case 5: case 10: return sub(f, o, &Scanner::tensor);
      case 6: case 11: return sub(f, o, &Scanner::graph);
      default: return copy(f, o);
      }
    });
  }

  /// Defers the tensor's payload when it is a single raw_data (or packed
  /// float_data / double_data for float / double tensors) of a floating point
  /// type, at least `threshold` bytes, and the tensor is not already external.
  /// Integer tensors stay inline: shapes, axes and indices are read during
  /// import and by ONNX shape inference, which cannot read external data.
  bool tensor(const uint8_t *p, const uint8_t *end, std::string &out) {
    const uint8_t *begin = p;
    uint64_t dataType = 0, location = 0;
    int raw = 0, floats = 0, doubles = 0, otherData = 0, externalEntries = 0;
    bool reserved = false;
    Field payload, f;
    std::string_view name;
    while (p < end) {
      if (!nextField(p, end, f))
        return false;
      switch (f.number) {
      case 2: if (f.wire == kVarint) dataType = f.value; else ++otherData; break;
      case 14: if (f.wire == kVarint) location = f.value; else ++otherData; break;
      case 8:
        if (f.wire == kBytes)
          name = std::string_view(reinterpret_cast<const char *>(f.payload), f.length);
        break;
      case 9: ++raw; payload = f; if (f.wire != kBytes) ++otherData; break;
      case 4: ++floats; payload = f; if (f.wire != kBytes) ++otherData; break;
      case 10: ++doubles; payload = f; if (f.wire != kBytes) ++otherData; break;
      case 5: case 6: case 7: case 11: ++otherData; break;
      case 13:
        ++externalEntries;
        reserved = reserved || (f.wire == kBytes && reservedKey(f));
        break;
      default: break;
      }
    }
    if (reserved) {
      r.error = "tensor '" + std::string(name) +
                "' has an external_data key starting with 'symoc_', which symoc reserves";
      return false;
    }
    const char *field = nullptr;
    uint64_t unit = 1;
    bool floating = dataType == 1 /*FLOAT*/ || dataType == 10 /*FLOAT16*/ ||
                    dataType == 11 /*DOUBLE*/ || dataType == 16 /*BFLOAT16*/;
    if (floating && location == 0 && externalEntries == 0 && otherData == 0 &&
        raw + floats + doubles == 1) {
      if (raw == 1)
        field = "raw_data";
      else if (floats == 1 && dataType == 1)
        field = "float_data", unit = 4;
      else if (doubles == 1 && dataType == 11)
        field = "double_data", unit = 8;
    }
    if (!field || payload.length < threshold || payload.length % unit != 0) {
      out.append(reinterpret_cast<const char *>(begin), end - begin);
      return true;
    }
    // Everything but the payload, then the marker (appended last, so it wins
    // over an explicit data_location DEFAULT earlier in the message).
    p = begin;
    while (p < end) {
      nextField(p, end, f); // cannot fail: scanned above
      if (f.start != payload.start)
        append(out, f);
    }
    writeVarint(out, (14u << 3) | kVarint);
    writeVarint(out, 1); // EXTERNAL
    appendEntry(out, "location", "");
    appendEntry(out, "offset", std::to_string(payload.payload - base));
    appendEntry(out, "length", std::to_string(payload.length));
    appendEntry(out, kDeferredKey, field);
    appendEntry(out, kDeferredFileKey, canonicalPath);
    ++r.deferredTensors;
    r.deferredBytes += payload.length;
    return true;
  }

  /// True when an external_data entry's key starts with "symoc_".
  static bool reservedKey(const Field &entry) {
    const uint8_t *p = entry.payload, *end = entry.payload + entry.length;
    Field f;
    while (p < end) {
      if (!nextField(p, end, f))
        return false; // protobuf reports it
      if (f.number == 1 && f.wire == kBytes) {
        std::string_view key(reinterpret_cast<const char *>(f.payload), f.length);
        if (key.substr(0, 6) == "symoc_")
          return true;
      }
    }
    return false;
  }

  const uint8_t *base;
  uint64_t threshold;
  const std::string &canonicalPath;
  bool releaseBehind;
  uint64_t released = 0;
  ScanResult &r;
};

} // namespace

ScanResult stripPayloads(const uint8_t *data, uint64_t size, uint64_t threshold,
                         const std::string &canonicalPath, bool releaseBehind) {
  ScanResult r;
  r.stripped.reserve(1 << 16);
  Scanner s(data, threshold, canonicalPath, releaseBehind, r);
  r.ok = s.model(data, data + size, r.stripped) && r.error.empty();
  if (!r.ok)
    r.stripped.clear();
  return r;
}

} // namespace wire
} // namespace symoc
