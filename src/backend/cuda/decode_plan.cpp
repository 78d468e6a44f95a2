#include "backend/cuda/decode_plan.h"

#include <cstring>
#include <string>

#include "backend/cuda/attention_decode_f32.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

// Staging slots in flight before the host waits: a decode step of a 32-layer model uses 32,
// and the host rarely runs more than two steps ahead.
constexpr size_t max_host_slots = 96;
// Device plan buffers: one being filled while the kernels of the previous calls read theirs.
constexpr size_t device_slots = 4;

size_t round_up(size_t value, size_t multiple) { return (value + multiple - 1) / multiple * multiple; }

}  // namespace

DecodePlanUploader::~DecodePlanUploader() {
  // Errors are ignored here: a destructor cannot throw, and the process may be tearing down.
  if (copy_stream_) cudaStreamSynchronize(copy_stream_);
  for (HostSlot& slot : host_slots_) {
    if (slot.copied) cudaEventDestroy(slot.copied);
    if (slot.data) cudaFreeHost(slot.data);
  }
  for (DeviceSlot& slot : device_slots_) {
    if (slot.consumed) cudaEventSynchronize(slot.consumed);
    if (slot.uploaded) cudaEventDestroy(slot.uploaded);
    if (slot.consumed) cudaEventDestroy(slot.consumed);
    if (slot.data) cudaFree(slot.data);
  }
  if (workspace_) cudaFree(workspace_);
  if (copy_stream_) cudaStreamDestroy(copy_stream_);
}

DecodePlanUploader::HostSlot& DecodePlanUploader::free_host_slot(size_t bytes) {
  HostSlot* chosen = nullptr;
  for (HostSlot& slot : host_slots_) {
    cudaError_t status = cudaEventQuery(slot.copied);
    if (status == cudaErrorNotReady) continue;
    LOUISKV_CUDA_CHECK(status);
    if (!chosen || slot.bytes > chosen->bytes) chosen = &slot;  // prefer one that fits
  }
  if (!chosen && host_slots_.size() < max_host_slots) {
    host_slots_.emplace_back();
    chosen = &host_slots_.back();
    LOUISKV_CUDA_CHECK(cudaEventCreateWithFlags(&chosen->copied, cudaEventDisableTiming));
  }
  if (!chosen) {
    // Every slot is still being copied from: wait for the oldest copy.
    chosen = &host_slots_.front();
    for (HostSlot& slot : host_slots_) {
      if (slot.last_use < chosen->last_use) chosen = &slot;
    }
    LOUISKV_CUDA_CHECK(cudaEventSynchronize(chosen->copied));
  }
  if (chosen->bytes < bytes) {
    if (chosen->data) LOUISKV_CUDA_CHECK(cudaFreeHost(chosen->data));
    chosen->data = nullptr;
    chosen->bytes = 0;
    size_t grown = round_up(bytes + bytes / 2, 4096);
    LOUISKV_CUDA_CHECK(cudaHostAlloc(&chosen->data, grown, cudaHostAllocDefault));
    chosen->bytes = grown;
  }
  chosen->last_use = ++uses_;
  return *chosen;
}

DecodePlanUploader::DeviceSlot& DecodePlanUploader::next_device_slot(size_t bytes, int& index) {
  if (device_slots_.empty()) {
    device_slots_.resize(device_slots);
    for (DeviceSlot& slot : device_slots_) {
      LOUISKV_CUDA_CHECK(cudaEventCreateWithFlags(&slot.uploaded, cudaEventDisableTiming));
      LOUISKV_CUDA_CHECK(cudaEventCreateWithFlags(&slot.consumed, cudaEventDisableTiming));
    }
  }
  index = int(next_device_slot_);
  next_device_slot_ = (next_device_slot_ + 1) % device_slots_.size();
  DeviceSlot& slot = device_slots_[size_t(index)];
  if (slot.bytes < bytes) {
    // Kernels enqueued earlier may still read the old buffer (growth is rare: a longer batch).
    if (slot.in_use) LOUISKV_CUDA_CHECK(cudaEventSynchronize(slot.consumed));
    if (slot.data) LOUISKV_CUDA_CHECK(cudaFree(slot.data));
    slot.data = nullptr;
    slot.bytes = 0;
    size_t grown = round_up(bytes + bytes / 2, 4096);
    LOUISKV_CUDA_CHECK(cudaMalloc(&slot.data, grown));
    slot.bytes = grown;
  }
  return slot;
}

