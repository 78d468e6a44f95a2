#include "backend/cuda/unit_summary.h"

#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int summary_threads = 128;
constexpr int summary_warps = summary_threads / 32;

// One unit per block. Channels are spread over the threads for the mean and the box; for the
// radius each warp takes whole keys (lanes over channels) and the block keeps the largest
// squared distance. Key is the KV element type (bf16 or f32).
template <class Key>
__global__ void __launch_bounds__(summary_threads) unit_summary_kernel(const UnitSummaryJob* jobs, int dim) {
  extern __shared__ float mean[];  // [dim]
  __shared__ float farthest[summary_warps];
  const UnitSummaryJob job = jobs[blockIdx.x];
  const auto* keys = static_cast<const Key*>(job.keys);
  const int length = job.length;
  for (int i = threadIdx.x; i < dim; i += summary_threads) {
    float sum = 0.0f, lower = INFINITY, upper = -INFINITY;
    for (int t = 0; t < length; ++t) {
      float value = to_float(keys[int64_t(t) * dim + i]);
      sum += value;
      lower = fminf(lower, value);
      upper = fmaxf(upper, value);
    }
    mean[i] = sum / float(length);
    if (job.mean) job.mean[i] = mean[i];
    if (job.lower) job.lower[i] = lower;
    if (job.upper) job.upper[i] = upper;
  }
  if (threadIdx.x == 0 && job.length_out) *job.length_out = length;
  if (!job.radius) return;
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float largest = 0.0f;
  for (int t = warp; t < length; t += summary_warps) {
    float squared = 0.0f;
    for (int i = lane; i < dim; i += 32) {
      float difference = to_float(keys[int64_t(t) * dim + i]) - mean[i];
      squared += difference * difference;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) squared += __shfl_xor_sync(0xffffffffu, squared, offset);
    largest = fmaxf(largest, squared);
  }
  if (lane == 0) farthest[warp] = largest;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < summary_warps; ++w) largest = fmaxf(largest, farthest[w]);
    largest = fmaxf(largest, farthest[0]);
    // Rounded up, so that rounding never leaves a key outside the ball (as on the CPU).
    *job.radius = nextafterf(sqrtf(largest), INFINITY);
  }
}

}  // namespace

void launch_unit_summary(const UnitSummaryParams& params, cudaStream_t stream) {
  if (params.job_count == 0) return;
  LOUISKV_REQUIRE(params.jobs != nullptr && params.head_dim > 0, "summarize_units", "no job table or head_dim");
  require_grid_dimension(params.job_count, int64_t(1) << 31, "summarize_units", "one block per unit");
  LOUISKV_REQUIRE(params.kv_dtype == DType::bf16 || params.kv_dtype == DType::f32, "summarize_units",
                  "keys must be bf16 or f32, not " + std::string(dtype_name(params.kv_dtype)));
  const size_t shared = size_t(params.head_dim) * sizeof(float);
  if (params.kv_dtype == DType::f32) {
    unit_summary_kernel<float><<<unsigned(params.job_count), summary_threads, shared, stream>>>(params.jobs,
                                                                                               int(params.head_dim));
  } else {
    unit_summary_kernel<__nv_bfloat16><<<unsigned(params.job_count), summary_threads, shared, stream>>>(
        params.jobs, int(params.head_dim));
  }
  LOUISKV_CUDA_CHECK_LAUNCH();
}

}  // namespace louiskv::kernels
