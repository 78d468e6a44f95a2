// Dense projections: out[T, N] = in[T, K] @ weight[N, K]^T (+ bias[N]), bf16 operands, fp32
// accumulation, through cuBLAS (CUBLAS_COMPUTE_32F) or, for decode sizes (T <= 32), the
// weight-streaming kernel (matmul_weight_streaming.h) where it measured faster; f32 operands
// (the backend's precision mode) always through cuBLAS, in fp32.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <span>

#include "backend/cuda/matmul_weight_streaming.h"
#include "backend/tensor.h"

namespace louiskv::kernels {

enum class MatmulPath {
  automatic,         // the measured faster one for the shape (see matmul.cu)
  cublas,            // always cuBLAS
  weight_streaming,  // the weight-streaming kernel (fails where it does not apply)
};

// in [T, K] bf16 (device); weight [N, K] bf16 (device: prepare_weight converts file weights);
// out [T, N] bf16 or f32 (device); bias [N] f32, f16 or bf16 (device), or an empty view.
// Or, in the backend's precision mode, in, weight and out all f32 (an fp32 cuBLAS GEMM).
// `in` and `out` may have more dims: all but the last are flattened into T.
struct MatmulParams {
  TensorView out;
  TensorView in;
  TensorView weight;
  TensorView bias;
  // The device's multiprocessors, which the weight-streaming kernel's plan needs (0: cuBLAS only).
  int multiprocessors = 0;
  MatmulPath path = MatmulPath::automatic;
  // More products of the same input (the first is out, weight and bias above), e.g. k and v
  // after q: one weight-streaming launch for all where the automatic path would stream their
  // total and the parts allow it (weight_streaming_parts_apply), else one product after another.
  std::span<const WeightStreamingPart> more_parts;
};
// Whether the automatic path runs this product on the weight-streaming kernel.
bool matmul_prefers_weight_streaming(const TensorView& in, const TensorView& weight);
void launch_matmul(const MatmulParams& params, cublasHandle_t cublas, cudaStream_t stream);

}  // namespace louiskv::kernels