void DecodePlanUploader::grow_workspace(int64_t bytes, cudaStream_t stream) {
  if (bytes <= workspace_bytes_) return;
  LOUISKV_CUDA_CHECK(cudaStreamSynchronize(stream));  // queued kernels may use the old one
  if (workspace_) LOUISKV_CUDA_CHECK(cudaFree(workspace_));
  workspace_ = nullptr;
  workspace_bytes_ = 0;
  int64_t grown = bytes + bytes / 2;
  LOUISKV_CUDA_CHECK(cudaMalloc(&workspace_, size_t(grown)));
  // The merge counters at its start must be zero; every launch leaves them zero again.
  LOUISKV_CUDA_CHECK(cudaMemsetAsync(workspace_, 0, size_t(grown), stream));
  workspace_bytes_ = grown;
}

int64_t DecodePlanUploader::concurrent_blocks(int64_t head_dim, int64_t group, DType kv_dtype, int multiprocessors) {
  const bool f32 = kv_dtype == DType::f32;
  const std::tuple<int64_t, DType, int64_t> key{head_dim, kv_dtype, f32 ? group : 0};
  auto found = blocks_per_multiprocessor_.find(key);
  if (found == blocks_per_multiprocessor_.end()) {
    const int blocks = f32 ? decode_f32_blocks_per_multiprocessor(head_dim, group)
                           : decode_blocks_per_multiprocessor(head_dim, group);
    found = blocks_per_multiprocessor_.emplace(key, blocks).first;
  }
  return int64_t(found->second) * multiprocessors;
}

