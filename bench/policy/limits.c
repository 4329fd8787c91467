/* Machine limits for the policy benchmark, loaded through ctypes by run.py:
 * sgemm FLOP/s through OpenBLAS (the BLAS the runtime links) and memory bandwidth of a
 * STREAM-style triad a[i] = b[i] + s c[i] (OpenMP, first-touch by the same threads).
 * Build: cc -O3 -march=native -fopenmp -shared -fPIC limits.c -lopenblas -o liblimits.so */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median GFLOP/s of reps n x n x n sgemm calls (after one warm-up). */
double symoc_sgemm_gflops(int n, int reps) {
  float *A = malloc(sizeof(float) * (size_t)n * n), *B = malloc(sizeof(float) * (size_t)n * n),
        *C = malloc(sizeof(float) * (size_t)n * n);
  double *t = malloc(sizeof(double) * (size_t)reps);
  if (!A || !B || !C || !t) return -1;
  for (size_t i = 0; i < (size_t)n * n; ++i) {
    A[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    B[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
    C[i] = 0.f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, A, n, B, n, 0.f, C, n);
  for (int r = 0; r < reps; ++r) {
    double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, A, n, B, n, 0.f, C, n);
    t[r] = now() - t0;
  }
  qsort(t, (size_t)reps, sizeof(double), cmp);
  double med = t[reps / 2];
  free(A), free(B), free(C), free(t);
  return 2.0 * n * (double)n * n / med * 1e-9;
}

/* Best GB/s (bytes read + written: 3 x 4 bytes per entry) of reps triad passes. */
double symoc_triad_gbs(long n, int reps) {
  float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n),
        *c = malloc(sizeof(float) * (size_t)n);
  if (!a || !b || !c) return -1;
#pragma omp parallel for schedule(static)
  for (long i = 0; i < n; ++i) a[i] = 0.f, b[i] = 1.f, c[i] = 2.f;
  double best = 1e30;
  const float s = 0.5f;
  for (int r = 0; r < reps; ++r) {
    double t0 = now();
#pragma omp parallel for simd schedule(static)
    for (long i = 0; i < n; ++i) a[i] = b[i] + s * c[i];
    double dt = now() - t0;
    if (dt < best) best = dt;
  }
  volatile float sink = a[n / 2];
  (void)sink;
  free(a), free(b), free(c);
  return 12.0 * (double)n / best * 1e-9;
}

int symoc_threads(void) { return omp_get_max_threads(); }
