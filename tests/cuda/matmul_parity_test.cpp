// Parity of the projections (cuBLAS, and the weight-streaming kernels for decode sizes) with the
// CPU reference: weights of every file dtype go through prepare_weight (upload, conversion to
// bf16) first, as the model loader does; the CPU gets the same bf16-rounded weights, so the
// bound measures the GEMM alone. The pipelined kernel runs under every option and under GPU
// sizes of 1 and 3 multiprocessors besides the real one, which force teams of several groups,
// grids larger than the GPU and K split over clusters.
#include <span>
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
                 Case{8, 96, 40, DType::f32, DType::bf16, false}, Case{33, 4096, 512, DType::bf16, DType::bf16, false},
                 // K a multiple of 8 but not of 32 (the pipelined kernel only), ragged last steps,
                 // N not a multiple of 16, and input slices that need clusters of several blocks.
                 Case{5, 200, 77, DType::bf16, DType::f32, true}, Case{32, 1032, 300, DType::bf16, DType::bf16, true},
                 Case{16, 4104, 130, DType::f16, DType::bf16, false}, Case{2, 8, 3, DType::bf16, DType::f32, true},
                 Case{24, 6144, 200, DType::bf16, DType::f32, false}}) {
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
      // The forced streaming path: the automatic plan where the plan table names a kernel, else
      // the register kernel's own plan, else (K not a multiple of 32) the pipelined kernel's.
      {
        params.path = kernels::MatmulPath::weight_streaming;
        auto forced_out = make_output(*backends.gpu, c.out, {c.tokens, c.columns});
        params.out = forced_out.view;
        kernels::launch_matmul(params, cublas.handle, nullptr);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        expect_close(read_values(*backends.gpu, forced_out.view), expected, bound, what + " forced weight streaming");
        expect_guard_intact(*backends.gpu, forced_out, what + " forced weight streaming");
      }
      std::vector<std::pair<std::string, kernels::WeightStreamingPlan>> plans = {
          {"auto", kernels::plan_weight_streaming(c.tokens, c.inner, c.columns, params.multiprocessors)}};
      if (kernels::weight_streaming_registers_apply(c.inner)) {
        // The register kernel: each block shape and unroll, K split over 1 to 8 blocks of a
        // cluster (3 leaves a ragged last slice).
        plans.insert(plans.end(), {{"m1 u2 s1", kernels::plan_weight_streaming(c.inner, 1, 2, 1)},
                                   {"m2 u4 s8", kernels::plan_weight_streaming(c.inner, 2, 4, 8)},
                                   {"m1 u4 s3", kernels::plan_weight_streaming(c.inner, 1, 4, 3)},
                                   {"m2 u2 s2", kernels::plan_weight_streaming(c.inner, 2, 2, 2)},
                                   {"m2 u2 s8 staged", kernels::plan_weight_streaming(c.inner, 2, 2, 8, true)},
                                   {"m1 u4 s3 staged", kernels::plan_weight_streaming(c.inner, 1, 4, 3, true)},
                                   {"m2 u4 s1 staged", kernels::plan_weight_streaming(c.inner, 2, 4, 1, true)}});
        // Each way of launching (alone, overlapping the previous kernel with an L2 prefetch or
        // with the first weights loaded into registers) on two of the plans.
        for (size_t i : {size_t(1), size_t(5)}) {
          for (kernels::WeightStreamingOverlap overlap :
               {kernels::WeightStreamingOverlap::early, kernels::WeightStreamingOverlap::preload}) {
            kernels::WeightStreamingPlan other = plans[i].second;
            other.overlap = overlap;
            plans.push_back({plans[i].first + (overlap == kernels::WeightStreamingOverlap::early ? ", early" : ", preload"),
                             other});
          }
        }
      }
      // The pipelined kernel: every split of the block's warps between K and rows, each ring
      // depth, each placement, with and without overlap, the input staged or streamed, on the
      // real GPU size and on 1 and 3 multiprocessors.
      struct Options {
        int k_warps, stages, blocks_per_multiprocessor, resident_limit;
        kernels::WeightStreamingOverlap overlap;
        bool stream_input;
      };
      const Options option_list[] = {{8, 8, 1, 0, kernels::WeightStreamingOverlap::none, false},
                                     {8, 4, 2, 2, kernels::WeightStreamingOverlap::early, false},
                                     {4, 8, 1, 1, kernels::WeightStreamingOverlap::early, false},
                                     {4, 4, 1, 2, kernels::WeightStreamingOverlap::none, false},
                                     {2, 4, 2, 0, kernels::WeightStreamingOverlap::early, false},
                                     {2, 8, 1, 0, kernels::WeightStreamingOverlap::none, false},
                                     {1, 8, 1, 1, kernels::WeightStreamingOverlap::early, false},
                                     {1, 4, 2, 2, kernels::WeightStreamingOverlap::none, false},
                                     {8, 12, 1, 0, kernels::WeightStreamingOverlap::early, false},
                                     {4, 12, 1, 0, kernels::WeightStreamingOverlap::none, false},
                                     {8, 4, 1, 0, kernels::WeightStreamingOverlap::early, true},
                                     {8, 8, 1, 1, kernels::WeightStreamingOverlap::none, true},
                                     {8, 12, 1, 0, kernels::WeightStreamingOverlap::early, true},
                                     {4, 4, 1, 0, kernels::WeightStreamingOverlap::none, true},
                                     {4, 8, 1, 0, kernels::WeightStreamingOverlap::early, true},
                                     {2, 4, 2, 2, kernels::WeightStreamingOverlap::early, true},
                                     {1, 8, 1, 0, kernels::WeightStreamingOverlap::none, true},
                                     {1, 4, 2, 2, kernels::WeightStreamingOverlap::early, true}};
      for (const Options& o : option_list) {
        kernels::WeightStreamingPipelineOptions options;
        options.k_warps = o.k_warps;
        options.stages = o.stages;
        options.blocks_per_multiprocessor = o.blocks_per_multiprocessor;
        options.resident_limit = o.resident_limit;
        options.overlap = o.overlap;
        options.stream_input = o.stream_input;
        if (!kernels::weight_streaming_pipeline_fits(c.tokens, c.inner, options)) continue;
        for (int multiprocessors : {params.multiprocessors, 1, 3}) {
          const kernels::WeightStreamingPlan plan =
              kernels::plan_weight_streaming_pipelined(c.tokens, c.inner, c.columns, multiprocessors, options);
          plans.push_back({"pipelined k" + std::to_string(o.k_warps) + " st" + std::to_string(o.stages) + " b" +
                               std::to_string(o.blocks_per_multiprocessor) + " r" + std::to_string(o.resident_limit) +
                               (o.overlap == kernels::WeightStreamingOverlap::early ? " early" : "") +
                               (o.stream_input ? " streamed input" : "") + " on " +
                               std::to_string(multiprocessors) + " multiprocessors (row blocks " +
                               std::to_string(plan.row_blocks) + ", groups per warp " +
                               std::to_string(plan.groups_per_warp) + ")",
                           plan});
        }
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

// Several projections of one input (q, k, v; gate, up) through matmul_parts: at decode sizes one
// pipelined launch reads every part's weights and writes each part's output, which must match
// the CPU's product of that part alone; where the parts cannot share a launch (a part before
// the last not a multiple of 16 rows) or the size is cuBLAS's, they run one after another.
TEST(CudaParity, MatmulParts) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  CublasHandle cublas;
  Random random;
  SCOPED_TRACE(seed_note(random));
  cudaDeviceProp properties{};
  ASSERT_EQ(cudaGetDeviceProperties(&properties, 0), cudaSuccess);
  struct Case {
    int64_t tokens, inner;
    std::vector<int64_t> rows;  // each part's output columns
    DType out;
    bool bias;
    bool shares_launch;  // whether weight_streaming_parts_apply holds
  };
  const Case cases[] = {
      {1, 2048, {2048, 512, 512}, DType::bf16, false, true},    // Llama-3.2-1B q, k, v
      {8, 2048, {2048, 512, 512}, DType::bf16, true, true},     // with Qwen2's biases
      {1, 2048, {8192, 8192}, DType::bf16, false, true},        // 1B gate, up
      {32, 4096, {4096, 1024, 1024}, DType::bf16, false, true}, // 8B q, k, v at batch 32
      {4, 896, {896, 128, 128}, DType::f32, true, true},
      {3, 200, {48, 32, 77}, DType::f32, true, true},           // K not a multiple of 32, ragged last part
      {5, 1024, {1000, 64}, DType::bf16, false, false},         // 1000 rows: a tile would straddle two parts
      {129, 512, {512, 128, 128}, DType::bf16, true, false}};   // prefill size: cuBLAS, one part at a time
  for (const Case& c : cases) {
    // Appended piece by piece: gcc 12 warns falsely (-Wrestrict) on `"literal" + std::string&&`.
    std::string what = "matmul_parts in [";
    what += std::to_string(c.tokens) + "," + std::to_string(c.inner) + "] rows";
    for (int64_t n : c.rows) (what += " ") += std::to_string(n);
    (what += " out ") += dtype_name(c.out);
    if (c.bias) what += " + bias";
    std::vector<float> in = random.uniform(size_t(c.tokens * c.inner), -1.0f, 1.0f);
    auto cpu_in = make_tensor(*backends.cpu, DType::f32, {c.tokens, c.inner}, in);
    auto gpu_in = make_tensor(*backends.gpu, DType::bf16, {c.tokens, c.inner}, in);
    std::vector<OwnedTensor> gpu_weights, gpu_biases;
    std::vector<std::vector<float>> expected;
    for (int64_t n : c.rows) {
      std::vector<float> weight = random.uniform(size_t(n * c.inner), -0.1f, 0.1f);
      std::vector<float> bias = random.uniform(size_t(n), -0.5f, 0.5f);
      auto cpu_weight = make_tensor(*backends.cpu, DType::bf16, {n, c.inner}, weight);
      auto cpu_bias = make_tensor(*backends.cpu, DType::bf16, {n}, bias);
      auto cpu_out = make_output(*backends.cpu, DType::f32, {c.tokens, n});
      backends.cpu->matmul(cpu_out.view, cpu_in.view, cpu_weight.view, c.bias ? &cpu_bias.view : nullptr);
      expected.push_back(rounded_to(read_values(*backends.cpu, cpu_out.view), c.out));
      gpu_weights.push_back(make_tensor(*backends.gpu, DType::bf16, {n, c.inner}, weight));
      gpu_biases.push_back(make_tensor(*backends.gpu, DType::bf16, {n}, bias));
    }
    const double bound = c.out == DType::f32 ? 1e-3 : 4e-3;
    // Fresh poisoned outputs, one per part; `check` compares them with the CPU's.
    auto fresh_outputs = [&] {
      std::vector<OwnedTensor> outs;
      for (int64_t n : c.rows) outs.push_back(make_output(*backends.gpu, c.out, {c.tokens, n}));
      return outs;
    };
    auto check = [&](const std::vector<OwnedTensor>& outs, const std::string& variant) {
      for (size_t p = 0; p < outs.size(); ++p) {
        const std::string part = what + " " + variant + " part " + std::to_string(p);
        expect_close(read_values(*backends.gpu, outs[p].view), expected[p], bound, part);
        expect_guard_intact(*backends.gpu, outs[p], part);
      }
    };
    std::vector<kernels::WeightStreamingPart> parts;
    auto parts_for = [&](const std::vector<OwnedTensor>& outs) {
      parts.clear();
      for (size_t p = 0; p < outs.size(); ++p) {
        parts.push_back({outs[p].view, gpu_weights[p].view, c.bias ? gpu_biases[p].view : TensorView{}});
      }
      return std::span<const kernels::WeightStreamingPart>(parts);
    };
    {
      std::vector<OwnedTensor> outs = fresh_outputs();
      EXPECT_EQ(kernels::weight_streaming_parts_apply(gpu_in.view, parts_for(outs)), c.shares_launch) << what;
    }
    {  // The backend, as the decoder calls it.
      std::vector<OwnedTensor> outs = fresh_outputs();
      std::vector<MatmulPart> backend_parts;
      for (size_t p = 0; p < outs.size(); ++p) {
        backend_parts.push_back({outs[p].view, gpu_weights[p].view, c.bias ? &gpu_biases[p].view : nullptr});
      }
      backends.gpu->matmul_parts(gpu_in.view, backend_parts);
      check(outs, "backend");
    }
    // launch_matmul on each path, the parts after the first in more_parts.
    for (kernels::MatmulPath path : {kernels::MatmulPath::automatic, kernels::MatmulPath::weight_streaming,
                                     kernels::MatmulPath::cublas}) {
      if (path == kernels::MatmulPath::weight_streaming &&
          !kernels::weight_streaming_applies(gpu_in.view, gpu_weights[0].view)) {
        continue;
      }
      std::vector<OwnedTensor> outs = fresh_outputs();
      std::span<const kernels::WeightStreamingPart> all = parts_for(outs);
      kernels::MatmulParams params;
      params.in = gpu_in.view;
      params.out = all[0].out;
      params.weight = all[0].weight;
      params.bias = all[0].bias;
      params.more_parts = all.subspan(1);
      params.multiprocessors = properties.multiProcessorCount;
      params.path = path;
      kernels::launch_matmul(params, cublas.handle, nullptr);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      check(outs, path == kernels::MatmulPath::automatic ? "automatic"
                  : path == kernels::MatmulPath::cublas  ? "cuBLAS"
                                                         : "forced weight streaming");
    }
    if (!c.shares_launch) continue;
    // The shared pipelined launch under several plans over the parts' total columns, on the real
    // GPU size and on 1 and 3 multiprocessors (teams of several groups that cross from one part
    // into the next, and K split over clusters).
    int64_t total = 0;
    for (int64_t n : c.rows) total += n;
    struct Options {
      int k_warps, stages;
      bool stream_input;
    };
    for (const Options& o : {Options{8, 8, false}, Options{4, 4, false}, Options{1, 8, false}, Options{8, 12, true},
                             Options{2, 4, true}}) {
      kernels::WeightStreamingPipelineOptions options;
      options.k_warps = o.k_warps;
      options.stages = o.stages;
      options.overlap = kernels::WeightStreamingOverlap::early;
      options.stream_input = o.stream_input;
      if (!kernels::weight_streaming_pipeline_fits(c.tokens, c.inner, options)) continue;
      for (int multiprocessors : {properties.multiProcessorCount, 1, 3}) {
        kernels::WeightStreamingParams streaming;
        streaming.plan = kernels::plan_weight_streaming_pipelined(c.tokens, c.inner, total, multiprocessors, options);
        if (kernels::weight_streaming_staged_bytes(c.tokens, streaming.plan) > kernels::weight_streaming_max_staged_bytes) {
          continue;
        }
        std::vector<OwnedTensor> outs = fresh_outputs();
        std::span<const kernels::WeightStreamingPart> all = parts_for(outs);
        streaming.in = gpu_in.view;
        streaming.out = all[0].out;
        streaming.weight = all[0].weight;
        streaming.bias = all[0].bias;
        streaming.more_parts = all.subspan(1);
        kernels::launch_matmul_weight_streaming(streaming, nullptr);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        check(outs, "pipelined k" + std::to_string(o.k_warps) + " st" + std::to_string(o.stages) +
                        (o.stream_input ? " streamed input" : "") + " on " + std::to_string(multiprocessors) +
                        " multiprocessors (splits " + std::to_string(streaming.plan.splits) + ")");
      }
    }
  }
}

// Launches that overlap the previous kernel fetch weights before waiting for it, and must read
// their input and write their output only after. Two products feed each other back to back on
// one stream, y = x W1^T then z = y W2^T, ten times over, with x switching between two inputs:
// a read of y before the product before it finished would see the other input's y, and a write
// of y while the second product still read it would change z.
TEST(CudaParity, MatmulWeightStreamingChained) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  cudaDeviceProp properties{};
  ASSERT_EQ(cudaGetDeviceProperties(&properties, 0), cudaSuccess);
  const int64_t tokens = 8, inner = 4096, middle = 6144, columns = 4096;
  std::vector<float> in_a = random.uniform(size_t(tokens * inner), -1.0f, 1.0f);
  std::vector<float> in_b = random.uniform(size_t(tokens * inner), -1.0f, 1.0f);
  std::vector<float> first_weight = random.uniform(size_t(middle * inner), -0.05f, 0.05f);
  std::vector<float> second_weight = random.uniform(size_t(columns * middle), -0.05f, 0.05f);
  auto gpu_in_a = make_tensor(*backends.gpu, DType::bf16, {tokens, inner}, in_a);
  auto gpu_in_b = make_tensor(*backends.gpu, DType::bf16, {tokens, inner}, in_b);
  auto gpu_first = make_tensor(*backends.gpu, DType::bf16, {middle, inner}, first_weight);
  auto gpu_second = make_tensor(*backends.gpu, DType::bf16, {columns, middle}, second_weight);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);

  auto pipelined = [&](int k_warps, int stages, int blocks, int resident, int64_t k, int64_t n,
                       bool stream_input = false) {
    kernels::WeightStreamingPipelineOptions options;
    options.k_warps = k_warps;
    options.stages = stages;
    options.blocks_per_multiprocessor = blocks;
    options.resident_limit = resident;
    options.overlap = kernels::WeightStreamingOverlap::early;
    options.stream_input = stream_input;
    return kernels::plan_weight_streaming_pipelined(tokens, k, n, properties.multiProcessorCount, options);
  };
  auto registers = [&](int64_t k, kernels::WeightStreamingOverlap overlap) {
    kernels::WeightStreamingPlan plan = kernels::plan_weight_streaming(k, 1, 2, 2);
    plan.overlap = overlap;
    return plan;
  };
  struct Chain {
    std::string name;
    kernels::WeightStreamingPlan first, second;
  };
  const Chain chains[] = {
      {"pipelined k8 st8 b1 r0", pipelined(8, 8, 1, 0, inner, middle), pipelined(8, 8, 1, 0, middle, columns)},
      {"pipelined k4 st4 b1 r2", pipelined(4, 4, 1, 2, inner, middle), pipelined(4, 4, 1, 2, middle, columns)},
      {"pipelined k1 st4 b2 r2", pipelined(1, 4, 2, 2, inner, middle), pipelined(1, 4, 2, 2, middle, columns)},
      {"pipelined k8 st12 b1 r0", pipelined(8, 12, 1, 0, inner, middle), pipelined(8, 12, 1, 0, middle, columns)},
      {"pipelined k8 st8 b1 r0 streamed input", pipelined(8, 8, 1, 0, inner, middle, true),
       pipelined(8, 8, 1, 0, middle, columns, true)},
      {"pipelined k4 st4 b1 r0 streamed input then k8 st12", pipelined(4, 4, 1, 0, inner, middle, true),
       pipelined(8, 12, 1, 0, middle, columns)},
      {"registers early", registers(inner, kernels::WeightStreamingOverlap::early),
       registers(middle, kernels::WeightStreamingOverlap::early)},
      {"registers preload", registers(inner, kernels::WeightStreamingOverlap::preload),
       registers(middle, kernels::WeightStreamingOverlap::preload)},
      {"pipelined then registers preload", pipelined(8, 8, 1, 0, inner, middle),
       registers(middle, kernels::WeightStreamingOverlap::preload)}};
  for (const Chain& chain : chains) {
    auto gpu_middle = make_output(*backends.gpu, DType::bf16, {tokens, middle});
    auto gpu_out = make_output(*backends.gpu, DType::f32, {tokens, columns});
    kernels::WeightStreamingParams first;
    first.weight = gpu_first.view;
    first.out = gpu_middle.view;
    first.plan = chain.first;
    kernels::WeightStreamingParams second;
    second.in = gpu_middle.view;
    second.weight = gpu_second.view;
    second.out = gpu_out.view;
    second.plan = chain.second;
    constexpr int rounds = 10;  // even: the last round reads in_b
    for (int round = 0; round < rounds; ++round) {
      first.in = round % 2 == 0 ? gpu_in_a.view : gpu_in_b.view;
      kernels::launch_matmul_weight_streaming(first, stream);
      kernels::launch_matmul_weight_streaming(second, stream);
    }
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    const std::string what = "chained " + chain.name;

    auto cpu_in = make_tensor(*backends.cpu, DType::f32, {tokens, inner}, in_b);
    auto cpu_first = make_tensor(*backends.cpu, DType::bf16, {middle, inner}, first_weight);
    auto cpu_middle = make_output(*backends.cpu, DType::f32, {tokens, middle});
    backends.cpu->matmul(cpu_middle.view, cpu_in.view, cpu_first.view, nullptr);
    const std::vector<float> middle_values = read_values(*backends.gpu, gpu_middle.view);
    expect_close(middle_values, rounded_to(read_values(*backends.cpu, cpu_middle.view), DType::bf16), 4e-3,
                 what + ": y of the last round");
    // z against y as the GPU left it, so that the bound measures the second product alone.
    auto cpu_from_gpu = make_tensor(*backends.cpu, DType::f32, {tokens, middle}, middle_values);
    auto cpu_second = make_tensor(*backends.cpu, DType::bf16, {columns, middle}, second_weight);
    auto cpu_out = make_output(*backends.cpu, DType::f32, {tokens, columns});
    backends.cpu->matmul(cpu_out.view, cpu_from_gpu.view, cpu_second.view, nullptr);
    expect_close(read_values(*backends.gpu, gpu_out.view), read_values(*backends.cpu, cpu_out.view), 1e-3,
                 what + ": z of the last round");
    expect_guard_intact(*backends.gpu, gpu_middle, what + " y");
    expect_guard_intact(*backends.gpu, gpu_out, what + " z");
  }
  ASSERT_EQ(cudaStreamDestroy(stream), cudaSuccess);
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
