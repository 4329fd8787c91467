#include "symoc/runtime/optim.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace symoc::rt {

Key Rule::key(const Param &p, const char *what) const {
  if (tag_cache_.empty()) tag_cache_ = "/" + tag() + ".";
  return Key(p.name, tag_cache_, what);
}

namespace {
// Parallel elementwise loops only pay off on large blocks (2 cores shared with BLAS).
constexpr int64_t kParMin = 1 << 16;
} // namespace

void Rule::step(Context &ctx, State &st, const Param *ps, size_t n, float lr) {
  Workspace::Frame f(ctx.workspace());
  ++ctx.stats().steps;
  Param *live = f.array<Param>(n);
  const float **gptr = f.array<const float *>(n);
  bool *skip = f.array<bool>(n);
  bool any_skip = false;
  for (size_t i = 0; i < n; ++i) {
    const Param &p = ps[i];
    if (!p.name) throw Error("step: a block has no name (Param::name is null)");
    if (!p.w || !p.g || p.rows < 0 || p.cols < 0)
      throw Error(std::string("step: block '") + p.name + "' has a null buffer or negative shape");
    skip[i] = false;
    gptr[i] = p.g;
    if (all_finite(p.g, size_t(p.size()))) continue;
    if (nonfinite == NonFinitePolicy::Throw)
      throw Error(std::string("step: gradient of block '") + p.name + "' contains NaN or Inf");
    if (nonfinite == NonFinitePolicy::Skip) {
      skip[i] = any_skip = true;
      continue;
    }
    // Zero: a finite copy of the gradient replaces the caller's for this call.
    float *g = f.floats(size_t(p.size()));
    for (int64_t j = 0; j < p.size(); ++j) g[j] = std::isfinite(p.g[j]) ? p.g[j] : 0.f;
    gptr[i] = g;
    ++ctx.stats().zeroed_nonfinite;
  }
  if (any_skip && coupled())
    for (size_t i = 0; i < n; ++i) skip[i] = true;
  size_t nlive = 0;
  for (size_t i = 0; i < n; ++i) {
    if (skip[i]) {
      ++st.counter(Key(ps[i].name, "/nonfinite_skips"));
      ++ctx.stats().skipped_nonfinite;
      continue;
    }
    live[nlive] = ps[i];
    live[nlive].g = gptr[i];
    ++nlive;
  }
  if (nlive == 0) return;
  if (fused_step(ctx, st, live, nlive, lr)) return;
  float **D = f.array<float *>(nlive);
  for (size_t i = 0; i < nlive; ++i) D[i] = f.floats(size_t(live[i].size()));
  directions(ctx, st, live, nlive, D);
  const float decay = 1.f - lr * decoupled_weight_decay();
  for (size_t i = 0; i < nlive; ++i) {
    const int64_t sz = live[i].size();
    float *w = live[i].w;
    const float *d = D[i];
#pragma omp parallel for simd if (sz > kParMin)
    for (int64_t j = 0; j < sz; ++j) w[j] = w[j] * decay - lr * d[j];
  }
}

// ------------------------------------------------------------------------ SGD
void SGD::directions(Context &, State &st, const Param *ps, size_t n, float *const *D) {
  for (size_t i = 0; i < n; ++i) {
    const Param &p = ps[i];
    const int64_t sz = p.size();
    float *d = D[i];
    const float *g = p.g, *w = p.w;
    const float wd = c_.weight_decay, mom = c_.momentum, damp = 1.f - c_.dampening;
    if (mom == 0.f) {
#pragma omp parallel for simd if (sz > kParMin)
      for (int64_t j = 0; j < sz; ++j) d[j] = g[j] + wd * w[j];
      continue;
    }
    int64_t &t = st.counter(key(p, "t"));
    float *buf = st.buffer(key(p, "momentum"), {p.rows, p.cols});
    const bool first = t++ == 0; // torch: the first buffer is d_p itself
    const bool nest = c_.nesterov;
#pragma omp parallel for simd if (sz > kParMin)
    for (int64_t j = 0; j < sz; ++j) {
      const float dj = g[j] + wd * w[j];
      const float b = first ? dj : buf[j] * mom + damp * dj;
      buf[j] = b;
      d[j] = nest ? dj + mom * b : b;
    }
  }
}

