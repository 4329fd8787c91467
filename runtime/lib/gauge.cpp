#include "symoc/runtime/gauge.h"

#include <cmath>
#include <cstring>

namespace symoc::rt {

GaugeProjected::GaugeProjected(std::shared_ptr<Rule> base, std::vector<GaugeSpec> gauges)
    : base_(std::move(base)), gauges_(std::move(gauges)) {
  if (!base_) throw Error("gauge: null base rule");
}

namespace {
const Param &need(const Param *ps, size_t n, int i, const char *what) {
  if (i < 0 || size_t(i) >= n) throw Error(std::string("gauge: missing block index for ") + what);
  return ps[i];
}

// Remove from U = [U1, U2] (both d_h rows) its component along {X [Y1, Y2] : X skew}:
// the skew X solving X M + M X = U Y^T - Y U^T, M = Y Y^T (a Lyapunov equation, solved
// in M's eigenbasis), then U <- U - X Y.
void project_skew(Context &ctx, const MatView &Y1, const MatView &Y2, const MatView &U1, const MatView &U2) {
  const int64_t d = Y1.rows;
  Workspace::Frame f(ctx.workspace());
  MatView M = f.mat(d, d), K = f.mat(d, d), T = f.mat(d, d), V = f.mat(d, d), X = f.mat(d, d);
  gemm(ctx, false, true, 1.f, Y1, Y1, 0.f, M);
  gemm(ctx, false, true, 1.f, Y2, Y2, 1.f, M);
  gemm(ctx, false, true, 1.f, U1, Y1, 0.f, K); // K = U Y^T
  gemm(ctx, false, true, 1.f, U2, Y2, 1.f, K);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < i; ++j) {
      const float a = K(i, j) - K(j, i);
      K(i, j) = a, K(j, i) = -a;
    }
  for (int64_t i = 0; i < d; ++i) K(i, i) = 0;
  double *w = f.doubles(size_t(d));
  sym_eig(ctx, M, w, V, EigPrecision::Float64); // rows of V: eigenvectors
  // Kt = V K V^T ; Xt_ij = Kt_ij / (w_i + w_j) ; X = V^T Xt V
  gemm(ctx, false, false, 1.f, V, K, 0.f, T);
  gemm(ctx, false, true, 1.f, T, V, 0.f, X);
  const double wmax = d ? std::max(w[d - 1], 0.0) : 0.0;
  for (int64_t i = 0; i < d; ++i)
    for (int64_t j = 0; j < d; ++j) {
      const double den = w[i] + w[j];
      X(i, j) = den > 1e-12 * wmax && den > 0 ? float(X(i, j) / den) : 0.f;
    }
  gemm(ctx, true, false, 1.f, V, X, 0.f, T);
  gemm(ctx, false, false, 1.f, T, V, 0.f, X);
  gemm(ctx, false, false, -1.f, X, Y1, 1.f, U1);
  gemm(ctx, false, false, -1.f, X, Y2, 1.f, U2);
}
} // namespace

