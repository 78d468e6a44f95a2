#include "backend/cuda/table_upload.h"

#include <cstring>

#include "backend/cuda/cuda_check.h"

namespace louiskv::kernels {

namespace {

// Tables in flight before the host waits for the oldest: a decode step of a 32-layer model
// queues a few per layer, and the host rarely runs more than a step ahead.
constexpr size_t max_slots = 256;

size_t round_up(size_t value, size_t multiple) { return (value + multiple - 1) / multiple * multiple; }

}  // namespace

TableUploader::~TableUploader() {
  // Errors are ignored here: a destructor cannot throw, and the process may be tearing down.
  for (Slot& slot : slots_) {
    if (slot.done) {
      cudaEventSynchronize(slot.done);
      cudaEventDestroy(slot.done);
    }
    if (slot.host) cudaFreeHost(slot.host);
    if (slot.device) cudaFree(slot.device);
  }
}

TableUploader::Slot& TableUploader::free_slot(size_t bytes, int& index) {
  int chosen = -1;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].handed_out) continue;
    cudaError_t status = cudaEventQuery(slots_[i].done);
    if (status == cudaErrorNotReady) continue;
    LOUISKV_CUDA_CHECK(status);
    // Prefer a free slot that is large enough, else the largest free one.
    if (chosen < 0 || (slots_[size_t(chosen)].bytes < bytes && slots_[i].bytes > slots_[size_t(chosen)].bytes)) {
      chosen = int(i);
    }
  }
  if (chosen < 0 && slots_.size() < max_slots) {
    slots_.emplace_back();
    LOUISKV_CUDA_CHECK(cudaEventCreateWithFlags(&slots_.back().done, cudaEventDisableTiming));
    chosen = int(slots_.size()) - 1;
  }
  if (chosen < 0) {
    // Every slot is still being read: wait for the oldest.
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].handed_out) continue;
      if (chosen < 0 || slots_[i].last_use < slots_[size_t(chosen)].last_use) chosen = int(i);
    }
    if (chosen < 0) throw_cuda_error(cudaErrorMemoryAllocation, "TableUploader: every slot handed out", __func__, __FILE__, __LINE__);
    LOUISKV_CUDA_CHECK(cudaEventSynchronize(slots_[size_t(chosen)].done));
  }
  Slot& slot = slots_[size_t(chosen)];
  if (slot.bytes < bytes) {
    // Growth is rare (a larger batch or selection); the slot's last readers have run.
    if (slot.host) LOUISKV_CUDA_CHECK(cudaFreeHost(slot.host));
    if (slot.device) LOUISKV_CUDA_CHECK(cudaFree(slot.device));
    slot.host = slot.device = nullptr;
    slot.bytes = 0;
    size_t grown = round_up(bytes + bytes / 2, 4096);
    LOUISKV_CUDA_CHECK(cudaHostAlloc(&slot.host, grown, cudaHostAllocDefault));
    LOUISKV_CUDA_CHECK(cudaMalloc(&slot.device, grown));
    slot.bytes = grown;
  }
  slot.last_use = ++uses_;
  index = chosen;
  return slot;
}

TableUploader::Table TableUploader::upload(const void* data, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return {};
  int index = -1;
  Slot& slot = free_slot(bytes, index);
  std::memcpy(slot.host, data, bytes);
  slot.handed_out = true;
  LOUISKV_CUDA_CHECK(cudaMemcpyAsync(slot.device, slot.host, bytes, cudaMemcpyHostToDevice, stream));
  return {slot.device, index};
}

void TableUploader::release(const Table& table, cudaStream_t stream) {
  if (table.slot < 0) return;
  Slot& slot = slots_[size_t(table.slot)];
  slot.handed_out = false;
  LOUISKV_CUDA_CHECK(cudaEventRecord(slot.done, stream));
}

}  // namespace louiskv::kernels
