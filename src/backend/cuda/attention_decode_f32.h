// Sparse decode attention over attended spans with f32 activations and KV (the CUDA backend's
// precision mode), on the fp32 cores. It runs the plan of attention_decode.h unchanged (the same
// DecodePlanUploader, DeviceSpan list, split into chunks and parts, and workspace layout): a warp
// attends one chunk of a (sequence, KV head) row with the query heads of its GQA group, streaming
// K and V through shared memory 16 tokens at a time; a block's warps merge their softmax states,
// and a row cut into several parts has them merged by a second kernel.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/attention_decode.h"
#include "backend/tensor.h"

namespace louiskv::kernels {

// Query heads of one group a warp serves at once (a larger group takes several head blocks).
constexpr int decode_f32_max_heads = 8;

// Thread blocks of the f32 decode kernel for this head dim and group size that fit on one
// multiprocessor at once (a query of the device's occupancy calculator; no launch).
int decode_f32_blocks_per_multiprocessor(int64_t head_dim, int64_t query_heads_per_kv_head);

struct DecodeAttentionF32Params {
  TensorView out;  // [B, Hq, D] f32 (device)
  TensorView q;    // [B, Hq, D] f32 (device)
  TensorView lse;  // f32 [B, Hq] (device), or empty when not wanted
  float scale = 1.0f;
  int kv_heads = 0;
  // The plan of DecodePlanUploader::upload(..., DType::f32), in device memory: rows = B *
  // kv_heads, whose spans' rows are [length, D] f32; see DecodeAttentionParams.
  const DeviceSpan* spans = nullptr;
  const int32_t* indptr = nullptr;
  DecodeSplit split;
  const int32_t* chunk_first_span = nullptr;
  // decode_workspace_bytes(B * Hq, split.splits, D) bytes (device); only its partial results are
  // used (the parts are always merged by a second kernel).
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
};
void launch_attention_decode_f32(const DecodeAttentionF32Params& params, cudaStream_t stream);

}  // namespace louiskv::kernels
