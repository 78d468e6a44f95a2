// The pipelined weight-streaming kernel (see matmul_weight_streaming.h): weight tiles reach
// each warp's ring in shared memory by asynchronous copies; its shared-memory layout and the
// splits of K that fit.
#include <cooperative_groups.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/matmul_weight_streaming_common.cuh"

namespace louiskv::kernels::streaming {

namespace {

namespace cg = cooperative_groups;

// The pipelined kernel.
//
// Block (split, row block) of a grid of `splits` x `row_blocks` (a cluster of `splits` blocks
// along x when K is split). The weight's 16-row groups are shared evenly among all the grid's
// row teams, `row_blocks` x (8 / k_warps) of them: team i streams groups [i G / W, (i + 1) G / W)
// (G groups, W teams), so no team has more than one group over another, and a block's rows are
// contiguous. The k_warps warps of a team split the block's K slice in 64-wide steps; each walks
// its steps in order and, at each step, the team's groups, so that one read of the input
// fragments serves every group. Weight tiles (16 rows x 64 k, 2 KB) reach the warp's ring by
// asynchronous copies, stages - 1 of them in flight, the first ones issued before waiting for
// the previous kernel. The input slice [T][k_per_split] is staged in shared memory once; or,
// with `streamed`, each warp copies the input of each of its steps ([T][64], into a ring of its
// own beside the tiles) with that step's first tile, so that its first MMAs wait for one step of
// input rather than for the block's whole slice (64 KB at 8 tokens and K = 4096). At the end,
// each warp leaves its partial sums in its ring, the team adds them in warp order, and the
// cluster (if any) adds the blocks' sums in rank order: the same bits on every run.


struct PipelinedArguments {
  const __nv_bfloat16* in;  // [T, K]
  ColumnParts parts;        // weights [n_p, K], outputs [T, n_p] (bf16 or f32), biases [n_p] or null
  int64_t tokens, inner, columns, k_per_split;  // columns: N, the parts' n_p added up
  int64_t groups;      // 16-row groups of the weight: ceil(N / 16)
  int64_t row_teams;   // row_blocks x (8 / k_warps)
  int splits;          // blocks of a cluster, one K slice each
  int k_warps;         // warps of a team
  // Dynamic shared memory in 16-byte units: each warp's region (its ring, later its partial
  // sums), then the staged input slice, then the block's sums for the cluster.
  int warp_region, input_offset, block_sums_offset;
  int block_sums_pitch;  // floats per token row of the block's sums
  bool out_f32;
  BiasType bias_type;
  Overlap overlap;
};

// Where piece `piece` (16 bytes) of a shared-memory row lives. Rows are whole multiples of 128
// bytes, so without this the two rows a quarter-warp reads for a fragment (4 pieces each) would
// fall on the same banks; odd rows swap the halves of each 128 bytes.
__device__ __forceinline__ int swizzled(int row, int piece) { return piece ^ ((row & 1) << 2); }

__device__ __forceinline__ void store_part_output(const PipelinedArguments& args, int64_t token, int64_t column,
                                                  float value) {
  const int part = args.parts.part_of(column);
  const int64_t first = args.parts.first[part];
  store_value(args.parts.out[part], args.parts.bias[part], args.bias_type, args.out_f32,
              args.parts.first[part + 1] - first, token, column - first, value);
}

// 16 bytes into shared memory, asynchronously, bypassing L1; zero-filled where `valid` is false
// (nothing is read then). The weights' copies ask the L2 for the whole 256-byte block around
// them, so that a tile row's neighbouring step (the warp's next or previous) comes along.
__device__ __forceinline__ void copy_weight_piece(void* shared, const void* global, bool valid) {
  const unsigned address = unsigned(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(address), "l"(global),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void copy_input_piece(void* shared, const void* global, bool valid) {
  const unsigned address = unsigned(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(global), "r"(valid ? 16 : 0)
               : "memory");
}
// The memory clobbers keep the compiler from moving shared-memory reads across these.
__device__ __forceinline__ void pipeline_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int pending>
__device__ __forceinline__ void pipeline_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(pending) : "memory");
}
// The same for a count known at run time (at most 10; anything else waits for every group, which
// is never wrong).
__device__ __forceinline__ void pipeline_wait_at_most(int pending) {
  switch (pending) {
    case 10: pipeline_wait<10>(); break;
    case 9: pipeline_wait<9>(); break;
    case 8: pipeline_wait<8>(); break;
    case 7: pipeline_wait<7>(); break;
    case 6: pipeline_wait<6>(); break;
    case 5: pipeline_wait<5>(); break;
    case 4: pipeline_wait<4>(); break;
    case 3: pipeline_wait<3>(); break;
    case 2: pipeline_wait<2>(); break;
    case 1: pipeline_wait<1>(); break;
    default: pipeline_wait<0>(); break;
  }
}

// At most 128 registers per thread, so that two blocks of 256 threads fit on a multiprocessor
// (this grid's and the next launch's, or two of this grid's).
template <int token_tiles, int groups, int stages, bool streamed>
__global__ void __launch_bounds__(pipelined_threads, 2) pipelined_kernel(const __grid_constant__ PipelinedArguments args) {
  static_assert(stages >= 2 && stages - 2 <= 10, "pipeline_wait_at_most covers up to 10 pending groups");
  extern __shared__ uint4 shared[];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;
  const int c = lane % 4;
  const int split = blockIdx.x;
  const int teams_per_block = pipelined_warps / args.k_warps;
  const int team_warp = warp % args.k_warps;
  const int64_t team = int64_t(blockIdx.y) * teams_per_block + warp / args.k_warps;
  const int64_t group_begin = team * args.groups / args.row_teams;
  const int team_groups = int((team + 1) * args.groups / args.row_teams - group_begin);
  const int64_t block_group_begin = int64_t(blockIdx.y) * teams_per_block * args.groups / args.row_teams;
  const int64_t block_group_end = (int64_t(blockIdx.y) + 1) * teams_per_block * args.groups / args.row_teams;
  const int64_t k_begin = int64_t(split) * args.k_per_split;
  const int64_t k_end = min(args.inner, k_begin + args.k_per_split);
  const int slice_steps = int((k_end - k_begin + step_k - 1) / step_k);
  const int step_begin = team_warp * slice_steps / args.k_warps;
  const int step_end = (team_warp + 1) * slice_steps / args.k_warps;
  const int tiles = (step_end - step_begin) * team_groups;
  uint4* ring = shared + warp * args.warp_region;
  const uint4* input = shared + args.input_offset;
  const int input_pieces = int(args.k_per_split / 8);  // per token row, a multiple of 8
  // Streamed: the input of the warp's step s (relative to step_begin) in slot s % stages after
  // the tiles, [T][8 pieces].
  uint4* input_ring = ring + stages * tile_pieces;
  const int step_pieces = int(args.tokens) * 8;
  auto copy_step_input = [&](int step) {
    uint4* slot = input_ring + ((step - step_begin) % stages) * step_pieces;
    const int64_t k0 = k_begin + int64_t(step) * step_k;
    for (int i = lane; i < step_pieces; i += 32) {
      const int token = i / 8;
      const int piece = i % 8;
      const int64_t k = k0 + 8 * piece;
      const bool valid = k < k_end;  // zeros past K meet zero weights (never a stale NaN)
      copy_input_piece(&slot[token * 8 + swizzled(token, piece)], valid ? args.in + token * args.inner + k : args.in,
                       valid);
    }
  };

  // Tile j of this warp (step begin + j / team groups, group j % team groups) goes to slot
  // j % stages. Every call commits a group of copies, empty past the last tile, so that
  // "all but the newest stages - 2 groups have landed" always means "tile j has landed".
  // Streamed, a step's input goes into the group of the step's first tile, except for the steps
  // whose first tile was issued before the wait: their input follows the wait, one group per
  // step (the ring's first consumptions wait for those instead; see below).
  int issued = 0;
  int issue_step = step_begin;
  int issue_group = 0;
  auto issue_next_tile = [&](bool with_input) {
    if (issued < tiles) {
      if constexpr (streamed) {
        if (with_input && issue_group == 0) copy_step_input(issue_step);
      }
      const int64_t first_row = (group_begin + issue_group) * tile_rows;
      const int64_t k0 = k_begin + int64_t(issue_step) * step_k;
      uint4* tile = ring + (issued % stages) * tile_pieces;
      // The tile's 16 rows are all of one part (every part but the last is a multiple of 16 rows).
      const int part = args.parts.part_of(first_row);
      const __nv_bfloat16* weight = args.parts.weight[part];
      const int64_t part_first_row = args.parts.first[part];
#pragma unroll
      for (int i = 0; i < tile_pieces / 32; ++i) {
        // One instruction of the warp: 4 rows x 128 contiguous bytes.
        const int piece = i * 32 + lane;
        const int row = piece / 8;
        const int column = piece % 8;
        const int64_t weight_row = first_row + row;
        const int64_t k = k0 + 8 * column;
        // Rows past N and pieces past the slice are zeros, never read.
        const bool valid = weight_row < args.columns && k < k_end;
        copy_weight_piece(&tile[row * 8 + swizzled(row, column)],
                          valid ? weight + (weight_row - part_first_row) * args.inner + k : weight, valid);
      }
      if (++issue_group == team_groups) {
        issue_group = 0;
        ++issue_step;
      }
    }
    ++issued;
    pipeline_commit();
  };
  // Weights never depend on the previous kernel: the first tiles are on their way before
  // waiting for it (with overlap, while it drains).
#pragma unroll
  for (int i = 0; i < stages - 1; ++i) issue_next_tile(false);
  wait_for_previous_grid();
  if (args.overlap != Overlap::none) allow_next_grid();
  // Streamed: the steps whose first tile is already on its way, `early_steps` of them.
  const int early_steps = team_groups > 0 ? (min(tiles, stages - 1) + team_groups - 1) / team_groups : 0;
  if constexpr (streamed) {
    for (int step = step_begin; step < step_begin + early_steps; ++step) {
      copy_step_input(step);
      pipeline_commit();
    }
  } else {
    // The input slice, zero-filled past K, so that zero weights meet zeros (never a stale NaN).
    for (int i = int(threadIdx.x); i < int(args.tokens) * input_pieces; i += pipelined_threads) {
      const int token = i / input_pieces;
      const int piece = i % input_pieces;
      const int64_t k = k_begin + 8 * int64_t(piece);
      const bool valid = k < k_end;
      copy_input_piece(&shared[args.input_offset + token * input_pieces + swizzled(token, piece)],
                       valid ? args.in + token * args.inner + k : args.in, valid);
    }
    pipeline_commit();
    // All groups, this one last: the ring's first tiles were issued earlier and land first.
    pipeline_wait<0>();
    __syncthreads();
  }

  float accumulator[groups][1][token_tiles][4];
#pragma unroll
  for (int group = 0; group < groups; ++group)
#pragma unroll
    for (int n = 0; n < token_tiles; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) accumulator[group][0][n][e] = 0.0f;

  int consumed = 0;
  for (int step = step_begin; step < step_end; ++step) {
    // The input fragments of this step (tokens past T read the last token; never stored).
    uint4 b[token_tiles][2];
    if constexpr (!streamed) {
#pragma unroll
      for (int n = 0; n < token_tiles; ++n) {
        const int token = min(8 * n + g, int(args.tokens) - 1);
#pragma unroll
        for (int p = 0; p < 2; ++p) b[n][p] = input[token * input_pieces + swizzled(token, step * 8 + c + 4 * p)];
      }
    }
#pragma unroll
    for (int group = 0; group < groups; ++group) {
      if (group < team_groups) {
        if constexpr (streamed) {
          // Committed so far: stages - 1 tiles, then early_steps input groups, then one per tile
          // consumed. Tile j's step needs the input group (stages - 1 + j / team_groups) while
          // j < stages - 1, all but the newest early_steps + j - 1 - j / team_groups; later
          // tiles carry their own, and all but the newest stages - 2 groups cover them.
          if (consumed < stages - 1) {
            pipeline_wait_at_most(min(early_steps + consumed - 1 - consumed / team_groups, stages - 2));
          } else {
            pipeline_wait<stages - 2>();
          }
        } else {
          pipeline_wait<stages - 2>();  // tile `consumed` has landed, for this lane's pieces
        }
        __syncwarp();          // and for every lane's; the slot read last step is free
        issue_next_tile(true);  // into that slot: tile consumed + stages - 1
        if constexpr (streamed) {
          if (group == 0) {
            const uint4* slot = input_ring + ((step - step_begin) % stages) * step_pieces;
#pragma unroll
            for (int n = 0; n < token_tiles; ++n) {
              const int token = min(8 * n + g, int(args.tokens) - 1);
#pragma unroll
              for (int p = 0; p < 2; ++p) b[n][p] = slot[token * 8 + swizzled(token, c + 4 * p)];
            }
          }
        }
        const uint4* tile = ring + (consumed % stages) * tile_pieces;
        uint4 a[1][2][2];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
#pragma unroll
          for (int p = 0; p < 2; ++p) {
            const int row = g + 8 * h;
            a[0][h][p] = tile[row * 8 + swizzled(row, c + 4 * p)];
          }
        }
        multiply_step(accumulator[group], a, b);
        ++consumed;
      }
    }
  }

