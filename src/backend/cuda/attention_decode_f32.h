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

// The same parameters as the bf16 kernel, with out and q f32 and the plan uploaded for f32 rows
// (DecodePlanUploader::upload(..., DType::f32)); merge_in_kernel and overlap_previous_kernel are
// ignored: the parts of a row are always merged by a second kernel.
void launch_attention_decode_f32(const DecodeAttentionParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
