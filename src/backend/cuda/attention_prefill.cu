#include "backend/cuda/attention_prefill.h"

#include <cuda_bf16.h>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

// A block owns 16 queries of one head per warp (4 or 8 warps) and walks the key tiles of 64
// keys up to the causal limit of its last query. K and V tiles go through three shared-memory
// stages, so one barrier per tile suffices: after it, tile t + 1 has landed, every warp is done
// with tile t - 1, and tile t + 2 is loaded into that stage. Each warp computes the scores of
// tile t + 1 before the softmax of tile t, so that the tensor-core work of one overlaps the
// exponentials of the other instead of the two alternating across barriers.
constexpr int block_keys = 64;
constexpr int stages = 3;
// Measured on an H200 (bench_attention_prefill, causal from position 0, heads 32/8). Up to 8K
// tokens 4 warps (more blocks to spread; at 8K the shapes were within 4% of each other, either
// way in two runs); past that 8 warps, each K/V tile then feeding twice the queries. D = 128:
// with lookahead, 319 against 297 TFLOP/s at 32K. D = 64: warps of 32 queries (two MMA tiles per
// K/V fragment; no lookahead), 331 TFLOP/s at 32K, against 289 with warps of 16 queries.
int default_warps(int64_t tokens, int64_t /*head_dim*/) { return tokens >= 16384 ? 8 : 4; }
bool default_lookahead(int64_t tokens, int64_t head_dim) { return default_warps(tokens, head_dim) == 8; }
int default_queries_per_warp(int64_t /*tokens*/, int64_t head_dim) { return head_dim == 64 ? 32 : 16; }

struct KernelArguments {
  __nv_bfloat16* out;
  const __nv_bfloat16* q;
  const __nv_bfloat16* k;
  const __nv_bfloat16* v;
  int64_t tokens;
  int64_t first_position;
  int64_t capacity;
  int query_heads;
  int group;  // query heads per KV head
  float scale_log2;  // softmax scale times log2(e), positive: the kernel works in base 2
};

// Rows of head_dim bf16 are stored as 16-byte chunks whose index is XORed with the row's low 3
// bits, so that the 8 rows an ldmatrix phase reads fall into 8 different bank groups.
template <int head_dim>
__device__ __forceinline__ int swizzled(int row, int chunk) {
  return row * head_dim + ((chunk ^ (row & 7)) << 3);
}

// Loads `rows` rows of head_dim bf16, starting at `source` with `row_stride` elements between
// rows, into a swizzled tile; rows at or past `valid_rows` are zero-filled.
template <int head_dim, int rows, int threads>
__device__ __forceinline__ void load_tile(__nv_bfloat16* tile, const __nv_bfloat16* source,
                                          int64_t row_stride, int64_t valid_rows) {
  constexpr int chunks_per_row = head_dim / 8;
  constexpr int chunks = rows * chunks_per_row;
  static_assert(chunks % threads == 0, "tile must split evenly over the block");
#pragma unroll
  for (int i = 0; i < chunks / threads; ++i) {
    int index = threadIdx.x + i * threads;
    int row = index / chunks_per_row;
    int chunk = index % chunks_per_row;
    bool valid = row < valid_rows;
    const __nv_bfloat16* from = source + (valid ? row * row_stride : 0) + chunk * 8;
    copy_async_16(tile + swizzled<head_dim>(row, chunk), from, valid);
  }
}