  // The warp's partial sums [8 x token_tiles][16 x groups + 4] floats go over its own ring, once
  // every copy into it has landed; the padding puts a fragment's token pairs on distinct banks.
  pipeline_wait<0>();
  __syncwarp();
  constexpr int partial_pitch = tile_rows * groups + 4;
  float* partial = reinterpret_cast<float*>(ring);
#pragma unroll
  for (int group = 0; group < groups; ++group) {
#pragma unroll
    for (int n = 0; n < token_tiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = tile_rows * group + g + 8 * (e / 2);
        const int token = 8 * n + 2 * c + (e % 2);
        partial[token * partial_pitch + row] = accumulator[group][0][n][e];
      }
    }
  }
  __syncthreads();

  // The team adds its warps' sums in warp order; without a split it stores them, else it leaves
  // them for the cluster in [T][block rows].
  const int team_rows = team_groups * tile_rows;
  const int team_first_warp = warp - team_warp;
  const int64_t team_first_row = group_begin * tile_rows;
  const int64_t block_first_row = block_group_begin * tile_rows;
  float* block_sums = reinterpret_cast<float*>(shared + args.block_sums_offset);
  for (int index = team_warp * 32 + lane; index < int(args.tokens) * team_rows; index += 32 * args.k_warps) {
    const int token = index / team_rows;
    const int row = index % team_rows;
    float sum = 0.0f;
    for (int part = 0; part < args.k_warps; ++part) {
      sum += reinterpret_cast<const float*>(shared + (team_first_warp + part) * args.warp_region)[token * partial_pitch + row];
    }
    const int64_t column = team_first_row + row;
    if (args.splits == 1) {
      if (column < args.columns) store_part_output(args, token, column, sum);
    } else {
      block_sums[token * args.block_sums_pitch + int(column - block_first_row)] = sum;
    }
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Each block of the cluster stores its share of the block's outputs, adding every block's sums
  // in rank order; the cluster then waits until all have read.
  if (args.splits > 1) {
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync();
    const int block_rows = int(block_group_end - block_group_begin) * tile_rows;
    const int total = int(args.tokens) * block_rows;
    const int share = (total + args.splits - 1) / args.splits;
    const int end = min(total, (split + 1) * share);
    for (int index = split * share + int(threadIdx.x); index < end; index += pipelined_threads) {
      const int token = index / block_rows;
      const int row = index % block_rows;
      const int64_t column = block_first_row + row;
      if (column >= args.columns) continue;
      float sum = 0.0f;
#pragma unroll
      for (int rank = 0; rank < weight_streaming_max_splits; ++rank) {
        if (rank < args.splits) sum += cluster.map_shared_rank(block_sums, rank)[token * args.block_sums_pitch + row];
      }
      store_part_output(args, token, column, sum);
    }
    cluster.sync();
  }
#else
  // Thread-block clusters exist from sm_90 on; a split plan fails at launch before that.
  (void)block_group_end;
#endif
}

template <int token_tiles, int groups, int stages, bool streamed>
void launch_pipelined(const PipelinedArguments& args, dim3 grid, size_t shared, cudaStream_t stream) {
  auto kernel = pipelined_kernel<token_tiles, groups, stages, streamed>;
  // Over 48 KB needs the opt-in; the kernel reads nothing through L1, so the whole carveout goes
  // to shared memory (which is what lets two blocks share a multiprocessor). Cheap, no state.
  LOUISKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)));
  LOUISKV_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, int(cudaSharedmemCarveoutMaxShared)));
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = dim3(pipelined_threads);
  config.dynamicSmemBytes = shared;
  config.stream = stream;
  cudaLaunchAttribute attributes[2]{};
  unsigned count = 0;
  if (args.splits > 1) {
    attributes[count].id = cudaLaunchAttributeClusterDimension;
    attributes[count].val.clusterDim.x = unsigned(args.splits);
    attributes[count].val.clusterDim.y = 1;
    attributes[count].val.clusterDim.z = 1;
    ++count;
  }
  if (args.overlap != Overlap::none) {
    attributes[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attributes[count].val.programmaticStreamSerializationAllowed = 1;
    ++count;
  }
  config.attrs = attributes;
  config.numAttrs = count;
  LOUISKV_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, args));
}

