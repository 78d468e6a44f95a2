// Decode-time projections of Llama-3.1-8B at batch 1 to 32: achieved GB/s of weight read,
// against the device-to-device copy ceiling measured in the same run (target: at least 80%). At
// these batch sizes a projection is a pass over its weights, so weight bytes / time is the
// figure that matters. Weights rotate among copies totalling more than the L2, so every run
// reads memory.
//
// Rows: cuBLAS; the weight-streaming kernel on its automatic plan; the best of a sweep of its
// block shapes and K splits (printed as m<rows/64> u<steps in flight> s<split>, then x when the
// input is staged in shared memory and e when the launch overlaps the previous kernel) for each
// way of overlapping; and the automatic path (what the backend runs), whose worst batch is the
// summary figure.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/matmul.h"
#include "backend/cuda/matmul_weight_streaming.h"
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
  std::printf("decode GEMMs (weight bytes / time), GB/s by batch:\n  %-41s", "projection");
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
    auto gbps_of = [&](double ms) { return double(weight_bytes) / (ms * 1e-3) / 1e9; };
    auto time_path = [&](int64_t batch, kernels::MatmulPath path, bool back_to_back) {
      kernels::MatmulParams params;
      params.in = TensorView(in.data, DType::bf16, Device::cuda, {batch, p.inner});
      params.out = TensorView(out.data, DType::bf16, Device::cuda, {batch, p.columns});
      params.path = path;
      params.multiprocessors = multiprocessors;
      auto call = [&](int i) {
        params.weight = TensorView(weights[size_t(i % copies)]->data, DType::bf16, Device::cuda, {p.columns, p.inner});
        kernels::launch_matmul(params, cublas, stream);
      };
      return gbps_of(back_to_back ? median_ms_back_to_back(stream, 2, 15, 20, call) : median_ms(stream, 10, 100, call));
    };
    auto time_plan = [&](int64_t batch, const kernels::WeightStreamingPlan& plan) {
      kernels::WeightStreamingParams params;
      params.in = TensorView(in.data, DType::bf16, Device::cuda, {batch, p.inner});
      params.out = TensorView(out.data, DType::bf16, Device::cuda, {batch, p.columns});
      params.plan = plan;
      auto call = [&](int i) {
        params.weight = TensorView(weights[size_t(i % copies)]->data, DType::bf16, Device::cuda, {p.columns, p.inner});
        kernels::launch_matmul_weight_streaming(params, stream);
      };
      return gbps_of(median_ms_back_to_back(stream, 2, 15, 20, call));
    };
    auto print_row = [&](const char* what, const std::vector<double>& values, const std::vector<std::string>& notes) {
      std::printf("  %-20s %-20s", p.name, what);
      for (double value : values) std::printf(" %8.1f", value);
      for (const std::string& note : notes) std::printf(" %s", note.c_str());
      std::printf("\n");
    };
    // Sweep modes: overlap of the previous kernel (none / early) x input staged in shared memory.
    const kernels::WeightStreamingOverlap overlaps[] = {kernels::WeightStreamingOverlap::none,
                                                        kernels::WeightStreamingOverlap::early};
    const char* mode_names[] = {"none, L1 input", "none, staged", "early, L1 input", "early, staged"};
    std::vector<double> cublas_b2b, cublas_one, automatic_b2b, automatic_one, streaming_auto;
    std::vector<double> best[4];
    std::vector<std::string> best_names[4], auto_names;
    auto plan_name = [](const kernels::WeightStreamingPlan& plan) {
      return "m" + std::to_string(plan.m_tiles) + "u" + std::to_string(plan.unroll) + "s" + std::to_string(plan.splits) +
             (plan.stage_input ? "x" : "") + (plan.overlap == kernels::WeightStreamingOverlap::early ? "e" : "");
    };
    for (int64_t batch : batches) {
      cublas_b2b.push_back(time_path(batch, kernels::MatmulPath::cublas, true));
      cublas_one.push_back(time_path(batch, kernels::MatmulPath::cublas, false));
      const kernels::WeightStreamingPlan automatic = kernels::plan_weight_streaming(batch, p.inner, p.columns, multiprocessors);
      auto_names.push_back(plan_name(automatic));
      streaming_auto.push_back(time_plan(batch, automatic));
      // The sweep: every block shape, unroll and split in each mode; each figure also goes to
      // the log as a "grid" line.
      for (int mode = 0; mode < 4; ++mode) {
        double best_gbps = 0.0;
        std::string best_name = "-";
        for (int m_tiles : {1, 2}) {
          for (int unroll : {2, 4}) {
            for (int splits : {1, 2, 4, 8}) {
              kernels::WeightStreamingPlan plan =
                  kernels::plan_weight_streaming(p.inner, m_tiles, unroll, splits, mode % 2 == 1);
              plan.overlap = overlaps[mode / 2];
              if (kernels::weight_streaming_staged_bytes(batch, plan) > kernels::weight_streaming_max_staged_bytes) continue;
              const double gbps = time_plan(batch, plan);
              std::printf("grid | %s | B=%lld | %s | %s | %.1f\n", p.name, (long long)batch, mode_names[mode],
                          plan_name(plan).c_str(), gbps);
              if (gbps > best_gbps) best_gbps = gbps, best_name = plan_name(plan);
            }
          }
        }
        best[mode].push_back(best_gbps);
        best_names[mode].push_back(best_name);
      }
      automatic_b2b.push_back(time_path(batch, kernels::MatmulPath::automatic, true));
      automatic_one.push_back(time_path(batch, kernels::MatmulPath::automatic, false));
    }
    print_row("cuBLAS b2b", cublas_b2b, {});
    print_row("cuBLAS one call", cublas_one, {});
    print_row("stream auto b2b", streaming_auto, auto_names);
    for (int mode = 0; mode < 4; ++mode) {
      print_row((std::string("best ") + mode_names[mode]).c_str(), best[mode], best_names[mode]);
    }
    print_row("automatic b2b", automatic_b2b, {});
    print_row("automatic one call", automatic_one, {});
    auto worst = [&](const std::vector<double>& values, int64_t& batch) {
      size_t at = size_t(std::min_element(values.begin(), values.end()) - values.begin());
      batch = batches[at];
      return values[at];
    };
    int64_t worst_batch = 0;
    double value = worst(automatic_b2b, worst_batch);
    print_summary(std::string("GEMM ") + p.name + " b2b worst B=" + std::to_string(worst_batch), value, "GB/s",
                  copy_gbps, 80);
    value = worst(automatic_one, worst_batch);
    print_summary(std::string("GEMM ") + p.name + " 1call worst B=" + std::to_string(worst_batch), value, "GB/s",
                  copy_gbps, 80);
    value = worst(cublas_b2b, worst_batch);
    print_summary(std::string("GEMM ") + p.name + " cuBLAS b2b worst B=" + std::to_string(worst_batch), value, "GB/s",
                  copy_gbps, 80);
  }
  LOUISKV_CUBLAS_CHECK(cublasDestroy(cublas));
  LOUISKV_CUDA_CHECK(cudaStreamDestroy(stream));
  return 0;
}
