#include "symoc/runtime/symo.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace symoc::rt {

const char *to_string(Group g) {
  switch (g) {
  case Group::Trivial: return "1";
  case Group::Z2: return "Z2";
  case Group::S: return "S";
  case Group::B: return "B";
  case Group::O: return "O";
  }
  return "?";
}

Group parse_group(const std::string &s) {
  if (s == "1") return Group::Trivial;
  if (s == "Z2") return Group::Z2;
  if (s == "S") return Group::S;
  if (s == "B") return Group::B;
  if (s == "O") return Group::O;
  throw Error("unknown group '" + s + "' (expected 1, Z2, S, B or O)");
}

namespace {

// "<name><suffix>" prefix of a block's Symo state keys.
struct KeyBase {
  std::string_view name, suffix;
  Key k(const char *what) const { return Key(name, suffix, what); }
  std::string str() const { return std::string(name) + std::string(suffix); }
};

// A run of coordinates of one side carrying either one component (the identity on the
// run: B/O on it, or one Z2 coordinate) or two (S on the run: mean line + centred part).
struct Range {
  int64_t off, len;
  bool split;
};
struct Side {
  bool trivial = true;
  Range *r = nullptr;
  int64_t count = 0;
  int64_t comps() const {
    int64_t c = 0;
    for (int64_t i = 0; i < count; ++i) c += r[i].split ? 2 : 1;
    return c;
  }
};

// A side given as pieces: every run of every piece is its own component.
Side pieces_side(Workspace::Frame &f, const std::vector<SidePiece> &pieces, int64_t n, const char *which) {
  Side s;
  int64_t count = 0, at = 0;
  for (const SidePiece &p : pieces) {
    if (p.offset != at || p.extent <= 0 || p.parts <= 0 || p.extent % p.parts != 0)
      throw Error(std::string("symo: ") + which + " pieces must tile the side in order with parts dividing "
                  "their extent (piece at " + std::to_string(p.offset) + ", extent " + std::to_string(p.extent) +
                  ", parts " + std::to_string(p.parts) + ")");
    if (p.group == Group::Trivial) return s; // a trivial piece makes the whole side trivial
    count += p.group == Group::Z2 ? p.extent : p.parts;
    at += p.extent;
  }
  if (at != n)
    throw Error(std::string("symo: ") + which + " pieces cover " + std::to_string(at) + " of " + std::to_string(n) +
                " coordinates");
  s.trivial = false;
  s.count = count;
  s.r = f.array<Range>(size_t(std::max<int64_t>(count, 1)));
  int64_t k = 0;
  for (const SidePiece &p : pieces) {
    if (p.group == Group::Z2) {
      for (int64_t i = 0; i < p.extent; ++i) s.r[k++] = Range{p.offset + i, 1, false};
      continue;
    }
    const int64_t len = p.extent / p.parts;
    for (int64_t i = 0; i < p.parts; ++i) s.r[k++] = Range{p.offset + i * len, len, p.group == Group::S};
  }
  return s;
}

Side make_side(Workspace::Frame &f, Group g, const HeadSpec &h, int64_t n, const char *which) {
  Side s;
  auto runs = [&](int64_t count, int64_t len, bool split) {
    s.trivial = false;
    s.count = count;
    s.r = f.array<Range>(size_t(std::max<int64_t>(count, 1)));
    for (int64_t i = 0; i < count; ++i) s.r[i] = Range{i * len, len, split};
  };
  if (h.heads > 0) {
    if (n % h.heads != 0)
      throw Error(std::string("symo: ") + which + " side has " + std::to_string(n) + " coordinates, not divisible by " +
                  std::to_string(h.heads) + " heads");
    const int64_t dh = n / h.heads;
    const bool ortho = h.inner == Group::B || h.inner == Group::O;
    if (h.outer == Group::S) {
      // S(H) permuting heads, each carrying its own B/O(d_h): one irreducible component.
      if (!ortho)
        throw Error(std::string("symo: ") + which + " heads: outer S is supported with inner B or O only");
      runs(1, n, false);
      return s;
    }
    if (h.outer != Group::Trivial) throw Error(std::string("symo: ") + which + " heads: outer group must be 1 or S");
    if (h.inner == Group::Trivial) return s;
    // Per-head S would make the heads' mean lines H copies of the trivial representation:
    // one multiplicity space needing an H-dimensional matrix, not per-head scalars.
    if (h.inner == Group::S && h.heads > 1)
      throw Error(std::string("symo: ") + which + " heads with inner S are not supported (the per-head mean lines "
                  "couple); use S or B on the whole space, or inner B/O");
    if (ortho) runs(h.heads, dh, false);
    else if (h.inner == Group::S) runs(1, n, true);
    else runs(n, 1, false); // Z2 inside each head is Z2 on the whole space
    return s;
  }
  switch (g) {
  case Group::Trivial: return s;
  case Group::Z2: runs(n, 1, false); return s;
  case Group::S: runs(1, n, true); return s;
  case Group::B:
  case Group::O: runs(1, n, false); return s;
  }
  return s;
}

// Means of a sub-block, enough to evaluate every piece P_a X Q_b of it.
struct Means {
  double *row = nullptr, *col = nullptr, all = 0;
};

// op: 0 = identity on the run, 1 = mean line, 2 = centred part.
inline double piece(const MatView &X, const Means &mu, int la, int rb, int64_t i, int64_t j) {
  const double x = X(i, j);
  const double rm = mu.row ? mu.row[i] : 0, cm = mu.col ? mu.col[j] : 0, a = mu.all;
  switch (la * 3 + rb) {
  case 0: return x;           // I, I
  case 1: return rm;          // I, mean
  case 2: return x - rm;      // I, centred
  case 3: return cm;          // mean, I
  case 4: return a;           // mean, mean
  case 5: return cm - a;      // mean, centred
  case 6: return x - cm;      // centred, I
  case 7: return rm - a;      // centred, mean
  default: return x - rm - cm + a;
  }
}

void compute_means(const MatView &X, bool need_row, bool need_col, Means &mu, double *rowbuf, double *colbuf) {
  mu.row = need_row ? rowbuf : nullptr;
  mu.col = need_col ? colbuf : nullptr;
  mu.all = 0;
  if (need_col)
    for (int64_t j = 0; j < X.cols; ++j) colbuf[j] = 0;
  double all = 0;
  for (int64_t i = 0; i < X.rows; ++i) {
    double rs = 0;
    for (int64_t j = 0; j < X.cols; ++j) {
      rs += X(i, j);
      if (need_col) colbuf[j] += X(i, j);
    }
    if (need_row) rowbuf[i] = rs / double(X.cols);
    all += rs;
  }
  if (need_col)
    for (int64_t j = 0; j < X.cols; ++j) colbuf[j] /= double(X.rows);
  mu.all = all / double(X.rows * X.cols);
}

inline int nops(const Range &r) { return r.split ? 2 : 1; }
inline int op_of(const Range &r, int k) { return r.split ? 1 + k : 0; }
inline int64_t dim_of(const Range &r, int op) { return op == 0 ? r.len : op == 1 ? 1 : r.len - 1; }

double bias_corr(const SymoConfig &c, int64_t t) {
  return c.bias_correction ? 1.0 - std::pow(double(c.beta2), double(t)) : 1.0;
}

// Both sides non-trivial: one scalar per component pair.
void two_sided(Context &ctx, State &st, const KeyBase &key, const SymoConfig &c, int64_t t, const Side &L,
               const Side &R, const MatView &G, const MatView &U, const MatView &D) {
  Workspace::Frame f(ctx.workspace());
  const int64_t npairs = L.comps() * R.comps(), rc_comps = R.comps();
  float *s = st.buffer(key.k(".s"), {npairs});
  double *coef = f.doubles(size_t(npairs));
  // First pair index of each left run, so runs can be processed in parallel.
  int64_t *first = f.array<int64_t>(size_t(L.count) + 1);
  first[0] = 0;
  for (int64_t a = 0; a < L.count; ++a) first[a + 1] = first[a] + nops(L.r[a]) * rc_comps;
#ifdef _OPENMP
  const int nthreads = omp_get_max_threads();
#else
  const int nthreads = 1;
#endif
  double *rowbufs = f.doubles(size_t(G.rows) * size_t(nthreads)), *colbufs = f.doubles(size_t(G.cols) * size_t(nthreads));
  const double bc = bias_corr(c, t);
  const bool par = L.count > 1 && G.rows * G.cols > (1 << 16);
  // Pass 1: statistics of G.
#pragma omp parallel for schedule(static) if (par)
  for (int64_t a = 0; a < L.count; ++a) {
#ifdef _OPENMP
    const int tid = omp_get_thread_num();
#else
    const int tid = 0;
#endif
    double *rowbuf = rowbufs + size_t(tid) * size_t(G.rows), *colbuf = colbufs + size_t(tid) * size_t(G.cols);
    const Range &rl = L.r[a];
    int64_t idx = first[a];
    for (int64_t b = 0; b < R.count; ++b) {
      const Range &rc = R.r[b];
      MatView X(&G(rl.off, rc.off), rl.len, rc.len, G.ld);
      Means mu;
      compute_means(X, rc.split, rl.split, mu, rowbuf, colbuf);
      for (int ka = 0; ka < nops(rl); ++ka)
        for (int kb = 0; kb < nops(rc); ++kb) {
          // pair index: left component (run a, op ka) major, right component minor
          const int64_t k = first[a] + ka * rc_comps + (idx - first[a]) + kb;
          const int la = op_of(rl, ka), rb = op_of(rc, kb);
          const int64_t d = dim_of(rl, la) * dim_of(rc, rb);
          if (d == 0) { coef[k] = 0; continue; }
          double n2 = 0;
          for (int64_t i = 0; i < X.rows; ++i)
            for (int64_t j = 0; j < X.cols; ++j) {
              const double p = piece(X, mu, la, rb, i, j);
              n2 += p * p;
            }
          s[k] = float(c.beta2 * double(s[k]) + (1.0 - c.beta2) * n2 / double(d));
          const double h = double(s[k]) / bc + c.eps;
          coef[k] = h > 0 ? 1.0 / std::sqrt(h) : 0.0; // pseudo-inverse of a zero block
        }
      idx += nops(rc);
    }
  }
  // Pass 2: apply to U.
#pragma omp parallel for schedule(static) if (par)
  for (int64_t a = 0; a < L.count; ++a) {
#ifdef _OPENMP
    const int tid = omp_get_thread_num();
#else
    const int tid = 0;
#endif
    double *rowbuf = rowbufs + size_t(tid) * size_t(G.rows), *colbuf = colbufs + size_t(tid) * size_t(G.cols);
    const Range &rl = L.r[a];
    int64_t idx = first[a];
    for (int64_t b = 0; b < R.count; ++b) {
      const Range &rc = R.r[b];
      MatView X(&U(rl.off, rc.off), rl.len, rc.len, U.ld), Y(&D(rl.off, rc.off), rl.len, rc.len, D.ld);
      Means mu;
      compute_means(X, rc.split, rl.split, mu, rowbuf, colbuf);
      for (int64_t i = 0; i < X.rows; ++i)
        for (int64_t j = 0; j < X.cols; ++j) {
          double v = 0;
          for (int ka = 0; ka < nops(rl); ++ka)
            for (int kb = 0; kb < nops(rc); ++kb) {
              const int64_t k = first[a] + ka * rc_comps + (idx - first[a]) + kb;
              if (coef[k] != 0) v += coef[k] * piece(X, mu, op_of(rl, ka), op_of(rc, kb), i, j);
            }
          Y(i, j) = float(v);
        }
      idx += nops(rc);
    }
  }
}

// X (len x n) -> Y = X (X^T X / d + eps)^{-1/2} = sqrt(d) X (X^T X + d eps)^{-1/2},
// evaluated on the smaller side ((X X^T + d eps)^{-1/2} X when len < n, the push-through
// identity), Gram and eigendecomposition in double (the Gram squares the condition number).
// With ns_steps > 0: Y = sqrt(d) NS(X), Muon's Newton-Schulz approximation of the polar factor.
void single_component(Context &ctx, const SymoConfig &c, const MatView &X, int64_t d, const MatView &Y) {
  if (c.ns_steps > 0) newton_schulz5(ctx, X, Y, c.ns_steps); // Muon's approximate polar factor
  else gram_pow_apply(ctx, X, X.rows >= X.cols, -0.5, double(d) * c.eps, c.fn.rcond, Y);
  const float s = float(std::sqrt(double(d)));
  for (int64_t i = 0; i < Y.rows; ++i)
    for (int64_t j = 0; j < Y.cols; ++j) Y(i, j) *= s;
}

// beta2 = 0 (H_g of one matrix, no EMA): per run, statistics and direction from U; no
// state. B/O runs: (U U^T/d + eps)^{-1/2} U; S runs: the same on the centred rows (d =
// len - 1, re-centred against rounding) plus the mean line 1 mu / (sqrt(len) |mu|).
void one_run(Context &ctx, const SymoConfig &c, const Range &r, const MatView &Ur, const MatView &Dr) {
  const int64_t n = Ur.cols;
  {
    if (!r.split) {
      single_component(ctx, c, Ur, r.len, Dr);
      return;
    }
    Workspace::Frame f(ctx.workspace());
    MatView mu = f.mat(1, n), Xc = f.mat(r.len, n);
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t i = 0; i < r.len; ++i) sum += Ur(i, j);
      mu(0, j) = float(sum / double(r.len));
    }
    for (int64_t i = 0; i < r.len; ++i)
      for (int64_t j = 0; j < n; ++j) Xc(i, j) = Ur(i, j) - mu(0, j);
    if (r.len > 1) single_component(ctx, c, Xc, r.len - 1, Dr);
    else
      for (int64_t j = 0; j < n; ++j) Dr(0, j) = 0.f;
    double m2 = 0;
    for (int64_t j = 0; j < n; ++j) m2 += double(mu(0, j)) * mu(0, j);
    // (len mu^T mu + eps)^{-1/2} on the mean line, the pseudo-inverse cut of sym_pow_eig
    const double h = double(r.len) * m2, scale = h > 0 ? 1.0 / std::sqrt(h + c.eps) : 0.0;
    for (int64_t j = 0; j < n; ++j) {
      double cm = 0;
      for (int64_t i = 0; i < r.len; ++i) cm += Dr(i, j);
      cm /= double(r.len);
      const float add = float(double(mu(0, j)) * scale - cm);
      for (int64_t i = 0; i < r.len; ++i) Dr(i, j) += add;
    }
  }
}

