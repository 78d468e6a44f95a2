// Sparse decode attention over attended spans (flash-decoding): each (sequence, KV head) row's
// tokens are cut into chunks that separate blocks attend to, every block serving all the query
// heads of its GQA group from one read of K and V; the chunks' partial outputs are then merged
// by their softmax maxima and sums (a row that fits one chunk is normalised in place).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/tensor.h"

namespace louiskv::kernels {

// One span of a row as the kernel reads it: `length` K rows at `keys` and V rows at `values`
// ([length, D] bf16, device or mapped host memory). `first_token` is the index of the span's
// first token among its row's tokens (a running sum of the row's lengths), so that a block can
// find the span holding any token by binary search.
struct DeviceSpan {
  const void* keys;
  const void* values;
  int32_t length;
  int32_t first_token;
};
static_assert(sizeof(DeviceSpan) == 24, "DeviceSpan is copied to the device as raw bytes");

// Tokens per chunk: a multiple of the kernel's tile, at most the size of its per-chunk table.
constexpr int decode_tile_tokens = 32;
constexpr int decode_max_chunk_tokens = 512;

// How the work of one call is cut: `splits` chunks of `chunk_tokens` per row.
struct DecodeSplit {
  int chunk_tokens = decode_tile_tokens;
  int splits = 1;
};
// Thread blocks of the decode kernel that fit on one multiprocessor at once, for this head dim
// and GQA group (a query of the device's occupancy calculator; no launch).
int decode_blocks_per_multiprocessor(int64_t head_dim, int64_t query_heads_per_kv_head);
// Picks the chunk size: blocks = rows x head blocks x splits should fill the `concurrent_blocks`
// the GPU runs at once in whole waves (a last, partly filled wave idles the rest of the GPU),
// with chunks between 64 tokens (less is mostly setup) and decode_max_chunk_tokens.
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
  // staging the spans; it spares every block a search through global memory.
  const int32_t* chunk_first_span = nullptr;
  // Workspace of decode_workspace_bytes(B * Hq, split.splits, D) bytes (device), zeroed when
  // allocated; each launch leaves its counters at zero again.
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
  // How the chunks of a row are merged: by a second kernel (default), or by the last block of
  // each row to finish (one launch, threadfence reduction). On the H200 the second kernel was
  // faster: 2550 against 2320 GB/s of KV read at batch 32, budget 2048 (bench_attention_decode).
  bool merge_in_kernel = false;
};
void launch_attention_decode(const DecodeAttentionParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