DecodePlan DecodePlanUploader::upload(const AttendedSpans& spans, int64_t batch, int64_t kv_heads,
                                      int64_t query_heads, int64_t head_dim, int multiprocessors,
                                      cudaStream_t stream, int chunk_tokens, DType kv_dtype) {
  const char* op = "attention_decode";
  LOUISKV_REQUIRE(kv_dtype == DType::bf16 || kv_dtype == DType::f32, op,
                  "the KV rows must be bf16 or f32, not " + std::string(dtype_name(kv_dtype)));
  const int64_t rows = batch * kv_heads;
  LOUISKV_REQUIRE(int64_t(spans.rows()) == rows, op,
                  "spans has " + std::to_string(spans.rows()) + " rows, expected batch (" + std::to_string(batch) +
                      ") x KV heads (" + std::to_string(kv_heads) + ")");
  LOUISKV_REQUIRE(!spans.indptr.empty() && spans.indptr.front() == 0 &&
                      spans.indptr.back() == int32_t(spans.spans.size()),
                  op, "spans.indptr must start at 0 and end at the number of spans");

  // Pass 1: check every span and measure the rows; nothing is written yet, since the split
  // (and so the size of the plan) depends on the longest row.
  row_tokens_.assign(size_t(rows), 0);
  int64_t max_row_tokens = 0;
  for (int64_t row = 0; row < rows; ++row) {
    const int32_t begin = spans.indptr[size_t(row)], end = spans.indptr[size_t(row) + 1];
    LOUISKV_REQUIRE(begin <= end, op, "spans.indptr must not decrease (row " + std::to_string(row) + ")");
    int64_t tokens = 0;
    for (int32_t i = begin; i < end; ++i) {
      const AttendSpan& span = spans.spans[size_t(i)];
      if (span.length == 0) continue;
      bool aligned = ((reinterpret_cast<uintptr_t>(span.keys) | reinterpret_cast<uintptr_t>(span.values)) & 15) == 0;
      if (span.length < 0 || span.keys == nullptr || span.values == nullptr || !aligned) {
        LOUISKV_REQUIRE(span.length >= 0, op, "span " + std::to_string(i) + " has a negative length");
        LOUISKV_REQUIRE(span.keys != nullptr && span.values != nullptr, op,
                        "span " + std::to_string(i) + " has a null key or value pointer");
        LOUISKV_REQUIRE(aligned, op, "span " + std::to_string(i) + " is not 16-byte aligned");
      }
      tokens += span.length;
    }
    LOUISKV_REQUIRE(tokens < (int64_t(1) << 31), op, "a row attends more than 2^31 tokens");
    row_tokens_[size_t(row)] = int32_t(tokens);
    if (tokens > max_row_tokens) max_row_tokens = tokens;
  }
  const int64_t group = query_heads / kv_heads;
  DecodeSplit split =
      choose_decode_split(rows, group, max_row_tokens, concurrent_blocks(head_dim, group, kv_dtype, multiprocessors));
  if (chunk_tokens > 0) {
    LOUISKV_REQUIRE(chunk_tokens % decode_chunk_granule == 0, op,
                    "an imposed chunk must be a multiple of " + std::to_string(decode_chunk_granule) + " tokens");
    split.chunk_tokens = chunk_tokens;
    split.splits = int(max_row_tokens > 0 ? (max_row_tokens + chunk_tokens - 1) / chunk_tokens : 1);
  }

  // Pass 2: write the spans, merging those that continue each other in memory (neighbouring
  // slots of a working set, pages of one dense cache), the row offsets, and each chunk's first
  // span. Sizes are upper bounds until the merging is done.
  const size_t chunk_count = size_t(rows) * size_t(split.splits);
  const size_t bound_bytes = spans.spans.size() * sizeof(DeviceSpan) + size_t(rows + 1) * sizeof(int32_t) +
                             chunk_count * sizeof(int32_t);
  HostSlot& host = free_host_slot(bound_bytes);
  auto* staged = static_cast<DeviceSpan*>(host.data);
  // indptr and the chunk table are written after the spans, at offsets known only at the end:
  // build them at the end of the slot first, then move them down.
  auto* indptr = reinterpret_cast<int32_t*>(static_cast<char*>(host.data) + spans.spans.size() * sizeof(DeviceSpan));
  int32_t* chunk_first = indptr + rows + 1;
  const size_t row_bytes = size_t(head_dim) * dtype_size(kv_dtype);
  const int64_t chunk = split.chunk_tokens;
  int32_t written = 0;
  indptr[0] = 0;
  for (int64_t row = 0; row < rows; ++row) {
    const int32_t row_start = written;
    int32_t first_token = 0;
    int64_t next_chunk = 0;  // the next chunk whose first token is still to be placed
    int32_t* row_chunks = chunk_first + row * split.splits;
    for (int32_t i = spans.indptr[size_t(row)]; i < spans.indptr[size_t(row) + 1]; ++i) {
      const AttendSpan& span = spans.spans[size_t(i)];
      if (span.length == 0) continue;
      DeviceSpan* last = written > row_start ? &staged[written - 1] : nullptr;
      if (last && static_cast<const char*>(last->keys) + size_t(last->length) * row_bytes == span.keys &&
          static_cast<const char*>(last->values) + size_t(last->length) * row_bytes == span.values) {
        last->length += span.length;
      } else {
        staged[written++] = DeviceSpan{span.keys, span.values, span.length, first_token};
      }
      first_token += span.length;
      // Chunks starting inside [.., first_token) begin in the span just written or extended.
      while (next_chunk < split.splits && next_chunk * chunk < first_token) row_chunks[next_chunk++] = written - 1;
    }
    while (next_chunk < split.splits) row_chunks[next_chunk++] = written;  // past the row's tokens
    indptr[row + 1] = written;
  }
  const size_t span_bytes = size_t(written) * sizeof(DeviceSpan);
  const size_t table_bytes = (size_t(rows + 1) + chunk_count) * sizeof(int32_t);
  std::memmove(static_cast<char*>(host.data) + span_bytes, indptr, table_bytes);
  const size_t bytes = span_bytes + table_bytes;

  if (!copy_stream_) LOUISKV_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
  int device_index = 0;
  DeviceSlot& device = next_device_slot(bytes, device_index);
  if (device.in_use) LOUISKV_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, device.consumed, 0));
  LOUISKV_CUDA_CHECK(cudaMemcpyAsync(device.data, host.data, bytes, cudaMemcpyHostToDevice, copy_stream_));
  LOUISKV_CUDA_CHECK(cudaEventRecord(host.copied, copy_stream_));
  LOUISKV_CUDA_CHECK(cudaEventRecord(device.uploaded, copy_stream_));
  LOUISKV_CUDA_CHECK(cudaStreamWaitEvent(stream, device.uploaded, 0));

  DecodePlan plan;
  plan.spans = static_cast<const DeviceSpan*>(device.data);
  plan.indptr = reinterpret_cast<const int32_t*>(static_cast<const char*>(device.data) + span_bytes);
  plan.chunk_first_span = plan.indptr + rows + 1;
  plan.split = split;
  plan.device_slot = device_index;
  grow_workspace(decode_workspace_bytes(batch * query_heads, split.splits, head_dim), stream);
  plan.workspace = workspace_;
  plan.workspace_bytes = workspace_bytes_;
  return plan;
}

void DecodePlanUploader::release(const DecodePlan& plan, cudaStream_t stream) {
  if (plan.device_slot < 0) return;
  DeviceSlot& slot = device_slots_[size_t(plan.device_slot)];
  LOUISKV_CUDA_CHECK(cudaEventRecord(slot.consumed, stream));
  slot.in_use = true;
}

}  // namespace louiskv::kernels
