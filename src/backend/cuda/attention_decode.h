// Sparse decode attention over attended spans (flash-decoding on the tensor cores). Each
// (sequence, KV head) row's tokens are cut into chunks of `chunk_tokens`; a warp attends one
// chunk with all the query heads of its GQA group as the 16 rows of its MMA tiles, streaming K
// and V through a pipeline of its own in shared memory, so no barrier couples the warps while
// they read. A block's warps take consecutive chunks of one row (a "part") and merge their
// softmax states in shared memory; a row cut into several parts has them merged by their
// maxima and sums afterwards (a row that fits one part is normalised in place).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/tensor.h"

namespace louiskv::kernels {

// One span of a row as the kernel reads it: `length` K rows at `keys` and V rows at `values`
// ([length, D] bf16, device or mapped host memory). `first_token` is the index of the span's
// first token among its row's tokens (a running sum of the row's lengths), so that a warp can
// find the span holding any token by walking on from its chunk's first span.
struct DeviceSpan {
  const void* keys;
  const void* values;
  int32_t length;
  int32_t first_token;
};
static_assert(sizeof(DeviceSpan) == 24, "DeviceSpan is copied to the device as raw bytes");

// Chunks are multiples of this many tokens; a block runs this many warps, one chunk each.
constexpr int decode_chunk_granule = 16;
constexpr int decode_warps_per_block = 4;

// How the work of one call is cut: `splits` chunks of `chunk_tokens` per row, grouped in parts
// of decode_warps_per_block chunks, one block each; at most `concurrent_blocks` blocks are
// launched (0: one per part), each taking parts in turn until none is left.
struct DecodeSplit {
  int chunk_tokens = decode_chunk_granule;
  int splits = 1;
  int concurrent_blocks = 0;
};
constexpr int decode_parts(int splits) { return (splits + decode_warps_per_block - 1) / decode_warps_per_block; }
// Thread blocks of the decode kernel that fit on one multiprocessor at once, for this head dim
// (a query of the device's occupancy calculator; no launch).
int decode_blocks_per_multiprocessor(int64_t head_dim, int64_t query_heads_per_kv_head);
// Picks the chunk size: blocks = rows x head blocks x parts should fill the `concurrent_blocks`
// the GPU runs at once in whole waves (a last, partly filled wave idles the rest of the GPU),
// with as few parts per row as that allows (each part costs a start-up and a merge).
DecodeSplit choose_decode_split(int64_t rows, int64_t query_heads_per_kv_head,
                                int64_t max_row_tokens, int64_t concurrent_blocks);
// The workspace starts with one merge counter per (row, head block) in a region of fixed size,
// so that every call finds them where the previous one left them at zero (the workspace is
// zeroed when allocated); partial results follow.
constexpr int64_t decode_max_counters = 65536;
constexpr int64_t decode_counter_bytes = decode_max_counters * 4;
// Bytes of workspace attention_decode needs for `query_rows` = batch x Hq rows.
int64_t decode_workspace_bytes(int64_t query_rows, int splits, int64_t head_dim);

struct DecodeAttentionParams {
  TensorView out;   // [B, Hq, D] bf16 (device)
  TensorView q;     // [B, Hq, D] bf16 (device)
  TensorView lse;   // f32 [B, Hq] (device), or empty when not wanted
  float scale = 1.0f;
  int kv_heads = 0;
  // The plan, in device memory: rows = B * kv_heads; spans of row r are
  // spans[indptr[r] .. indptr[r + 1]).
  const DeviceSpan* spans = nullptr;
  const int32_t* indptr = nullptr;
  DecodeSplit split;
  // [rows * split.splits]: the first span of each chunk (row r, chunk c at r * splits + c), or
  // the row's end when the chunk is past the row's tokens. The host knows it for free while
  // staging the spans; it spares every warp a search through global memory.
  const int32_t* chunk_first_span = nullptr;
  // Workspace of decode_workspace_bytes(B * Hq, split.splits, D) bytes (device), zeroed when
  // allocated; each launch leaves its counters at zero again.
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
  // How the parts of a row are merged when there are several: by a second kernel (default),
  // or by the last block of each row to finish (one launch, threadfence reduction).
  bool merge_in_kernel = false;
  // Launch with programmatic stream serialization: the blocks may be scheduled while the
  // previous kernel in the stream drains, and wait for it before touching memory.
  bool overlap_previous_kernel = true;
};
void launch_attention_decode(const DecodeAttentionParams& params, cudaStream_t stream);

// What a launch derives from its parameters once they are checked (both precisions' kernels).
struct DecodeAttentionShape {
  int64_t batch = 0, query_heads = 0, head_dim = 0;
  int64_t rows = 0;        // batch x KV heads
  int64_t query_rows = 0;  // batch x query heads
  int64_t group = 0;       // query heads per KV head
};
// Checks the parameters of a decode attention launch whose q and out are `activation` (bf16 or
// f32): devices, dtypes, shapes, head dim, lse, alignment, split, workspace and, for a batch
// above 0, the plan's pointers. Throws an Error naming the field.
DecodeAttentionShape check_decode_attention_params(const DecodeAttentionParams& params, DType activation);

}  // namespace louiskv::kernels
