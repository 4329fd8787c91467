# symoc_cuda_matrix: batched matrix kernels of the CUDA backend (runtime/cuda/include/
# symoc/cuda/matrix.h). Included by the CUDA backend's CMake (option SYMOC_CUDA, owned by
# the runtime/cuda CMakeLists) after enable_language(CUDA):
#   include(${CMAKE_CURRENT_SOURCE_DIR}/matrix.cmake)
# Needs the targets CUDA::cudart, CUDA::cublas, CUDA::cublasLt, CUDA::cusolver
# (find_package(CUDAToolkit)) and symoc_runtime (for rt::Error and the option types).
set(SYMOC_CUDA_MATRIX_DIR ${CMAKE_CURRENT_LIST_DIR})
add_library(symoc_cuda_matrix STATIC
  ${SYMOC_CUDA_MATRIX_DIR}/lib/engine.cu
  ${SYMOC_CUDA_MATRIX_DIR}/lib/blas.cu
  ${SYMOC_CUDA_MATRIX_DIR}/lib/gemm_tf32x3.cu
  ${SYMOC_CUDA_MATRIX_DIR}/lib/rowops.cu
  ${SYMOC_CUDA_MATRIX_DIR}/lib/eigh.cu
  ${SYMOC_CUDA_MATRIX_DIR}/lib/sytrd.cu
  ${SYMOC_CUDA_MATRIX_DIR}/lib/tridiag_solve.cu
  ${SYMOC_CUDA_MATRIX_DIR}/lib/matfun.cu
  ${SYMOC_CUDA_MATRIX_DIR}/lib/inv_root.cu
  ${SYMOC_CUDA_MATRIX_DIR}/lib/newton_schulz.cu
  ${SYMOC_CUDA_MATRIX_DIR}/lib/gram_newton_schulz.cu
  ${SYMOC_CUDA_MATRIX_DIR}/lib/polar.cu)
target_include_directories(symoc_cuda_matrix PUBLIC $<BUILD_INTERFACE:${SYMOC_CUDA_MATRIX_DIR}/include>)
target_link_libraries(symoc_cuda_matrix PUBLIC symoc_runtime CUDA::cudart CUDA::cublas CUDA::cublasLt CUDA::cusolver)
set_target_properties(symoc_cuda_matrix PROPERTIES
  POSITION_INDEPENDENT_CODE ON CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON)
if(NOT CMAKE_CUDA_ARCHITECTURES)
  set_target_properties(symoc_cuda_matrix PROPERTIES CUDA_ARCHITECTURES 90)
endif()