// ----------------------------------------------------------------------- Adam
namespace {
// One pass of Adam over each block. Fused: the update goes straight into w
// (w * decay - lr * d: 28 bytes per entry instead of 40 through a D buffer, the
// same float expressions as directions() + Rule::step, so results are identical);
// otherwise the direction goes to D.
// `key` is the rule's state key (Rule::key is protected: the rule passes it).
template <bool Fused, class KeyFn>
void adamPass(const AdamConfig &c, KeyFn key, State &st, const Param *ps, size_t n,
              float *const *D, float lr, float decay) {
  for (size_t i = 0; i < n; ++i) {
    const Param &p = ps[i];
    const int64_t sz = p.size();
    const int64_t t = ++st.counter(key(p, "t"));
    float *m = st.buffer(key(p, "m"), {p.rows, p.cols});
    float *v = st.buffer(key(p, "v"), {p.rows, p.cols});
    const float l2 = c.decoupled ? 0.f : c.weight_decay;
    const float b1 = c.beta1, b2 = c.beta2, ob1 = 1.f - b1, ob2 = 1.f - b2, eps = c.eps;
    // Bias corrections in double, as torch computes them in Python floats.
    const float inv_bc1 = float(1.0 / (1.0 - std::pow(double(b1), double(t))));
    const float inv_sqrt_bc2 = float(1.0 / std::sqrt(1.0 - std::pow(double(b2), double(t))));
    const float *g = p.g;
    float *w = p.w;
    float *d = Fused ? nullptr : D[i];
#pragma omp parallel for simd if (sz > kParMin)
    for (int64_t j = 0; j < sz; ++j) {
      const float gj = g[j] + l2 * w[j];
      const float mj = m[j] * b1 + gj * ob1;
      const float vj = v[j] * b2 + gj * gj * ob2;
      m[j] = mj;
      v[j] = vj;
      const float dj = mj * inv_bc1 / (std::sqrt(vj) * inv_sqrt_bc2 + eps);
      if constexpr (Fused)
        w[j] = w[j] * decay - lr * dj;
      else
        d[j] = dj;
    }
  }
}

// One pass of Adam-mini (one second moment per group of rows); as adamPass.
template <bool Fused, class KeyFn>
void adamMiniPass(const AdamMiniConfig &c, KeyFn key, State &st, const Param *ps, size_t n,
                  float *const *D, float lr, float decay) {
  for (size_t i = 0; i < n; ++i) {
    const Param &p = ps[i];
    const int64_t gr = c.group_rows;
    const int64_t ngroups = p.rows / gr, glen = gr * p.cols;
    const int64_t t = ++st.counter(key(p, "t"));
    float *m = st.buffer(key(p, "m"), {p.rows, p.cols});
    float *v = st.buffer(key(p, "v"), {ngroups, 1});
    const double bc1 = 1.0 - std::pow(double(c.beta1), double(t));
    const double bc2 = 1.0 - std::pow(double(c.beta2), double(t));
    const float *gall = p.g;
    float *out = Fused ? p.w : D[i];
#pragma omp parallel for if (p.size() > kParMin)
    for (int64_t k = 0; k < ngroups; ++k) {
      const float *g = gall + k * glen;
      float *mk = m + k * glen, *o = out + k * glen;
      double s = 0;
      for (int64_t j = 0; j < glen; ++j) s += double(g[j]) * g[j];
      v[k] = v[k] * c.beta2 + float(s / double(glen)) * (1.f - c.beta2);
      const float denom = float(std::sqrt(double(v[k]) / bc2)) + c.eps;
      for (int64_t j = 0; j < glen; ++j) {
        mk[j] = mk[j] * c.beta1 + g[j] * (1.f - c.beta1);
        const float dj = float(mk[j] / bc1) / denom;
        if constexpr (Fused)
          o[j] = o[j] * decay - lr * dj;
        else
          o[j] = dj;
      }
    }
  }
}
} // namespace

void Adam::directions(Context &, State &st, const Param *ps, size_t n, float *const *D) {
  adamPass<false>(c_, [this](const Param &p, const char *w) { return key(p, w); }, st, ps, n, D, 0.f, 1.f);
}

bool Adam::fused_step(Context &, State &st, const Param *ps, size_t n, float lr) {
  adamPass<true>(c_, [this](const Param &p, const char *w) { return key(p, w); }, st, ps, n, nullptr, lr, 1.f - lr * decoupled_weight_decay());
  return true;
}

