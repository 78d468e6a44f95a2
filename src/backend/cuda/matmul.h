// Dense projections: out[T, N] = in[T, K] @ weight[N, K]^T (+ bias[N]), bf16 operands, fp32
// accumulation, through cuBLAS (CUBLAS_COMPUTE_32F). Decode sizes (T <= 32) may instead run on
// the weight-streaming kernel (matmul_weight_streaming.h), when asked for.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend/tensor.h"

namespace louiskv::kernels {

enum class MatmulPath {
  automatic,         // the measured faster one for the shape: cuBLAS for now (see matmul.cu)
  cublas,            // always cuBLAS
  weight_streaming,  // the weight-streaming kernel (fails where it does not apply)
};

// in [T, K] bf16 (device); weight [N, K] bf16 (device: prepare_weight converts file weights);
// out [T, N] bf16 or f32 (device); bias [N] f32, f16 or bf16 (device), or an empty view.
// `in` and `out` may have more dims: all but the last are flattened into T.
struct MatmulParams {
  TensorView out;
  TensorView in;
  TensorView weight;
  TensorView bias;
  // For the weight-streaming kernel (decode sizes): the device's multiprocessors and a device
  // workspace of matmul_workspace_bytes() bytes, zeroed once when allocated.
  int multiprocessors = 0;
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
  MatmulPath path = MatmulPath::automatic;
};
// Workspace bytes the automatic path needs for these views (0 when cuBLAS would run them).
int64_t matmul_workspace_bytes(const TensorView& in, const TensorView& weight, int multiprocessors);
void launch_matmul(const MatmulParams& params, cublasHandle_t cublas, cudaStream_t stream);

}  // namespace louiskv::kernels
