// The merge of a query row's parts, for the decode attention kernels of both precisions
// (attention_decode.cu, attention_decode_f32.cu). Each part left in the workspace its output
// (value rows weighted by 2^(score - its max), not yet divided), its base-2 max and its sum; the
// row's result weights each part by 2^(its max - the overall max) and divides by the weighted sum. A part whose max is -inf attended nothing and is skipped; no
// token at all gives zeros and lse = -inf.
//
// A whole block merges one row: the overall max and the total by block reductions, then
// blockDim / head_dim slices of head_dim threads each add every slice-th part (independent loads,
// several in flight per thread), and the slices' sums are added in slice order, so the result
// has the same bits on every run. The earlier merge, a thread per dim walking every part in turn,
// was bound by one load's latency per part: at batch 1 and 32K tokens (26 parts per row) it took
// 17.7 us a layer on the H200, more than the attention over the layer's 67 MB.
#pragma once

#include <cuda_bf16.h>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/attention_decode_arguments.h"
#include "backend/cuda/element_types.cuh"

namespace louiskv::kernels {

// Threads of the separate merge kernel: a multiple of every head dim (64, 128).
constexpr int merge_threads = 256;

namespace merge_detail {

struct Max {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct Sum {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// One float per thread reduced by `op` over the block (blockDim a multiple of 32, at most 1024),
// in a fixed order; every thread gets the result. `scratch`: 32 floats of shared memory.
template <class Op>
__device__ float block_reduce(float value, float* scratch, Op op) {
  // The butterfly leaves the same bits in every lane (each pair combines the same two values).
  for (int offset = 16; offset > 0; offset /= 2) value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  const int warp = int(threadIdx.x) / 32;
  if (threadIdx.x % 32 == 0) scratch[warp] = value;
  __syncthreads();
  float result = scratch[0];
  for (int w = 1; w < int(blockDim.x) / 32; ++w) result = op(result, scratch[w]);
  __syncthreads();  // the next reduction may overwrite scratch
  return result;
}

}  // namespace merge_detail

// Merges query row `query_row`. Every thread of the block calls it (it synchronises the block);
// blockDim must be a multiple of head_dim and of 32, at most merge_threads.
template <class Element>
__device__ void merge_row(const DecodeKernelArguments<Element>& args, int64_t query_row, int head_dim) {
  __shared__ float reduce_scratch[32];
  __shared__ float slice_values[merge_threads];
  const float* maxima = args.partial_max + query_row * args.parts;
  const float* sums = args.partial_sum + query_row * args.parts;
  float local_max = -INFINITY;
  for (int s = int(threadIdx.x); s < args.parts; s += int(blockDim.x)) local_max = fmaxf(local_max, __ldcg(maxima + s));
  const float overall = merge_detail::block_reduce(local_max, reduce_scratch, merge_detail::Max{});
  float local_total = 0.0f;
  if (overall != -INFINITY) {
    for (int s = int(threadIdx.x); s < args.parts; s += int(blockDim.x)) {
      const float maximum = __ldcg(maxima + s);
      if (maximum != -INFINITY) local_total += exp2f(maximum - overall) * __ldcg(sums + s);
    }
  }
  const float total = merge_detail::block_reduce(local_total, reduce_scratch, merge_detail::Sum{});

  const int slices = int(blockDim.x) / head_dim;
  const int slice = int(threadIdx.x) / head_dim;
  const int d = int(threadIdx.x) % head_dim;
  float value = 0.0f;
  if (overall != -INFINITY) {
    const float* outputs = args.partial_out + query_row * args.parts * head_dim + d;
#pragma unroll 4
    for (int s = slice; s < args.parts; s += slices) {
      const float maximum = __ldcg(maxima + s);
      const float output = __ldcg(outputs + int64_t(s) * head_dim);
      // A skipped part's output is never used, whatever the workspace holds there.
      value += maximum == -INFINITY ? 0.0f : exp2f(maximum - overall) * output;
    }
  }
  slice_values[threadIdx.x] = value;
  __syncthreads();
  if (int(threadIdx.x) < head_dim) {
    float sum = 0.0f;
    for (int i = 0; i < slices; ++i) sum += slice_values[i * head_dim + int(threadIdx.x)];
    args.out[query_row * head_dim + threadIdx.x] = from_float<Element>(overall == -INFINITY ? 0.0f : sum / total);
    if (args.lse && threadIdx.x == 0) {
      args.lse[query_row] = overall == -INFINITY ? -INFINITY : (overall + log2f(total)) * 0.6931471805599453f;
    }
  }
  __syncthreads();  // slice_values is the next row's
}

// The merge as a kernel of its own: one block of merge_threads per query row.
template <class Element>
__global__ void __launch_bounds__(merge_threads)
    merge_parts_kernel(const __grid_constant__ DecodeKernelArguments<Element> args, int head_dim) {
  wait_for_previous_grid();
  merge_row(args, blockIdx.x, head_dim);
}

}  // namespace louiskv::kernels