void one_sided_single(Context &ctx, const SymoConfig &c, const Side &L, const MatView &G, const MatView &U,
                      const MatView &D, bool transposed) {
  (void)G; // the statistics are those of U (equal to G without momentum)
  const int64_t n = U.cols;
  for (int64_t a = 0; a < L.count; ++a) {
    const Range &r = L.r[a];
    MatView Ur(&U(r.off, 0), r.len, n, U.ld), Dr(&D(r.off, 0), r.len, n, D.ld);
    one_run(ctx, c, r, Ur, Dr);
    if (!c.muon_scale) continue;
    // sqrt(d) polar -> polar * max(1, rows/cols)^{1/2}, rows/cols of the run as the block has it
    const double rows = transposed ? double(n) : double(r.len), cols = transposed ? double(r.len) : double(n);
    const float k = float(std::sqrt(std::max(1.0, rows / cols) / double(r.len)));
    for (int64_t i = 0; i < r.len; ++i)
      for (int64_t j = 0; j < n; ++j) Dr(i, j) *= k;
  }
}

// Left side non-trivial, right side trivial: S = sum_a C_a (x) P_a, C_a n x n.
void one_sided_left(Context &ctx, State &st, const KeyBase &key, const SymoConfig &c, int64_t t,
                    const Side &L, const MatView &G, const MatView &U, const MatView &D, bool transposed = false) {
  Workspace::Frame f(ctx.workspace());
  const int64_t n = G.cols, ncomp = L.comps();
  if (c.beta2 == 0.f) return one_sided_single(ctx, c, L, G, U, D, transposed);
  if (n > c.max_dense)
    throw Error("symo: block '" + key.str() + "' needs " + std::to_string(n) + "x" + std::to_string(n) +
                " matrices, above max_dense " + std::to_string(c.max_dense) + " (pick a larger group for it)");
  float *Cbase = st.buffer(key.k(".C"), {ncomp, n, n});
  const double bc = bias_corr(c, t);
  MatView H = f.mat(n, n), mrow = f.mat(1, n), mout = f.mat(1, n);
  int64_t comp = 0;
  for (int64_t a = 0; a < L.count; ++a) {
    const Range &r = L.r[a];
    MatView Gr(&G(r.off, 0), r.len, n, G.ld), Ur(&U(r.off, 0), r.len, n, U.ld), Dr(&D(r.off, 0), r.len, n, D.ld);
    for (int64_t i = 0; i < r.len; ++i) std::memset(&Dr(i, 0), 0, sizeof(float) * size_t(n));
    for (int k = 0; k < nops(r); ++k, ++comp) {
      const int op = op_of(r, k);
      const int64_t d = dim_of(r, op);
      MatView C(Cbase + comp * n * n, n, n);
      if (d == 0) continue;
      Workspace::Frame g(ctx.workspace());
      auto mean_row = [&](const MatView &X, const MatView &out) {
        for (int64_t j = 0; j < n; ++j) {
          double sum = 0;
          for (int64_t i = 0; i < X.rows; ++i) sum += X(i, j);
          out(0, j) = float(sum / double(X.rows));
        }
      };
      const float w = float((1.0 - c.beta2) / double(d));
      if (op == 0) {
        gram(ctx, true, w, Gr, c.beta2, C);
      } else if (op == 1) { // mean line: X = 1 mu, X^T X = len mu^T mu
        mean_row(Gr, mrow);
        gram(ctx, true, w * float(r.len), mrow, c.beta2, C);
      } else {
        MatView Xc = g.mat(r.len, n);
        mean_row(Gr, mrow);
        for (int64_t i = 0; i < r.len; ++i)
          for (int64_t j = 0; j < n; ++j) Xc(i, j) = Gr(i, j) - mrow(0, j);
        gram(ctx, true, w, Xc, c.beta2, C);
      }
      for (int64_t i = 0; i < n * n; ++i) H.data[i] = float(double(C.data[i]) / bc);
      sym_pow_eig(ctx, H, -0.5, c.eps, H, c.fn);
      if (op == 0) {
        gemm(ctx, false, false, 1.f, Ur, H, 1.f, Dr);
      } else if (op == 1) {
        mean_row(Ur, mrow);
        gemm(ctx, false, false, 1.f, mrow, H, 0.f, mout);
        for (int64_t i = 0; i < r.len; ++i)
          for (int64_t j = 0; j < n; ++j) Dr(i, j) += mout(0, j);
      } else {
        MatView Xc = g.mat(r.len, n);
        mean_row(Ur, mrow);
        for (int64_t i = 0; i < r.len; ++i)
          for (int64_t j = 0; j < n; ++j) Xc(i, j) = Ur(i, j) - mrow(0, j);
        gemm(ctx, false, false, 1.f, Xc, H, 1.f, Dr);
      }
    }
  }
}

