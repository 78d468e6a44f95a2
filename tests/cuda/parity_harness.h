// Parity harness for the CUDA backend: each op runs on the CPU reference and on the GPU over the
// same fresh random inputs, and the GPU output must match within a bound chosen by dtype.
//
// What every case gets, in the spirit of ggml's test-backend-ops and ThunderKittens' tests:
// - inputs drawn fresh per run (the seed is printed with any failure), never zeros, and rounded
//   to bf16 before either backend sees them, so the bound measures the kernel and not bf16 (the
//   cases of the f32 mode draw full f32 inputs instead, which the GPU must not round);
// - GPU outputs poisoned with NaN bytes before the op and followed by guard bytes, so an element
//   the kernel forgot to write or a write past the end fails the case;
// - non-finite outputs reported before any tolerance; then the relative L2 error
//   ||gpu - cpu|| / ||cpu|| against the bound, with the worst elements printed on failure.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "common/dtype.h"

namespace louiskv::testing {

// Skips the calling test, with the reason, on machines without a GPU (CI).
#define LOUISKV_REQUIRE_CUDA()                                                                  \
  do {                                                                                          \
    if (!::louiskv::cuda_device_available()) {                                                  \
      GTEST_SKIP() << "no CUDA device or driver on this machine: the cuda parity tests need a " \
                      "GPU (run ctest -L cuda on one)";                                         \
    }                                                                                           \
  } while (0)

// One generator per test, seeded from the system; the seed goes into every failure message.
class Random {
 public:
  Random() : seed_(std::random_device{}()), engine_(seed_) {}
  uint64_t seed() const { return seed_; }
  // Uniform in [low, high), rounded to bf16 (exact in every dtype the ops take).
  std::vector<float> uniform(size_t count, float low, float high) {
    std::uniform_real_distribution<float> distribution(low, high);
    std::vector<float> values(count);
    for (float& value : values) value = bf16_to_f32(f32_to_bf16(distribution(engine_)));
    return values;
  }
  // Uniform in [low, high) at full f32 precision: inputs of the f32 mode, where a kernel that
  // rounded them to bf16 anywhere must show it.
  std::vector<float> uniform_f32(size_t count, float low, float high) {
    std::uniform_real_distribution<float> distribution(low, high);
    std::vector<float> values(count);
    for (float& value : values) value = distribution(engine_);
    return values;
  }
  int64_t integer(int64_t low, int64_t high) {  // inclusive
    return std::uniform_int_distribution<int64_t>(low, high)(engine_);
  }

 private:
  uint64_t seed_;
  std::mt19937_64 engine_;
};

inline std::string seed_note(const Random& random) {
  return "random seed " + std::to_string(random.seed());
}

inline TensorView view_of(void* data, DType dtype, Device device, const std::vector<int64_t>& shape) {
  TensorView view;
  view.data = data;
  view.dtype = dtype;
  view.device = device;
  view.rank = int(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) view.shape[i] = shape[i];
  return view;
}

inline int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  return count;
}

// Raw byte moves between the host and memory a backend allocated (device or host).
inline void write_bytes(Backend& backend, void* destination, const void* source, size_t bytes) {
  if (bytes == 0) return;
  if (backend.device() == Device::cpu) {
    std::memcpy(destination, source, bytes);
    return;
  }
  backend.synchronize();
  ASSERT_EQ(cudaMemcpy(destination, source, bytes, cudaMemcpyDefault), cudaSuccess);
}

inline void read_bytes(Backend& backend, void* destination, const void* source, size_t bytes) {
  if (bytes == 0) return;
  backend.synchronize();
  if (backend.device() == Device::cpu) {
    std::memcpy(destination, source, bytes);
    return;
  }
  ASSERT_EQ(cudaMemcpy(destination, source, bytes, cudaMemcpyDefault), cudaSuccess);
}

inline std::vector<uint8_t> encode(const std::vector<float>& values, DType dtype) {
  std::vector<uint8_t> bytes(values.size() * dtype_size(dtype));
  if (dtype == DType::i32) {
    for (size_t i = 0; i < values.size(); ++i) {
      int32_t value = int32_t(values[i]);
      std::memcpy(bytes.data() + i * 4, &value, 4);
    }
  } else {
    convert_from_f32(values.data(), dtype, bytes.data(), values.size());
  }
  return bytes;
}

constexpr size_t guard_bytes = 256;
constexpr uint8_t guard_value = 0xA5;
constexpr uint8_t poison_value = 0xFF;  // 0xFFFF is a bf16/f16 NaN, 0xFFFFFFFF an f32 NaN

// A tensor in memory of one backend, followed by guard bytes.
struct OwnedTensor {
  Buffer buffer;
  TensorView view;
};

// Memory of `backend` (allocate, or allocate_host when `host` is set) holding `values` in dtype.
inline OwnedTensor make_tensor(Backend& backend, DType dtype, const std::vector<int64_t>& shape,
                               const std::vector<float>& values, bool host = false) {
  EXPECT_EQ(int64_t(values.size()), element_count(shape));
  size_t bytes = size_t(element_count(shape)) * dtype_size(dtype);
  OwnedTensor tensor;
  tensor.buffer = host ? backend.allocate_host(bytes + guard_bytes) : backend.allocate(bytes + guard_bytes);
  Device device = host ? Device::cpu : backend.device();
  tensor.view = view_of(tensor.buffer.data(), dtype, device, shape);
  std::vector<uint8_t> contents = encode(values, dtype);
  contents.resize(bytes + guard_bytes, guard_value);
  write_bytes(backend, tensor.buffer.data(), contents.data(), contents.size());
  return tensor;
}