// ------------------------------------------------------------------ Adam-mini
bool AdamMini::fused_step(Context &, State &st, const Param *ps, size_t n, float lr) {
  for (size_t i = 0; i < n; ++i) // a bad grouping: directions() reports it, nothing touched
    if (c_.group_rows <= 0 || ps[i].rows % c_.group_rows != 0) return false;
  adamMiniPass<true>(c_, [this](const Param &p, const char *w) { return key(p, w); }, st, ps, n, nullptr, lr, 1.f - lr * decoupled_weight_decay());
  return true;
}

void AdamMini::directions(Context &, State &st, const Param *ps, size_t n, float *const *D) {
  for (size_t i = 0; i < n; ++i)
    if (c_.group_rows <= 0 || ps[i].rows % c_.group_rows != 0)
      throw Error(std::string("adam-mini: block '") + ps[i].name + "' has " +
                  std::to_string(ps[i].rows) + " rows, not a multiple of group_rows " +
                  std::to_string(c_.group_rows));
  adamMiniPass<false>(c_, [this](const Param &p, const char *w) { return key(p, w); }, st, ps, n, D, 0.f, 1.f);
}

// ----------------------------------------------------------------------- Muon
namespace {
// Polar factor of X, optionally per head (consecutive blocks of head_rows rows).
void polar_maybe_heads(Context &ctx, const MatView &X, const MatView &out, const PolarOptions &o,
                       int64_t head_rows) {
  if (head_rows <= 0 || head_rows == X.rows) return polar(ctx, X, out, o);
  if (X.rows % head_rows != 0)
    throw Error("polar: " + std::to_string(X.rows) + " rows are not a multiple of head_rows " + std::to_string(head_rows));
  for (int64_t h = 0; h < X.rows / head_rows; ++h)
    polar(ctx, MatView(X.data + h * head_rows * X.ld, head_rows, X.cols, X.ld),
          MatView(out.data + h * head_rows * out.ld, head_rows, out.cols, out.ld), o);
}

// NorMuon's step on the polar factor O (in place): per line (row or column) k,
// v_k <- lerp(v_k, mean_j O_kj^2, 1 - beta2), O_k /= sqrt(v_k) + eps, then the whole of O is
// rescaled to its norm before the division. Sums in double; sq: `lines` scratch doubles.
void neuron_normalize(const MatView &O, int axis, float *v, float beta2, float eps, double *sq) {
  const int64_t lines = axis == 0 ? O.rows : O.cols, len = axis == 0 ? O.cols : O.rows;
  for (int64_t k = 0; k < lines; ++k) sq[k] = 0;
  for (int64_t i = 0; i < O.rows; ++i)
    for (int64_t j = 0; j < O.cols; ++j) sq[axis == 0 ? i : j] += double(O(i, j)) * O(i, j);
  double before = 0, after = 0;
  for (int64_t k = 0; k < lines; ++k) {
    const float mean = float(sq[k] / double(len));
    v[k] = v[k] + (1.f - beta2) * (mean - v[k]); // torch lerp_
    const double inv = 1.0 / (double(std::sqrt(v[k])) + double(eps));
    before += sq[k];
    after += sq[k] * inv * inv;
    sq[k] = inv;
  }
  const double keep = std::sqrt(before) / (std::sqrt(after) + double(eps));
  for (int64_t i = 0; i < O.rows; ++i)
    for (int64_t j = 0; j < O.cols; ++j) O(i, j) = float(double(O(i, j)) * (sq[axis == 0 ? i : j] * keep));
}
} // namespace