// 1 x 1: the full second moment of vec(G).
void dense(Context &ctx, State &st, const KeyBase &key, const SymoConfig &c, int64_t t, const MatView &G,
           const MatView &U, const MatView &D) {
  const int64_t N = G.rows * G.cols;
  if (N > c.max_dense)
    throw Error("symo: block '" + key.str() + "' with group 1 x 1 needs a " + std::to_string(N) + "x" + std::to_string(N) +
                " matrix, above max_dense " + std::to_string(c.max_dense));
  Workspace::Frame f(ctx.workspace());
  MatView S(st.buffer(key.k(".S"), {N, N}), N, N), H = f.mat(N, N);
  MatView g(G.data, N, 1), u(U.data, N, 1), d(D.data, N, 1);
  gram(ctx, false, 1.f - c.beta2, g, c.beta2, S);
  const double bc = bias_corr(c, t);
  for (int64_t i = 0; i < N * N; ++i) H.data[i] = float(double(S.data[i]) / bc);
  sym_pow_eig(ctx, H, -0.5, c.eps, H, c.fn);
  gemm(ctx, false, false, 1.f, H, u, 0.f, d);
}

// The structured step for one matrix G (preconditioner statistics) applied to U.
void symo_matrix(Context &ctx, State &st, const KeyBase &key, const SymoConfig &c, int64_t t, const MatView &G,
                 const MatView &U, const MatView &D) {
  Workspace::Frame f(ctx.workspace());
  Side L = c.left_pieces.empty() ? make_side(f, c.left, c.left_heads, G.rows, "left")
                                 : pieces_side(f, c.left_pieces, G.rows, "left");
  Side R = c.right_pieces.empty() ? make_side(f, c.right, c.right_heads, G.cols, "right")
                                  : pieces_side(f, c.right_pieces, G.cols, "right");
  if (!L.trivial && !R.trivial) return two_sided(ctx, st, key, c, t, L, R, G, U, D);
  if (!L.trivial) return one_sided_left(ctx, st, key, c, t, L, G, U, D);
  if (!R.trivial) { // mirror: work on the transposes
    MatView Gt = f.mat(G.cols, G.rows), Ut = f.mat(G.cols, G.rows), Dt = f.mat(G.cols, G.rows);
    transpose(G, Gt);
    if (U.data == G.data) Ut = Gt;
    else transpose(U, Ut);
    one_sided_left(ctx, st, key, c, t, R, Gt, Ut, Dt, true);
    transpose(Dt, D);
    return;
  }
  dense(ctx, st, key, c, t, G, U, D);
}

} // namespace

