#include "backend/cuda/matmul_weight_streaming.h"

#include <cooperative_groups.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <string>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

namespace cg = cooperative_groups;

constexpr int warps = 4;
constexpr int threads = warps * 32;
// K covered by one step: each lane reads two 16-byte pieces of each of its rows, 64 bytes apart,
// so that one load instruction of the 4 lanes of a row covers 64 contiguous bytes (two whole
// sectors, each fetched once) and the pair covers 128.
constexpr int step_k = 64;
using Overlap = WeightStreamingOverlap;

enum class BiasType : int { none, f32, f16, bf16 };

struct KernelArguments {
  const __nv_bfloat16* in;      // [T, K]
  const __nv_bfloat16* weight;  // [N, K]
  void* out;                    // [T, N], bf16 or f32
  const void* bias;             // [N] or null
  int64_t tokens, inner, columns, k_per_split;
  int splits;  // blocks of a cluster, one K slice each
  bool out_f32;
  BiasType bias_type;
  Overlap overlap;
};

// 16 bytes of weights, read once: no L1 allocation, and a hint that the L2 fetch the next
// 256 bytes of the row (the following steps read them).
__device__ __forceinline__ uint4 load_weight(const __nv_bfloat16* address) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(address));
  return v;
}

__device__ __forceinline__ uint4 load_input(const __nv_bfloat16* address) {
  return __ldg(reinterpret_cast<const uint4*>(address));
}

// Asks the L2 to fetch `bytes` (a multiple of 16) from `address` (16-byte aligned), without
// waiting. A prefetch is only a hint: the L2 is where every write to global memory lands, so a
// line it fetches early can never be older than what a later load must see.
__device__ __forceinline__ void prefetch_l2(const void* address, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(address), "r"(bytes) : "memory");
#else
  (void)address;  // no bulk prefetch before sm_90 (the kernel is not planned there)
  (void)bytes;
#endif
}

// wait_for_previous_grid() after loads whose results fold into `dependency`. Moving a load after
// the wait is always legal, and ptxas does it (seen in the register kernel's SASS: the preload's
// loads came after the wait), which would undo the point of issuing them first. A store of their
// folded values into `sink` (shared memory nobody reads) stays before the wait, and needs every
// load first; the wait then starts once their data has arrived, which the MMAs need anyway.
__device__ __forceinline__ void wait_for_previous_grid_after(uint32_t dependency, uint32_t* sink) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const unsigned address = unsigned(__cvta_generic_to_shared(sink));
  asm volatile(
      "st.volatile.shared.u32 [%0], %1;\n"
      "griddepcontrol.wait;\n" ::"r"(address),
      "r"(dependency)
      : "memory");
#else
  (void)dependency;
  (void)sink;
#endif
}

// One 64-wide K step. The order of k inside an MMA does not matter as long as both operands
// agree: lane (g, c) holds k [8c, 8c + 8) and [32 + 8c, 32 + 8c + 8) of weight rows g and g + 8
// and of token g (pieces 0 and 1), and k-step j takes its values 4j .. 4j + 3 (words 2j and
// 2j + 1 of the pair) as the fragment columns 2c, 2c + 1 and 2c + 8, 2c + 9.
template <int m_tiles, int token_tiles>
__device__ __forceinline__ void multiply_step(float (&accumulator)[m_tiles][token_tiles][4],
                                              const uint4 (&a)[m_tiles][2][2], const uint4 (&b)[token_tiles][2]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int piece = j / 2;
    const int word = (j % 2) * 2;
#pragma unroll
    for (int m = 0; m < m_tiles; ++m) {
      const uint32_t* low = reinterpret_cast<const uint32_t*>(&a[m][0][piece]);
      const uint32_t* high = reinterpret_cast<const uint32_t*>(&a[m][1][piece]);
      const uint32_t fragment[4] = {low[word], high[word], low[word + 1], high[word + 1]};
#pragma unroll
      for (int n = 0; n < token_tiles; ++n) {
        const uint32_t* columns = reinterpret_cast<const uint32_t*>(&b[n][piece]);
        mma_bf16_16x8x16(accumulator[m][n], fragment, columns[word], columns[word + 1]);
      }
    }
  }
}

// Arguments: KernelArguments or PipelinedArguments (out, bias, columns, out_f32, bias_type).
template <class Arguments>
__device__ __forceinline__ void store_output(const Arguments& args, int64_t token, int64_t column, float value) {
  switch (args.bias_type) {
    case BiasType::f32: value += static_cast<const float*>(args.bias)[column]; break;
    case BiasType::f16: value += __half2float(static_cast<const __half*>(args.bias)[column]); break;
    case BiasType::bf16: value += __bfloat162float(static_cast<const __nv_bfloat16*>(args.bias)[column]); break;
    case BiasType::none: break;
  }
  const int64_t index = token * args.columns + column;
  if (args.out_f32) {
    static_cast<float*>(args.out)[index] = value;
  } else {
    static_cast<__nv_bfloat16*>(args.out)[index] = __float2bfloat16_rn(value);
  }
}