// Each warp owns 16 x m_tiles queries: with two tiles every K and V fragment read from shared
// memory feeds twice the MMAs (half the shared-memory traffic per FLOP), at the cost of twice
// the accumulator registers (affordable at D = 64).
template <int head_dim, int warps, bool lookahead, int m_tiles>
__global__ void __launch_bounds__(warps * 32, 8 / warps)
    attention_prefill_kernel(const __grid_constant__ KernelArguments args) {
  constexpr int threads = warps * 32;
  constexpr int warp_queries = 16 * m_tiles;
  constexpr int block_queries = warps * warp_queries;
  constexpr int k_steps = head_dim / 16;      // MMA k-steps over the head dim (Q K^T)
  constexpr int key_tiles = block_keys / 8;   // n-tiles of 8 keys in S
  constexpr int dim_tiles = head_dim / 8;     // n-tiles of 8 dims in O
  constexpr int tile_elements = block_keys * head_dim;

  extern __shared__ __align__(128) unsigned char shared_bytes[];
  auto* q_tile = reinterpret_cast<__nv_bfloat16*>(shared_bytes);
  __nv_bfloat16* kv_tiles = q_tile + block_queries * head_dim;  // [stages][K, V]

  const int head = blockIdx.x;
  const int kv_head = head / args.group;
  // The heaviest query blocks (most keys under the causal limit) start first.
  const int64_t query_begin = int64_t(gridDim.y - 1 - blockIdx.y) * block_queries;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;

  const int64_t row_stride = int64_t(args.query_heads) * head_dim;
  const int64_t valid_queries = args.tokens - query_begin;
  // Keys [0, key_end) are seen by some query of this block.
  const int64_t last_query = query_begin + (valid_queries < block_queries ? valid_queries : block_queries) - 1;
  const int64_t key_end = args.first_position + last_query + 1;
  const int tiles = int((key_end + block_keys - 1) / block_keys);
  // This warp's queries sit at positions [warp_first_position, + warp_queries).
  const int64_t warp_first_position = args.first_position + query_begin + warp * warp_queries;

  const __nv_bfloat16* k_head = args.k + int64_t(kv_head) * args.capacity * head_dim;
  const __nv_bfloat16* v_head = args.v + int64_t(kv_head) * args.capacity * head_dim;

  auto issue_tile = [&](int tile) {
    if (tile < tiles) {
      const int64_t key_begin = int64_t(tile) * block_keys;
      __nv_bfloat16* k_stage = kv_tiles + (tile % stages) * 2 * tile_elements;
      load_tile<head_dim, block_keys, threads>(k_stage, k_head + key_begin * head_dim, head_dim, key_end - key_begin);
      load_tile<head_dim, block_keys, threads>(k_stage + tile_elements, v_head + key_begin * head_dim, head_dim,
                                               key_end - key_begin);
    }
    copy_async_commit();  // an empty group past the end keeps the wait counts uniform
  };

  load_tile<head_dim, block_queries, threads>(q_tile, args.q + query_begin * row_stride + int64_t(head) * head_dim,
                                              row_stride, valid_queries);
  issue_tile(0);  // one group with Q
  issue_tile(1);
  copy_async_wait<1>();
  __syncthreads();

  uint32_t q_fragments[m_tiles][k_steps][4];
#pragma unroll
  for (int m = 0; m < m_tiles; ++m) {
#pragma unroll
    for (int step = 0; step < k_steps; ++step) {
      int row = warp * warp_queries + m * 16 + (lane % 16);
      load_matrix_x4(q_fragments[m][step], q_tile + swizzled<head_dim>(row, 2 * step + lane / 16));
    }
  }

  // S = Q K^T for this warp's queries and the tile's 64 keys, raw (unscaled).
  auto compute_scores = [&](float (&s)[m_tiles][key_tiles][4], int tile) {
    const __nv_bfloat16* k_tile = kv_tiles + (tile % stages) * 2 * tile_elements;
#pragma unroll
    for (int m = 0; m < m_tiles; ++m)
#pragma unroll
      for (int n = 0; n < key_tiles; ++n) s[m][n][0] = s[m][n][1] = s[m][n][2] = s[m][n][3] = 0.0f;
#pragma unroll
    for (int step = 0; step < k_steps; ++step) {
#pragma unroll
      for (int n = 0; n < key_tiles; n += 2) {
        uint32_t b[4];
        int key = n * 8 + (lane % 8) + (lane / 16) * 8;
        load_matrix_x4(b, k_tile + swizzled<head_dim>(key, 2 * step + (lane / 8) % 2));
#pragma unroll
        for (int m = 0; m < m_tiles; ++m) {
          mma_bf16_16x8x16(s[m][n], q_fragments[m][step], b[0], b[1]);
          mma_bf16_16x8x16(s[m][n + 1], q_fragments[m][step], b[2], b[3]);
        }
      }
    }
  };

  float o[m_tiles][dim_tiles][4];
#pragma unroll
  for (int m = 0; m < m_tiles; ++m)
#pragma unroll
    for (int d = 0; d < dim_tiles; ++d) o[m][d][0] = o[m][d][1] = o[m][d][2] = o[m][d][3] = 0.0f;
  // Each thread holds rows lane / 4 and lane / 4 + 8 of each of its warp's query tiles; the
  // running maxima are of the raw scores (the scale is positive, so it commutes with the maximum).
  float row_max[m_tiles][2], row_sum[m_tiles][2];
  int64_t my_position[m_tiles][2];
#pragma unroll
  for (int m = 0; m < m_tiles; ++m) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      row_max[m][half] = -INFINITY;
      row_sum[m][half] = 0.0f;
      my_position[m][half] = warp_first_position + m * 16 + lane / 4 + half * 8;
    }
  }

  // Online softmax of tile `tile` in base 2, then O += P V. `overlapped()` runs between the
  // maxima and the exponentials, in one basic block with the exponentials: with lookahead it
  // issues the next tile's score MMAs there, so that the tensor cores work while they run.
  auto softmax_and_accumulate = [&](float (&s)[m_tiles][key_tiles][4], int tile, auto&& overlapped) {
    const int64_t key_begin = int64_t(tile) * block_keys;
    const __nv_bfloat16* v_tile = kv_tiles + (tile % stages) * 2 * tile_elements + tile_elements;
    // Keys past a query's position are masked; only tiles reaching past the warp's first query
    // position need the test (a tile past its last query masks all of the warp's scores, and
    // adds nothing).
    if (key_begin + block_keys - 1 > warp_first_position) {
#pragma unroll
      for (int m = 0; m < m_tiles; ++m) {
#pragma unroll
        for (int n = 0; n < key_tiles; ++n) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            int64_t key = key_begin + n * 8 + 2 * (lane % 4) + (e % 2);
            if (key > my_position[m][e / 2]) s[m][n][e] = -INFINITY;
          }
        }
      }
    }
    float new_max[m_tiles][2];
    bool changed = false;
