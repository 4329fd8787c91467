#!/usr/bin/python3
"""The symmetric-products block formula (SymmetricGemm, runtime/cuda/lib/ns_common.cuh).

With NsTuning::symmetric_products the CUDA Newton-Schulz plans compute a product
D = alpha op(A) B + beta C whose exact result is symmetric as two GEMMs on submatrices given by
pointer offsets into column-major batched buffers (ld, stride) and a mirror:
  top:    D[0:h, 0:r] = alpha op(A)[0:h, :] B[:, 0:r] + beta C[0:h, 0:r]   (offsets 0)
  bottom: D[h:r, h:r] = alpha op(A)[h:r, :] B[:, h:r] + beta C[h:r, h:r]
          (A + h lda, B + h ldb, C and D + h + h ldc)
  mirror: D(j, i) = D(i, j) for i < j (the block D[h:r, 0:h] = D[0:h, h:r]^T, which no GEMM
          wrote, and the diagonal blocks' lower triangles: D exactly symmetric)
with op(A)[rows, :] = (stored A[:, rows])^T (opA = T), h = r/2 rounded down to a multiple of 8
when r/2 >= 8. This test emulates exactly those column-major GEMMs on flat float64 buffers with
padded ld and stride (as the plans lay them out) and checks, for odd and even r, a batch of 3:
  square: A = S, B = p(S) (a polynomial in a random symmetric S: they commute), C = q(S):
          D equals alpha A B + beta C to 1e-12 (relative);
  Gram:   R = X X^T from X stored k x r (opA = T): equals X X^T to 1e-12;
  only the r x r interiors of D are written (ld padding and stride gaps untouched);
  D is exactly symmetric.
Self-check (the comparison can fail): with a random symmetric B that does not commute with A,
the formula differs from A B by more than 1e-3.
Exit 77 (skipped) without numpy.
"""
import sys

try:
    import numpy as np
except ImportError as ex:
    print("skipped: %s" % ex)
    sys.exit(77)

LD_ALIGN, STRIDE_ALIGN = 8, 128  # kLdAlign, kStrideAlign (ns_common.cuh)


def round_up(v, a):
    return (v + a - 1) // a * a


def split(r):  # SymmetricGemm::setup's h
    return r // 2 // 8 * 8 if r // 2 >= 8 else r // 2


def view_index(off, rows, cols, ld):
    """Flat indices of the column-major rows x cols matrix at `off` with leading dimension ld."""
    i = np.arange(rows)[:, None]
    j = np.arange(cols)[None, :]
    return off + i + j * ld


def gemm(batch, trans_a, m, n, k, alpha, A, a_off, lda, sa, Bm, b_off, ldb, sb, beta, C, c_off, D, d_off, ldc, sc):
    """cublasGemmStridedBatchedEx semantics on flat buffers (column-major, opB = N)."""
    for b in range(batch):
        a = A[view_index(b * sa + a_off, k if trans_a else m, m if trans_a else k, lda)]
        opa = a.T if trans_a else a
        bb = Bm[view_index(b * sb + b_off, k, n, ldb)]
        c = C[view_index(b * sc + c_off, m, n, ldc)]
        D[view_index(b * sc + d_off, m, n, ldc)] = alpha * opa @ bb + beta * c


def symmetric_product(batch, r, k, alpha, A, lda, sa, Bm, ldb, sb, beta, C, D, ldc, sc):
    h = split(r)
    gemm(batch, True, h, r, k, alpha, A, 0, lda, sa, Bm, 0, ldb, sb, beta, C, 0, D, 0, ldc, sc)
    gemm(batch, True, r - h, r - h, k, alpha, A, h * lda, lda, sa, Bm, h * ldb, ldb, sb, beta, C, h + h * ldc, D,
         h + h * ldc, ldc, sc)
    for b in range(batch):  # mirror_upper_kernel
        idx = view_index(b * sc, r, r, ldc)
        iu = np.triu_indices(r, 1)
        D[idx.T[iu]] = D[idx[iu]]  # D(j, i) = D(i, j), i < j


def store(mats, ld, stride, rows, cols, fill=np.nan):
    buf = np.full(len(mats) * stride, fill)
    for b, m in enumerate(mats):
        buf[view_index(b * stride, rows, cols, ld)] = m
    return buf


def load(buf, b, rows, cols, ld, stride):
    return buf[view_index(b * stride, rows, cols, ld)]


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def main():
    rng = np.random.default_rng(12)
    batch, fails = 3, 0
    for r in (2, 5, 16, 17, 37, 64, 129, 200):
        ldr = round_up(r, LD_ALIGN)
        sr = round_up(r * ldr, STRIDE_ALIGN)
        for commuting in (True, False):
            S, Bs, Cs = [], [], []
            for _ in range(batch):
                s = rng.standard_normal((r, r)) / np.sqrt(r)
                s = s + s.T
                if commuting:  # polynomials in s, like R, Z, Q, W of the Gram iteration
                    Bs.append(0.3 * s @ s - 1.1 * s + 0.5 * np.eye(r))
                else:
                    t = rng.standard_normal((r, r))
                    Bs.append(t + t.T)
                Cs.append(2.0 * s @ s + 0.25 * np.eye(r))
                S.append(s)
            A = store(S, ldr, sr, r, r)
            Bm = store(Bs, ldr, sr, r, r)
            C = store(Cs, ldr, sr, r, r)
            D = np.full(batch * sr, np.nan)
            alpha, beta = 1.3, 0.7
            symmetric_product(batch, r, r, alpha, A, ldr, sr, Bm, ldr, sr, beta, C, D, ldr, sr)
            err = max(rel(load(D, b, r, r, ldr, sr), alpha * S[b] @ Bs[b] + beta * Cs[b]) for b in range(batch))
            written = np.isfinite(D).sum() == batch * r * r and all(
                np.isfinite(load(D, b, r, r, ldr, sr)).all() for b in range(batch))
            asym = max(np.abs(load(D, b, r, r, ldr, sr) - load(D, b, r, r, ldr, sr).T).max() for b in range(batch))
            if commuting:
                ok = err < 1e-12 and written and asym == 0
                print("square r=%3d h=%3d: rel err %.2e, only interiors written %s, max|D-D^T| %g  %s" %
                      (r, split(r), err, written, asym, "PASS" if ok else "FAIL"))
            else:
                ok = err > 1e-3
                print("self-check square r=%3d, B not commuting with A: rel err %.2e > 1e-3  %s" %
                      (r, err, "PASS" if ok else "FAIL"))
            fails += not ok
        # Gram: X stored k x r (column-major, ld ldk) = the row-major r x k matrix.
        k = 2 * r + 3
        ldk = round_up(k, LD_ALIGN)
        sx = round_up(r * ldk, STRIDE_ALIGN)
        Xs = [rng.standard_normal((k, r)) for _ in range(batch)]
        X = store(Xs, ldk, sx, k, r)
        D = np.full(batch * sr, np.nan)
        symmetric_product(batch, r, k, 1.0, X, ldk, sx, X, ldk, sx, 0.0, np.zeros(batch * sr), D, ldr, sr)
        err = max(rel(load(D, b, r, r, ldr, sr), Xs[b].T @ Xs[b]) for b in range(batch))
        written = np.isfinite(D).sum() == batch * r * r
        ok = err < 1e-12 and written
        print("gram   r=%3d k=%3d: rel err %.2e, only interiors written %s  %s" %
              (r, k, err, written, "PASS" if ok else "FAIL"))
        fails += not ok
    print("%d failed" % fails)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
