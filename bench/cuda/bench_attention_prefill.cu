// Causal flash prefill attention on long prompts: achieved TFLOP/s against a bf16 GEMM through
// cuBLAS measured in the same run (target: at least 40% at 32K tokens, Llama-3.1-8B heads).
// FLOPs count the causal half only: 4 * D * Hq * T(T+1)/2 for the prompt from position 0
// (Q K^T and P V, two FLOPs per multiply-add). Then the f32 kernel of the backend's precision
// mode (fp32 cores), on the bundled model's 8K-token prompt in the decoder's chunks of 256.
#include <cmath>
#include <cstdio>
#include <string>

#include "backend/cuda/attention_prefill.h"
#include "backend/cuda/attention_prefill_f32.h"
#include "backend/cuda/convert.h"
#include "backend/cuda/cuda_backend.h"
#include "bench_support.cuh"

namespace louiskv::bench {
namespace {

struct PrefillShape {
  int64_t tokens, query_heads, kv_heads, head_dim;
  int warps;             // per block
  int lookahead;         // the next tile's scores before this tile's softmax (1) or after (0)
  int queries_per_warp;  // 16, or 32 (D = 64, no lookahead)
};

double run(const PrefillShape& s, cudaStream_t stream) {
  const size_t q_elements = size_t(s.tokens * s.query_heads * s.head_dim);
  const size_t kv_elements = size_t(s.kv_heads * s.tokens * s.head_dim);
  DeviceMemory q(q_elements * 2), out(q_elements * 2), k(kv_elements * 2), v(kv_elements * 2);
  fill_uniform_bf16(q.data, q_elements, 21, -2.0f, 2.0f, stream);
  fill_uniform_bf16(k.data, kv_elements, 22, -2.0f, 2.0f, stream);
  fill_uniform_bf16(v.data, kv_elements, 23, -1.0f, 1.0f, stream);
  kernels::PrefillAttentionParams params;
  params.out = TensorView(out.data, DType::bf16, Device::cuda, {s.tokens, s.query_heads, s.head_dim});
  params.q = TensorView(q.data, DType::bf16, Device::cuda, {s.tokens, s.query_heads, s.head_dim});
  params.k = TensorView(k.data, DType::bf16, Device::cuda, {s.kv_heads, s.tokens, s.head_dim});
  params.v = TensorView(v.data, DType::bf16, Device::cuda, {s.kv_heads, s.tokens, s.head_dim});
  params.first_position = 0;
  params.scale = 1.0f / std::sqrt(float(s.head_dim));
  params.warps = s.warps;
  params.score_lookahead = s.lookahead;
  params.queries_per_warp = s.queries_per_warp;
  const int runs = s.tokens >= 16384 ? 5 : 20;
  double ms = median_ms(stream, 2, runs, [&](int) { kernels::launch_attention_prefill(params, stream); });
  double flops = 4.0 * double(s.head_dim) * double(s.query_heads) * double(s.tokens) * double(s.tokens + 1) / 2.0;
  double tflops = flops / (ms * 1e-3) / 1e12;
  std::printf("  T=%-6lld heads %lld/%lld D=%-3lld %d warps lookahead %d queries/warp %d  %9.2f ms  %7.1f TFLOP/s\n",
              (long long)s.tokens, (long long)s.query_heads, (long long)s.kv_heads, (long long)s.head_dim, s.warps,
              s.lookahead, s.queries_per_warp, ms, tflops);
  return tflops;
}

// The f32 kernel over a prompt of `tokens` from position 0, in calls of `chunk` tokens each
// attending everything before it (as Decoder::prefill runs it); returns the ms of all the calls.
double run_f32(int64_t tokens, int64_t query_heads, int64_t kv_heads, int64_t head_dim, int64_t chunk,
               cudaStream_t stream) {
  const int64_t q_elements = tokens * query_heads * head_dim;
  const int64_t kv_elements = kv_heads * tokens * head_dim;
  DeviceMemory staging(size_t(q_elements > kv_elements ? q_elements : kv_elements) * 2);
  DeviceMemory q(size_t(q_elements) * 4), out(size_t(q_elements) * 4), k(size_t(kv_elements) * 4),
      v(size_t(kv_elements) * 4);
  auto fill_f32 = [&](void* to, int64_t count, uint64_t seed, float low, float high) {
    fill_uniform_bf16(staging.data, size_t(count), seed, low, high, stream);
    kernels::launch_convert({TensorView(to, DType::f32, Device::cuda, {count}),
                             TensorView(staging.data, DType::bf16, Device::cuda, {count})},
                            stream);
  };
  fill_f32(q.data, q_elements, 21, -2.0f, 2.0f);
  fill_f32(k.data, kv_elements, 22, -2.0f, 2.0f);
  fill_f32(v.data, kv_elements, 23, -1.0f, 1.0f);
  kernels::PrefillAttentionF32Params params;
  params.k = TensorView(k.data, DType::f32, Device::cuda, {kv_heads, tokens, head_dim});
  params.v = TensorView(v.data, DType::f32, Device::cuda, {kv_heads, tokens, head_dim});
  params.scale = 1.0f / std::sqrt(float(head_dim));
  const int64_t row = query_heads * head_dim;
  double ms = median_ms(stream, 1, 5, [&](int) {
    for (int64_t first = 0; first < tokens; first += chunk) {
      const int64_t rows = tokens - first < chunk ? tokens - first : chunk;
      params.q = TensorView(static_cast<float*>(q.data) + first * row, DType::f32, Device::cuda,
                            {rows, query_heads, head_dim});
      params.out = TensorView(static_cast<float*>(out.data) + first * row, DType::f32, Device::cuda,
                              {rows, query_heads, head_dim});
      params.first_position = first;
      kernels::launch_attention_prefill_f32(params, stream);
    }
  });
  double flops = 4.0 * double(head_dim) * double(query_heads) * double(tokens) * double(tokens + 1) / 2.0;
  std::printf("  f32 T=%-6lld heads %lld/%lld D=%-3lld chunks of %-5lld %9.2f ms  %7.1f TFLOP/s\n", (long long)tokens,
              (long long)query_heads, (long long)kv_heads, (long long)head_dim, (long long)chunk, ms,
              flops / (ms * 1e-3) / 1e12);
  return ms;
}

}  // namespace
}  // namespace louiskv::bench