// Block (split, row block) of a cluster of `splits` blocks along x: weight rows
// [row block * block_rows, + block_rows) over K slice `split`. D[n, t] = sum_k W[n, k] X[t, k]
// with W as the MMA's A operand (16 rows per tile) and X^T as B (8 tokens per tile). Rows past
// N and tokens past T read the last valid row or token (clamped addresses, no branches in the
// loop); their sums are never stored.
// Where the staged input slice keeps 16-byte piece q of a token row: XORed with the row's low 3
// bits inside each group of 8, so that the 8 rows a quarter-warp reads fall on distinct banks.
__device__ __forceinline__ int staged_piece(int row, int q) { return (q & ~7) | ((q ^ row) & 7); }

template <int token_tiles, int m_tiles, int unroll, bool staged>
__global__ void __launch_bounds__(threads) weight_streaming_kernel(const __grid_constant__ KernelArguments args) {
  constexpr int block_rows = warps * 16 * m_tiles;
  // With `staged`, the block's input slice [token_tiles * 8][k_per_split] bf16, read from global
  // memory once instead of by every warp through L1.
  extern __shared__ uint4 staged_input[];
  // Partial sums [tokens][block rows]; the padding puts the 4 column pairs of a fragment on
  // different banks.
  constexpr int pitch = block_rows + 4;
  __shared__ float partial[token_tiles * 8 * pitch];

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;
  const int c = lane % 4;
  const int split = blockIdx.x;
  const int64_t block_first_row = int64_t(blockIdx.y) * block_rows;
  const int64_t warp_first_row = block_first_row + warp * 16 * m_tiles;
  const int64_t k_begin = int64_t(split) * args.k_per_split;
  const int64_t k_end = min(args.inner, k_begin + args.k_per_split);

  const __nv_bfloat16* w[m_tiles][2];
#pragma unroll
  for (int m = 0; m < m_tiles; ++m) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = min(warp_first_row + 16 * m + 8 * h + g, args.columns - 1);
      w[m][h] = args.weight + row * args.inner + 8 * c;
    }
  }
  // Batches of `unroll` steps: the weight loads of the next batch are issued at the end of the
  // loop body, once this batch's MMAs have consumed their registers, and the loop edge keeps
  // them together (left in one block with their MMAs, the compiler interleaves each load with
  // its MMA, leaving only a few loads in flight per warp).
  int64_t k = k_begin;
  const int64_t batch_k = int64_t(unroll) * step_k;
  const int64_t full_end = k_begin + (k_end - k_begin) / batch_k * batch_k;
  uint4 a[unroll][m_tiles][2][2];
  auto load_batch = [&](int64_t at) {
#pragma unroll
    for (int u = 0; u < unroll; ++u)
#pragma unroll
      for (int m = 0; m < m_tiles; ++m)
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int p = 0; p < 2; ++p) a[u][m][h][p] = load_weight(w[m][h] + at + u * step_k + 32 * p);
  };
  if (args.overlap != Overlap::none) {
    // While the previous kernel drains: the first two batches of each of the block's rows.
    const int64_t row = block_first_row + threadIdx.x;
    if (threadIdx.x < block_rows && row < args.columns) {
      const int64_t bytes = min(k_end - k_begin, int64_t(2 * unroll * step_k)) * int64_t(sizeof(__nv_bfloat16));
      prefetch_l2(args.weight + row * args.inner + k_begin, uint32_t(bytes));
    }
  }
  // Weights never depend on the previous kernel: with `preload` the first batch is on its way
  // into registers before waiting for it.
  const bool preloaded = args.overlap == Overlap::preload && k < full_end;
  if (preloaded) {
    load_batch(k);
    uint32_t dependency = 0;
#pragma unroll
    for (int u = 0; u < unroll; ++u)
#pragma unroll
      for (int m = 0; m < m_tiles; ++m)
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int p = 0; p < 2; ++p) dependency ^= a[u][m][h][p].x;
    __shared__ uint32_t sink;
    wait_for_previous_grid_after(dependency, &sink);
  } else {
    wait_for_previous_grid();
  }
  // The next kernel's blocks may now take the slots this grid leaves free.
  if (args.overlap != Overlap::none) allow_next_grid();
  const __nv_bfloat16* x[token_tiles];
#pragma unroll
  for (int n = 0; n < token_tiles; ++n) {
    const int64_t token = min(int64_t(8 * n + g), args.tokens - 1);
    x[n] = args.in + token * args.inner + 8 * c;
  }
  const int pieces_per_row = int(args.k_per_split / 8);
  if constexpr (staged) {
    // Rows past T are never loaded: their garbage only reaches sums that are never stored.
    const int slice_pieces = int((k_end - k_begin) / 8);
    for (int i = threadIdx.x; i < int(args.tokens) * slice_pieces; i += threads) {
      const int row = i / slice_pieces;
      const int q = i % slice_pieces;
      copy_async_16(&staged_input[row * pieces_per_row + staged_piece(row, q)],
                    args.in + int64_t(row) * args.inner + k_begin + 8 * q, true);
    }
    copy_async_commit();
  }
  // Piece p of step `at` (absolute k) of token tile n for this lane.
  auto input_piece = [&](int n, int64_t at, int p) {
    if constexpr (staged) {
      const int row = 8 * n + g;
      const int q = int((at - k_begin) / 8) + c + 4 * p;
      return staged_input[row * pieces_per_row + staged_piece(row, q)];
    } else {
      return load_input(x[n] + at + 32 * p);
    }
  };

  float accumulator[m_tiles][token_tiles][4];
