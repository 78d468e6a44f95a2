#include "backend/cuda/decode_plan.h"

#include <cstring>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

// Slots in flight before the host waits: a decode step of a 32-layer model uses 32, and the
// host rarely runs more than two steps ahead.
constexpr size_t max_slots = 96;

size_t round_up(size_t value, size_t multiple) { return (value + multiple - 1) / multiple * multiple; }

}  // namespace

DecodePlanUploader::~DecodePlanUploader() {
  // Errors are ignored here: a destructor cannot throw, and the process may be tearing down.
  for (Slot& slot : slots_) {
    if (slot.copied) {
      cudaEventSynchronize(slot.copied);
      cudaEventDestroy(slot.copied);
    }
    if (slot.host) cudaFreeHost(slot.host);
  }
  if (device_plan_) cudaFree(device_plan_);
  if (workspace_) cudaFree(workspace_);
}

DecodePlanUploader::Slot& DecodePlanUploader::free_slot(size_t bytes) {
  Slot* chosen = nullptr;
  for (Slot& slot : slots_) {
    cudaError_t status = cudaEventQuery(slot.copied);
    if (status == cudaErrorNotReady) continue;
    LOUISKV_CUDA_CHECK(status);
    if (!chosen || slot.bytes > chosen->bytes) chosen = &slot;  // prefer one that fits
  }
  if (!chosen && slots_.size() < max_slots) {
    slots_.emplace_back();
    chosen = &slots_.back();
    LOUISKV_CUDA_CHECK(cudaEventCreateWithFlags(&chosen->copied, cudaEventDisableTiming));
  }
  if (!chosen) {
    // Every slot is still being read: wait for the oldest copy.
    chosen = &slots_.front();
    for (Slot& slot : slots_) {
      if (slot.last_use < chosen->last_use) chosen = &slot;
    }
    LOUISKV_CUDA_CHECK(cudaEventSynchronize(chosen->copied));
  }
  if (chosen->bytes < bytes) {
    if (chosen->host) LOUISKV_CUDA_CHECK(cudaFreeHost(chosen->host));
    chosen->host = nullptr;
    chosen->bytes = 0;
    size_t grown = round_up(bytes + bytes / 2, 4096);
    LOUISKV_CUDA_CHECK(cudaHostAlloc(&chosen->host, grown, cudaHostAllocDefault));
    chosen->bytes = grown;
  }
  chosen->last_use = ++uses_;
  return *chosen;
}

void DecodePlanUploader::grow_device_plan(size_t bytes, cudaStream_t stream) {
  if (bytes <= device_plan_bytes_) return;
  // Kernels already enqueued may still read the old plan.
  LOUISKV_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (device_plan_) LOUISKV_CUDA_CHECK(cudaFree(device_plan_));
  device_plan_ = nullptr;
  device_plan_bytes_ = 0;
  size_t grown = round_up(bytes + bytes / 2, 4096);
  LOUISKV_CUDA_CHECK(cudaMalloc(&device_plan_, grown));
  device_plan_bytes_ = grown;
}

void DecodePlanUploader::grow_workspace(int64_t floats, cudaStream_t stream) {
  if (floats <= workspace_floats_) return;
  LOUISKV_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (workspace_) LOUISKV_CUDA_CHECK(cudaFree(workspace_));
  workspace_ = nullptr;
  workspace_floats_ = 0;
  int64_t grown = floats + floats / 2;
  LOUISKV_CUDA_CHECK(cudaMalloc(&workspace_, size_t(grown) * sizeof(float)));
  workspace_floats_ = grown;
}

void DecodePlanUploader::reserve(int64_t spans, int64_t rows, int64_t workspace_floats,
                                 cudaStream_t stream) {
  grow_device_plan(size_t(spans) * sizeof(DeviceSpan) + size_t(rows + 1) * sizeof(int32_t), stream);
  grow_workspace(workspace_floats, stream);
}

