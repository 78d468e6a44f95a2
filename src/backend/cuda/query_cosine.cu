#include "backend/cuda/query_cosine.h"

#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int cosine_threads = 256;

__device__ float warp_sum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

template <class T>
struct PreviousRows {
  T* rows[query_cosine_max_batch];
};

// Block b: warp w takes heads w, w + warps, ...; each head's dot product and norms use the same
// reduction, so identical rows give dot == |a|^2 == |b|^2 and a cosine of exactly 1 (sqrt of a
// correctly rounded square is the value itself), which tau = 1 relies on. T is the activation
// type (bf16 or f32).
template <class T>
__global__ void __launch_bounds__(cosine_threads)
    query_cosine_kernel(float* similarity, const T* q, PreviousRows<T> previous, int heads, int dim) {
  extern __shared__ float cosines[];  // [heads]
  const int b = blockIdx.x, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const T* current = q + int64_t(b) * heads * dim;
  T* stored = previous.rows[b];
  for (int head = warp; head < heads; head += cosine_threads / 32) {
    float dot = 0.0f, norm_current = 0.0f, norm_previous = 0.0f;
    for (int i = lane; i < dim; i += 32) {
      float a = to_float(current[head * dim + i]);
      float p = to_float(stored[head * dim + i]);
      dot += a * p;
      norm_current += a * a;
      norm_previous += p * p;
    }
    dot = warp_sum(dot);
    norm_current = warp_sum(norm_current);
    norm_previous = warp_sum(norm_previous);
    if (lane == 0) {
      float cosine;
      if (norm_current == 0.0f || norm_previous == 0.0f) {
        // A zero row has no direction (as on the CPU).
        cosine = norm_current == 0.0f && norm_previous == 0.0f ? 1.0f : 0.0f;
      } else {
        cosine = fminf(fmaxf(dot / sqrtf(norm_current * norm_previous), -1.0f), 1.0f);
      }
      cosines[head] = cosine;
    }
  }
  __syncthreads();  // every head has read `stored` before it is overwritten
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int head = 0; head < heads; ++head) total += cosines[head];
    similarity[b] = total / float(heads);
  }
  for (int i = threadIdx.x; i < heads * dim; i += cosine_threads) stored[i] = current[i];
}

template <class T>
void launch_for_type(const QueryCosineParams& params, cudaStream_t stream) {
  PreviousRows<T> previous{};
  for (int b = 0; b < params.batch; ++b) previous.rows[b] = static_cast<T*>(params.previous[b]);
  const int heads = int(params.q.dim(1)), dim = int(params.q.dim(2));
  query_cosine_kernel<<<params.batch, cosine_threads, size_t(heads) * sizeof(float), stream>>>(
      params.similarity.as<float>(), params.q.as<const T>(), previous, heads, dim);
  LOUISKV_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_query_cosine(const QueryCosineParams& params, cudaStream_t stream) {
  const char* op = "query_cosine";
  require_on_device(params.q, op, "q");
  LOUISKV_REQUIRE(params.q.dtype == DType::bf16 || params.q.dtype == DType::f32, op,
                  "q (" + params.q.describe() + ") must be bf16 or f32");
  require_rank(params.q, 3, op, "q");
  require_device_accessible(params.similarity, op, "similarity");
  require_dtype(params.similarity, DType::f32, op, "similarity");
  LOUISKV_REQUIRE(params.batch > 0 && params.batch <= query_cosine_max_batch && params.q.dim(0) == params.batch &&
                      params.similarity.numel() == params.batch,
                  op, "q [B, Hq, D], similarity [B] and the previous rows disagree on B (" +
                          std::to_string(params.batch) + ", at most " + std::to_string(query_cosine_max_batch) +
                          " per launch)");
  for (int b = 0; b < params.batch; ++b) {
    LOUISKV_REQUIRE(params.previous[b] != nullptr, op, "previous row " + std::to_string(b) + " is null");
  }
  if (params.q.dtype == DType::f32) {
    launch_for_type<float>(params, stream);
  } else {
    launch_for_type<__nv_bfloat16>(params, stream);
  }
}

}  // namespace louiskv::kernels
