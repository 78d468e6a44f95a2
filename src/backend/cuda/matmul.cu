#include "backend/cuda/matmul.h"

#include <vector>

#include "backend/cuda/matmul_weight_streaming.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int threads_per_block = 256;

// Fills each row of out with the bias, so that the GEMM can add its product with beta = 1: the
// bias then enters the fp32 epilogue and the result is rounded once.
template <class Out, class Bias>
__global__ void broadcast_bias_kernel(Out* out, const Bias* bias, int64_t rows, int64_t columns) {
  int64_t total = rows * columns;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t index = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; index < total;
       index += stride) {
    out[index] = from_float<Out>(to_float(bias[index % columns]));
  }
}

template <class Out>
void broadcast_bias(const MatmulParams& params, Out* out, int64_t rows, int64_t columns,
                    cudaStream_t stream) {
  int64_t wanted = (rows * columns + threads_per_block - 1) / threads_per_block;
  unsigned blocks = unsigned(wanted > 65536 ? 65536 : wanted);
  switch (params.bias.dtype) {
    case DType::f32:
      broadcast_bias_kernel<<<blocks, threads_per_block, 0, stream>>>(
          out, params.bias.as<const float>(), rows, columns);
      break;
    case DType::f16:
      broadcast_bias_kernel<<<blocks, threads_per_block, 0, stream>>>(
          out, params.bias.as<const __half>(), rows, columns);
      break;
    case DType::bf16:
      broadcast_bias_kernel<<<blocks, threads_per_block, 0, stream>>>(
          out, params.bias.as<const __nv_bfloat16>(), rows, columns);
      break;
    case DType::i32: break;  // rejected by the checks
  }
  LOUISKV_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool matmul_prefers_weight_streaming(const TensorView& in, const TensorView& weight) {
  // The plan table in matmul_weight_streaming.cu decides, from bench_decode_gemm's figures.
  if (!weight_streaming_applies(in, weight)) return false;
  const int64_t inner = weight.dim(1);
  return weight_streaming_preferred(in.numel() / inner, inner, weight.dim(0));
}

namespace {

struct MatmulShape {
  int64_t tokens = 0, inner = 0, columns = 0;
};

// Checks one product's views (not more_parts) and returns its shape.
MatmulShape check_matmul(const MatmulParams& params) {
  const char* op = "matmul";
  require_on_device(params.out, op, "out");
  require_on_device(params.in, op, "in");
  require_on_device(params.weight, op, "weight");
  LOUISKV_REQUIRE(params.in.rank >= 1, op, "in (" + params.in.describe() + ") has no dims");
  require_rank(params.weight, 2, op, "weight");
  // f32 in (the backend's precision mode) takes f32 weights and gives f32 out, through cuBLAS.
  const bool f32 = params.in.dtype == DType::f32;
  if (f32) {
    LOUISKV_REQUIRE(params.weight.dtype == DType::f32, op,
            "weight (" + params.weight.describe() +
                ") must be f32 for f32 in: pass weights through prepare_weight() of a backend with f32 "
                "activations, which converts them");
    require_dtype(params.out, DType::f32, op, "out");
  } else {
    require_dtype(params.in, DType::bf16, op, "in");
    LOUISKV_REQUIRE(params.weight.dtype == DType::bf16, op,
            "weight (" + params.weight.describe() +
                ") must be bf16: pass weights through prepare_weight(), which converts them");
    LOUISKV_REQUIRE(params.out.dtype == DType::bf16 || params.out.dtype == DType::f32, op,
            "out (" + params.out.describe() + ") must be bf16 or f32");
  }
  int64_t inner = params.in.dim(-1);
  int64_t tokens = inner == 0 ? 0 : params.in.numel() / inner;
  int64_t columns = params.weight.dim(0);
  LOUISKV_REQUIRE(params.weight.dim(1) == inner, op,
          "in (" + params.in.describe() + ") and weight (" + params.weight.describe() +
              ") disagree on the inner dimension");
  LOUISKV_REQUIRE(params.out.numel() == tokens * columns && params.out.dim(-1) == columns, op,
          "out (" + params.out.describe() + ") must hold " + std::to_string(tokens) + " rows of " +
              std::to_string(columns));
  bool has_bias = !params.bias.empty();
  if (has_bias) {
    require_on_device(params.bias, op, "bias");
    require_floating(params.bias, op, "bias");
    LOUISKV_REQUIRE(params.bias.numel() == columns, op,
            "bias (" + params.bias.describe() + ") must hold one value per output column");
  }
  constexpr int64_t int_limit = 2147483647;
  LOUISKV_REQUIRE(tokens <= int_limit && inner <= int_limit && columns <= int_limit, op,
          "dimensions above 2^31 - 1 are not supported by cuBLAS");
  return {tokens, inner, columns};
}

// One product: out, in, weight, bias of params (more_parts ignored).
void launch_one_matmul(const MatmulParams& params, cublasHandle_t cublas, cudaStream_t stream) {
  const char* op = "matmul";
  const auto [tokens, inner, columns] = check_matmul(params);
  const bool has_bias = !params.bias.empty();
  const bool f32 = params.in.dtype == DType::f32;
  if (tokens == 0 || columns == 0) return;

  const bool streaming_applies = params.multiprocessors > 0 && weight_streaming_applies(params.in, params.weight);
  LOUISKV_REQUIRE(streaming_applies || params.path != MatmulPath::weight_streaming, op,
                  "the weight-streaming kernel cannot run in (" + params.in.describe() + ") x weight (" +
                      params.weight.describe() + ")");
  const bool streaming =
      streaming_applies && (params.path == MatmulPath::weight_streaming ||
                            (params.path == MatmulPath::automatic &&
                             matmul_prefers_weight_streaming(params.in, params.weight)));
  if (streaming) {
    WeightStreamingParams streaming_params;
    streaming_params.out = params.out;
    streaming_params.in = params.in;
    streaming_params.weight = params.weight;
    streaming_params.bias = params.bias;
    streaming_params.plan = plan_weight_streaming(tokens, inner, columns, params.multiprocessors);
    launch_matmul_weight_streaming(streaming_params, stream);
    return;
  }

  if (has_bias) {
    if (params.out.dtype == DType::bf16) {
      broadcast_bias(params, params.out.as<__nv_bfloat16>(), tokens, columns, stream);
    } else {
      broadcast_bias(params, params.out.as<float>(), tokens, columns, stream);
    }
  }
  LOUISKV_CUBLAS_CHECK(cublasSetStream(cublas, stream));
  // cuBLAS is column-major: out^T [N, T] = weight [N, K] (stored as K x N, hence OP_T)
  // times in^T [K, T] (stored as K x T).
  float alpha = 1.0f;
  float beta = has_bias ? 1.0f : 0.0f;
  cudaDataType_t out_type = params.out.dtype == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
  // f32 operands with CUBLAS_COMPUTE_32F under the handle's default math mode are a true fp32
  // GEMM: cuBLAS uses TF32 only when asked (CUBLAS_COMPUTE_32F_FAST_TF32 or the TF32 math mode),
  // which the precision mode must not do.
  cudaDataType_t operand_type = f32 ? CUDA_R_32F : CUDA_R_16BF;
  LOUISKV_CUBLAS_CHECK(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(columns), int(tokens),
                                    int(inner), &alpha, params.weight.data, operand_type, int(inner),
                                    params.in.data, operand_type, int(inner), &beta, params.out.data,
                                    out_type, int(columns), CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
}


}  // namespace

void launch_matmul(const MatmulParams& params, cublasHandle_t cublas, cudaStream_t stream) {
  if (params.more_parts.empty()) {
    launch_one_matmul(params, cublas, stream);
    return;
  }
  std::vector<WeightStreamingPart> parts{{params.out, params.weight, params.bias}};
  parts.insert(parts.end(), params.more_parts.begin(), params.more_parts.end());
  auto part_params = [&](const WeightStreamingPart& part) {
    MatmulParams one = params;
    one.out = part.out;
    one.weight = part.weight;
    one.bias = part.bias;
    one.more_parts = {};
    return one;
  };
  int64_t tokens = 0, inner = 0, columns = 0;
  for (const WeightStreamingPart& part : parts) {
    const MatmulShape shape = check_matmul(part_params(part));
    tokens = shape.tokens;
    inner = shape.inner;
    columns += shape.columns;
  }
  if (params.path != MatmulPath::cublas && params.multiprocessors > 0 && tokens > 0 &&
      weight_streaming_parts_apply(params.in, parts) &&
      (params.path == MatmulPath::weight_streaming || weight_streaming_preferred(tokens, inner, columns))) {
    WeightStreamingParams streaming;
    streaming.out = params.out;
    streaming.in = params.in;
    streaming.weight = params.weight;
    streaming.bias = params.bias;
    streaming.more_parts = params.more_parts;
    streaming.plan = plan_weight_streaming(tokens, inner, columns, params.multiprocessors);
    // Parts share a launch of the pipelined kernel only; a register plan runs them one by one.
    if (streaming.plan.kernel == WeightStreamingKernel::pipelined) {
      launch_matmul_weight_streaming(streaming, stream);
      return;
    }
  }
  for (const WeightStreamingPart& part : parts) launch_one_matmul(part_params(part), cublas, stream);
}

}  // namespace louiskv::kernels
