#include "backend/cuda/matmul_weight_streaming.h"

#include <cuda_bf16.h>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int warps = 4;
constexpr int threads = warps * 32;
constexpr int block_rows = warps * 16;  // weight rows (output columns) per block
constexpr int chunk_k = 32;             // K covered by one 16-byte load of each of 4 lanes
constexpr int batch_chunks = 4;         // chunks whose loads are issued before any MMA
constexpr int64_t split_granule = chunk_k * batch_chunks;
// The split-K counters sit in a region of fixed size at the start of the workspace: every
// product must find them where the previous ones left them at zero, whatever its own size
// (a region sized per product would let one product's partial sums land on the next one's
// counters).
constexpr int64_t max_split_row_blocks = 65536;
constexpr int64_t counter_bytes = max_split_row_blocks * int64_t(sizeof(int));

struct KernelArguments {
  const __nv_bfloat16* in;      // [T, K]
  const __nv_bfloat16* weight;  // [N, K]
  void* out;                    // [T, N]
  const void* bias;             // [N] or null
  float* partial;               // [splits, T, N]
  int* counters;                // [row blocks]
  int64_t tokens, inner, columns, k_per_split;
  int splits;
};

// 16 bytes of weights read once: evict-first, so they do not push the inputs out of the caches.
__device__ __forceinline__ uint4 load_streaming(const __nv_bfloat16* address) {
  return __ldcs(reinterpret_cast<const uint4*>(address));
}

template <class Out, class Bias>
__device__ __forceinline__ void store_result(const KernelArguments& args, int64_t token, int64_t column, float value) {
  if (args.bias) value += to_float(static_cast<const Bias*>(args.bias)[column]);
  static_cast<Out*>(args.out)[token * args.columns + column] = from_float<Out>(value);
}

// D[n, t] = sum_k W[n, k] X[t, k] with W as the MMA's A operand (16 rows per warp) and X^T as B
// (8 tokens per n-tile). The order of k inside a fragment does not matter as long as A and B
// agree, so lane (g, c) takes 8 consecutive k of row g (and g + 8) and of token g with one
// 16-byte load each, and hands words 2j, 2j + 1 to k-step j.
template <int token_tiles, class Out, class Bias>
__global__ void __launch_bounds__(threads) weight_streaming_kernel(const KernelArguments args) {
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;
  const int c = lane % 4;
  const int64_t row_block = blockIdx.x;
  const int split = blockIdx.y;
  const int64_t row0 = row_block * block_rows + warp * 16 + g;
  const int64_t row1 = row0 + 8;
  const bool row0_valid = row0 < args.columns;
  const bool row1_valid = row1 < args.columns;
  const int64_t k_begin = int64_t(split) * args.k_per_split;
  const int64_t k_end = min(args.inner, k_begin + args.k_per_split);
  const __nv_bfloat16* w0 = args.weight + (row0_valid ? row0 : 0) * args.inner + c * 8;
  const __nv_bfloat16* w1 = args.weight + (row1_valid ? row1 : 0) * args.inner + c * 8;

  float accumulator[token_tiles][4];
#pragma unroll
  for (int t = 0; t < token_tiles; ++t) accumulator[t][0] = accumulator[t][1] = accumulator[t][2] = accumulator[t][3] = 0.0f;

  const uint4 zero{0u, 0u, 0u, 0u};
  for (int64_t k = k_begin; k < k_end; k += split_granule) {
    uint4 a0[batch_chunks], a1[batch_chunks], x[batch_chunks][token_tiles];
#pragma unroll
    for (int u = 0; u < batch_chunks; ++u) {
      const int64_t kc = k + u * chunk_k;
      const bool in_range = kc < k_end;
      a0[u] = in_range && row0_valid ? load_streaming(w0 + kc) : zero;
      a1[u] = in_range && row1_valid ? load_streaming(w1 + kc) : zero;
#pragma unroll
      for (int t = 0; t < token_tiles; ++t) {
        const int64_t token = t * 8 + g;
        x[u][t] = in_range && token < args.tokens
                      ? __ldg(reinterpret_cast<const uint4*>(args.in + token * args.inner + kc + c * 8))
                      : zero;
      }
    }
#pragma unroll
    for (int u = 0; u < batch_chunks; ++u) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const uint32_t* p0 = reinterpret_cast<const uint32_t*>(&a0[u]);
        const uint32_t* p1 = reinterpret_cast<const uint32_t*>(&a1[u]);
        const uint32_t a[4] = {p0[2 * j], p1[2 * j], p0[2 * j + 1], p1[2 * j + 1]};
#pragma unroll
        for (int t = 0; t < token_tiles; ++t) {
          const uint32_t* b = reinterpret_cast<const uint32_t*>(&x[u][t]);
          mma_bf16_16x8x16(accumulator[t], a, b[2 * j], b[2 * j + 1]);
        }
      }
    }
  }

  // Accumulator element e of token tile t: row (e < 2 ? row0 : row1), token t * 8 + 2c + e % 2.
  if (args.splits == 1) {
#pragma unroll
    for (int t = 0; t < token_tiles; ++t) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t row = e < 2 ? row0 : row1;
        const int64_t token = t * 8 + 2 * c + (e % 2);
        if (row < args.columns && token < args.tokens) store_result<Out, Bias>(args, token, row, accumulator[t][e]);
      }
    }
    return;
  }

  float* partial = args.partial + int64_t(split) * args.tokens * args.columns;