template <int token_tiles, int groups, bool streamed>
void launch_pipelined_for_stages(const PipelinedArguments& args, int stages, dim3 grid, size_t shared,
                                 cudaStream_t stream) {
  if (stages == 4) {
    launch_pipelined<token_tiles, groups, 4, streamed>(args, grid, shared, stream);
  } else if (stages == 8) {
    launch_pipelined<token_tiles, groups, 8, streamed>(args, grid, shared, stream);
  } else if constexpr (token_tiles == 1) {
    launch_pipelined<token_tiles, groups, 12, streamed>(args, grid, shared, stream);
  } else {
    fail("matmul", "pipelined plans take 12 stages only up to 8 tokens (a bug in the caller)");
  }
}

template <int token_tiles, int groups>
void launch_pipelined_for_groups(const PipelinedArguments& args, const WeightStreamingPlan& plan, dim3 grid,
                                 size_t shared, cudaStream_t stream) {
  if (plan.stream_input) {
    launch_pipelined_for_stages<token_tiles, groups, true>(args, plan.stages, grid, shared, stream);
  } else {
    launch_pipelined_for_stages<token_tiles, groups, false>(args, plan.stages, grid, shared, stream);
  }
}

template <int token_tiles>
void launch_pipelined_for_tokens(const PipelinedArguments& args, const WeightStreamingPlan& plan, dim3 grid,
                                 size_t shared, cudaStream_t stream) {
  if (plan.groups_per_warp == 1) {
    launch_pipelined_for_groups<token_tiles, 1>(args, plan, grid, shared, stream);
  } else if (plan.groups_per_warp == 2) {
    launch_pipelined_for_groups<token_tiles, 2>(args, plan, grid, shared, stream);
  } else if constexpr (token_tiles < 4) {
    launch_pipelined_for_groups<token_tiles, 4>(args, plan, grid, shared, stream);
  } else {
    fail("matmul", "pipelined plans take at most 2 groups per warp above 16 tokens (a bug in the caller)");
  }
}

}  // namespace