DecodePlan DecodePlanUploader::upload(const AttendedSpans& spans, int64_t batch, int64_t kv_heads,
                                      int64_t query_heads, int64_t head_dim, int multiprocessors,
                                      cudaStream_t stream) {
  const char* op = "attention_decode";
  int64_t rows = batch * kv_heads;
  require(int64_t(spans.rows()) == rows, op,
          "spans has " + std::to_string(spans.rows()) + " rows, expected batch (" +
              std::to_string(batch) + ") x KV heads (" + std::to_string(kv_heads) + ")");
  require(!spans.indptr.empty() && spans.indptr.front() == 0 &&
              spans.indptr.back() == int32_t(spans.spans.size()),
          op, "spans.indptr must start at 0 and end at the number of spans");

  // Validate while counting what goes to the device; empty spans are dropped so that every
  // span the kernel searches holds at least one token.
  size_t kept = 0;
  int64_t max_row_tokens = 0;
  for (int64_t row = 0; row < rows; ++row) {
    int32_t begin = spans.indptr[row], end = spans.indptr[row + 1];
    require(begin <= end, op, "spans.indptr must not decrease (row " + std::to_string(row) + ")");
    int64_t tokens = 0;
    for (int32_t i = begin; i < end; ++i) {
      const AttendSpan& span = spans.spans[i];
      require(span.length >= 0, op, "span " + std::to_string(i) + " has a negative length");
      if (span.length == 0) continue;
      require(span.keys != nullptr && span.values != nullptr, op,
              "span " + std::to_string(i) + " has a null key or value pointer");
      require(reinterpret_cast<uintptr_t>(span.keys) % 16 == 0 &&
                  reinterpret_cast<uintptr_t>(span.values) % 16 == 0,
              op, "span " + std::to_string(i) + " is not 16-byte aligned");
      tokens += span.length;
      ++kept;
    }
    require(tokens < (int64_t(1) << 31), op, "a row attends more than 2^31 tokens");
    if (tokens > max_row_tokens) max_row_tokens = tokens;
  }

  // Spans that continue each other in memory (neighbouring slots of a working set, pages of
  // one dense cache) are merged below, so the upload is often far smaller than `kept`.
  size_t span_bytes = kept * sizeof(DeviceSpan);
  size_t bytes = span_bytes + size_t(rows + 1) * sizeof(int32_t);
  Slot& slot = free_slot(bytes);
  auto* staged_spans = static_cast<DeviceSpan*>(slot.host);
  const size_t row_bytes = size_t(head_dim) * 2;  // bf16
  int32_t written = 0;
  std::vector<int32_t>& indptr = indptr_scratch_;
  indptr.assign(size_t(rows) + 1, 0);
  for (int64_t row = 0; row < rows; ++row) {
    int32_t first_token = 0;
    int32_t row_start = written;
    for (int32_t i = spans.indptr[row]; i < spans.indptr[row + 1]; ++i) {
      const AttendSpan& span = spans.spans[i];
      if (span.length == 0) continue;
      if (written > row_start) {
        DeviceSpan& last = staged_spans[written - 1];
        size_t last_bytes = size_t(last.length) * row_bytes;
        if (static_cast<const char*>(last.keys) + last_bytes == span.keys &&
            static_cast<const char*>(last.values) + last_bytes == span.values) {
          last.length += span.length;
          first_token += span.length;
          continue;
        }
      }
      staged_spans[written++] = DeviceSpan{span.keys, span.values, span.length, first_token};
      first_token += span.length;
    }
    indptr[size_t(row) + 1] = written;
  }
  // indptr goes right after the spans actually written.
  span_bytes = size_t(written) * sizeof(DeviceSpan);
  bytes = span_bytes + size_t(rows + 1) * sizeof(int32_t);
  std::memcpy(static_cast<char*>(slot.host) + span_bytes, indptr.data(), indptr.size() * sizeof(int32_t));

  grow_device_plan(bytes, stream);
  LOUISKV_CUDA_CHECK(cudaMemcpyAsync(device_plan_, slot.host, bytes, cudaMemcpyHostToDevice, stream));
  LOUISKV_CUDA_CHECK(cudaEventRecord(slot.copied, stream));

  DecodePlan plan;
  plan.spans = static_cast<const DeviceSpan*>(device_plan_);
  plan.indptr = reinterpret_cast<const int32_t*>(static_cast<const char*>(device_plan_) + span_bytes);
  plan.split = choose_decode_split(rows, query_heads / kv_heads, max_row_tokens, multiprocessors);
  int64_t floats = decode_workspace_floats(batch * query_heads, plan.split.splits, head_dim);
  grow_workspace(floats, stream);
  plan.workspace = workspace_;
  plan.workspace_floats = workspace_floats_;
  return plan;
}

}  // namespace louiskv::kernels
