// Status checks for the CUDA runtime and cuBLAS. Every call into either goes through one of
// these macros, so that a failure throws louiskv::Error naming the statement, the function and
// file:line instead of surfacing later as wrong numbers.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

namespace louiskv::kernels {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* statement, const char* function,
                                   const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* statement,
                                     const char* function, const char* file, int line);

}  // namespace louiskv::kernels

#define LOUISKV_CUDA_CHECK(statement)                                                       \
  do {                                                                                      \
    cudaError_t louiskv_cuda_status = (statement);                                          \
    if (louiskv_cuda_status != cudaSuccess) {                                               \
      ::louiskv::kernels::throw_cuda_error(louiskv_cuda_status, #statement, __func__,        \
                                           __FILE__, __LINE__);                             \
    }                                                                                       \
  } while (0)

// After a kernel launch: catches bad launch configurations (and earlier asynchronous faults).
#define LOUISKV_CUDA_CHECK_LAUNCH() LOUISKV_CUDA_CHECK(cudaGetLastError())

#define LOUISKV_CUBLAS_CHECK(statement)                                                     \
  do {                                                                                      \
    cublasStatus_t louiskv_cublas_status = (statement);                                     \
    if (louiskv_cublas_status != CUBLAS_STATUS_SUCCESS) {                                   \
      ::louiskv::kernels::throw_cublas_error(louiskv_cublas_status, #statement, __func__,    \
                                             __FILE__, __LINE__);                           \
    }                                                                                       \
  } while (0)
