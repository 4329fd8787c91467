#pragma once
// Coefficients of the odd quintic iterations X <- a X + b (X X^T) X + c (X X^T)^2 X that
// approximate the polar factor: one table for the CPU runtime (linalg.cpp) and the CUDA
// backend (runtime/cuda), so the two cannot drift apart. No dependencies (usable from .cu).

#include <algorithm>

namespace symoc::rt {

struct OddQuintic {
  double a, b, c;
};

// Muon's Newton-Schulz quintic (muon.py), the same for every step.
constexpr OddQuintic kNewtonSchulz5{3.4445, -4.7750, 2.0315};

// Polar Express, degree 5 (Amsel, Persson, Musco & Gower, arXiv 2505.16932, Alg. 1): step s
// uses row min(s, 7); all but the last row are divided by (1.01, 1.01^3, 1.01^5) for rounding
// safety, as there (the input is also scaled by 1/1.01 by the caller).
inline OddQuintic polar_express_step(int s) {
  static constexpr double k[8][3] = {{8.28721201814563, -23.595886519098837, 17.300387312530933},
                                     {4.107059111542203, -2.9478499167379106, 0.5448431082926601},
                                     {3.9486908534822946, -2.908902115962949, 0.5518191394370137},
                                     {3.3184196573706015, -2.488488024314874, 0.51004894012372},
                                     {2.300652019954817, -1.6689039845747493, 0.4188073119525673},
                                     {1.891301407787398, -1.2679958271945868, 0.37680408948524835},
                                     {1.8750014808534479, -1.2500016453999487, 0.3750001645474248},
                                     {1.875, -1.25, 0.375}};
  const int i = std::min(s, 7);
  const double sf = i < 7 ? 1.01 : 1.0;
  return {k[i][0] / sf, k[i][1] / (sf * sf * sf), k[i][2] / (sf * sf * sf * sf * sf)};
}

} // namespace symoc::rt