#pragma unroll
  for (int m = 0; m < m_tiles; ++m)
#pragma unroll
    for (int n = 0; n < token_tiles; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) accumulator[m][n][e] = 0.0f;

  {
    if (!preloaded && k < full_end) load_batch(k);
    if constexpr (staged) {
      copy_async_wait<0>();  // after the first weight loads are on their way
      __syncthreads();
    }
    for (; k < full_end; k += batch_k) {
#pragma unroll
      for (int u = 0; u < unroll; ++u) {
        uint4 b[token_tiles][2];
#pragma unroll
        for (int n = 0; n < token_tiles; ++n)
#pragma unroll
          for (int p = 0; p < 2; ++p) b[n][p] = input_piece(n, k + u * step_k, p);
        multiply_step(accumulator, a[u], b);
      }
      if (k + batch_k < full_end) load_batch(k + batch_k);
    }
  }
  // The slice's last steps one at a time; K is a multiple of 32, so the very last may be half a
  // step, whose second pieces every lane skips (zeros add nothing).
  for (; k < k_end; k += step_k) {
    const bool second = k + 32 < k_end;
    const uint4 zero{0u, 0u, 0u, 0u};
    uint4 step_a[m_tiles][2][2];
    uint4 step_b[token_tiles][2];
#pragma unroll
    for (int m = 0; m < m_tiles; ++m)
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int p = 0; p < 2; ++p) step_a[m][h][p] = p == 0 || second ? load_weight(w[m][h] + k + 32 * p) : zero;
#pragma unroll
    for (int n = 0; n < token_tiles; ++n)
#pragma unroll
      for (int p = 0; p < 2; ++p) step_b[n][p] = p == 0 || second ? input_piece(n, k, p) : zero;
    multiply_step(accumulator, step_a, step_b);
  }

  // Accumulator element e of (m, n): weight row 16m + g (+ 8 for e >= 2), token 8n + 2c + e % 2.
#pragma unroll
  for (int m = 0; m < m_tiles; ++m) {
#pragma unroll
    for (int n = 0; n < token_tiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = warp * 16 * m_tiles + 16 * m + g + 8 * (e / 2);
        const int token = 8 * n + 2 * c + (e % 2);
        partial[token * pitch + row] = accumulator[m][n][e];
      }
    }
  }
  // Each block of the cluster sums its share of the outputs over every block's partial sums, in
  // rank order (the same bits on every run), and the cluster waits until all have read.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cg::cluster_group cluster = cg::this_cluster();
  if (args.splits > 1) {
    cluster.sync();
  } else {
    __syncthreads();
  }
#else
  // Thread-block clusters exist from sm_90 on; the backend plans one split elsewhere.
  __syncthreads();
#endif
  const int total = int(args.tokens) * block_rows;
  const int share = (total + args.splits - 1) / args.splits;
  const int end = min(total, (split + 1) * share);
  for (int index = split * share + int(threadIdx.x); index < end; index += threads) {
    const int token = index / block_rows;
    const int row = index % block_rows;
    const int64_t column = block_first_row + row;
    if (column >= args.columns) continue;
    float sum = 0.0f;
    if (args.splits == 1) {
      sum = partial[token * pitch + row];
    } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#pragma unroll
      for (int rank = 0; rank < weight_streaming_max_splits; ++rank) {
        if (rank < args.splits) sum += cluster.map_shared_rank(&partial[0], rank)[token * pitch + row];
      }
#endif
    }
    store_output(args, token, column, sum);
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (args.splits > 1) cluster.sync();  // no block leaves while another reads its partial sums
#endif
}

template <int token_tiles, int m_tiles, int unroll, bool staged>
void launch_kernel(const KernelArguments& args, dim3 grid, cudaStream_t stream) {
  auto kernel = weight_streaming_kernel<token_tiles, m_tiles, unroll, staged>;
  const size_t shared = staged ? size_t(token_tiles * 8) * size_t(args.k_per_split) * sizeof(__nv_bfloat16) : 0;
  // The static partial sums and the staged slice together can pass the default 48 KB even when
  // the slice alone does not: a staged launch always opts in to its size (cheap, keeps no state).
  if (staged) {
    LOUISKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)));
  }
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = dim3(threads);
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

template <int token_tiles, bool staged>
void launch_for_shape(const KernelArguments& args, const WeightStreamingPlan& plan, dim3 grid, cudaStream_t stream) {
  if (plan.m_tiles == 1) {
    if (plan.unroll == 2) launch_kernel<token_tiles, 1, 2, staged>(args, grid, stream);
    else launch_kernel<token_tiles, 1, 4, staged>(args, grid, stream);
  } else {
    if (plan.unroll == 2) launch_kernel<token_tiles, 2, 2, staged>(args, grid, stream);
    else launch_kernel<token_tiles, 2, 4, staged>(args, grid, stream);
  }
}

