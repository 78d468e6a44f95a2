// The delta load of the KV path (Backend::gather_kv): units of K and V read in place from the
// pinned host pool into a device working set by one kernel, against one bulk host-to-device copy
// of the same number of bytes from pinned memory, measured in the same run (target: at least 90%
// of it with 4 KiB units, DESIGN.md section 3).
//
// Units are 16 tokens: 4 KiB of K and 4 KiB of V at head_dim 128 (2 KiB at 64), drawn at random
// from a pool much larger than the L2, as a selection of clusters would be.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gather.h"
#include "bench_support.cuh"

namespace louiskv::bench {
namespace {

struct PinnedMemory {
  void* data = nullptr;
  explicit PinnedMemory(size_t bytes) { LOUISKV_CUDA_CHECK(cudaHostAlloc(&data, bytes, cudaHostAllocMapped)); }
  ~PinnedMemory() { cudaFreeHost(data); }
  PinnedMemory(const PinnedMemory&) = delete;
  PinnedMemory& operator=(const PinnedMemory&) = delete;
};

struct GatherCase {
  int64_t head_dim, unit_tokens, units;  // units gathered per call
};

struct GatherResult {
  double kernel_gbps = 0, whole_op_gbps = 0;
};

// The pool: `pool_units` units of K and as many of V, in pinned memory, random (never zeros).
GatherResult run(const GatherCase& c, char* pool_keys, char* pool_values, int64_t pool_units, int multiprocessors,
                 cudaStream_t stream) {
  const int64_t row_bytes = c.head_dim * 2, unit_bytes = c.unit_tokens * row_bytes;
  const double bytes = 2.0 * double(c.units) * double(unit_bytes);
  DeviceMemory set_keys(size_t(c.units * unit_bytes)), set_values(size_t(c.units * unit_bytes));
  std::mt19937 engine(3);
  std::vector<int64_t> picks(static_cast<size_t>(pool_units));
  std::iota(picks.begin(), picks.end(), 0);
  std::shuffle(picks.begin(), picks.end(), engine);
  std::vector<KvCopy> copies;
  for (int64_t u = 0; u < c.units; ++u) {
    const size_t from = size_t(picks[size_t(u % pool_units)] * unit_bytes), to = size_t(u * unit_bytes);
    copies.push_back({pool_keys + from, pool_values + from, static_cast<char*>(set_keys.data) + to,
                      static_cast<char*>(set_values.data) + to, c.unit_tokens});
  }
  // The kernel alone, on a chunk table uploaded once.
  std::vector<kernels::GatherChunk> chunks;
  kernels::plan_gather(copies, row_bytes, chunks);
  DeviceMemory table(chunks.size() * sizeof(kernels::GatherChunk));
  LOUISKV_CUDA_CHECK(cudaMemcpy(table.data, chunks.data(), chunks.size() * sizeof(kernels::GatherChunk),
                                cudaMemcpyHostToDevice));
  kernels::GatherParams params{static_cast<const kernels::GatherChunk*>(table.data), int64_t(chunks.size()),
                               multiprocessors};
  double kernel_ms = median_ms(stream, 3, 20, [&](int) { kernels::launch_gather_kv(params, stream); });

  // The whole op as a policy calls it: copies cut into chunks, staged, uploaded, kernel; timed on
  // the host clock over back-to-back calls (the backend runs on its own stream).
  auto backend = make_cuda_backend();
  for (int i = 0; i < 3; ++i) backend->gather_kv(copies, row_bytes);
  backend->synchronize();
  const int calls = 20;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) backend->gather_kv(copies, row_bytes);
  backend->synchronize();
  double whole_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() / calls;

  // Spot check: the last unit arrived intact.
  std::vector<char> expected(static_cast<size_t>(unit_bytes)), got(static_cast<size_t>(unit_bytes));
  const KvCopy& last = copies.back();
  std::memcpy(expected.data(), last.source_keys, expected.size());
  LOUISKV_CUDA_CHECK(cudaMemcpy(got.data(), last.keys, got.size(), cudaMemcpyDeviceToHost));
  if (expected != got) std::printf("  gather check FAILED: a unit's keys differ from the pool's\n");

