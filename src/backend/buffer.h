// Buffer: owning, move-only memory obtained from a Backend (device memory, or host memory the
// device can read). The backend that made it supplies the function that frees it.
#pragma once

#include <cstddef>
#include <functional>
#include <utility>

#include "backend/tensor.h"

namespace louiskv {

class Buffer {
 public:
  Buffer() = default;
  Buffer(void* data, size_t bytes, Device device, std::function<void(void*)> release)
      : data_(data), bytes_(bytes), device_(device), release_(std::move(release)) {}
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = std::exchange(other.data_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
      device_ = other.device_;
      release_ = std::move(other.release_);
    }
    return *this;
  }
  ~Buffer() { reset(); }

  void reset() {
    if (data_ && release_) release_(data_);
    data_ = nullptr;
    bytes_ = 0;
  }

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

  // A view of the start of the buffer with the given dtype and shape.
  TensorView view(DType dtype, std::initializer_list<int64_t> dims) const {
    TensorView view(data_, dtype, device_, dims);
    LOUISKV_CHECK(view.nbytes() <= bytes_, "view larger than its buffer");
    return view;
  }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_ = Device::cpu;
  std::function<void(void*)> release_;
};

}  // namespace louiskv
