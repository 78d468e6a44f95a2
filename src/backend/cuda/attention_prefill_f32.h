// Causal attention over a prompt chunk with f32 activations and KV (the CUDA backend's precision
// mode): the flash-attention scheme of attention_prefill.h (online softmax over key tiles, so the
// T x T scores are never stored) on the fp32 cores, since the tensor cores take no f32 operands
// without rounding them. Scores, probabilities and the output are all kept in fp32, as on the CPU.
#pragma once

#include <cuda_runtime.h>

#include "backend/tensor.h"

namespace louiskv::kernels {

// q [T, Hq, D] f32 (device) holds positions first_position + t; k, v [Hkv, capacity, D] f32
// (device or mapped host memory); query t sees keys [0, first_position + t]. GQA: query head h
// reads KV head h / (Hq / Hkv). out [T, Hq, D] f32 (or any shape of that element count). D is 64
// or 128.
struct PrefillAttentionF32Params {
  TensorView out;
  TensorView q;
  TensorView k;
  TensorView v;
  int64_t first_position = 0;
  float scale = 1.0f;
};
void launch_attention_prefill_f32(const PrefillAttentionF32Params& params, cudaStream_t stream);

}  // namespace louiskv::kernels
