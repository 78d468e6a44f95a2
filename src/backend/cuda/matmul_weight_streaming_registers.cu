// The register weight-streaming kernel (see matmul_weight_streaming.h): each warp streams 16-row
// weight tiles straight from memory into tensor-core fragments, K split over a cluster.
#include <cooperative_groups.h>
#include <cuda_bf16.h>

#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/matmul_weight_streaming_common.cuh"

namespace louiskv::kernels::streaming {

namespace {

namespace cg = cooperative_groups;

constexpr int warps = 4;
constexpr int threads = warps * 32;

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


}  // namespace

int64_t staged_bytes(int64_t tokens, const WeightStreamingPlan& plan) {
  return (tokens + 7) / 8 * 8 * plan.k_per_split * int64_t(sizeof(__nv_bfloat16));
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

}  // namespace louiskv::kernels::streaming
