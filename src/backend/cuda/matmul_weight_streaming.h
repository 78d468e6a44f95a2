// Projections of a few rows (decode: T <= 32 tokens), which are a single pass over the weights.
// Two kernels share this interface:
// - registers: each warp streams 16-row tiles of the weight matrix straight from memory into
//   tensor-core fragments (16-byte loads, several steps of them in flight), with the few input
//   rows as the other operand, read through the L1 cache or staged in shared memory. K is split
//   across the blocks of a thread-block cluster, which add their partial sums through distributed
//   shared memory.
// - pipelined: a grid sized to the GPU (multiprocessors x blocks per multiprocessor), each block
//   streaming an equal, contiguous share of the weight rows; every warp keeps a ring of 2 KB
//   weight tiles in shared memory filled by asynchronous copies (up to stages - 1 tiles in flight,
//   no registers held by them), the block's slice of the input is staged in shared memory once,
//   the warps of a block split its K slice and/or its rows and add up in a fixed order, and a
//   cluster splits K only where the input slice would not fit. With overlap, the first weight
//   tiles are fetched before waiting for the previous kernel (weights never depend on it). With
//   `stream_input`, each warp instead copies the input of each of its K steps beside that step's
//   weight tiles, so that its first MMAs wait for one step of input, not the block's slice.
// Both: no workspace, no second kernel, and the same bits on every run.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <span>

#include "backend/tensor.h"