template <int token_tiles>
void launch_for_tokens(const KernelArguments& args, const WeightStreamingPlan& plan, dim3 grid, cudaStream_t stream) {
  if (plan.stage_input) {
    launch_for_shape<token_tiles, true>(args, plan, grid, stream);
  } else {
    launch_for_shape<token_tiles, false>(args, plan, grid, stream);
  }
}

// Shared memory the staged input slice of a plan takes.
int64_t staged_bytes(int64_t tokens, const WeightStreamingPlan& plan) {
  return (tokens + 7) / 8 * 8 * plan.k_per_split * int64_t(sizeof(__nv_bfloat16));
}

// ---------------------------------------------------------------------------------------------
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
// the previous kernel. The input slice [T][k_per_split] is staged in shared memory once. At the
// end, each warp leaves its partial sums in its ring, the team adds them in warp order, and the
// cluster (if any) adds the blocks' sums in rank order: the same bits on every run.

constexpr int pipelined_warps = 8;
constexpr int pipelined_threads = pipelined_warps * 32;
constexpr int tile_rows = 16;
constexpr int tile_pieces = tile_rows * step_k / 8;  // pieces of 16 bytes
constexpr int64_t tile_bytes = int64_t(tile_pieces) * 16;
// A warp streams at most 4 groups of 16 rows; 2 above 16 tokens, where 4 groups' accumulators
// would pass the 128 registers that two resident blocks allow (the compiler spilled them).
constexpr int max_groups_per_warp = 4;
int64_t max_groups_per_warp_for(int64_t tokens) { return tokens > 16 ? 2 : max_groups_per_warp; }

