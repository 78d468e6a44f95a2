// Rotary position embedding in the "rotate half" layout of Llama and Qwen: dims i and i + D/2
// form a pair rotated by the angle position * inv_freq[i].
#pragma once

#include <cuda_runtime.h>

#include "backend/tensor.h"

namespace louiskv::kernels {

// x [T, heads, D] bf16 or f32, rotated in place (device); positions i32 [T] (device);
// inv_freq f32 [D/2] (device), already carrying any llama3 scaling.
struct RopeParams {
  TensorView x;
  TensorView positions;
  TensorView inv_freq;
};
void launch_rope(const RopeParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