// An output whose elements are NaN bytes until the op writes them.
inline OwnedTensor make_output(Backend& backend, DType dtype, const std::vector<int64_t>& shape) {
  size_t bytes = size_t(element_count(shape)) * dtype_size(dtype);
  OwnedTensor tensor;
  tensor.buffer = backend.allocate(bytes + guard_bytes);
  tensor.view = view_of(tensor.buffer.data(), dtype, backend.device(), shape);
  std::vector<uint8_t> contents(bytes, poison_value);
  contents.resize(bytes + guard_bytes, guard_value);
  write_bytes(backend, tensor.buffer.data(), contents.data(), contents.size());
  return tensor;
}

inline std::vector<float> read_values(Backend& backend, const TensorView& view) {
  std::vector<uint8_t> bytes(view.nbytes());
  read_bytes(backend, bytes.data(), view.data, bytes.size());
  std::vector<float> values(size_t(view.numel()));
  convert_to_f32(bytes.data(), view.dtype, values.data(), values.size());
  return values;
}

inline void expect_guard_intact(Backend& backend, const OwnedTensor& tensor, const std::string& what) {
  std::vector<uint8_t> guard(guard_bytes);
  read_bytes(backend, guard.data(), static_cast<const char*>(tensor.buffer.data()) + tensor.view.nbytes(),
             guard_bytes);
  size_t damaged = size_t(std::count_if(guard.begin(), guard.end(), [](uint8_t b) { return b != guard_value; }));
  EXPECT_EQ(damaged, 0u) << what << ": " << damaged << " guard bytes after the output were overwritten";
}

inline std::vector<float> rounded_to(const std::vector<float>& values, DType dtype) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    out[i] = dtype == DType::bf16   ? bf16_to_f32(f32_to_bf16(values[i]))
             : dtype == DType::f16 ? f16_to_f32(f32_to_f16(values[i]))
                                   : values[i];
  }
  return out;
}

// Compares a GPU result with the CPU reference; prints the error so that logs show the margins.
inline void expect_close(const std::vector<float>& actual, const std::vector<float>& expected, double bound,
                         const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_TRUE(std::isfinite(expected[i])) << what << ": the CPU reference is not finite at " << i;
  }
  size_t non_finite = 0, first_non_finite = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (!std::isfinite(actual[i])) {
      if (non_finite++ == 0) first_non_finite = i;
    }
  }
  ASSERT_EQ(non_finite, 0u) << what << ": " << non_finite << " of " << actual.size()
                            << " outputs are NaN or Inf (unwritten, or overflow), the first at " << first_non_finite;
  double error = 0.0, norm = 0.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    double difference = double(actual[i]) - double(expected[i]);
    error += difference * difference;
    norm += double(expected[i]) * double(expected[i]);
  }
  double relative = norm > 0.0 ? std::sqrt(error / norm) : std::sqrt(error);
  std::printf("[parity] %-70s relative L2 %.3e (bound %.1e)\n", what.c_str(), relative, bound);
  if (relative <= bound) return;
  std::vector<size_t> order(actual.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  size_t shown = std::min<size_t>(5, order.size());
  std::partial_sort(order.begin(), order.begin() + long(shown), order.end(), [&](size_t a, size_t b) {
    return std::fabs(actual[a] - expected[a]) > std::fabs(actual[b] - expected[b]);
  });
  std::string worst;
  for (size_t k = 0; k < shown; ++k) {
    size_t i = order[k];
    worst += "\n  [" + std::to_string(i) + "] gpu " + std::to_string(actual[i]) + " cpu " + std::to_string(expected[i]);
  }
  ADD_FAILURE() << what << ": relative L2 error " << relative << " above " << bound << "; worst elements:" << worst;
}

inline void expect_equal(const std::vector<float>& actual, const std::vector<float>& expected, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  size_t mismatches = 0, first = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    bool same = actual[i] == expected[i] || (std::isnan(actual[i]) && std::isnan(expected[i]));
    if (!same && mismatches++ == 0) first = i;
  }
  std::printf("[parity] %-70s %s\n", what.c_str(), mismatches == 0 ? "exact" : "MISMATCH");
  EXPECT_EQ(mismatches, 0u) << what << ": " << mismatches << " elements differ, the first at " << first << " (gpu "
                            << actual[first] << ", cpu " << expected[first] << ")";
}

// The two backends of a parity test; the GPU's activations and KV in bf16 (the default) or f32.
struct BackendPair {
  explicit BackendPair(DType gpu_activations = DType::bf16) : gpu(make_cuda_backend(0, gpu_activations)) {}
  std::unique_ptr<Backend> cpu = make_cpu_backend();
  std::unique_ptr<Backend> gpu;
};

}  // namespace louiskv::testing