#pragma unroll
    for (int m = 0; m < m_tiles; ++m) {
      new_max[m][0] = row_max[m][0];
      new_max[m][1] = row_max[m][1];
#pragma unroll
      for (int n = 0; n < key_tiles; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) new_max[m][e / 2] = fmaxf(new_max[m][e / 2], s[m][n][e]);
      }
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        new_max[m][half] = fmaxf(new_max[m][half], __shfl_xor_sync(0xffffffffu, new_max[m][half], 1));
        new_max[m][half] = fmaxf(new_max[m][half], __shfl_xor_sync(0xffffffffu, new_max[m][half], 2));
        changed = changed || new_max[m][half] != row_max[m][half];
      }
    }
    // The first tile holds key 0, which every query sees, so new_max is finite from then on.
    // Once the maxima settle the corrections are exactly 1, and the rescale of O is skipped.
    if (__any_sync(0xffffffffu, changed)) {
#pragma unroll
      for (int m = 0; m < m_tiles; ++m) {
        float correction[2];
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          correction[half] = fast_exp2((row_max[m][half] - new_max[m][half]) * args.scale_log2);
          row_sum[m][half] *= correction[half];
        }
#pragma unroll
        for (int d = 0; d < dim_tiles; ++d) {
          o[m][d][0] *= correction[0];
          o[m][d][1] *= correction[0];
          o[m][d][2] *= correction[1];
          o[m][d][3] *= correction[1];
        }
      }
    }
    // From here to the end of P V no branch, so that the compiler can interleave the
    // exponentials with the MMAs of overlapped().
    overlapped();
    uint32_t p_fragments[m_tiles][key_tiles / 2][4];
#pragma unroll
    for (int m = 0; m < m_tiles; ++m) {
      float scaled_max[2];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        row_max[m][half] = new_max[m][half];
        scaled_max[half] = new_max[m][half] * args.scale_log2;
      }
#pragma unroll
      for (int n = 0; n < key_tiles; ++n) {
        // p = 2^(s * scale_log2 - max * scale_log2): one FMA and one exponential per score.
        float p0 = fast_exp2(fmaf(s[m][n][0], args.scale_log2, -scaled_max[0]));
        float p1 = fast_exp2(fmaf(s[m][n][1], args.scale_log2, -scaled_max[0]));
        float p2 = fast_exp2(fmaf(s[m][n][2], args.scale_log2, -scaled_max[1]));
        float p3 = fast_exp2(fmaf(s[m][n][3], args.scale_log2, -scaled_max[1]));
        row_sum[m][0] += p0 + p1;
        row_sum[m][1] += p2 + p3;
        // The C fragments of key tiles 2j and 2j+1 are exactly the A fragment of k-step j.
        p_fragments[m][n / 2][(n % 2) * 2 + 0] = pack_bf16_pair(p0, p1);
        p_fragments[m][n / 2][(n % 2) * 2 + 1] = pack_bf16_pair(p2, p3);
      }
    }