void Muon::directions(Context &ctx, State &st, const Param *ps, size_t n, float *const *D) {
  if (c_.norm_beta2 > 0.f && c_.norm_axis != 0 && c_.norm_axis != 1) // before any state moves
    throw Error("muon: norm_axis must be 0 (rows) or 1 (columns), got " + std::to_string(c_.norm_axis));
  for (size_t i = 0; i < n; ++i) {
    const Param &p = ps[i];
    Workspace::Frame f(ctx.workspace());
    const int64_t sz = p.size();
    float *M = st.buffer(key(p, "momentum"), {p.rows, p.cols});
    ++st.counter(key(p, "t"));
    float *U = f.floats(size_t(sz));
    const float w = 1.f - c_.beta, beta = c_.beta;
    const float *g = p.g;
    const bool nest = c_.nesterov;
#pragma omp parallel for simd if (sz > kParMin)
    for (int64_t j = 0; j < sz; ++j) {
      M[j] = M[j] + w * (g[j] - M[j]); // torch lerp_
      U[j] = nest ? g[j] + beta * (M[j] - g[j]) : M[j];
    }
    const int64_t hr = c_.head_rows;
    polar_maybe_heads(ctx, MatView(U, p.rows, p.cols), MatView(D[i], p.rows, p.cols), c_.polar, hr);
    if (c_.norm_beta2 > 0.f) {
      const int64_t lines = c_.norm_axis == 0 ? p.rows : p.cols;
      neuron_normalize(MatView(D[i], p.rows, p.cols), c_.norm_axis,
                       st.buffer(key(p, "norm_v"), {lines, 1}), c_.norm_beta2, c_.norm_eps,
                       f.doubles(size_t(lines)));
    }
    const int64_t rows = hr > 0 ? hr : p.rows;
    const double r = double(rows), c = double(p.cols);
    const float scale = c_.scale == MuonScale::MaxRatio    ? float(std::sqrt(std::max(1.0, r / c)))
                        : c_.scale == MuonScale::Moonlight ? float(0.2 * std::sqrt(std::max(r, c)))
                                                           : 1.f;
    for (int64_t j = 0; j < sz; ++j) D[i][j] *= scale;
  }
}

// -------------------------------------------------------------------- Shampoo
void Shampoo::directions(Context &ctx, State &st, const Param *ps, size_t n, float *const *D) {
  for (size_t i = 0; i < n; ++i) {
    const Param &p = ps[i];
    Workspace::Frame f(ctx.workspace());
    const int64_t m = p.rows, k = p.cols;
    const bool useL = m <= c_.max_precond_dim, useR = k <= c_.max_precond_dim;
    const int64_t t = ++st.counter(key(p, "t"));
    const bool refresh = (t - 1) % std::max(1, c_.precondition_frequency) == 0;
    MatView G(const_cast<float *>(p.g), m, k);
    auto side = [&](bool left, const char *acc, const char *root) -> MatView {
      const int64_t s = left ? m : k;
      MatView A(st.buffer(key(p, acc), {s, s}), s, s);
      MatView Rt(st.buffer(key(p, root), {s, s}), s, s);
      gram(ctx, !left, 1.f, G, c_.beta2, A); // L += G G^T  or  R += G^T G
      if (refresh) {
        if (c_.root == RootMethod::Eig) sym_pow_eig(ctx, A, -1.0 / c_.exponent, c_.eps, Rt, c_.fn);
        else inv_root_newton(ctx, A, c_.exponent, c_.eps, Rt);
      }
      return Rt;
    };
    MatView out(D[i], m, k);
    if (useL && useR) {
      MatView Lr = side(true, "L", "L_root"), Rr = side(false, "R", "R_root");
      MatView T = f.mat(m, k);
      gemm(ctx, false, false, 1.f, Lr, G, 0.f, T);
      gemm(ctx, false, false, 1.f, T, Rr, 0.f, out);
    } else if (useL) {
      gemm(ctx, false, false, 1.f, side(true, "L", "L_root"), G, 0.f, out);
    } else if (useR) {
      gemm(ctx, false, false, 1.f, G, side(false, "R", "R_root"), 0.f, out);
    } else {
      std::memcpy(out.data, G.data, sizeof(float) * size_t(m * k));
    }
  }
}

// ------------------------------------------------------------------- Lau & Su
const char *to_string(LauSuKind k) {
  switch (k) {
  case LauSuKind::Polar: return "polar";
  case LauSuKind::Row: return "row";
  case LauSuKind::Col: return "col";
  case LauSuKind::CenteredRow: return "centered_row";
  case LauSuKind::Hybrid: return "hybrid";
  case LauSuKind::OneSidedSpectral: return "one_sided_spectral";
  case LauSuKind::LeftSpectralCentered: return "left_spectral_centered";
  }
  return "?";
}

