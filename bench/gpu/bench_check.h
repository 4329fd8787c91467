// Shared by the standalone CUDA benches in bench/gpu (eigh_*_bench.cu). CK: any CUDA, cuBLAS or
// cuSOLVER status other than 0 ends the program with the call that failed.
#pragma once

#include <cstdio>
#include <cstdlib>

#define CK(x)                                                                                                    \
  do {                                                                                                           \
    auto r_ = (x);                                                                                               \
    if (int(r_) != 0) {                                                                                          \
      std::fprintf(stderr, "%s:%d %s -> %d\n", __FILE__, __LINE__, #x, int(r_));                                 \
      std::exit(1);                                                                                              \
    }                                                                                                            \
  } while (0)

#include <string>
#include <vector>

// Writes the rows (one JSON object each) as a JSON list to `path`.
inline void write_json_rows(const char *path, const std::vector<std::string> &rows) {
  FILE *f = std::fopen(path, "w");
  if (!f) {
    std::fprintf(stderr, "cannot write %s\n", path);
    std::exit(1);
  }
  std::fprintf(f, "[\n");
  for (size_t i = 0; i < rows.size(); ++i) std::fprintf(f, "  %s%s\n", rows[i].c_str(), i + 1 < rows.size() ? "," : "");
  std::fprintf(f, "]\n");
  std::fclose(f);
}
