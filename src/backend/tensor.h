// TensorView: a non-owning view of a dense, row-major tensor on one device. Backends check the
// dtype, shape and device of every view they get, so that a host pointer handed to a device-only
// kernel (or a bf16 tensor to an f32 op) fails at once with a message instead of wrong numbers.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "common/dtype.h"
#include "common/error.h"

namespace louiskv {

enum class Device : uint8_t { cpu, cuda };

constexpr const char* device_name(Device device) { return device == Device::cpu ? "cpu" : "cuda"; }

struct TensorView {
  static constexpr int max_rank = 4;

  void* data = nullptr;
  DType dtype = DType::f32;
  Device device = Device::cpu;
  int rank = 0;
  std::array<int64_t, max_rank> shape{};

  TensorView() = default;
  TensorView(void* data_in, DType dtype_in, Device device_in, std::initializer_list<int64_t> dims)
      : data(data_in), dtype(dtype_in), device(device_in), rank(int(dims.size())) {
    LOUISKV_CHECK(dims.size() <= max_rank, "tensor rank above 4");
    int i = 0;
    for (int64_t d : dims) shape[i++] = d;
  }

  int64_t dim(int i) const { return i < 0 ? shape[rank + i] : shape[i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= shape[i];
    return n;
  }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  bool empty() const { return data == nullptr; }

  template <class T>
  T* as() const {
    return static_cast<T*>(data);
  }

  // The same memory seen with another shape of the same element count.
  TensorView reshaped(std::initializer_list<int64_t> dims) const {
    TensorView view(data, dtype, device, dims);
    LOUISKV_CHECK(view.numel() == numel(), "reshape changes the element count");
    return view;
  }

  // Rows [first, first + count) along dimension 0.
  TensorView rows(int64_t first, int64_t count) const {
    LOUISKV_CHECK(rank >= 1 && first >= 0 && first + count <= shape[0], "row range out of bounds");
    TensorView view = *this;
    int64_t row_elements = numel() / (shape[0] == 0 ? 1 : shape[0]);
    view.data = static_cast<char*>(data) + size_t(first * row_elements) * dtype_size(dtype);
    view.shape[0] = count;
    return view;
  }

  std::string describe() const;
};

}  // namespace louiskv