#pragma unroll
  for (int t = 0; t < token_tiles; ++t) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t row = e < 2 ? row0 : row1;
      const int64_t token = t * 8 + 2 * c + (e % 2);
      if (row < args.columns && token < args.tokens) partial[token * args.columns + row] = accumulator[t][e];
    }
  }
  // The last block of this row range to finish sums the splits' partials (the classic
  // threadfence reduction): its fence orders its reads after every other block's writes.
  __threadfence();
  __syncthreads();
  __shared__ bool last;
  if (threadIdx.x == 0) last = atomicAdd(&args.counters[row_block], 1) == args.splits - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  const int64_t first_row = row_block * block_rows;
  for (int index = threadIdx.x; index < block_rows * args.tokens; index += threads) {
    const int64_t row = first_row + index % block_rows;
    const int64_t token = index / block_rows;
    if (row >= args.columns) continue;
    float sum = 0.0f;
    for (int s = 0; s < args.splits; ++s) sum += __ldcg(args.partial + (int64_t(s) * args.tokens + token) * args.columns + row);
    store_result<Out, Bias>(args, token, row, sum);
  }
  if (threadIdx.x == 0) args.counters[row_block] = 0;  // ready for the next launch
}

int row_blocks_of(int64_t columns) { return int((columns + block_rows - 1) / block_rows); }

template <int token_tiles, class Out>
void launch_with_out(const KernelArguments& args, const TensorView& bias, dim3 grid, cudaStream_t stream) {
  switch (bias.empty() ? DType::f32 : bias.dtype) {
    case DType::f32: weight_streaming_kernel<token_tiles, Out, float><<<grid, threads, 0, stream>>>(args); break;
    case DType::f16: weight_streaming_kernel<token_tiles, Out, __half><<<grid, threads, 0, stream>>>(args); break;
    case DType::bf16:
      weight_streaming_kernel<token_tiles, Out, __nv_bfloat16><<<grid, threads, 0, stream>>>(args);
      break;
    case DType::i32: break;  // rejected by the checks
  }
}

template <int token_tiles>
void launch_with_tiles(const KernelArguments& args, const TensorView& out, const TensorView& bias, dim3 grid,
                       cudaStream_t stream) {
  if (out.dtype == DType::bf16) {
    launch_with_out<token_tiles, __nv_bfloat16>(args, bias, grid, stream);
  } else {
    launch_with_out<token_tiles, float>(args, bias, grid, stream);
  }
}

}  // namespace

bool weight_streaming_applies(const TensorView& in, const TensorView& weight) {
  if (in.rank < 1 || weight.rank != 2 || in.dtype != DType::bf16 || weight.dtype != DType::bf16) return false;
  const int64_t inner = weight.dim(1);
  if (inner == 0 || in.dim(-1) != inner || inner % chunk_k != 0) return false;
  const int64_t tokens = in.numel() / inner;
  return tokens >= 1 && tokens <= weight_streaming_max_tokens &&
         ((reinterpret_cast<uintptr_t>(in.data) | reinterpret_cast<uintptr_t>(weight.data)) & 15) == 0;
}