void GaugeProjected::project(Context &ctx, const GaugeSpec &g, const Param *ps, size_t n, float *const *D) {
  switch (g.kind) {
  case GaugeKind::LogitShift: {
    const Param &p = need(ps, n, g.a, "logit shift");
    MatView X(D[g.a], p.rows, p.cols);
    for (int64_t j = 0; j < p.cols; ++j) {
      double s = 0;
      for (int64_t i = 0; i < p.rows; ++i) s += X(i, j);
      const float mu = float(s / double(p.rows));
      for (int64_t i = 0; i < p.rows; ++i) X(i, j) -= mu;
    }
    return;
  }
  case GaugeKind::NormScale: {
    const Param &p = need(ps, n, g.a, "norm scale");
    double dw = 0, ww = 0;
    for (int64_t j = 0; j < p.size(); ++j) dw += double(D[g.a][j]) * p.w[j], ww += double(p.w[j]) * p.w[j];
    if (ww > 0)
      for (int64_t j = 0; j < p.size(); ++j) D[g.a][j] -= float(dw / ww) * p.w[j];
    return;
  }
  case GaugeKind::RowScale: {
    // Per row, remove the component along (row i of W, b_i): a rescaling of
    // channel i that the normalization behind it undoes.
    const Param &w = need(ps, n, g.a, "row scale (weight)");
    const Param *bias = g.b >= 0 ? &need(ps, n, g.b, "row scale (bias)") : nullptr;
    if (bias && bias->size() != w.rows)
      throw Error(std::string("gauge: row scale blocks '") + w.name + "' and '" + bias->name +
                  "' do not share their rows");
    MatView W(w.w, w.rows, w.cols), Dw(D[g.a], w.rows, w.cols);
    for (int64_t i = 0; i < w.rows; ++i) {
      double dot = 0, nn = 0;
      for (int64_t j = 0; j < w.cols; ++j) dot += double(Dw(i, j)) * W(i, j), nn += double(W(i, j)) * W(i, j);
      if (bias) dot += double(D[g.b][i]) * bias->w[i], nn += double(bias->w[i]) * bias->w[i];
      if (!(nn > 0)) continue;
      const float a = float(dot / nn);
      for (int64_t j = 0; j < w.cols; ++j) Dw(i, j) -= a * W(i, j);
      if (bias) D[g.b][i] -= a * bias->w[i];
    }
    return;
  }
  case GaugeKind::ReluRescale:
  case GaugeKind::SwiGLURescale: {
    const bool relu = g.kind == GaugeKind::ReluRescale;
    const Param &in = need(ps, n, g.a, "rescale (input weight)");
    const Param &out = need(ps, n, g.c, "rescale (output weight)");
    const Param *bias = (relu && g.b >= 0) ? &need(ps, n, g.b, "rescale (bias)") : nullptr;
    if (out.cols != in.rows || (bias && bias->size() != in.rows))
      throw Error(std::string("gauge: rescale blocks '") + in.name + "' and '" + out.name + "' do not share a hidden space");
    MatView Win(in.w, in.rows, in.cols), Din(D[g.a], in.rows, in.cols);
    MatView Wout(out.w, out.rows, out.cols), Dout(D[g.c], out.rows, out.cols);
    for (int64_t i = 0; i < in.rows; ++i) {
      double dot = 0, nn = 0;
      for (int64_t j = 0; j < in.cols; ++j) dot += double(Din(i, j)) * Win(i, j), nn += double(Win(i, j)) * Win(i, j);
      if (bias) dot += double(D[g.b][i]) * bias->w[i], nn += double(bias->w[i]) * bias->w[i];
      for (int64_t k = 0; k < out.rows; ++k) dot -= double(Dout(k, i)) * Wout(k, i), nn += double(Wout(k, i)) * Wout(k, i);
      if (!(nn > 0)) continue;
      const float a = float(dot / nn);
      for (int64_t j = 0; j < in.cols; ++j) Din(i, j) -= a * Win(i, j);
      if (bias) D[g.b][i] -= a * bias->w[i];
      for (int64_t k = 0; k < out.rows; ++k) Dout(k, i) += a * Wout(k, i);
    }
    return;
  }
  case GaugeKind::HeadRotationQK:
  case GaugeKind::HeadRotationVO: {
    const bool qk = g.kind == GaugeKind::HeadRotationQK;
    const Param &A = need(ps, n, g.a, "head rotation (Q or V)");
    const Param &B = need(ps, n, qk ? g.b : g.c, "head rotation (K or O)");
    const int64_t brows = qk ? B.rows : B.cols, bcols = qk ? B.cols : B.rows;
    if (g.heads <= 0 || A.rows % g.heads != 0 || brows != A.rows)
      throw Error(std::string("gauge: head rotation blocks '") + A.name + "' and '" + B.name +
                  "' do not split into " + std::to_string(g.heads) + " equal heads");
    const int64_t dh = A.rows / g.heads;
    Workspace::Frame f(ctx.workspace());
    // The O block's head channels are its columns: work on its transpose.
    MatView Bw = f.mat(brows, bcols), Bd = f.mat(brows, bcols);
    MatView BwSrc(B.w, B.rows, B.cols), BdSrc(qk ? D[g.b] : D[g.c], B.rows, B.cols);
    if (qk) {
      std::memcpy(Bw.data, B.w, sizeof(float) * size_t(B.size()));
      std::memcpy(Bd.data, BdSrc.data, sizeof(float) * size_t(B.size()));
    } else {
      transpose(BwSrc, Bw);
      transpose(BdSrc, Bd);
    }
    for (int64_t h = 0; h < g.heads; ++h) {
      MatView Y1(A.w + h * dh * A.cols, dh, A.cols), U1(D[g.a] + h * dh * A.cols, dh, A.cols);
      MatView Y2(&Bw(h * dh, 0), dh, bcols), U2(&Bd(h * dh, 0), dh, bcols);
      project_skew(ctx, Y1, Y2, U1, U2);
    }
    if (qk) std::memcpy(BdSrc.data, Bd.data, sizeof(float) * size_t(B.size()));
    else transpose(Bd, BdSrc);
    return;
  }
  }
}

void GaugeProjected::directions(Context &ctx, State &st, const Param *ps, size_t n, float *const *D) {
  base_->directions(ctx, st, ps, n, D);
  for (auto &g : gauges_) project(ctx, g, ps, n, D);
}

} // namespace symoc::rt
