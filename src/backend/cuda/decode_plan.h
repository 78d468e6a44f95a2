// Turns the host-side attended spans of one decode step into the device plan that sparse
// decode attention reads, without making the host wait for the device:
// - the spans are checked, merged where they continue each other in memory, and written into a
//   pinned staging slot, which is reused only once the copy that read it has completed;
// - the copy runs on a side stream into one of a few device plan buffers, so it overlaps the
//   kernels already queued; the attention stream waits for it, and the buffer is reused only
//   after the kernels that read it (release()).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "backend/attended_spans.h"
#include "backend/cuda/attention_decode.h"
#include "common/dtype.h"

namespace louiskv::kernels {

struct DecodePlan {
  const DeviceSpan* spans = nullptr;          // device
  const int32_t* indptr = nullptr;            // device, [rows + 1]
  const int32_t* chunk_first_span = nullptr;  // device, [rows * split.splits]
  DecodeSplit split;
  void* workspace = nullptr;  // device, zeroed when allocated
  int64_t workspace_bytes = 0;
  int device_slot = -1;  // which device plan buffer; for release()
};

class DecodePlanUploader {
 public:
  DecodePlanUploader() = default;
  DecodePlanUploader(const DecodePlanUploader&) = delete;
  DecodePlanUploader& operator=(const DecodePlanUploader&) = delete;
  ~DecodePlanUploader();

  // Checks `spans` (rows, indptr, lengths, pointers), stages and enqueues its upload, picks the
  // split and makes sure the workspace is large enough. rows = batch * kv_heads. Work enqueued
  // on `stream` after this call sees the plan.
  // `chunk_tokens` > 0 imposes the chunk size (a multiple of decode_chunk_granule) instead of
  // the occupancy-based choice: benchmarks sweep it. `kv_dtype` is that of the spans' rows (bf16
  // or f32), which decides the row size and which kernel's occupancy the split is planned for.
  DecodePlan upload(const AttendedSpans& spans, int64_t batch, int64_t kv_heads, int64_t query_heads,
                    int64_t head_dim, int multiprocessors, cudaStream_t stream, int chunk_tokens = 0,
                    DType kv_dtype = DType::bf16);
  // The kernels reading `plan` are enqueued on `stream`: its device buffer may be refilled once
  // the stream has passed this point.
  void release(const DecodePlan& plan, cudaStream_t stream);

 private:
  struct HostSlot {
    void* data = nullptr;  // pinned
    size_t bytes = 0;
    cudaEvent_t copied = nullptr;
    uint64_t last_use = 0;
  };
  struct DeviceSlot {
    void* data = nullptr;
    size_t bytes = 0;
    cudaEvent_t uploaded = nullptr;  // on the copy stream
    cudaEvent_t consumed = nullptr;  // on the attention stream
    bool in_use = false;             // consumed has been recorded at least once
  };
  HostSlot& free_host_slot(size_t bytes);
  DeviceSlot& next_device_slot(size_t bytes, int& index);
  void grow_workspace(int64_t bytes, cudaStream_t stream);
  int64_t concurrent_blocks(int64_t head_dim, int64_t group, DType kv_dtype, int multiprocessors);

  cudaStream_t copy_stream_ = nullptr;  // created on first use, on the backend's device
  std::vector<HostSlot> host_slots_;
  uint64_t uses_ = 0;
  std::vector<DeviceSlot> device_slots_;
  size_t next_device_slot_ = 0;
  void* workspace_ = nullptr;
  int64_t workspace_bytes_ = 0;
  std::vector<int32_t> row_tokens_;  // reused across calls: no allocation per step
  // By head dim, KV dtype and (f32 only: it picks the kernel) query heads per KV head.
  std::map<std::tuple<int64_t, DType, int64_t>, int> blocks_per_multiprocessor_;
};

}  // namespace louiskv::kernels
