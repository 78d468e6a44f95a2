// Causal flash attention over a prompt chunk (prefill): online softmax over key tiles, so the
// T x T scores are never stored and 32K-token prompts need no extra memory; bf16 tensor-core
// MMAs with fp32 accumulation.
#pragma once

#include <cuda_runtime.h>

#include "backend/tensor.h"

namespace louiskv::kernels {

// q [T, Hq, D] bf16 holds positions first_position + t; k, v [Hkv, capacity, D] bf16 (device);
// query t sees keys [0, first_position + t]. GQA: query head h reads KV head h / (Hq / Hkv).
// out [T, Hq, D] bf16 (or any shape of that element count). D is 64 or 128.
struct PrefillAttentionParams {
  TensorView out;
  TensorView q;
  TensorView k;
  TensorView v;
  int64_t first_position = 0;
  float scale = 1.0f;
  // Warps per block (16 queries each): 4 or 8; 0 takes the default. Benchmarks and tests set it
  // to compare and check both shapes.
  int warps = 0;
  // Whether each warp computes the next key tile's scores before the softmax of the current
  // one (1) or after it (0); -1 takes the default. Benchmarks and tests set it likewise.
  int score_lookahead = -1;
  // Queries per warp: 16, or 32 at head dim 64 (each K/V fragment then feeds two MMA tiles; no
  // lookahead in that shape); 0 takes the default.
  int queries_per_warp = 0;
};
void launch_attention_prefill(const PrefillAttentionParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