void Symo::directions(Context &ctx, State &st, const Param *ps, size_t n, float *const *D) {
  for (size_t i = 0; i < n; ++i) {
    const Param &p = ps[i];
    Workspace::Frame f(ctx.workspace());
    const KeyBase key{p.name, "/symo"};
    const int64_t t = ++st.counter(key.k(".t"));
    MatView G(const_cast<float *>(p.g), p.rows, p.cols), U = G;
    if (c_.beta1 > 0 && c_.muon_momentum) { // muon.py's momentum; the statistics are U's
      float *M = st.buffer(key.k(".m"), {p.rows, p.cols});
      U = f.mat(p.rows, p.cols);
      const float w = 1.f - c_.beta1, beta = c_.beta1;
      for (int64_t j = 0; j < p.size(); ++j) {
        M[j] = M[j] + w * (p.g[j] - M[j]); // torch lerp_
        U.data[j] = c_.nesterov ? p.g[j] + beta * (M[j] - p.g[j]) : M[j];
      }
      G = U;
    } else if (c_.beta1 > 0) { // momentum, bias-corrected, preconditioned by the gradient's statistics
      float *M = st.buffer(key.k(".m"), {p.rows, p.cols});
      U = f.mat(p.rows, p.cols);
      const float bc1 = float(1.0 - std::pow(double(c_.beta1), double(t)));
      for (int64_t j = 0; j < p.size(); ++j) {
        M[j] = c_.beta1 * M[j] + (1.f - c_.beta1) * p.g[j];
        U.data[j] = M[j] / bc1;
      }
    }
    symo_matrix(ctx, st, key, c_, t, G, U, MatView(D[i], p.rows, p.cols));
  }
}