PipelineLayout pipeline_layout(int64_t tokens, int64_t k_per_split, int splits, int k_warps, int stages,
                               int groups_per_warp, bool stream_input) {
  PipelineLayout layout;
  // Streamed, each ring slot has a step of input beside it: [T][64] bf16.
  const int64_t step_input = stream_input ? tokens * step_k * int64_t(sizeof(__nv_bfloat16)) : 0;
  const int64_t ring = stages * (tile_bytes + step_input);
  const int64_t partial = 8 * token_tiles_for(tokens) * (tile_rows * groups_per_warp + 4) * int64_t(sizeof(float));
  layout.warp_region = std::max(ring, partial);
  layout.input_offset = pipelined_warps * layout.warp_region;
  const int64_t slice = stream_input ? 0 : tokens * k_per_split * int64_t(sizeof(__nv_bfloat16));
  layout.block_sums_offset = layout.input_offset + slice;
  layout.block_sums_pitch = int64_t(pipelined_warps / k_warps) * groups_per_warp * tile_rows + 4;
  const int64_t block_sums = splits > 1 ? tokens * layout.block_sums_pitch * int64_t(sizeof(float)) : 0;
  layout.total = layout.block_sums_offset + block_sums;
  return layout;
}

bool pipeline_options_valid(const WeightStreamingPipelineOptions& options) {
  return (options.k_warps == 1 || options.k_warps == 2 || options.k_warps == 4 || options.k_warps == 8) &&
         (options.stages == 4 || options.stages == 8 || options.stages == 12) &&
         (options.blocks_per_multiprocessor == 1 || options.blocks_per_multiprocessor == 2) &&
         options.resident_limit >= 0 && options.resident_limit <= 2;
}

