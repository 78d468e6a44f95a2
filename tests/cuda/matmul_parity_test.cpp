// Parity of the cuBLAS projections with the CPU reference: weights of every file dtype go
// through prepare_weight (upload, conversion to bf16) first, as the model loader does; the CPU
// gets the same bf16-rounded weights, so the bound measures the GEMM alone.
#include <string>
#include <vector>

#include "backend/cuda/matmul.h"
#include "cuda/parity_harness.h"

namespace louiskv::testing {
namespace {

TEST(CudaParity, Matmul) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  // One workspace for every streaming product, grown when a product needs more (zeroed then).
  Buffer streaming_workspace;
  int64_t streaming_workspace_bytes = 0;
  struct Case {
    int64_t tokens, inner, columns;
    DType weight;  // dtype in the "file"
    DType out;
    bool bias;
  };
  // cuBLAS through the backend; the weight-streaming kernel too where it applies (up to 32 rows,
  // K a multiple of 32), splitting K where the grid is small.
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

    // The weight-streaming kernel, where it applies, on the same product (twice: its split-K
    // counters must be left at zero for the next product, here and across cases).
    if (c.tokens <= 32 && c.inner % 32 == 0) {
      cudaDeviceProp properties{};
      ASSERT_EQ(cudaGetDeviceProperties(&properties, 0), cudaSuccess);
      kernels::MatmulParams params;
      params.in = gpu_in.view;
      params.weight = gpu_weight;
      params.bias = c.bias ? gpu_bias : TensorView{};
      params.multiprocessors = properties.multiProcessorCount;
      params.path = kernels::MatmulPath::weight_streaming;
      int64_t bytes = kernels::matmul_workspace_bytes(gpu_in.view, gpu_weight, params.multiprocessors);
      if (bytes > streaming_workspace_bytes) {
        streaming_workspace = backends.gpu->allocate(size_t(bytes));
        ASSERT_EQ(cudaMemset(streaming_workspace.data(), 0, size_t(bytes)), cudaSuccess);
        streaming_workspace_bytes = bytes;
      }
      params.workspace = streaming_workspace.data();
      params.workspace_bytes = streaming_workspace_bytes;
      for (int run = 0; run < 2; ++run) {
        auto streaming_out = make_output(*backends.gpu, c.out, {c.tokens, c.columns});
        params.out = streaming_out.view;
        kernels::launch_matmul(params, nullptr, nullptr);  // legacy stream: ordered with the copies
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        std::string variant = what + " weight streaming run " + std::to_string(run + 1);
        expect_close(read_values(*backends.gpu, streaming_out.view), expected, bound, variant);
        expect_guard_intact(*backends.gpu, streaming_out, variant);
      }
    }
    // The prepared weight holds exactly the bf16 rounding of the file weight.
    expect_equal(read_values(*backends.gpu, gpu_weight), weight_as_used, what + " (prepared weight)");
  }
}

}  // namespace
}  // namespace louiskv::testing