namespace {
void rowscale(const MatView &X, const MatView &Y, float eps) {
#pragma omp parallel for if (X.rows * X.cols > kParMin)
  for (int64_t i = 0; i < X.rows; ++i) {
    double s = 0;
    for (int64_t j = 0; j < X.cols; ++j) s += double(X(i, j)) * X(i, j);
    const float inv = float(1.0 / (std::sqrt(s) + eps));
    for (int64_t j = 0; j < X.cols; ++j) Y(i, j) = X(i, j) * inv;
  }
}
void center_rows(const MatView &X) { // subtract the mean row
  for (int64_t j = 0; j < X.cols; ++j) {
    double s = 0;
    for (int64_t i = 0; i < X.rows; ++i) s += X(i, j);
    const float mu = float(s / double(std::max<int64_t>(X.rows, 1)));
    for (int64_t i = 0; i < X.rows; ++i) X(i, j) -= mu;
  }
}
double dot(const MatView &A, const MatView &B) {
  double s = 0;
  for (int64_t i = 0; i < A.rows; ++i)
    for (int64_t j = 0; j < A.cols; ++j) s += double(A(i, j)) * B(i, j);
  return s;
}
void scale(const MatView &A, double a) {
  for (int64_t i = 0; i < A.rows; ++i)
    for (int64_t j = 0; j < A.cols; ++j) A(i, j) = float(A(i, j) * a);
}
} // namespace

void LauSu::direction_of(Context &ctx, LauSuKind k, const LauSuConfig &c, const MatView &M, const MatView &D) {
  Workspace::Frame f(ctx.workspace());
  const int64_t m = M.rows, n = M.cols;
  switch (k) {
  case LauSuKind::Polar:
    polar_maybe_heads(ctx, M, D, c.polar, c.head_rows);
    return;
  case LauSuKind::Row:
    rowscale(M, D, c.eps);
    return;
  case LauSuKind::Col: {
    MatView T = f.mat(n, m), U = f.mat(n, m);
    transpose(M, T);
    rowscale(T, U, c.eps);
    transpose(U, D);
    return;
  }
  case LauSuKind::CenteredRow: {
    MatView T = f.mat(m, n);
    for (int64_t i = 0; i < m; ++i) std::memcpy(&T(i, 0), &M(i, 0), sizeof(float) * size_t(n));
    center_rows(T);
    rowscale(T, D, c.eps);
    center_rows(D);
    return;
  }
  case LauSuKind::Hybrid:
  case LauSuKind::OneSidedSpectral: {
    MatView X = f.mat(m, n);
    if (k == LauSuKind::Hybrid) rowscale(M, X, c.eps);
    else
      for (int64_t i = 0; i < m; ++i) std::memcpy(&X(i, 0), &M(i, 0), sizeof(float) * size_t(n));
    polar(ctx, X, D, c.polar);
    if (c.nuclear_scale) scale(D, dot(X, D));
    return;
  }
  case LauSuKind::LeftSpectralCentered: {
    MatView Mc = f.mat(m, n);
    for (int64_t i = 0; i < m; ++i) std::memcpy(&Mc(i, 0), &M(i, 0), sizeof(float) * size_t(n));
    center_rows(Mc);
    // (Mc Mc^T + eps I)^{-1/2} Mc in double: Mc Mc^T is rank-deficient whenever rows > cols.
    gram_pow_apply(ctx, Mc, false, -0.5, c.eps, c.polar.polar_rcond, D);
    if (c.nuclear_scale) scale(D, dot(Mc, D));
    center_rows(D);
    return;
  }
  }
}

void LauSu::directions(Context &ctx, State &st, const Param *ps, size_t n, float *const *D) {
  for (size_t i = 0; i < n; ++i) {
    const Param &p = ps[i];
    Workspace::Frame f(ctx.workspace());
    const int64_t sz = p.size();
    float *M = st.buffer(key(p, "momentum"), {p.rows, p.cols});
    ++st.counter(key(p, "t"));
    float *U = f.floats(size_t(sz));
    const float beta = c_.beta, *g = p.g;
    const bool nest = c_.nesterov;
#pragma omp parallel for simd if (sz > kParMin)
    for (int64_t j = 0; j < sz; ++j) {
      M[j] = beta * M[j] + (1.f - beta) * g[j];
      U[j] = nest ? g[j] + beta * (M[j] - g[j]) : M[j];
    }
    direction_of(ctx, k_, c_, MatView(U, p.rows, p.cols), MatView(D[i], p.rows, p.cols));
  }
}

} // namespace symoc::rt