  GatherResult result{bytes / (kernel_ms * 1e-3) / 1e9, bytes / (whole_ms * 1e-3) / 1e9};
  std::printf("  head_dim %3lld, units of %2lld tokens (%5lld B of K), %6lld units = %7.1f MB: kernel %6.1f GB/s, "
              "whole op %6.1f GB/s\n",
              (long long)c.head_dim, (long long)c.unit_tokens, (long long)unit_bytes, (long long)c.units, bytes / 1e6,
              result.kernel_gbps, result.whole_op_gbps);
  return result;
}

}  // namespace
}  // namespace louiskv::bench

int main() {
  using namespace louiskv;
  using namespace louiskv::bench;
  if (!cuda_device_available()) {
    std::printf("bench_gather: no CUDA device, nothing measured\n");
    return 0;
  }
  print_device();
  LOUISKV_CUDA_CHECK(cudaSetDevice(0));
  cudaDeviceProp properties{};
  LOUISKV_CUDA_CHECK(cudaGetDeviceProperties(&properties, 0));
  cudaStream_t stream;
  LOUISKV_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  // A pool of 1 GiB of K and 1 GiB of V, filled with random bf16 on the device and copied over.
  const size_t pool_bytes = size_t(1) << 30;
  PinnedMemory pool_keys(pool_bytes), pool_values(pool_bytes);
  {
    DeviceMemory staging(pool_bytes);
    fill_uniform_bf16(staging.data, pool_bytes / 2, 21, -2.0f, 2.0f, stream);
    LOUISKV_CUDA_CHECK(cudaMemcpyAsync(pool_keys.data, staging.data, pool_bytes, cudaMemcpyDeviceToHost, stream));
    fill_uniform_bf16(staging.data, pool_bytes / 2, 22, -1.0f, 1.0f, stream);
    LOUISKV_CUDA_CHECK(cudaMemcpyAsync(pool_values.data, staging.data, pool_bytes, cudaMemcpyDeviceToHost, stream));
    LOUISKV_CUDA_CHECK(cudaStreamSynchronize(stream));
  }

  // The ceiling: one bulk copy from pinned memory to the device of as many bytes as the main
  // gather below moves (16384 units of 4 KiB of K and 4 KiB of V).
  const size_t bulk_bytes = size_t(128) << 20;
  DeviceMemory bulk_destination(bulk_bytes);
  double bulk_ms = median_ms(stream, 3, 20, [&](int) {
    LOUISKV_CUDA_CHECK(cudaMemcpyAsync(bulk_destination.data, pool_keys.data, bulk_bytes, cudaMemcpyHostToDevice, stream));
  });
  const double bulk_gbps = double(bulk_bytes) / (bulk_ms * 1e-3) / 1e9;
  std::printf("ceiling: one bulk host-to-device copy of %zu MiB from pinned memory: %.1f GB/s\n", bulk_bytes >> 20,
              bulk_gbps);

  std::printf("gather_kv, pinned pool -> device working set (K + V bytes / time):\n");
  const int sms = properties.multiProcessorCount;
  GatherResult main_case = run({128, 16, 16384}, static_cast<char*>(pool_keys.data), static_cast<char*>(pool_values.data),
                               int64_t(pool_bytes / (16 * 256)), sms, stream);
  run({64, 16, 16384}, static_cast<char*>(pool_keys.data), static_cast<char*>(pool_values.data),
      int64_t(pool_bytes / (16 * 128)), sms, stream);
  run({128, 1, 65536}, static_cast<char*>(pool_keys.data), static_cast<char*>(pool_values.data),
      int64_t(pool_bytes / 256), sms, stream);
  run({128, 64, 4096}, static_cast<char*>(pool_keys.data), static_cast<char*>(pool_values.data),
      int64_t(pool_bytes / (64 * 256)), sms, stream);
  // A decode step's delta load: 8 sequences x 8 KV heads x 16 new units of 16 tokens.
  GatherResult step_case = run({128, 16, 1024}, static_cast<char*>(pool_keys.data),
                               static_cast<char*>(pool_values.data), int64_t(pool_bytes / (16 * 256)), sms, stream);
  print_summary("gather 4 KiB units pinned->device kernel", main_case.kernel_gbps, "GB/s", bulk_gbps, 90);
  print_summary("gather 4 KiB units pinned->device whole op", main_case.whole_op_gbps, "GB/s", bulk_gbps, 90);
  print_summary("gather 1024 units (one step) whole op", step_case.whole_op_gbps, "GB/s", bulk_gbps, 50);
  LOUISKV_CUDA_CHECK(cudaStreamDestroy(stream));
  return 0;
}
