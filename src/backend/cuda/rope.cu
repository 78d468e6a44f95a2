#include "backend/cuda/rope.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int threads_per_block = 256;

// One thread per (token, head, pair). The angle is formed in fp32 as position * inv_freq, as
// the reference implementations do, and sincosf (not the fast intrinsic) keeps it accurate for
// the large angles of long contexts.
template <class T>
__global__ void rope_kernel(T* x, const int32_t* positions, const float* inv_freq, int64_t tokens,
                            int64_t heads, int64_t half_dim) {
  int64_t pairs = tokens * heads * half_dim;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t index = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; index < pairs;
       index += stride) {
    int64_t i = index % half_dim;
    int64_t row = index / half_dim;  // token * heads + head
    int64_t token = row / heads;
    float angle = float(positions[token]) * inv_freq[i];
    float sine, cosine;
    sincosf(angle, &sine, &cosine);
    T* head = x + row * 2 * half_dim;
    float first = to_float(head[i]);
    float second = to_float(head[i + half_dim]);
    head[i] = from_float<T>(first * cosine - second * sine);
    head[i + half_dim] = from_float<T>(second * cosine + first * sine);
  }
}

}  // namespace

void launch_rope(const RopeParams& params, cudaStream_t stream) {
  const char* op = "rope";
  require_on_device(params.x, op, "x");
  require_on_device(params.positions, op, "positions");
  require_on_device(params.inv_freq, op, "inv_freq");
  require_rank(params.x, 3, op, "x");
  LOUISKV_REQUIRE(params.x.dtype == DType::bf16 || params.x.dtype == DType::f32, op,
          "x (" + params.x.describe() + ") must be bf16 or f32");
  int64_t tokens = params.x.dim(0);
  int64_t heads = params.x.dim(1);
  int64_t head_dim = params.x.dim(2);
  LOUISKV_REQUIRE(head_dim % 2 == 0, op, "x (" + params.x.describe() + ") must have an even head dim");
  require_dtype(params.positions, DType::i32, op, "positions");
  LOUISKV_REQUIRE(params.positions.numel() == tokens, op,
          "positions (" + params.positions.describe() + ") must hold one position per token of x");
  require_dtype(params.inv_freq, DType::f32, op, "inv_freq");
  LOUISKV_REQUIRE(params.inv_freq.numel() == head_dim / 2, op,
          "inv_freq (" + params.inv_freq.describe() + ") must hold head dim / 2 values");
  int64_t pairs = tokens * heads * (head_dim / 2);
  if (pairs == 0) return;
  int64_t wanted = (pairs + threads_per_block - 1) / threads_per_block;
  unsigned blocks = unsigned(wanted > 65536 ? 65536 : wanted);
  if (params.x.dtype == DType::bf16) {
    rope_kernel<<<blocks, threads_per_block, 0, stream>>>(
        params.x.as<__nv_bfloat16>(), params.positions.as<const int32_t>(),
        params.inv_freq.as<const float>(), tokens, heads, head_dim / 2);
  } else {
    rope_kernel<<<blocks, threads_per_block, 0, stream>>>(
        params.x.as<float>(), params.positions.as<const int32_t>(),
        params.inv_freq.as<const float>(), tokens, heads, head_dim / 2);
  }
  LOUISKV_CUDA_CHECK_LAUNCH();
}

}  // namespace louiskv::kernels
