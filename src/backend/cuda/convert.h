// Conversion between floating dtypes (f32, f16, bf16), elementwise; used by Backend::convert
// (e.g. bf16 logits to f32) and by prepare_weight (file weights to bf16).
#pragma once

#include <cuda_runtime.h>

#include "backend/tensor.h"

namespace louiskv::kernels {

// out <- in converted, same element count; each side in device memory or mapped host memory.
struct ConvertParams {
  TensorView out;
  TensorView in;
};
void launch_convert(const ConvertParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
