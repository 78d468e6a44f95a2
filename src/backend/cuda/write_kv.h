// Appends K or V rows of a chunk of tokens to a cache laid out per KV head.
#pragma once

#include <cuda_runtime.h>

#include "backend/tensor.h"

namespace louiskv::kernels {

// cache [Hkv, capacity, D] (device or mapped host memory) receives rows [T, Hkv, D] (device) of
// the same dtype, bf16 or f32, at token positions [first_position, first_position + T).
struct WriteKvParams {
  TensorView cache;
  TensorView rows;
  int64_t first_position = 0;
};
void launch_write_kv(const WriteKvParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