int main() {
  using namespace louiskv::bench;
  if (!louiskv::cuda_device_available()) {
    std::printf("bench_attention_prefill: no CUDA device, nothing measured\n");
    return 0;
  }
  print_device();
  LOUISKV_CUDA_CHECK(cudaSetDevice(0));
  cudaStream_t stream;
  LOUISKV_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const double gemm_tflops = measure_gemm_ceiling_tflops(stream);
  std::printf("ceiling: cuBLAS bf16 GEMM 8192^3 %.1f TFLOP/s\n", gemm_tflops);
  std::printf("flash prefill attention (causal, from position 0):\n");
  double best_128 = 0.0, best_64 = 0.0;
  std::string best_128_shape, best_64_shape;
  auto shape_name = [](int warps, int lookahead, int queries_per_warp) {
    return std::to_string(warps) + "w la" + std::to_string(lookahead) + " q" + std::to_string(queries_per_warp);
  };
  for (int lookahead : {0, 1}) {
    for (int warps : {4, 8}) {
      run({4096, 32, 8, 128, warps, lookahead, 16}, stream);
      run({8192, 32, 8, 128, warps, lookahead, 16}, stream);
      run({8192, 32, 8, 64, warps, lookahead, 16}, stream);
      double d128 = run({32768, 32, 8, 128, warps, lookahead, 16}, stream);
      double d64 = run({32768, 32, 8, 64, warps, lookahead, 16}, stream);
      if (d128 > best_128) best_128 = d128, best_128_shape = shape_name(warps, lookahead, 16);
      if (d64 > best_64) best_64 = d64, best_64_shape = shape_name(warps, lookahead, 16);
    }
  }
  for (int warps : {4, 8}) {
    run({4096, 32, 8, 64, warps, 0, 32}, stream);
    run({8192, 32, 8, 64, warps, 0, 32}, stream);
    double d64 = run({32768, 32, 8, 64, warps, 0, 32}, stream);
    if (d64 > best_64) best_64 = d64, best_64_shape = shape_name(warps, 0, 32);
  }
  // The defaults, as the backend runs them.
  double default_128 = run({32768, 32, 8, 128, 0, -1, 0}, stream);
  double default_64 = run({32768, 32, 8, 64, 0, -1, 0}, stream);
  std::printf("f32 prefill attention (the precision mode, fp32 cores):\n");
  // The bundled model: 8 layers, heads 6/2, D = 64.
  const double tiny_layer_ms = run_f32(8192, 6, 2, 64, 256, stream);
  std::printf("  the bundled model's 8192-token prompt, attention of its 8 layers: %.1f ms\n", 8.0 * tiny_layer_ms);
  run_f32(8192, 6, 2, 64, 8192, stream);
  run_f32(8192, 32, 8, 128, 8192, stream);
  std::printf("ceiling again after the runs: %.1f TFLOP/s\n", measure_gemm_ceiling_tflops(stream));
  print_summary("prefill attn T=32768 D=128 32/8 default", default_128, "TFLOP/s", gemm_tflops, 40);
  print_summary("prefill attn T=32768 D=64 32/8 default", default_64, "TFLOP/s", gemm_tflops, 40);
  print_summary("prefill attn T=32768 D=128 best: " + best_128_shape, best_128, "TFLOP/s", gemm_tflops, 40);
  print_summary("prefill attn T=32768 D=64 best: " + best_64_shape, best_64, "TFLOP/s", gemm_tflops, 40);
  LOUISKV_CUDA_CHECK(cudaStreamDestroy(stream));
  return 0;
}
