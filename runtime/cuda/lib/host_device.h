// Internal: SYMOC_HD marks functions callable from kernels and from plain host code compiled by
// g++ (the host drivers and the CI tests that run the kernels' arithmetic without a GPU).
#pragma once

#ifdef __CUDACC__
#define SYMOC_HD __host__ __device__
#else
#define SYMOC_HD
#endif