struct PipelinedArguments {
  const __nv_bfloat16* in;      // [T, K]
  const __nv_bfloat16* weight;  // [N, K]
  void* out;                    // [T, N], bf16 or f32
  const void* bias;             // [N] or null
  int64_t tokens, inner, columns, k_per_split;
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

// At most 128 registers per thread, so that two blocks of 256 threads fit on a multiprocessor
// (this grid's and the next launch's, or two of this grid's).
template <int token_tiles, int groups, int stages>
__global__ void __launch_bounds__(pipelined_threads, 2) pipelined_kernel(const __grid_constant__ PipelinedArguments args) {
  static_assert(stages >= 2 && (stages & (stages - 1)) == 0, "ring slots are taken modulo stages");
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

  // Tile j of this warp (step begin + j / team groups, group j % team groups) goes to slot
  // j % stages. Every call commits a group of copies, empty past the last tile, so that
  // "all but the newest stages - 2 groups have landed" always means "tile j has landed".
  int issued = 0;
  int issue_step = step_begin;
  int issue_group = 0;
  auto issue_next_tile = [&]() {
    if (issued < tiles) {
      const int64_t first_row = (group_begin + issue_group) * tile_rows;
      const int64_t k0 = k_begin + int64_t(issue_step) * step_k;
      uint4* tile = ring + (issued % stages) * tile_pieces;
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
                          valid ? args.weight + weight_row * args.inner + k : args.weight, valid);
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
  for (int i = 0; i < stages - 1; ++i) issue_next_tile();
  wait_for_previous_grid();
  if (args.overlap != Overlap::none) allow_next_grid();
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
#pragma unroll
    for (int n = 0; n < token_tiles; ++n) {
      const int token = min(8 * n + g, int(args.tokens) - 1);
#pragma unroll
      for (int p = 0; p < 2; ++p) b[n][p] = input[token * input_pieces + swizzled(token, step * 8 + c + 4 * p)];
    }
#pragma unroll
    for (int group = 0; group < groups; ++group) {
      if (group < team_groups) {
        pipeline_wait<stages - 2>();  // tile `consumed` has landed, for this lane's pieces
        __syncwarp();                 // and for every lane's; the slot read last step is free
        issue_next_tile();            // into that slot: tile consumed + stages - 1
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
      if (column < args.columns) store_output(args, token, column, sum);
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
      store_output(args, token, column, sum);
    }
    cluster.sync();
  }
#else
  // Thread-block clusters exist from sm_90 on; a split plan fails at launch before that.
  (void)block_group_end;
#endif
}

template <int token_tiles, int groups, int stages>
void launch_pipelined(const PipelinedArguments& args, dim3 grid, size_t shared, cudaStream_t stream) {
  auto kernel = pipelined_kernel<token_tiles, groups, stages>;
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

template <int token_tiles, int groups>
void launch_pipelined_for_groups(const PipelinedArguments& args, int stages, dim3 grid, size_t shared,
                                 cudaStream_t stream) {
  if (stages == 4) {
    launch_pipelined<token_tiles, groups, 4>(args, grid, shared, stream);
  } else {
    launch_pipelined<token_tiles, groups, 8>(args, grid, shared, stream);
  }
}

template <int token_tiles>
void launch_pipelined_for_tokens(const PipelinedArguments& args, const WeightStreamingPlan& plan, dim3 grid,
                                 size_t shared, cudaStream_t stream) {
  if (plan.groups_per_warp == 1) {
    launch_pipelined_for_groups<token_tiles, 1>(args, plan.stages, grid, shared, stream);
  } else if (plan.groups_per_warp == 2) {
    launch_pipelined_for_groups<token_tiles, 2>(args, plan.stages, grid, shared, stream);
  } else if constexpr (token_tiles < 4) {
    launch_pipelined_for_groups<token_tiles, 4>(args, plan.stages, grid, shared, stream);
  } else {
    fail("matmul", "pipelined plans take at most 2 groups per warp above 16 tokens (a bug in the caller)");
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Token tiles of 8 a kernel instantiation covers: 1, 2 or 4 (3 runs as 4).
int64_t token_tiles_for(int64_t tokens) {
  const int64_t tiles = ceil_div(tokens, 8);
  return tiles <= 2 ? tiles : 4;
}

// The pipelined kernel's dynamic shared memory, in bytes (all multiples of 16).
struct PipelineLayout {
  int64_t warp_region = 0;  // each warp's ring, later its partial sums
  int64_t input_offset = 0;
  int64_t block_sums_offset = 0;
  int64_t block_sums_pitch = 0;  // floats
  int64_t total = 0;
};
PipelineLayout pipeline_layout(int64_t tokens, int64_t k_per_split, int splits, int k_warps, int stages,
                               int groups_per_warp) {
  PipelineLayout layout;
  const int64_t ring = stages * tile_bytes;
  const int64_t partial = 8 * token_tiles_for(tokens) * (tile_rows * groups_per_warp + 4) * int64_t(sizeof(float));
  layout.warp_region = std::max(ring, partial);
  layout.input_offset = pipelined_warps * layout.warp_region;
  layout.block_sums_offset = layout.input_offset + tokens * k_per_split * int64_t(sizeof(__nv_bfloat16));
  layout.block_sums_pitch = int64_t(pipelined_warps / k_warps) * groups_per_warp * tile_rows + 4;
  const int64_t block_sums = splits > 1 ? tokens * layout.block_sums_pitch * int64_t(sizeof(float)) : 0;
  layout.total = layout.block_sums_offset + block_sums;
  return layout;
}

// Shared memory a block may take on sm_90 (H100, H200): 227 KB with the opt-in, and where two
// blocks must fit on one multiprocessor, half of its 228 KB less the 1 KB each block reserves.
// The launch checks the device's own limit.
constexpr int64_t shared_per_block_limit = 227 * 1024;
constexpr int64_t shared_per_block_two_resident = 228 * 1024 / 2 - 1024;

bool pipeline_options_valid(const WeightStreamingPipelineOptions& options) {
  return (options.k_warps == 1 || options.k_warps == 2 || options.k_warps == 4 || options.k_warps == 8) &&
         (options.stages == 4 || options.stages == 8) &&
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
      pipeline_layout(tokens, per_split, splits, options.k_warps, options.stages, int(max_groups_per_warp_for(tokens)));
  if (layout.total > budget) return false;
  k_per_split = per_split;
  return true;
}

// The smallest split of K (1 to 8 blocks of a cluster) that fits; 0 where none does.
int pipeline_splits(int64_t tokens, int64_t inner, const WeightStreamingPipelineOptions& options, int64_t& k_per_split) {
  if (!pipeline_options_valid(options) || tokens < 1 || tokens > weight_streaming_max_tokens || inner < 8 ||
      inner % 8 != 0) {
    return 0;
  }
  for (int splits = 1; splits <= weight_streaming_max_splits; ++splits) {
    if (pipeline_split_fits(tokens, inner, options, splits, k_per_split)) return splits;
  }
  return 0;
}

// The register kernel's own block plan (see plan_weight_streaming).
WeightStreamingPlan register_plan(int64_t tokens, int64_t inner, int64_t columns, int multiprocessors);

// ---------------------------------------------------------------------------------------------
// The automatic path's plan table.

enum class AutomaticKernel { cublas, registers, pipelined };

struct AutomaticPlanRow {
  int64_t max_tokens;        // products of at most this many input rows (the batch)
  int64_t max_weight_bytes;  // and at most this many weight bytes
  AutomaticKernel kernel;
  WeightStreamingPipelineOptions pipeline{};  // the pipelined kernel's options (else unused)
};

constexpr int64_t mebibytes = int64_t(1) << 20;

// Rows are tried in order and the first that covers the product decides; a product that no row
// covers, or whose row names a kernel that cannot take it, goes to cuBLAS. To follow a
// bench_decode_gemm run, give each (batch, weight size) its `suggest |` line's kernel and
// options, narrowest rows first, and cite the run's figures here. A pipelined row reads, e.g.:
//   {1, 64 * mebibytes, AutomaticKernel::pipelined,
//    {.k_warps = 8, .stages = 8, .blocks_per_multiprocessor = 1, .resident_limit = 1,
//     .overlap = WeightStreamingOverlap::early}},
constexpr AutomaticPlanRow automatic_plan_table[] = {
    // bench_decode_gemm on an H200 (2026-11-22), calls back to back: the register kernel read
    // Llama-3.1-8B's qkv and o weights (50 and 34 MB) faster than cuBLAS at batch 1 to 8
    // (2990-3059 against 2850-2948 GB/s, 2563-2695 against 2486-2528), and was slower past 8
    // tokens and on the larger gate+up and down weights, where cuBLAS reads at 3400-4060 GB/s.
    {8, 64 * mebibytes, AutomaticKernel::registers},
};

const AutomaticPlanRow* automatic_plan_row(int64_t tokens, int64_t inner, int64_t columns) {
  const int64_t weight_bytes = inner * columns * int64_t(sizeof(__nv_bfloat16));
  for (const AutomaticPlanRow& row : automatic_plan_table) {
    if (tokens <= row.max_tokens && weight_bytes <= row.max_weight_bytes) return &row;
  }
  return nullptr;
}

// The pipelined kernel's options where a plan must be found without a table row: a forced
// streaming path on a K the register kernel cannot take.
constexpr WeightStreamingPipelineOptions fallback_pipeline_options{};

WeightStreamingPlan register_plan(int64_t tokens, int64_t inner, int64_t columns, int multiprocessors) {
  // From bench_decode_gemm's sweeps on an H200 (Llama-3.1-8B shapes, batch 1 to 32, calls back
  // to back): a block's throughput is bound by its loads in flight, so K is split over a cluster
  // until the grid has about two blocks per multiprocessor, choosing between 64- and 128-row
  // blocks the grid closest to that (128 on a tie: the input is then read half as often); then
  // the launch overlaps the previous kernel, which gained 3-6% on such grids (and lost on larger
  // ones). 2 steps of loads in flight up to 8 tokens; 4 beyond, with the input slice staged in
  // shared memory where it fits (there cuBLAS was faster on these shapes all the same).
  const int64_t wanted_blocks = 2 * int64_t(multiprocessors > 0 ? multiprocessors : 1);
  int best_m_tiles = 2, best_splits = 1;
  int64_t best_blocks = 0;
  for (int m_tiles : {2, 1}) {
    const int64_t row_blocks = (columns + 64 * m_tiles - 1) / (64 * m_tiles);
    for (int splits : {1, 2, 4}) {
      const int64_t blocks = row_blocks * splits;
      if (blocks <= wanted_blocks && blocks > best_blocks) {
        best_blocks = blocks;
        best_m_tiles = m_tiles;
        best_splits = splits;
      }
    }
  }
  const int unroll = tokens <= 8 ? 2 : 4;
  WeightStreamingPlan plan = plan_weight_streaming(inner, best_m_tiles, unroll, best_splits, tokens > 8);
  if (plan.stage_input && staged_bytes(tokens, plan) > weight_streaming_max_staged_bytes) plan.stage_input = false;
  // best_blocks == 0: even one 128-row block per row range is more than the wanted grid.
  plan.overlap = best_blocks > 0 && tokens <= 8 ? WeightStreamingOverlap::early : WeightStreamingOverlap::none;
  return plan;
}


}  // namespace

bool weight_streaming_registers_apply(int64_t inner) { return inner > 0 && inner % 32 == 0; }

bool weight_streaming_applies(const TensorView& in, const TensorView& weight) {
  if (in.rank < 1 || weight.rank != 2 || in.dtype != DType::bf16 || weight.dtype != DType::bf16) return false;
  const int64_t inner = weight.dim(1);
  if (inner == 0 || in.dim(-1) != inner || inner % 8 != 0) return false;
  const int64_t tokens = in.numel() / inner;
  if (tokens < 1 || tokens > weight_streaming_max_tokens || weight.dim(0) < 1 ||
      ((reinterpret_cast<uintptr_t>(in.data) | reinterpret_cast<uintptr_t>(weight.data)) & 15) != 0) {
    return false;
  }
  return weight_streaming_registers_apply(inner) || weight_streaming_pipeline_fits(tokens, inner, fallback_pipeline_options);
}

WeightStreamingPlan plan_weight_streaming(int64_t inner, int m_tiles, int unroll, int splits, bool stage_input) {
  WeightStreamingPlan plan;
  plan.kernel = WeightStreamingKernel::registers;
  plan.stage_input = stage_input;
  plan.m_tiles = m_tiles == 2 ? 2 : 1;
  plan.unroll = unroll == 2 ? 2 : 4;
  const int64_t steps = (inner + step_k - 1) / step_k;
  int64_t wanted = splits < 1 ? 1 : splits;
  if (wanted > weight_streaming_max_splits) wanted = weight_streaming_max_splits;
  if (wanted > steps) wanted = steps;
  plan.k_per_split = (steps + wanted - 1) / wanted * step_k;
  plan.splits = int((inner + plan.k_per_split - 1) / plan.k_per_split);
  return plan;
}

bool weight_streaming_preferred(int64_t tokens, int64_t inner, int64_t columns) {
  if (tokens < 1 || tokens > weight_streaming_max_tokens || inner < 8 || inner % 8 != 0 || columns < 1) return false;
  const AutomaticPlanRow* row = automatic_plan_row(tokens, inner, columns);
  if (row == nullptr) return false;
  switch (row->kernel) {
    case AutomaticKernel::cublas: return false;
    case AutomaticKernel::registers: return weight_streaming_registers_apply(inner);
    case AutomaticKernel::pipelined: return weight_streaming_pipeline_fits(tokens, inner, row->pipeline);
  }
  return false;
}

WeightStreamingPlan plan_weight_streaming(int64_t tokens, int64_t inner, int64_t columns, int multiprocessors) {
  const AutomaticPlanRow* row = automatic_plan_row(tokens, inner, columns);
  if (row != nullptr && row->kernel == AutomaticKernel::pipelined && weight_streaming_pipeline_fits(tokens, inner, row->pipeline)) {
    return plan_weight_streaming_pipelined(tokens, inner, columns, multiprocessors, row->pipeline);
  }
  if (weight_streaming_registers_apply(inner)) return register_plan(tokens, inner, columns, multiprocessors);
  return plan_weight_streaming_pipelined(tokens, inner, columns, multiprocessors, fallback_pipeline_options);
}

int64_t weight_streaming_staged_bytes(int64_t tokens, const WeightStreamingPlan& plan) {
  return plan.kernel == WeightStreamingKernel::registers && plan.stage_input ? staged_bytes(tokens, plan) : 0;
}

bool weight_streaming_pipeline_fits(int64_t tokens, int64_t inner, const WeightStreamingPipelineOptions& options) {
  int64_t k_per_split = 0;
  return pipeline_splits(tokens, inner, options, k_per_split) > 0;
}

WeightStreamingPlan plan_weight_streaming_pipelined(int64_t tokens, int64_t inner, int64_t columns, int multiprocessors,
                                                    const WeightStreamingPipelineOptions& options) {
  WeightStreamingPlan plan;
  plan.kernel = WeightStreamingKernel::pipelined;
  plan.splits = pipeline_splits(tokens, inner, options, plan.k_per_split);
  LOUISKV_REQUIRE(plan.splits > 0, "matmul",
                  "the pipelined weight-streaming kernel cannot take " + std::to_string(tokens) + " rows of K = " +
                      std::to_string(inner) +
                      " with these options (K must be a multiple of 8, and the input slice of the largest split "
                      "must fit in shared memory): a bug in the caller, which should ask "
                      "weight_streaming_pipeline_fits first");
  plan.k_warps = options.k_warps;
  plan.stages = options.stages;
  plan.resident_limit = options.resident_limit;
  plan.overlap = options.overlap;
  // About multiprocessors x blocks_per_multiprocessor blocks in all. Where the rows alone cannot
  // fill that grid (a block of few K warps covers many rows: o at k_warps 1 has 32 blocks of
  // rows), K is split further over a cluster, up to 8 blocks.
  const int64_t groups = ceil_div(std::max<int64_t>(columns, 1), tile_rows);
  const int64_t teams_per_block = pipelined_warps / options.k_warps;
  const int64_t wanted_blocks = int64_t(std::max(multiprocessors, 1)) * options.blocks_per_multiprocessor;
  const int64_t wanted_splits = std::min<int64_t>(weight_streaming_max_splits,
                                                  ceil_div(wanted_blocks, ceil_div(groups, teams_per_block)));
  for (int splits = int(wanted_splits); splits > plan.splits; --splits) {
    int64_t k_per_split = 0;
    if (pipeline_split_fits(tokens, inner, options, splits, k_per_split)) {
      plan.splits = splits;
      plan.k_per_split = k_per_split;
      break;
    }
  }
  // Rows: no more blocks than would each get a team's worth of groups, and no team with more
  // than 4 groups (2 above 16 tokens).
  int64_t row_blocks = std::max<int64_t>(1, wanted_blocks / plan.splits);
  row_blocks = std::min(row_blocks, ceil_div(groups, teams_per_block));
  int64_t per_team = ceil_div(groups, row_blocks * teams_per_block);
  const int64_t most_per_team = max_groups_per_warp_for(tokens);
  if (per_team > most_per_team) {
    row_blocks = ceil_div(groups, most_per_team * teams_per_block);
    per_team = ceil_div(groups, row_blocks * teams_per_block);
  }
  plan.row_blocks = row_blocks;
  plan.groups_per_warp = per_team <= 1 ? 1 : per_team <= 2 ? 2 : 4;
  return plan;
}

int64_t weight_streaming_pipeline_shared_bytes(int64_t tokens, const WeightStreamingPlan& plan) {
  if (plan.kernel != WeightStreamingKernel::pipelined) return 0;
  return pipeline_layout(tokens, plan.k_per_split, plan.splits, plan.k_warps, plan.stages, plan.groups_per_warp).total;
}

namespace {

BiasType bias_type_of(const TensorView& bias, const char* op) {
  if (bias.empty()) return BiasType::none;
  switch (bias.dtype) {
    case DType::f32: return BiasType::f32;
    case DType::f16: return BiasType::f16;
    case DType::bf16: return BiasType::bf16;
    case DType::i32: break;
  }
  fail(op, "bias (" + bias.describe() + ") must be f32, f16 or bf16");
}

void launch_register_kernel(const WeightStreamingParams& params, int64_t tokens, int64_t inner, int64_t columns,
                            cudaStream_t stream) {
  const char* op = "matmul";
  const WeightStreamingPlan& plan = params.plan;
  LOUISKV_REQUIRE(weight_streaming_registers_apply(inner), op,
                  "the register weight-streaming kernel needs K a multiple of 32, not " + std::to_string(inner) +
                      " (the pipelined kernel takes multiples of 8)");
  LOUISKV_REQUIRE(plan.splits >= 1 && plan.splits <= weight_streaming_max_splits && plan.k_per_split > 0 &&
                      plan.k_per_split % step_k == 0 && plan.k_per_split * plan.splits >= inner &&
                      (plan.splits - 1) * plan.k_per_split < inner && (plan.m_tiles == 1 || plan.m_tiles == 2) &&
                      (plan.unroll == 2 || plan.unroll == 4),
                  op, "invalid weight-streaming plan (a bug in the caller)");
  LOUISKV_REQUIRE(!plan.stage_input || staged_bytes(tokens, plan) <= weight_streaming_max_staged_bytes, op,
                  "the plan stages " + std::to_string(staged_bytes(tokens, plan)) +
                      " bytes of input per block, over the limit (a bug in the caller)");
  const int64_t row_blocks = (columns + 64 * plan.m_tiles - 1) / (64 * plan.m_tiles);
  require_grid_dimension(row_blocks, 65535, op, "the weight rows");

  KernelArguments args{};
  args.in = params.in.as<const __nv_bfloat16>();
  args.weight = params.weight.as<const __nv_bfloat16>();
  args.out = params.out.data;
  args.bias = params.bias.empty() ? nullptr : params.bias.data;
  args.tokens = tokens;
  args.inner = inner;
  args.columns = columns;
  args.k_per_split = plan.k_per_split;
  args.splits = plan.splits;
  args.out_f32 = params.out.dtype == DType::f32;
  args.bias_type = bias_type_of(params.bias, op);
  const dim3 grid(unsigned(plan.splits), unsigned(row_blocks));
  args.overlap = plan.overlap;
  const int64_t token_tiles = (tokens + 7) / 8;
  if (token_tiles == 1) {
    launch_for_tokens<1>(args, plan, grid, stream);
  } else if (token_tiles == 2) {
    launch_for_tokens<2>(args, plan, grid, stream);
  } else {
    launch_for_tokens<4>(args, plan, grid, stream);
  }
}

void launch_pipelined_kernel(const WeightStreamingParams& params, int64_t tokens, int64_t inner, int64_t columns,
                             cudaStream_t stream) {
  const char* op = "matmul";
  const WeightStreamingPlan& plan = params.plan;
  const int64_t groups = ceil_div(columns, tile_rows);
  const int64_t teams_per_block =
      plan.k_warps >= 1 && plan.k_warps <= pipelined_warps ? pipelined_warps / plan.k_warps : 0;
  LOUISKV_REQUIRE((plan.k_warps == 1 || plan.k_warps == 2 || plan.k_warps == 4 || plan.k_warps == 8) &&
                      (plan.stages == 4 || plan.stages == 8) &&
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
      pipeline_layout(tokens, plan.k_per_split, plan.splits, plan.k_warps, plan.stages, plan.groups_per_warp);

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
  args.weight = params.weight.as<const __nv_bfloat16>();
  args.out = params.out.data;
  args.bias = params.bias.empty() ? nullptr : params.bias.data;
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

}  // namespace

void launch_matmul_weight_streaming(const WeightStreamingParams& params, cudaStream_t stream) {
  const char* op = "matmul";
  LOUISKV_REQUIRE(weight_streaming_applies(params.in, params.weight), op,
                  "in (" + params.in.describe() + ") and weight (" + params.weight.describe() +
                      ") do not fit the weight-streaming kernels");
  const int64_t inner = params.weight.dim(1);
  const int64_t tokens = params.in.numel() / inner;
  const int64_t columns = params.weight.dim(0);
  LOUISKV_REQUIRE(params.out.numel() == tokens * columns && (params.out.dtype == DType::bf16 || params.out.dtype == DType::f32),
                  op, "out (" + params.out.describe() + ") must hold " + std::to_string(tokens) + " rows of " +
                          std::to_string(columns) + " bf16 or f32 values");
  LOUISKV_REQUIRE(params.bias.empty() || params.bias.numel() == columns, op,
                  "bias (" + params.bias.describe() + ") must hold one value per output column");
  if (params.plan.kernel == WeightStreamingKernel::pipelined) {
    launch_pipelined_kernel(params, tokens, inner, columns, stream);
  } else {
    launch_register_kernel(params, tokens, inner, columns, stream);
  }
}

}  // namespace louiskv::kernels