namespace louiskv::kernels {

constexpr int64_t weight_streaming_max_tokens = 32;

// Whether one of the weight-streaming kernels can take this product: at most 32 rows of input, K
// a multiple of 8 (16-byte rows), 16-byte aligned operands. The register kernel also needs K a
// multiple of 32 (weight_streaming_registers_apply).
bool weight_streaming_applies(const TensorView& in, const TensorView& weight);
bool weight_streaming_registers_apply(int64_t inner);

enum class WeightStreamingKernel { registers, pipelined };

// How a launch overlaps the previous kernel in the stream: not at all; or (programmatic
// dependent launch) its blocks may be scheduled while that kernel drains and wait for it before
// reading the input, then let the next launch be scheduled in turn. Before waiting, `early`
// prefetches the first weights into the L2 only; `preload` also loads the register kernel's
// first batch of weights into registers. The pipelined kernel always fetches its first tiles
// into shared memory before waiting, so for it `early` and `preload` are the same. On the H200
// (bench_decode_gemm) `early` gained 3-6% on the register kernel where the grid has at most two
// blocks per multiprocessor in clusters of up to 4, and lost up to 15% on larger grids or
// clusters of 8.
enum class WeightStreamingOverlap { none, early, preload };

// How a product is cut.
struct WeightStreamingPlan {
  WeightStreamingKernel kernel = WeightStreamingKernel::registers;
  // K in `splits` slices of `k_per_split` (a multiple of 64), one block of a cluster each.
  int splits = 1;  // 1 to 8 (the portable cluster size)
  int64_t k_per_split = 0;
  // Register kernel: blocks of 64 x `m_tiles` weight rows (output columns); every lane keeps
  // `unroll` 64-wide K steps of loads in flight.
  int m_tiles = 1;  // 1 or 2
  int unroll = 4;   // 2 or 4
  // Register kernel: the block's slice of the input rows, [T rounded up to 8][k_per_split] bf16,
  // is copied into shared memory once, instead of every warp reading it through the L1 cache.
  bool stage_input = false;
  // Pipelined kernel: 8 warps per block, `k_warps` of them splitting the block's K slice and
  // 8 / k_warps its rows; `row_blocks` blocks along the rows share the 16-row groups of the
  // weight evenly, at most `groups_per_warp` per warp; every warp keeps `stages` tiles in its
  // ring (and with `stream_input` as many steps of input). With `resident_limit` 1 or 2, the
  // block's shared memory is padded so that no more than that many blocks (of any launch of this
  // kernel) fit on a multiprocessor.
  int k_warps = 8;          // 1, 2, 4 or 8
  int stages = 8;           // 4, 8 or 12
  int64_t row_blocks = 0;   // grid y
  int groups_per_warp = 1;  // 1, 2 or 4
  int resident_limit = 0;   // 0 (as many as fit), 1 or 2
  WeightStreamingOverlap overlap = WeightStreamingOverlap::none;
  bool stream_input = false;  // pipelined kernel: see the top of this file
};
constexpr int weight_streaming_max_splits = 8;
constexpr int64_t weight_streaming_max_staged_bytes = 96 * 1024;

// The plan the automatic path uses for this shape on a GPU of `multiprocessors`: the plan
// table's (matmul_weight_streaming.cu) where it assigns the product to a streaming kernel that
// can take it; otherwise a plan that applies, for callers that force the streaming path (the
// register kernel's own block plan where K allows, else the pipelined kernel's default).
WeightStreamingPlan plan_weight_streaming(int64_t tokens, int64_t inner, int64_t columns, int multiprocessors);
// Whether the plan table gives this product to a streaming kernel that can take it (else cuBLAS).
bool weight_streaming_preferred(int64_t tokens, int64_t inner, int64_t columns);
// A register-kernel plan with the given block shape and split (benchmarks sweep them); splits is
// clamped to what K allows.
WeightStreamingPlan plan_weight_streaming(int64_t inner, int m_tiles, int unroll, int splits, bool stage_input = false);
// Shared memory a register-kernel plan stages per block for `tokens` input rows (0 without
// staging); a plan over weight_streaming_max_staged_bytes is rejected.
int64_t weight_streaming_staged_bytes(int64_t tokens, const WeightStreamingPlan& plan);

// The pipelined kernel's choices; the plan follows from them and the shape.
struct WeightStreamingPipelineOptions {
  int k_warps = 8;  // see WeightStreamingPlan
  int stages = 8;
  // The grid: about multiprocessors x this many blocks (more where a warp would need more than
  // four 16-row groups; fewer where there are not enough rows).
  int blocks_per_multiprocessor = 1;  // 1 or 2
  int resident_limit = 0;             // see WeightStreamingPlan
  WeightStreamingOverlap overlap = WeightStreamingOverlap::none;
  bool stream_input = false;  // see WeightStreamingPlan
};
// Whether the pipelined kernel can take `tokens` rows of K = `inner` with these options: K a
// multiple of 8 and a split of K (at most 8) whose input slice (or streamed input steps), ring
// and partial sums fit in a block's shared memory (half of a multiprocessor's where two blocks
// must fit side by side).
bool weight_streaming_pipeline_fits(int64_t tokens, int64_t inner, const WeightStreamingPipelineOptions& options);
// The pipelined plan for this shape; the options must fit (weight_streaming_pipeline_fits).
WeightStreamingPlan plan_weight_streaming_pipelined(int64_t tokens, int64_t inner, int64_t columns, int multiprocessors,
                                                    const WeightStreamingPipelineOptions& options);
// Dynamic shared memory a pipelined plan takes per block for `tokens` rows, before the padding
// of resident_limit.
int64_t weight_streaming_pipeline_shared_bytes(int64_t tokens, const WeightStreamingPlan& plan);

// One more product of the same input in the same launch: out [T, n] = in @ weight [n, K]^T
// (+ bias [n]). Its weight rows follow the previous parts' as output columns of one product.
struct WeightStreamingPart {
  TensorView out;
  TensorView weight;
  TensorView bias;
};
constexpr int weight_streaming_max_parts = 3;

// in [T, K] bf16, weight [N, K] bf16, out [T, N] bf16 or f32, bias [N] any float or empty; all
// on the device. With `more_parts`, the launch also computes those products (q, k and v of a
// layer, or gate and up), reading every part's weights in one pass and writing each part's
// output where it is wanted: one kernel's fixed cost instead of one per projection. Parts need
// the pipelined kernel, the first part's dtypes, and every part before the last a multiple of 16
// rows (a weight tile never straddles two parts).
struct WeightStreamingParams {
  TensorView out;
  TensorView in;
  TensorView weight;
  TensorView bias;
  WeightStreamingPlan plan;
  std::span<const WeightStreamingPart> more_parts;
};
// Whether `parts` (the first part's out, weight and bias, then more_parts) can run as one
// pipelined launch: see WeightStreamingParams.
bool weight_streaming_parts_apply(const TensorView& in, std::span<const WeightStreamingPart> parts);
void launch_matmul_weight_streaming(const WeightStreamingParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
