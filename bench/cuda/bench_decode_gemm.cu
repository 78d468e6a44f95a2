// Decode-time projections of Llama-3.1-8B through the backend's matmul (cuBLAS, bf16, fp32
// accumulation) at batch 1 to 32: achieved GB/s of weight read, against the device-to-device
// copy ceiling measured in the same run (target: at least 80%). At these batch sizes a
// projection is a pass over its weights, so weight bytes / time is the figure that matters.
// Weights rotate among copies totalling more than the L2, so every run reads memory.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/matmul.h"
#include "bench_support.cuh"

namespace louiskv::bench {
namespace {

struct Projection {
  const char* name;
  int64_t inner, columns;  // in [T, inner] @ weight[columns, inner]^T
};

}  // namespace
}  // namespace louiskv::bench

int main() {
  using namespace louiskv;
  using namespace louiskv::bench;
  if (!cuda_device_available()) {
    std::printf("bench_decode_gemm: no CUDA device, nothing measured\n");
    return 0;
  }
  print_device();
  LOUISKV_CUDA_CHECK(cudaSetDevice(0));
  cudaStream_t stream;
  LOUISKV_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const double copy_gbps = measure_copy_ceiling_gbps(stream);
  std::printf("ceiling: device-to-device copy %.1f GB/s (read + write)\n", copy_gbps);

  cublasHandle_t cublas;
  LOUISKV_CUBLAS_CHECK(cublasCreate(&cublas));
  DeviceMemory workspace(size_t(32) << 20);
  LOUISKV_CUBLAS_CHECK(cublasSetWorkspace(cublas, workspace.data, size_t(32) << 20));

  // Shapes from configs/llama-3.1-8b.json: hidden 4096, 32 q and 8 KV heads of 128, MLP 14336.
  const Projection projections[] = {{"qkv 4096->6144", 4096, 6144},
                                    {"o 4096->4096", 4096, 4096},
                                    {"gate+up 4096->28672", 4096, 28672},
                                    {"down 14336->4096", 14336, 4096}};
  const int64_t batches[] = {1, 2, 4, 8, 16, 32};
  cudaDeviceProp properties{};
  LOUISKV_CUDA_CHECK(cudaGetDeviceProperties(&properties, 0));
  const int multiprocessors = properties.multiProcessorCount;
  std::printf("decode GEMMs (weight bytes / time), GB/s by batch:\n  %-43s", "projection");
  for (int64_t batch : batches) std::printf(" %8lld", (long long)batch);
  std::printf("\n");
  for (const Projection& p : projections) {
    const size_t weight_bytes = size_t(p.inner * p.columns) * 2;
    const int copies = int(std::max<size_t>(2, (beyond_cache_bytes + weight_bytes - 1) / weight_bytes));
    std::vector<std::unique_ptr<DeviceMemory>> weights;
    for (int c = 0; c < copies; ++c) {
      weights.push_back(std::make_unique<DeviceMemory>(weight_bytes));
      fill_uniform_bf16(weights.back()->data, weight_bytes / 2, 100 + uint64_t(c), -0.05f, 0.05f, stream);
    }
    DeviceMemory in(size_t(32 * p.inner) * 2), out(size_t(32 * p.columns) * 2);
    fill_uniform_bf16(in.data, size_t(32 * p.inner), 5, -1.0f, 1.0f, stream);
    // The weight-streaming kernel's split-K workspace, for the largest batch, zeroed once.
    int64_t workspace_bytes = 256;
    for (int64_t batch : batches) {
      workspace_bytes = std::max(
          workspace_bytes, kernels::matmul_workspace_bytes(TensorView(in.data, DType::bf16, Device::cuda, {batch, p.inner}),
                                                           TensorView(weights[0]->data, DType::bf16, Device::cuda,
                                                                      {p.columns, p.inner}),
                                                           multiprocessors));
    }
    DeviceMemory matmul_workspace{size_t(workspace_bytes)};
    LOUISKV_CUDA_CHECK(cudaMemsetAsync(matmul_workspace.data, 0, size_t(workspace_bytes), stream));
    for (int mode = 0; mode < 4; ++mode) {
      const kernels::MatmulPath path = mode % 2 == 0 ? kernels::MatmulPath::cublas : kernels::MatmulPath::weight_streaming;
      const bool back_to_back = mode >= 2;
      const char* path_name = path == kernels::MatmulPath::cublas ? "cuBLAS" : "streaming";
      std::printf("  %-20s %-9s %-12s", p.name, path_name, back_to_back ? "back to back" : "one call");
      double worst = 1e30;
      int64_t worst_batch = 0;
      for (int64_t batch : batches) {
        kernels::MatmulParams params;
        params.in = TensorView(in.data, DType::bf16, Device::cuda, {batch, p.inner});
        params.out = TensorView(out.data, DType::bf16, Device::cuda, {batch, p.columns});
        params.path = path;
        params.multiprocessors = multiprocessors;
        params.workspace = matmul_workspace.data;
        params.workspace_bytes = workspace_bytes;
        auto call = [&](int i) {
          params.weight = TensorView(weights[size_t(i % copies)]->data, DType::bf16, Device::cuda, {p.columns, p.inner});
          kernels::launch_matmul(params, cublas, stream);
        };
        double ms = back_to_back ? median_ms_back_to_back(stream, 2, 15, 20, call) : median_ms(stream, 10, 100, call);
        double gbps = double(weight_bytes) / (ms * 1e-3) / 1e9;
        std::printf(" %8.1f", gbps);
        if (gbps < worst) {
          worst = gbps;
          worst_batch = batch;
        }
      }
      std::printf("\n");
      if (path == kernels::MatmulPath::cublas) {
        print_summary(std::string("GEMM ") + p.name + (back_to_back ? " b2b" : " 1call") + " worst B=" +
                          std::to_string(worst_batch),
                      worst, "GB/s", copy_gbps, 80);
      }
    }
  }
  LOUISKV_CUBLAS_CHECK(cublasDestroy(cublas));
  LOUISKV_CUDA_CHECK(cudaStreamDestroy(stream));
  return 0;
}
