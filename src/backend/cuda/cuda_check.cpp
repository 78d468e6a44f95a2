#include "backend/cuda/cuda_check.h"

#include <string>

#include "common/error.h"

namespace louiskv::kernels {

namespace {

std::string location(const char* statement, const char* function, const char* file, int line) {
  return std::string(" in `") + statement + "` (" + function + ", " + file + ":" +
         std::to_string(line) + ")";
}

}  // namespace

void throw_cuda_error(cudaError_t status, const char* statement, const char* function,
                      const char* file, int line) {
  ErrorKind kind = ErrorKind::internal;
  if (status == cudaErrorMemoryAllocation) kind = ErrorKind::out_of_memory;
  if (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver ||
      status == cudaErrorNoKernelImageForDevice || status == cudaErrorInvalidDevice) {
    kind = ErrorKind::unsupported;
  }
  throw Error(kind, std::string("CUDA error ") + cudaGetErrorName(status) + " (" +
                        cudaGetErrorString(status) + ")" +
                        location(statement, function, file, line));
}

void throw_cublas_error(cublasStatus_t status, const char* statement, const char* function,
                        const char* file, int line) {
  ErrorKind kind = status == CUBLAS_STATUS_ALLOC_FAILED ? ErrorKind::out_of_memory
                   : status == CUBLAS_STATUS_NOT_SUPPORTED ? ErrorKind::unsupported
                                                           : ErrorKind::internal;
  throw Error(kind, std::string("cuBLAS error ") + cublasGetStatusName(status) + " (" +
                        cublasGetStatusString(status) + ")" +
                        location(statement, function, file, line));
}

}  // namespace louiskv::kernels