SymoCoupled::SymoCoupled(Group shared, std::vector<CoupledMember> members, SymoConfig c)
    : shared_(shared), members_(std::move(members)), c_(c) {
  if (members_.size() < 2) throw Error("symo coupled: needs at least two member blocks");
  for (auto &m : members_)
    if (m.axis != 0 && m.axis != 1) throw Error("symo coupled: member axis must be 0 or 1");
  if (c_.beta1 > 0) throw Error("symo coupled: momentum (beta1 > 0) is not supported");
  // The step is one-sided on the stacked matrix: the shared group on its rows only.
  c_.left = shared_;
  c_.right = Group::Trivial;
  c_.left_heads = c_.right_heads = HeadSpec{};
}

void SymoCoupled::directions(Context &ctx, State &st, const Param *ps, size_t n, float *const *D) {
  Workspace::Frame f(ctx.workspace());
  int64_t shared = -1, total = 0;
  for (auto &m : members_) {
    if (m.index >= n) throw Error("symo coupled: member index " + std::to_string(m.index) + " out of range");
    const Param &p = ps[m.index];
    const int64_t s = m.axis == 0 ? p.rows : p.cols;
    if (shared >= 0 && s != shared)
      throw Error(std::string("symo coupled: block '") + p.name + "' has shared axis of size " + std::to_string(s) +
                  ", expected " + std::to_string(shared));
    shared = s;
    total += m.axis == 0 ? p.cols : p.rows;
  }
  // Keyed by the first member's name (the group's state lives with it).
  const KeyBase key{ps[members_[0].index].name, "/symo_coupled"};
  for (size_t i = 0; i < n; ++i) // params that are not members get no update
    std::memset(D[i], 0, sizeof(float) * size_t(ps[i].size()));
  const int64_t t = ++st.counter(key.k(".t"));
  MatView Z = f.mat(shared, total), DZ = f.mat(shared, total);
  int64_t off = 0;
  for (auto &m : members_) {
    const Param &p = ps[m.index];
    MatView G(const_cast<float *>(p.g), p.rows, p.cols);
    const int64_t w = m.axis == 0 ? p.cols : p.rows;
    MatView dst(&Z(0, off), shared, w, Z.ld);
    if (m.axis == 0)
      for (int64_t i = 0; i < shared; ++i) std::memcpy(&dst(i, 0), &G(i, 0), sizeof(float) * size_t(w));
    else transpose(G, dst);
    off += w;
  }
  symo_matrix(ctx, st, key, c_, t, Z, Z, DZ);
  off = 0;
  for (auto &m : members_) {
    const Param &p = ps[m.index];
    const int64_t w = m.axis == 0 ? p.cols : p.rows;
    MatView src(&DZ(0, off), shared, w, DZ.ld), out(D[m.index], p.rows, p.cols);
    if (m.axis == 0)
      for (int64_t i = 0; i < shared; ++i) std::memcpy(&out(i, 0), &src(i, 0), sizeof(float) * size_t(w));
    else transpose(src, out);
    off += w;
  }
}

} // namespace symoc::rt
