// Turns the host-side attended spans of one decode step into the device plan that sparse
// decode attention reads, without making the host wait for the device: the spans are written
// into a pinned staging slot and copied on the stream; a slot is reused only once the copy that
// read it has completed (an event per slot), so the host may run many calls ahead.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "backend/attended_spans.h"
#include "backend/cuda/attention_decode.h"

namespace louiskv::kernels {

struct DecodePlan {
  const DeviceSpan* spans = nullptr;  // device
  const int32_t* indptr = nullptr;    // device, [rows + 1]
  DecodeSplit split;
  float* workspace = nullptr;  // device
  int64_t workspace_floats = 0;
};

class DecodePlanUploader {
 public:
  DecodePlanUploader() = default;
  DecodePlanUploader(const DecodePlanUploader&) = delete;
  DecodePlanUploader& operator=(const DecodePlanUploader&) = delete;
  ~DecodePlanUploader();

  // Checks `spans` (rows, indptr, lengths, pointers), stages and enqueues its upload on `stream`,
  // picks the split and makes sure the workspace is large enough. rows = batch * kv_heads.
  DecodePlan upload(const AttendedSpans& spans, int64_t batch, int64_t kv_heads,
                    int64_t query_heads, int64_t head_dim, int multiprocessors,
                    cudaStream_t stream);

  // Sizes the device buffers ahead of the first step (optional: upload grows them as needed,
  // which waits for the stream once per growth).
  void reserve(int64_t spans, int64_t rows, int64_t workspace_floats, cudaStream_t stream);

 private:
  struct Slot {
    void* host = nullptr;  // pinned
    size_t bytes = 0;
    cudaEvent_t copied = nullptr;
    uint64_t last_use = 0;
  };
  Slot& free_slot(size_t bytes);
  void grow_device_plan(size_t bytes, cudaStream_t stream);
  void grow_workspace(int64_t floats, cudaStream_t stream);

  std::vector<Slot> slots_;
  std::vector<int32_t> indptr_scratch_;  // reused across calls: no allocation per step
  uint64_t uses_ = 0;
  void* device_plan_ = nullptr;
  size_t device_plan_bytes_ = 0;
  float* workspace_ = nullptr;
  int64_t workspace_floats_ = 0;
};

}  // namespace louiskv::kernels