#pragma unroll
    for (int step = 0; step < block_keys / 16; ++step) {
#pragma unroll
      for (int d = 0; d < dim_tiles; d += 2) {
        uint32_t b[4];
        int key = step * 16 + (lane % 8) + ((lane / 8) % 2) * 8;
        load_matrix_x4_transposed(b, v_tile + swizzled<head_dim>(key, d + lane / 16));
#pragma unroll
        for (int m = 0; m < m_tiles; ++m) {
          mma_bf16_16x8x16(o[m][d], p_fragments[m][step], b[0], b[1]);
          mma_bf16_16x8x16(o[m][d + 1], p_fragments[m][step], b[2], b[3]);
        }
      }
    }
  };

  float s_even[m_tiles][key_tiles][4], s_odd[m_tiles][key_tiles][4];
  if constexpr (lookahead) {
    // After the barrier of step `tile`, tile + 1 has landed and tile - 1's stage is free. The
    // scores of tile + 1 are computed whether or not the warp needs them (a stage always holds
    // readable data), so that no branch separates them from the exponentials.
    compute_scores(s_even, 0);
    auto step = [&](int tile, float (&s_current)[m_tiles][key_tiles][4], float (&s_next)[m_tiles][key_tiles][4]) {
      copy_async_wait<0>();
      __syncthreads();
      issue_tile(tile + 2);
      softmax_and_accumulate(s_current, tile, [&] { compute_scores(s_next, tile + 1); });
    };
    // Two tiles per pass, so that the two score arrays swap roles without copies.
    for (int tile = 0; tile < tiles; tile += 2) {
      step(tile, s_even, s_odd);
      if (tile + 1 < tiles) step(tile + 1, s_odd, s_even);
    }
  } else {
    // After the barrier of step `tile`, tile has landed and tile - 1's stage is free.
    for (int tile = 0; tile < tiles; ++tile) {
      if (tile > 0) {
        copy_async_wait<1>();
        __syncthreads();
      }
      issue_tile(tile + 2);
      compute_scores(s_even, tile);
      softmax_and_accumulate(s_even, tile, [] {});
    }
  }
  copy_async_wait<0>();

  // Normalise and store; the four threads of a quad hold parts of the same two rows.
#pragma unroll
  for (int m = 0; m < m_tiles; ++m) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      row_sum[m][half] += __shfl_xor_sync(0xffffffffu, row_sum[m][half], 1);
      row_sum[m][half] += __shfl_xor_sync(0xffffffffu, row_sum[m][half], 2);
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      int64_t row = query_begin + warp * warp_queries + m * 16 + lane / 4 + half * 8;
      if (row >= args.tokens) continue;
      float inverse = 1.0f / row_sum[m][half];
      __nv_bfloat16* out_row = args.out + row * row_stride + int64_t(head) * head_dim;
#pragma unroll
      for (int d = 0; d < dim_tiles; ++d) {
        int column = d * 8 + 2 * (lane % 4);
        *reinterpret_cast<uint32_t*>(out_row + column) =
            pack_bf16_pair(o[m][d][half * 2] * inverse, o[m][d][half * 2 + 1] * inverse);
      }
    }
  }
}

template <int head_dim, int warps, bool lookahead, int m_tiles>
void launch_for_shape(const KernelArguments& args, int64_t tokens, cudaStream_t stream) {
  constexpr int block_queries = warps * 16 * m_tiles;
  constexpr size_t shared_bytes =
      size_t(block_queries + stages * 2 * block_keys) * head_dim * sizeof(__nv_bfloat16);
  auto kernel = attention_prefill_kernel<head_dim, warps, lookahead, m_tiles>;
  // Above 48 KB a kernel must opt in; doing it on every launch is cheap and keeps no state.
  LOUISKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared_bytes)));
  dim3 grid(unsigned(args.query_heads), unsigned((tokens + block_queries - 1) / block_queries));
  kernel<<<grid, warps * 32, shared_bytes, stream>>>(args);
  LOUISKV_CUDA_CHECK_LAUNCH();
}

template <int head_dim, int m_tiles>
void launch_for_queries(const KernelArguments& args, int64_t tokens, int warps, bool lookahead, cudaStream_t stream) {
  if (warps == 4) {
    if (lookahead) launch_for_shape<head_dim, 4, true, m_tiles>(args, tokens, stream);
    else launch_for_shape<head_dim, 4, false, m_tiles>(args, tokens, stream);
  } else {
    if (lookahead) launch_for_shape<head_dim, 8, true, m_tiles>(args, tokens, stream);
    else launch_for_shape<head_dim, 8, false, m_tiles>(args, tokens, stream);
  }
}

}  // namespace

