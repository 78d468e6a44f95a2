// Moves K/V rows in bulk for the KV path: gather_kv (runs of rows between the pinned host pool
// and device memory, in any direction; the decode step's delta load is one launch per layer)
// and reorder_kv (rows by index: a clustered prompt laid out unit by unit in the pool).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <span>
#include <vector>

#include "backend/kv_ops.h"
#include "backend/tensor.h"

namespace louiskv::kernels {

// A piece of a copy one thread block moves: `vectors` 16-byte vectors of K and as many of V.
struct GatherChunk {
  const uint4* source_keys;
  const uint4* source_values;
  uint4* keys;
  uint4* values;
  int32_t vectors;
};

// Cuts each copy into chunks of at most 8 KiB of K and 8 KiB of V (a thread block's share),
// after checking it: pointers non-null and 16-byte aligned, row_bytes a multiple of 16. Appends
// to `chunks`; returns the bytes the copies move.
int64_t plan_gather(std::span<const KvCopy> copies, int64_t row_bytes, std::vector<GatherChunk>& chunks);

struct GatherParams {
  const GatherChunk* chunks = nullptr;  // device, [chunk_count]
  int64_t chunk_count = 0;
  int multiprocessors = 0;
};
void launch_gather_kv(const GatherParams& params, cudaStream_t stream);

// For every head h and i < N: dst[h, dst_first + i] = src[h, src_first + order[h, i]], K and V.
struct ReorderParams {
  TensorView dst_keys, dst_values;  // [H, capacity, D] (device or mapped host), one dtype
  TensorView src_keys, src_values;  // [H, capacity', D]
  TensorView order;                 // i32 [H, N] (device or mapped host)
  int64_t dst_first = 0;
  int64_t src_first = 0;
};
void launch_reorder_kv(const ReorderParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