WeightStreamingPlan plan_weight_streaming(int64_t tokens, int64_t inner, int64_t columns, int multiprocessors) {
  WeightStreamingPlan plan;
  const int64_t row_blocks = row_blocks_of(columns);
  // Block slots of the whole GPU. The kernel needs about 70 registers a thread and no shared
  // memory, so 7 to 9 blocks fit a multiprocessor; counting 6 errs towards a grid that is
  // resident at once (a second, partial wave would idle most of the GPU).
  const int64_t slots = int64_t(multiprocessors) * 6;
  // Partial sums stay well below the weights: at most an eighth of their bytes.
  int64_t max_splits = inner / (16 * tokens);
  const int64_t granules = (inner + split_granule - 1) / split_granule;  // K in steps of 128
  if (max_splits > granules) max_splits = granules;
  if (max_splits > 64) max_splits = 64;
  if (max_splits < 1) max_splits = 1;
  double best_score = -1.0;
  for (int64_t splits = 1; splits <= max_splits; ++splits) {
    const int64_t k_per_split = (granules + splits - 1) / splits * split_granule;
    const int64_t real_splits = (inner + k_per_split - 1) / k_per_split;
    if (real_splits != splits) continue;
    const int64_t blocks = row_blocks * splits;
    const int64_t waves = (blocks + slots - 1) / slots;
    // The share of block slots busy over the run; more splits must earn their partial sums.
    const double score = double(blocks) / double(waves * slots);
    if (score > best_score + 0.05) {
      best_score = score;
      plan.splits = int(splits);
      plan.k_per_split = k_per_split;
    }
  }
  if (plan.k_per_split == 0 || row_blocks > max_split_row_blocks) {
    plan.splits = 1;
    plan.k_per_split = granules * split_granule;
  }
  plan.workspace_bytes =
      plan.splits > 1 ? counter_bytes + int64_t(plan.splits) * tokens * columns * int64_t(sizeof(float)) : 0;
  return plan;
}

void launch_matmul_weight_streaming(const WeightStreamingParams& params, cudaStream_t stream) {
  const char* op = "matmul";
  LOUISKV_REQUIRE(weight_streaming_applies(params.in, params.weight), op,
                  "in (" + params.in.describe() + ") and weight (" + params.weight.describe() +
                      ") do not fit the weight-streaming kernel");
  const int64_t inner = params.weight.dim(1);
  const int64_t tokens = params.in.numel() / inner;
  const int64_t columns = params.weight.dim(0);
  LOUISKV_REQUIRE(params.plan.splits >= 1 && params.plan.k_per_split % split_granule == 0 &&
                      params.plan.k_per_split * params.plan.splits >= inner,
                  op, "invalid split of K (a bug in the caller's plan)");
  LOUISKV_REQUIRE(params.plan.splits == 1 || (params.workspace != nullptr &&
                                              params.workspace_bytes >= params.plan.workspace_bytes),
                  op, "workspace too small for the split of K");
  require_grid_dimension(params.plan.splits, 65535, op, "the split of K");

  KernelArguments args{};
  args.in = params.in.as<const __nv_bfloat16>();
  args.weight = params.weight.as<const __nv_bfloat16>();
  args.out = params.out.data;
  args.bias = params.bias.empty() ? nullptr : params.bias.data;
  const int64_t row_blocks = row_blocks_of(columns);
  LOUISKV_REQUIRE(params.plan.splits == 1 || row_blocks <= max_split_row_blocks, op,
                  "too many output columns for a split of K");
  args.counters = static_cast<int*>(params.workspace);
  args.partial = params.workspace ? reinterpret_cast<float*>(static_cast<char*>(params.workspace) + counter_bytes)
                                  : nullptr;
  args.tokens = tokens;
  args.inner = inner;
  args.columns = columns;
  args.k_per_split = params.plan.k_per_split;
  args.splits = params.plan.splits;
  dim3 grid(unsigned(row_blocks), unsigned(params.plan.splits));
  const int64_t token_tiles = (tokens + 7) / 8;
  if (token_tiles == 1) {
    launch_with_tiles<1>(args, params.out, params.bias, grid, stream);
  } else if (token_tiles == 2) {
    launch_with_tiles<2>(args, params.out, params.bias, grid, stream);
  } else {
    launch_with_tiles<4>(args, params.out, params.bias, grid, stream);
  }
  LOUISKV_CUDA_CHECK_LAUNCH();
}

}  // namespace louiskv::kernels