void launch_attention_prefill(const PrefillAttentionParams& params, cudaStream_t stream) {
  const char* op = "attention_prefill";
  require_on_device(params.out, op, "out");
  require_on_device(params.q, op, "q");
  require_device_accessible(params.k, op, "k");
  require_device_accessible(params.v, op, "v");
  require_rank(params.q, 3, op, "q");
  require_rank(params.k, 3, op, "k");
  require_dtype(params.q, DType::bf16, op, "q");
  require_dtype(params.out, DType::bf16, op, "out");
  require_dtype(params.k, DType::bf16, op, "k");
  require_dtype(params.v, DType::bf16, op, "v");
  int64_t tokens = params.q.dim(0);
  int64_t query_heads = params.q.dim(1);
  int64_t head_dim = params.q.dim(2);
  int64_t kv_heads = params.k.dim(0);
  int64_t capacity = params.k.dim(1);
  LOUISKV_REQUIRE(params.out.numel() == params.q.numel(), op,
          "out (" + params.out.describe() + ") must have q's element count (" + params.q.describe() + ")");
  require_shape(params.k, {kv_heads, capacity, head_dim}, op, "k");
  require_shape(params.v, {kv_heads, capacity, head_dim}, op, "v");
  LOUISKV_REQUIRE(head_dim == 64 || head_dim == 128, op,
          "head dim " + std::to_string(head_dim) + " is not supported (64 or 128)");
  LOUISKV_REQUIRE(kv_heads > 0 && query_heads % kv_heads == 0, op,
          "query heads (" + std::to_string(query_heads) + ") must be a multiple of KV heads (" +
              std::to_string(kv_heads) + ")");
  LOUISKV_REQUIRE(params.scale > 0.0f, op,
                  "the softmax scale must be positive (got " + std::to_string(params.scale) + ")");
  LOUISKV_REQUIRE(params.first_position >= 0 && params.first_position + tokens <= capacity, op,
          "positions [" + std::to_string(params.first_position) + ", " +
              std::to_string(params.first_position + tokens) + ") exceed the cache capacity " +
              std::to_string(capacity));
  LOUISKV_REQUIRE(reinterpret_cast<uintptr_t>(params.q.data) % 16 == 0 &&
              reinterpret_cast<uintptr_t>(params.k.data) % 16 == 0 &&
              reinterpret_cast<uintptr_t>(params.v.data) % 16 == 0 &&
              reinterpret_cast<uintptr_t>(params.out.data) % 16 == 0,
          op, "q, k, v and out must be 16-byte aligned");
  const int warps = params.warps == 0 ? default_warps(tokens, head_dim) : params.warps;
  LOUISKV_REQUIRE(warps == 4 || warps == 8, op, "warps per block must be 4 or 8");
  LOUISKV_REQUIRE(params.queries_per_warp == 0 || params.queries_per_warp == 16 ||
                      (params.queries_per_warp == 32 && head_dim == 64),
                  op, "queries per warp must be 16, or 32 at head dim 64 (got " +
                          std::to_string(params.queries_per_warp) + ")");
  require_grid_dimension((tokens + warps * 16 - 1) / (warps * 16), 65535, op, "the prompt chunk");
  if (tokens == 0) return;

  KernelArguments args{};
  args.out = params.out.as<__nv_bfloat16>();
  args.q = params.q.as<const __nv_bfloat16>();
  args.k = params.k.as<const __nv_bfloat16>();
  args.v = params.v.as<const __nv_bfloat16>();
  args.tokens = tokens;
  args.first_position = params.first_position;
  args.capacity = capacity;
  args.query_heads = int(query_heads);
  args.group = int(query_heads / kv_heads);
  args.scale_log2 = params.scale * 1.4426950408889634f;
  const bool lookahead = params.score_lookahead < 0 ? default_lookahead(tokens, head_dim) : params.score_lookahead > 0;
  const int queries_per_warp =
      params.queries_per_warp == 0 ? default_queries_per_warp(tokens, head_dim) : params.queries_per_warp;
  if (head_dim == 64) {
    // Two query tiles per warp only without lookahead: both together would spill registers.
    if (queries_per_warp == 32 && warps == 4) launch_for_shape<64, 4, false, 2>(args, tokens, stream);
    else if (queries_per_warp == 32) launch_for_shape<64, 8, false, 2>(args, tokens, stream);
    else launch_for_queries<64, 1>(args, tokens, warps, lookahead, stream);
  } else {
    launch_for_queries<128, 1>(args, tokens, warps, lookahead, stream);
  }
}

}  // namespace louiskv::kernels