// Whether K cut into `splits` slices (of a multiple of 64 each, every slice non-empty) fits the
// options' shared-memory budget, counting the partial sums for the most groups a warp can get
// (so that the answer does not depend on the GPU's size); sets the slice.
bool pipeline_split_fits(int64_t tokens, int64_t inner, const WeightStreamingPipelineOptions& options, int splits,
                         int64_t& k_per_split) {
  const int64_t per_split = ceil_div(ceil_div(inner, splits), step_k) * step_k;
  if (ceil_div(inner, per_split) != splits) return false;  // fewer slices would cover K
  const bool two_resident = options.blocks_per_multiprocessor == 2 || options.resident_limit == 2;
  const int64_t budget = two_resident ? shared_per_block_two_resident : shared_per_block_limit;
  const PipelineLayout layout =
      pipeline_layout(tokens, per_split, splits, options.k_warps, options.stages, int(max_groups_per_warp_for(tokens)),
                      options.stream_input);
  if (layout.total > budget) return false;
  k_per_split = per_split;
  return true;
}

// The smallest split of K (1 to 8 blocks of a cluster) that fits; 0 where none does. 12 stages
// are built for one token tile only (up to 8 tokens), where their ring fits beside the input.
int pipeline_splits(int64_t tokens, int64_t inner, const WeightStreamingPipelineOptions& options, int64_t& k_per_split) {
  if (!pipeline_options_valid(options) || tokens < 1 || tokens > weight_streaming_max_tokens || inner < 8 ||
      inner % 8 != 0 || (options.stages == 12 && tokens > 8)) {
    return 0;
  }
  for (int splits = 1; splits <= weight_streaming_max_splits; ++splits) {
    if (pipeline_split_fits(tokens, inner, options, splits, k_per_split)) return splits;
  }
  return 0;
}


