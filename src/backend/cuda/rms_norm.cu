#include "backend/cuda/rms_norm.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int threads_per_block = 256;

// Sum over the `threads_per_row` consecutive threads that share a row. Rows of a warp or less
// reduce by shuffles alone; a whole-block row goes through shared memory once.
template <int threads_per_row>
__device__ float row_sum(float value) {
#pragma unroll
  for (int offset = (threads_per_row < 32 ? threads_per_row : 32) / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  if constexpr (threads_per_row > 32) {
    constexpr int warps = threads_per_row / 32;
    __shared__ float partial[warps];
    int warp = threadIdx.x / 32;
    if (threadIdx.x % 32 == 0) partial[warp] = value;
    __syncthreads();
    value = 0.0f;
#pragma unroll
    for (int w = 0; w < warps; ++w) value += partial[w];
  }
  return value;
}

// Each row is read twice (sum of squares, then scale); the second read hits L1/L2.
template <int threads_per_row, class T, class Weight>
__global__ void rms_norm_kernel(T* out, const T* in, const Weight* weight, int64_t rows,
                                int64_t hidden, float eps) {
  constexpr int rows_per_block = threads_per_block / threads_per_row;
  int64_t row = int64_t(blockIdx.x) * rows_per_block + threadIdx.x / threads_per_row;
  int lane = threadIdx.x % threads_per_row;
  bool active = row < rows;
  const T* x = in + (active ? row : 0) * hidden;
  float squares = 0.0f;
  if (active) {
    for (int64_t i = lane; i < hidden; i += threads_per_row) {
      float v = to_float(x[i]);
      squares += v * v;
    }
  }
  float inverse_rms = rsqrtf(row_sum<threads_per_row>(squares) / float(hidden) + eps);
  if (!active) return;
  T* y = out + row * hidden;
  for (int64_t i = lane; i < hidden; i += threads_per_row) {
    y[i] = from_float<T>(to_float(x[i]) * inverse_rms * to_float(weight[i]));
  }
}

// bf16 rows whose width is a multiple of 8: 16-byte accesses.
template <int threads_per_row, class Weight>
__global__ void rms_norm_bf16x8_kernel(uint4* out, const uint4* in, const Weight* weight,
                                       int64_t rows, int64_t hidden, float eps) {
  constexpr int rows_per_block = threads_per_block / threads_per_row;
  int64_t row = int64_t(blockIdx.x) * rows_per_block + threadIdx.x / threads_per_row;
  int lane = threadIdx.x % threads_per_row;
  bool active = row < rows;
  int64_t vectors = hidden / 8;
  const uint4* x = in + (active ? row : 0) * vectors;
  float squares = 0.0f;
  if (active) {
    for (int64_t i = lane; i < vectors; i += threads_per_row) {
      float v[8];
      unpack_bf16x8(x[i], v);
#pragma unroll
      for (int e = 0; e < 8; ++e) squares += v[e] * v[e];
    }
  }
  float inverse_rms = rsqrtf(row_sum<threads_per_row>(squares) / float(hidden) + eps);
  if (!active) return;
  uint4* y = out + row * vectors;
  for (int64_t i = lane; i < vectors; i += threads_per_row) {
    float v[8];
    unpack_bf16x8(x[i], v);
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = v[e] * inverse_rms * to_float(weight[i * 8 + e]);
    y[i] = pack_bf16x8(v);
  }
}

template <int threads_per_row, class Weight>
void launch_with(const RmsNormParams& params, const Weight* weight, int64_t rows, int64_t hidden,
                 cudaStream_t stream) {
  constexpr int rows_per_block = threads_per_block / threads_per_row;
  unsigned blocks = unsigned((rows + rows_per_block - 1) / rows_per_block);
  if (params.out.dtype == DType::bf16 &&
      vector_friendly(hidden, {params.out.data, params.in.data})) {
    rms_norm_bf16x8_kernel<threads_per_row><<<blocks, threads_per_block, 0, stream>>>(
        params.out.as<uint4>(), params.in.as<const uint4>(), weight, rows, hidden, params.eps);
  } else if (params.out.dtype == DType::bf16) {
    rms_norm_kernel<threads_per_row><<<blocks, threads_per_block, 0, stream>>>(
        params.out.as<__nv_bfloat16>(), params.in.as<const __nv_bfloat16>(), weight, rows, hidden,
        params.eps);
  } else {
    rms_norm_kernel<threads_per_row><<<blocks, threads_per_block, 0, stream>>>(
        params.out.as<float>(), params.in.as<const float>(), weight, rows, hidden, params.eps);
  }
}

template <class Weight>
void launch_for_weight(const RmsNormParams& params, const Weight* weight, int64_t rows,
                       int64_t hidden, cudaStream_t stream) {
  // A warp per row for narrow rows (per-head norms: many rows of 64..256), a whole block for the
  // model width, so that one decode token still spreads over 256 threads.
  if (hidden <= 1024) {
    launch_with<32>(params, weight, rows, hidden, stream);
  } else {
    launch_with<threads_per_block>(params, weight, rows, hidden, stream);
  }
}

}  // namespace

void launch_rms_norm(const RmsNormParams& params, cudaStream_t stream) {
  const char* op = "rms_norm";
  require_on_device(params.out, op, "out");
  require_on_device(params.in, op, "in");
  require_device_accessible(params.weight, op, "weight");
  LOUISKV_REQUIRE(params.in.dtype == DType::bf16 || params.in.dtype == DType::f32, op,
          "in (" + params.in.describe() + ") must be bf16 or f32");
  require_dtype(params.out, params.in.dtype, op, "out");
  require_floating(params.weight, op, "weight");
  int64_t hidden = params.weight.numel();
  LOUISKV_REQUIRE(params.in.rank >= 1 && params.in.dim(-1) == hidden && params.out.numel() == params.in.numel(),
          op, "in (" + params.in.describe() + ") and out (" + params.out.describe() +
                  ") must be rows of the weight's width (" + params.weight.describe() + ")");
  LOUISKV_REQUIRE(params.eps >= 0.0f, op, "eps must not be negative");
  int64_t rows = hidden == 0 ? 0 : params.in.numel() / hidden;
  if (rows == 0 || hidden == 0) return;
  require_grid_dimension(rows, 2147483647, op, "the row count");
  switch (params.weight.dtype) {
    case DType::f32: launch_for_weight(params, params.weight.as<const float>(), rows, hidden, stream); break;
    case DType::f16: launch_for_weight(params, params.weight.as<const __half>(), rows, hidden, stream); break;
    case DType::bf16:
      launch_for_weight(params, params.weight.as<const __nv_bfloat16>(), rows, hidden, stream);
      break;
    case DType::i32: break;  // rejected by the checks
  }
  LOUISKV_CUDA_CHECK_LAUNCH();
}

}  // namespace louiskv::kernels
