// Dense projections through cuBLAS: out[T, N] = in[T, K] @ weight[N, K]^T (+ bias[N]), bf16
// operands, fp32 accumulation (CUBLAS_COMPUTE_32F).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backend/tensor.h"

namespace louiskv::kernels {

// in [T, K] bf16 (device); weight [N, K] bf16 (device: prepare_weight converts file weights);
// out [T, N] bf16 or f32 (device); bias [N] f32, f16 or bf16 (device), or an empty view.
// `in` and `out` may have more dims: all but the last are flattened into T.
struct MatmulParams {
  TensorView out;
  TensorView in;
  TensorView weight;
  TensorView bias;
};
void launch_matmul(const MatmulParams& params, cublasHandle_t cublas, cudaStream_t stream);

}  // namespace louiskv::kernels
