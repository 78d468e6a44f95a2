// Brings the small host tables of a call (the copies of a gather, the rows of a scoring, the
// units of a summary) to the device for its kernels without making the host wait: a table is
// staged in pinned memory and copied to a device buffer on the call's stream, and its slot is
// reused only once the kernels that read it have run (an event recorded after them).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace louiskv::kernels {

class TableUploader {
 public:
  struct Table {
    const void* device = nullptr;
    int slot = -1;
  };

  TableUploader() = default;
  TableUploader(const TableUploader&) = delete;
  TableUploader& operator=(const TableUploader&) = delete;
  ~TableUploader();

  // `bytes` of `data`, readable at the returned device address by work queued on `stream` after
  // this call, until release(). Nothing is uploaded for an empty table.
  Table upload(const void* data, size_t bytes, cudaStream_t stream);
  // The kernels reading `table` are queued on `stream`: its slot is free once they have run.
  void release(const Table& table, cudaStream_t stream);

 private:
  struct Slot {
    void* host = nullptr;    // pinned
    void* device = nullptr;
    size_t bytes = 0;
    cudaEvent_t done = nullptr;
    uint64_t last_use = 0;
    bool handed_out = false;  // uploaded, not yet released
  };
  Slot& free_slot(size_t bytes, int& index);

  std::vector<Slot> slots_;
  uint64_t uses_ = 0;
};

}  // namespace louiskv::kernels
