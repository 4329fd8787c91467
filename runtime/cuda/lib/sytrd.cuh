// Internal: batched Householder tridiagonalization of symmetric matrices, the first stage of
// the tridiagonal eigensolver (EigMethod::Tridiagonal, eigh.cu). LAPACK's ?sytrd with uplo
// lower, blocked as ?latrd, but every launch covers the whole batch: cuSOLVER's sytrd runs one
// matrix at a time at a fraction of the memory bandwidth (H200, fp32, n = 3072: 39 ms a matrix,
// more than XsyevBatched's whole solve, bench/gpu/sytrd_bench.cu), and its column-by-column
// matrix-vector products are the step.
#pragma once

#include "common.cuh"

namespace symoc::cuda::detail {

// A: batch column-major n x n symmetric matrices (stride n * n), both triangles stored. On
// return, as LAPACK ?sytrd (uplo lower): d (batch x n) the diagonal, e and tau (batch x n, the
// first n - 1 used) the off-diagonal and the reflectors' scalars, and below A's subdiagonal the
// reflectors' vectors (H_i = I - tau_i v v^T, v_{i+1} = 1 implicit, v_{i+2..} in A(i+2.., i)),
// so Q = H_0 ... H_{n-2} with A = Q T Q^T (cuSOLVER's ?ormtr applies it). The upper triangle is
// left overwritten. Work: sytrd_workspace bytes of device scratch. No host synchronization, no
// allocation; capturable in a CUDA graph.
template <class T> size_t sytrd_workspace(int64_t n, int64_t batch);
template <class T>
void sytrd_batched(Engine::Impl &e, T *A, int64_t n, int64_t batch, T *d, T *off, T *tau, void *work, cudaStream_t s);

// Z <- Q Z for the Q of sytrd_batched's A and tau (LAPACK ?ormtr, side left, uplo lower, no
// transpose), Z batch column-major n x n: the tridiagonal's eigenvectors become A's. Blocked
// (LAPACK ?larft / ?larfb), every product one strided-batched GEMM over the batch; no host
// synchronization, capturable. Work: sytrd_apply_q_workspace bytes.
template <class T> size_t sytrd_apply_q_workspace(int64_t n, int64_t batch);
template <class T>
void sytrd_apply_q(Engine::Impl &e, const T *A, const T *tau, int64_t n, int64_t batch, T *Z, void *work, cudaStream_t s);

} // namespace symoc::cuda::detail
