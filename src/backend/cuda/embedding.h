// Token embedding lookup: out[t, :] = table[ids[t], :].
#pragma once

#include <cuda_runtime.h>

#include "backend/tensor.h"

namespace louiskv::kernels {

// out [T, H] bf16 or f32 (device); table [V, H] f32, f16 or bf16 (device or mapped host);
// ids i32 [T] (device). An id outside [0, V) yields a row of NaN: the launcher cannot read ids
// without waiting for the device, and NaN makes the fault visible downstream instead of reading
// another process's memory.
struct EmbeddingParams {
  TensorView out;
  TensorView table;
  TensorView ids;
};
void launch_embedding(const EmbeddingParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
