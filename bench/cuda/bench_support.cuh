// Shared pieces of the CUDA microbenchmarks: event timing (warm-up, median of many runs), random
// device data, and the two ceilings every figure is set against, measured in the same run:
// - memory: a large device-to-device copy, counting bytes read plus bytes written;
// - tensor cores: a large bf16 GEMM through cuBLAS with fp32 accumulation, on random data.
// Each benchmark prints one "summary |" line per headline figure; scripts/device-check collects them.
// Figures come two ways: one call per event pair (launch latency included), and many calls back
// to back per event pair (the steady state of a decode loop, where the host runs ahead).
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "backend/cuda/cuda_check.h"

namespace louiskv::bench {

// Larger than the H200's 60 MB L2 several times over, so that repeated runs read memory.
constexpr size_t beyond_cache_bytes = size_t(256) << 20;

// Median milliseconds of `runs` timed calls after `warmups` untimed ones, each call bracketed by
// events on `stream`. `call(i)` gets the run index, for rotating among input sets.
inline double median_ms(cudaStream_t stream, int warmups, int runs, const std::function<void(int)>& call) {
  for (int i = 0; i < warmups; ++i) call(i);
  LOUISKV_CUDA_CHECK(cudaStreamSynchronize(stream));
  cudaEvent_t start, stop;
  LOUISKV_CUDA_CHECK(cudaEventCreate(&start));
  LOUISKV_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> times;
  for (int i = 0; i < runs; ++i) {
    LOUISKV_CUDA_CHECK(cudaEventRecord(start, stream));
    call(warmups + i);
    LOUISKV_CUDA_CHECK(cudaEventRecord(stop, stream));
    LOUISKV_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    LOUISKV_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  LOUISKV_CUDA_CHECK(cudaEventDestroy(start));
  LOUISKV_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(times.begin(), times.end());
  return double(times[times.size() / 2]);
}

// Median milliseconds per call when `calls` calls run back to back between two events, as in a
// decode step where the host queues kernels ahead of the GPU: launch latency is hidden, and
// what remains is the GPU time per call (including the gaps between kernels).
inline double median_ms_back_to_back(cudaStream_t stream, int warmups, int runs, int calls,
                                     const std::function<void(int)>& call) {
  int next = 0;
  double ms = median_ms(stream, warmups, runs, [&](int) {
    for (int i = 0; i < calls; ++i) call(next++);
  });
  return ms / calls;
}

namespace detail {
// A cheap integer hash (splitmix64), so every element gets an independent value.
__device__ inline uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
__global__ void fill_uniform_bf16_kernel(__nv_bfloat16* data, size_t count, uint64_t seed, float low, float high) {
  size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    float unit = float(mix(seed ^ (i * 0x2545f4914f6cdd1dull)) >> 40) * (1.0f / 16777216.0f);
    data[i] = __float2bfloat16_rn(low + (high - low) * unit);
  }
}
}  // namespace detail

// Never zeros: random data in [low, high).
inline void fill_uniform_bf16(void* data, size_t count, uint64_t seed, float low, float high, cudaStream_t stream) {
  detail::fill_uniform_bf16_kernel<<<1024, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(data), count, seed, low, high);
  LOUISKV_CUDA_CHECK_LAUNCH();
}

struct DeviceMemory {
  void* data = nullptr;
  explicit DeviceMemory(size_t bytes) { LOUISKV_CUDA_CHECK(cudaMalloc(&data, bytes)); }
  ~DeviceMemory() { cudaFree(data); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
};

// Device-to-device copy of 1 GiB; GB/s counts the bytes read plus the bytes written.
inline double measure_copy_ceiling_gbps(cudaStream_t stream) {
  const size_t bytes = size_t(1) << 30;
  DeviceMemory source(bytes), destination(bytes);
  fill_uniform_bf16(source.data, bytes / 2, 1, -1.0f, 1.0f, stream);
  double ms = median_ms(stream, 3, 20, [&](int) {
    LOUISKV_CUDA_CHECK(cudaMemcpyAsync(destination.data, source.data, bytes, cudaMemcpyDeviceToDevice, stream));
  });
  return 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
}

// 8192 x 8192 x 8192 bf16 GEMM, fp32 accumulation, bf16 out, random inputs.
inline double measure_gemm_ceiling_tflops(cudaStream_t stream) {
  const int n = 8192;
  const size_t elements = size_t(n) * n;
  DeviceMemory a(elements * 2), b(elements * 2), c(elements * 2), workspace(size_t(32) << 20);
  fill_uniform_bf16(a.data, elements, 2, -1.0f, 1.0f, stream);
  fill_uniform_bf16(b.data, elements, 3, -1.0f, 1.0f, stream);
  cublasHandle_t handle;
  LOUISKV_CUBLAS_CHECK(cublasCreate(&handle));
  LOUISKV_CUBLAS_CHECK(cublasSetStream(handle, stream));
  LOUISKV_CUBLAS_CHECK(cublasSetWorkspace(handle, workspace.data, size_t(32) << 20));
  float alpha = 1.0f, beta = 0.0f;
  double ms = median_ms(stream, 3, 10, [&](int) {
    LOUISKV_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &alpha, a.data, CUDA_R_16BF, n,
                                      b.data, CUDA_R_16BF, n, &beta, c.data, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
  });
  LOUISKV_CUBLAS_CHECK(cublasDestroy(handle));
  return 2.0 * double(n) * n * n / (ms * 1e-3) / 1e12;
}

inline void print_device() {
  int device = 0;
  LOUISKV_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp properties{};
  LOUISKV_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
  std::printf("device: %s, %d multiprocessors, L2 %d MB\n", properties.name, properties.multiProcessorCount,
              properties.l2CacheSize >> 20);
}

// One line for the final table: what, the figure, the ceiling, the ratio, the target.
inline void print_summary(const std::string& what, double value, const std::string& unit, double ceiling,
                          double target_percent) {
  double percent = 100.0 * value / ceiling;
  std::printf("summary | %-44s | %8.1f %-7s | ceiling %8.1f | %5.1f%% | target >= %2.0f%% %s\n", what.c_str(), value,
              unit.c_str(), ceiling, percent, target_percent, percent >= target_percent ? "met" : "MISSED");
}

}  // namespace louiskv::bench
