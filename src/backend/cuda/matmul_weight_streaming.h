// Projections of a few rows (decode: T <= 32 tokens), which are a single pass over the weights.
// Each warp streams 16-row tiles of the weight matrix straight from memory into tensor-core
// fragments (16-byte loads, several steps of them in flight), with the few input rows as the
// other operand, read through the L1 cache or staged in shared memory. K is split across the
// blocks of a thread-block cluster, which add their partial sums through distributed shared
// memory: no workspace, no second kernel, and the same bits on every run.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/tensor.h"

namespace louiskv::kernels {

constexpr int64_t weight_streaming_max_tokens = 32;

// Whether the weight-streaming kernel takes this product: at most 32 rows of input, K a
// multiple of 32, 16-byte aligned operands.
bool weight_streaming_applies(const TensorView& in, const TensorView& weight);

// How a launch overlaps the previous kernel in the stream: not at all; or (programmatic
// dependent launch) its blocks may be scheduled while that kernel drains, prefetch their first
// weights into the L2, wait for it, and then let the next launch be scheduled in turn. On the
// H200 (bench_decode_gemm) it gained 3-6% where the grid has at most two blocks per
// multiprocessor in clusters of up to 4, and lost up to 15% on larger grids or clusters of 8.
enum class WeightStreamingOverlap { none, early };

// How a product is cut: blocks of 64 x `m_tiles` weight rows (output columns), K in `splits`
// slices of `k_per_split` (a multiple of 64), one block of a cluster each; every lane keeps
// `unroll` 64-wide K steps of loads in flight.
struct WeightStreamingPlan {
  int splits = 1;  // 1 to 8 (the portable cluster size)
  int64_t k_per_split = 0;
  int m_tiles = 1;  // 1 or 2
  int unroll = 4;   // 2 or 4
  // The block's slice of the input rows, [T rounded up to 8][k_per_split] bf16, is copied into
  // shared memory once, instead of every warp reading it through the L1 cache.
  bool stage_input = false;
  WeightStreamingOverlap overlap = WeightStreamingOverlap::none;
};
constexpr int weight_streaming_max_splits = 8;
constexpr int64_t weight_streaming_max_staged_bytes = 96 * 1024;
// The plan the automatic path uses for this shape on a GPU of `multiprocessors`.
WeightStreamingPlan plan_weight_streaming(int64_t tokens, int64_t inner, int64_t columns, int multiprocessors);
// A plan with the given block shape and split (benchmarks sweep them); splits is clamped to
// what K allows.
WeightStreamingPlan plan_weight_streaming(int64_t inner, int m_tiles, int unroll, int splits, bool stage_input = false);
// Shared memory a plan stages per block for `tokens` input rows (0 without staging); a plan over
// weight_streaming_max_staged_bytes is rejected.
int64_t weight_streaming_staged_bytes(int64_t tokens, const WeightStreamingPlan& plan);

// in [T, K] bf16, weight [N, K] bf16, out [T, N] bf16 or f32, bias [N] any float or empty; all
// on the device.
struct WeightStreamingParams {
  TensorView out;
  TensorView in;
  TensorView weight;
  TensorView bias;
  WeightStreamingPlan plan;
};
void launch_matmul_weight_streaming(const WeightStreamingParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
