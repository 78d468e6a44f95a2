// Parity of the projections (cuBLAS, and the weight-streaming kernel for decode sizes) with the
// CPU reference: weights of every file dtype go through prepare_weight (upload, conversion to
// bf16) first, as the model loader does; the CPU gets the same bf16-rounded weights, so the
// bound measures the GEMM alone.
#include <string>
#include <utility>
#include <vector>

#include "backend/cuda/matmul.h"
#include "backend/cuda/matmul_weight_streaming.h"
#include "cuda/parity_harness.h"

namespace louiskv::testing {
namespace {

// A cuBLAS handle of the test's own, for running the cuBLAS path directly.
struct CublasHandle {
  cublasHandle_t handle = nullptr;
  CublasHandle() { EXPECT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS); }
  ~CublasHandle() {
    if (handle) cublasDestroy(handle);
  }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
};

TEST(CudaParity, Matmul) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  CublasHandle cublas;
  Random random;
  SCOPED_TRACE(seed_note(random));
  struct Case {
    int64_t tokens, inner, columns;
    DType weight;  // dtype in the "file"
    DType out;
    bool bias;
  };
  // The backend's automatic path; then cuBLAS and the weight-streaming kernel where it applies
  // (up to 32 rows, K a multiple of 32) under several block shapes and K splits.
  for (Case c : {Case{1, 64, 96, DType::bf16, DType::bf16, false}, Case{7, 100, 36, DType::f32, DType::f32, true},
                 Case{129, 4096, 1024, DType::bf16, DType::bf16, true}, Case{3, 4096, 6144, DType::f16, DType::bf16, false},
                 Case{17, 896, 4864, DType::bf16, DType::f32, false}, Case{1, 2048, 32000, DType::f32, DType::f32, false},
                 Case{1, 4096, 4096, DType::bf16, DType::bf16, true}, Case{9, 1024, 1000, DType::bf16, DType::f32, true},
                 Case{32, 2048, 3000, DType::bf16, DType::bf16, false}, Case{17, 14336, 512, DType::bf16, DType::bf16, true},
                 Case{8, 96, 40, DType::f32, DType::bf16, false}, Case{33, 4096, 512, DType::bf16, DType::bf16, false}}) {
    std::string what = "matmul in [" + std::to_string(c.tokens) + "," + std::to_string(c.inner) + "] weight " +
                       std::string(dtype_name(c.weight)) + "[" + std::to_string(c.columns) + "," +
                       std::to_string(c.inner) + "] out " + std::string(dtype_name(c.out)) +
                       (c.bias ? " + bias" : "");
    std::vector<float> in = random.uniform(size_t(c.tokens * c.inner), -1.0f, 1.0f);
    // File weights in their own dtype, which prepare_weight rounds to bf16 on the GPU side.
    std::vector<float> file_weight = rounded_to(random.uniform(size_t(c.columns * c.inner), -0.1f, 0.1f), c.weight);
    std::vector<float> file_bias = random.uniform(size_t(c.columns), -0.5f, 0.5f);
    std::vector<float> weight_as_used = rounded_to(file_weight, DType::bf16);

    auto cpu_in = make_tensor(*backends.cpu, DType::f32, {c.tokens, c.inner}, in);
    auto cpu_weight = make_tensor(*backends.cpu, DType::bf16, {c.columns, c.inner}, weight_as_used);
    auto cpu_bias = make_tensor(*backends.cpu, DType::bf16, {c.columns}, file_bias);
    auto cpu_out = make_output(*backends.cpu, DType::f32, {c.tokens, c.columns});
    backends.cpu->matmul(cpu_out.view, cpu_in.view, cpu_weight.view, c.bias ? &cpu_bias.view : nullptr);

    // The file weight lives in host memory; prepare_weight uploads and converts it.
    std::vector<uint8_t> host_weight = encode(file_weight, c.weight);
    std::vector<uint8_t> host_bias = encode(file_bias, DType::bf16);
    std::vector<Buffer> owner;
    TensorView gpu_weight = backends.gpu->prepare_weight(
        view_of(host_weight.data(), c.weight, Device::cpu, {c.columns, c.inner}), owner);
    TensorView gpu_bias =
        backends.gpu->prepare_weight(view_of(host_bias.data(), DType::bf16, Device::cpu, {c.columns}), owner);
    ASSERT_EQ(gpu_weight.dtype, DType::bf16);
    ASSERT_EQ(gpu_weight.device, Device::cuda);
    auto gpu_in = make_tensor(*backends.gpu, DType::bf16, {c.tokens, c.inner}, in);
    auto gpu_out = make_output(*backends.gpu, c.out, {c.tokens, c.columns});
    backends.gpu->matmul(gpu_out.view, gpu_in.view, gpu_weight, c.bias ? &gpu_bias : nullptr);
    std::vector<float> first_run = read_values(*backends.gpu, gpu_out.view);
    // Run it again: the split-K reduction must leave its counters ready and give the same bits.
    backends.gpu->matmul(gpu_out.view, gpu_in.view, gpu_weight, c.bias ? &gpu_bias : nullptr);
    expect_equal(read_values(*backends.gpu, gpu_out.view), first_run, what + " (second run)");

    // fp32 accumulation of exact bf16 products: an f32 output differs only by summation order.
    double bound = c.out == DType::f32 ? 1e-3 : 4e-3;
    std::vector<float> expected = rounded_to(read_values(*backends.cpu, cpu_out.view), c.out);
    expect_close(read_values(*backends.gpu, gpu_out.view), expected, bound, what);
    expect_guard_intact(*backends.gpu, gpu_out, what);

    cudaDeviceProp properties{};
    ASSERT_EQ(cudaGetDeviceProperties(&properties, 0), cudaSuccess);
    kernels::MatmulParams params;
    params.in = gpu_in.view;
    params.weight = gpu_weight;
    params.bias = c.bias ? gpu_bias : TensorView{};
    params.multiprocessors = properties.multiProcessorCount;
    {
      params.path = kernels::MatmulPath::cublas;
      auto cublas_out = make_output(*backends.gpu, c.out, {c.tokens, c.columns});
      params.out = cublas_out.view;
      kernels::launch_matmul(params, cublas.handle, nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      expect_close(read_values(*backends.gpu, cublas_out.view), expected, bound, what + " cuBLAS");
      expect_guard_intact(*backends.gpu, cublas_out, what + " cuBLAS");
    }
    if (kernels::weight_streaming_applies(gpu_in.view, gpu_weight)) {
      // The automatic plan and hand-picked ones: each block shape and unroll, K split over 1 to 8
      // blocks of a cluster (3 leaves a ragged last slice), each run twice for the same bits.
      std::vector<std::pair<std::string, kernels::WeightStreamingPlan>> plans = {
          {"auto", kernels::plan_weight_streaming(c.tokens, c.inner, c.columns, params.multiprocessors)},
          {"m1 u2 s1", kernels::plan_weight_streaming(c.inner, 1, 2, 1)},
          {"m2 u4 s8", kernels::plan_weight_streaming(c.inner, 2, 4, 8)},
          {"m1 u4 s3", kernels::plan_weight_streaming(c.inner, 1, 4, 3)},
          {"m2 u2 s2", kernels::plan_weight_streaming(c.inner, 2, 2, 2)},
          {"m2 u2 s8 staged", kernels::plan_weight_streaming(c.inner, 2, 2, 8, true)},
          {"m1 u4 s3 staged", kernels::plan_weight_streaming(c.inner, 1, 4, 3, true)},
          {"m2 u4 s1 staged", kernels::plan_weight_streaming(c.inner, 2, 4, 1, true)}};
      // Both ways of launching (overlapping the previous kernel or not) on two of the plans.
      for (int i : {0, 1}) {
        kernels::WeightStreamingPlan other = plans[size_t(i)].second;
        const bool early = other.overlap == kernels::WeightStreamingOverlap::early;
        other.overlap = early ? kernels::WeightStreamingOverlap::none : kernels::WeightStreamingOverlap::early;
        plans.push_back({plans[size_t(i)].first + (early ? ", no overlap" : ", overlapping the previous kernel"), other});
      }
      for (const auto& [name, plan] : plans) {
        if (kernels::weight_streaming_staged_bytes(c.tokens, plan) > kernels::weight_streaming_max_staged_bytes) continue;
        kernels::WeightStreamingParams streaming;
        streaming.in = gpu_in.view;
        streaming.weight = gpu_weight;
        streaming.bias = c.bias ? gpu_bias : TensorView{};
        streaming.plan = plan;
        std::vector<float> first;
        for (int run = 0; run < 2; ++run) {
          auto streaming_out = make_output(*backends.gpu, c.out, {c.tokens, c.columns});
          streaming.out = streaming_out.view;
          kernels::launch_matmul_weight_streaming(streaming, nullptr);  // legacy stream: ordered with the copies
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          std::string variant = what + " weight streaming " + name + " (splits " + std::to_string(plan.splits) +
                                ") run " + std::to_string(run + 1);
          std::vector<float> values = read_values(*backends.gpu, streaming_out.view);
          expect_close(values, expected, bound, variant);
          expect_guard_intact(*backends.gpu, streaming_out, variant);
          if (run == 0) first = values;
          else expect_equal(values, first, variant + " (same bits as run 1)");
        }
      }
    }
    // The prepared weight holds exactly the bf16 rounding of the file weight.
    expect_equal(read_values(*backends.gpu, gpu_weight), weight_as_used, what + " (prepared weight)");
  }
}

// The f32 mode: prepare_weight widens the file weights (of any dtype) to f32 on the device once,
// and every product is an fp32 cuBLAS GEMM (never TF32): the CPU's products of the same weights on
// full-precision f32 inputs, summed in another order. Biases (Qwen2's q/k/v) of either dtype.
TEST(CudaF32Parity, Matmul) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends(DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  struct Case {
    int64_t tokens, inner, columns;
    DType weight;  // dtype in the "file"
    bool bias;
    DType bias_dtype;
  };
  for (Case c : {Case{1, 64, 96, DType::bf16, false, DType::bf16}, Case{7, 100, 36, DType::f32, true, DType::f32},
                 Case{129, 4096, 1024, DType::bf16, true, DType::bf16}, Case{3, 4096, 6144, DType::f16, false, DType::bf16},
                 Case{17, 896, 4864, DType::bf16, true, DType::bf16}, Case{1, 2048, 32000, DType::f32, false, DType::f32},
                 Case{33, 4096, 512, DType::bf16, false, DType::bf16}, Case{256, 384, 1024, DType::bf16, true, DType::f32},
                 Case{8, 14336, 512, DType::bf16, true, DType::bf16}}) {
    std::string what = "f32 matmul in [" + std::to_string(c.tokens) + "," + std::to_string(c.inner) + "] weight " +
                       std::string(dtype_name(c.weight)) + "[" + std::to_string(c.columns) + "," +
                       std::to_string(c.inner) + "]" + (c.bias ? " + " + std::string(dtype_name(c.bias_dtype)) + " bias" : "");
    std::vector<float> in = random.uniform_f32(size_t(c.tokens * c.inner), -1.0f, 1.0f);
    std::vector<float> file_weight = rounded_to(random.uniform_f32(size_t(c.columns * c.inner), -0.1f, 0.1f), c.weight);
    std::vector<float> file_bias = rounded_to(random.uniform_f32(size_t(c.columns), -0.5f, 0.5f), c.bias_dtype);

    // The CPU widens the file weights in its kernels.
    auto cpu_in = make_tensor(*backends.cpu, DType::f32, {c.tokens, c.inner}, in);
    auto cpu_weight = make_tensor(*backends.cpu, c.weight, {c.columns, c.inner}, file_weight);
    auto cpu_bias = make_tensor(*backends.cpu, c.bias_dtype, {c.columns}, file_bias);
    auto cpu_out = make_output(*backends.cpu, DType::f32, {c.tokens, c.columns});
    backends.cpu->matmul(cpu_out.view, cpu_in.view, cpu_weight.view, c.bias ? &cpu_bias.view : nullptr);

    std::vector<uint8_t> host_weight = encode(file_weight, c.weight);
    std::vector<uint8_t> host_bias = encode(file_bias, c.bias_dtype);
    std::vector<Buffer> owner;
    TensorView gpu_weight = backends.gpu->prepare_weight(
        view_of(host_weight.data(), c.weight, Device::cpu, {c.columns, c.inner}), owner);
    TensorView gpu_bias =
        backends.gpu->prepare_weight(view_of(host_bias.data(), c.bias_dtype, Device::cpu, {c.columns}), owner);
    ASSERT_EQ(gpu_weight.dtype, DType::f32);
    ASSERT_EQ(gpu_weight.device, Device::cuda);
    ASSERT_EQ(gpu_bias.dtype, DType::f32);
    // The widening is exact.
    expect_equal(read_values(*backends.gpu, gpu_weight), file_weight, what + " (prepared weight)");

    auto gpu_in = make_tensor(*backends.gpu, DType::f32, {c.tokens, c.inner}, in);
    auto gpu_out = make_output(*backends.gpu, DType::f32, {c.tokens, c.columns});
    backends.gpu->matmul(gpu_out.view, gpu_in.view, gpu_weight, c.bias ? &gpu_bias : nullptr);
    expect_close(read_values(*backends.gpu, gpu_out.view), read_values(*backends.cpu, cpu_out.view), 1e-5, what);
    expect_guard_intact(*backends.gpu, gpu_out, what);
  }
}

// A weight already on the device is widened too (device to device), and an f32 one is kept.
TEST(CudaF32Parity, PrepareWeightWidensDeviceWeights) {
  LOUISKV_REQUIRE_CUDA();
  auto gpu = make_cuda_backend(0, DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  std::vector<float> values = rounded_to(random.uniform_f32(1000, -1.0f, 1.0f), DType::bf16);
  auto bf16_weight = make_tensor(*gpu, DType::bf16, {10, 100}, values);
  std::vector<Buffer> owner;
  TensorView widened = gpu->prepare_weight(bf16_weight.view, owner);
  ASSERT_EQ(widened.dtype, DType::f32);
  expect_equal(read_values(*gpu, widened), values, "f32 prepare_weight of a device bf16 weight");
  TensorView kept = gpu->prepare_weight(widened, owner);
  EXPECT_EQ(kept.data, widened.data) << "a device f32 weight needs no copy";
}

}  // namespace
}  // namespace louiskv::testing
