// RMSNorm: out[r, :] = in[r, :] / sqrt(mean(in[r, :]^2) + eps) * weight, fp32 accumulation.
#pragma once

#include <cuda_runtime.h>

#include "backend/tensor.h"

namespace louiskv::kernels {

// in/out [R, H] of one dtype, bf16 or f32 (device; out may alias in); weight [H] f32, f16 or
// bf16 (device or mapped host). Views of any rank are taken as rows of H = weight's length.
struct RmsNormParams {
  TensorView out;
  TensorView in;
  TensorView weight;
  float eps = 1e-6f;
};
void launch_rms_norm(const RmsNormParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