void launch_pipelined_kernel(const WeightStreamingParams& params, int64_t tokens, int64_t inner, int64_t columns,
                             cudaStream_t stream) {
  const char* op = "matmul";
  const WeightStreamingPlan& plan = params.plan;
  const int64_t groups = ceil_div(columns, tile_rows);
  const int64_t teams_per_block =
      plan.k_warps >= 1 && plan.k_warps <= pipelined_warps ? pipelined_warps / plan.k_warps : 0;
  LOUISKV_REQUIRE((plan.k_warps == 1 || plan.k_warps == 2 || plan.k_warps == 4 || plan.k_warps == 8) &&
                      (plan.stages == 4 || plan.stages == 8 || (plan.stages == 12 && tokens <= 8)) &&
                      (plan.groups_per_warp == 1 || plan.groups_per_warp == 2 || plan.groups_per_warp == 4) &&
                      plan.groups_per_warp <= max_groups_per_warp_for(tokens) &&
                      plan.resident_limit >= 0 && plan.resident_limit <= 2 && plan.splits >= 1 &&
                      plan.splits <= weight_streaming_max_splits && plan.k_per_split > 0 &&
                      plan.k_per_split % step_k == 0 && plan.k_per_split * plan.splits >= inner &&
                      (plan.splits - 1) * plan.k_per_split < inner && plan.row_blocks >= 1 &&
                      plan.row_blocks * teams_per_block * plan.groups_per_warp >= groups,
                  op,
                  "invalid pipelined weight-streaming plan (a bug in the caller): take it from "
                  "plan_weight_streaming_pipelined");
  require_grid_dimension(plan.row_blocks, 65535, op, "the weight rows");
  const PipelineLayout layout =
      pipeline_layout(tokens, plan.k_per_split, plan.splits, plan.k_warps, plan.stages, plan.groups_per_warp,
                      plan.stream_input);

  int device = 0;
  LOUISKV_CUDA_CHECK(cudaGetDevice(&device));
  int per_multiprocessor = 0, reserved = 0, per_block = 0;
  LOUISKV_CUDA_CHECK(cudaDeviceGetAttribute(&per_multiprocessor, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
  LOUISKV_CUDA_CHECK(cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, device));
  LOUISKV_CUDA_CHECK(cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  int64_t shared = layout.total;
  if (plan.resident_limit > 0) {
    // No more than resident_limit blocks fit once (limit + 1) x (shared + reserved) passes the
    // multiprocessor's shared memory.
    const int64_t least = int64_t(per_multiprocessor) / (plan.resident_limit + 1) - reserved + 1;
    shared = std::max(shared, ceil_div(least, 16) * 16);
  }
  LOUISKV_REQUIRE(shared <= per_block, op,
                  "the pipelined plan takes " + std::to_string(shared) + " bytes of shared memory per block, over " +
                      "this device's " + std::to_string(per_block) +
                      " (the plan assumes an sm_90 device; fewer stages or a larger split would fit)");

  PipelinedArguments args{};
  args.in = params.in.as<const __nv_bfloat16>();
  // The first part is params' out, weight and bias; more_parts follow (checked by the caller).
  auto add_part = [&](const TensorView& out, const TensorView& weight, const TensorView& bias) {
    const int p = args.parts.count++;
    args.parts.weight[p] = weight.as<const __nv_bfloat16>();
    args.parts.out[p] = out.data;
    args.parts.bias[p] = bias.empty() ? nullptr : bias.data;
    args.parts.first[p + 1] = args.parts.first[p] + weight.dim(0);
  };
  add_part(params.out, params.weight, params.bias);
  for (const WeightStreamingPart& part : params.more_parts) add_part(part.out, part.weight, part.bias);
  LOUISKV_REQUIRE(args.parts.first[args.parts.count] == columns, op, "the parts' rows do not add up to the product's");
  args.tokens = tokens;
  args.inner = inner;
  args.columns = columns;
  args.k_per_split = plan.k_per_split;
  args.groups = groups;
  args.row_teams = plan.row_blocks * teams_per_block;
  args.splits = plan.splits;
  args.k_warps = plan.k_warps;
  args.warp_region = int(layout.warp_region / 16);
  args.input_offset = int(layout.input_offset / 16);
  args.block_sums_offset = int(layout.block_sums_offset / 16);
  args.block_sums_pitch = int(layout.block_sums_pitch);
  args.out_f32 = params.out.dtype == DType::f32;
  args.bias_type = bias_type_of(params.bias, op);
  args.overlap = plan.overlap;
  const dim3 grid(unsigned(plan.splits), unsigned(plan.row_blocks));
  const int64_t token_tiles = token_tiles_for(tokens);
  if (token_tiles == 1) {
    launch_pipelined_for_tokens<1>(args, plan, grid, size_t(shared), stream);
  } else if (token_tiles == 2) {
    launch_pipelined_for_tokens<2>(args, plan, grid, size_t(shared), stream);
  } else {
    launch_pipelined_for_tokens<4>(args, plan, grid, size_t(shared), stream);
  }
}

}  // namespace louiskv::kernels::streaming
