#include "backend/cuda/attention_prefill.h"

#include <cuda_bf16.h>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

// A block owns 16 queries of one head per warp (4 or 8 warps) and walks the key tiles of 64
// keys up to the causal limit of its last query, K and V double-buffered in shared memory.
// With 8 warps each K/V tile feeds twice the queries: half the loads per FLOP, one block per
// multiprocessor instead of two.
constexpr int block_keys = 64;
// Measured on an H200 (bench_attention_prefill, causal from position 0, heads 32/8): 4 warps
// 275 / 278 / 283 TFLOP/s at T = 4K / 8K / 32K with D = 128, 266 at 32K with D = 64; 8 warps
// 253 / 277 / 295 and 246. So 8 warps only for long chunks of D = 128.
int default_warps(int64_t tokens, int64_t head_dim) { return head_dim == 128 && tokens >= 16384 ? 8 : 4; }

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
  float scale_log2;  // softmax scale times log2(e): the kernel works in base 2
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

template <int head_dim, int warps>
__global__ void __launch_bounds__(warps * 32, 8 / warps) attention_prefill_kernel(const KernelArguments args) {
  constexpr int threads = warps * 32;
  constexpr int block_queries = warps * 16;
  constexpr int k_steps = head_dim / 16;      // MMA k-steps over the head dim (Q K^T)
  constexpr int key_tiles = block_keys / 8;   // n-tiles of 8 keys in S
  constexpr int dim_tiles = head_dim / 8;     // n-tiles of 8 dims in O
  constexpr int tile_elements = block_keys * head_dim;

  extern __shared__ __align__(128) unsigned char shared_bytes[];
  auto* q_tile = reinterpret_cast<__nv_bfloat16*>(shared_bytes);
  __nv_bfloat16* k_tiles = q_tile + block_queries * head_dim;  // 2 stages
  __nv_bfloat16* v_tiles = k_tiles + 2 * tile_elements;          // 2 stages

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

  const __nv_bfloat16* k_head = args.k + int64_t(kv_head) * args.capacity * head_dim;
  const __nv_bfloat16* v_head = args.v + int64_t(kv_head) * args.capacity * head_dim;

  load_tile<head_dim, block_queries, threads>(q_tile, args.q + query_begin * row_stride + int64_t(head) * head_dim,
                                     row_stride, valid_queries);
  load_tile<head_dim, block_keys, threads>(k_tiles, k_head, head_dim, key_end);
  copy_async_commit();
  load_tile<head_dim, block_keys, threads>(v_tiles, v_head, head_dim, key_end);
  copy_async_commit();

  uint32_t q_fragments[k_steps][4];
  float o[dim_tiles][4];
#pragma unroll
  for (int d = 0; d < dim_tiles; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
  // Each thread holds rows lane / 4 and lane / 4 + 8 of its warp's 16 queries.
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};
  const int64_t my_row = query_begin + warp * 16 + lane / 4;
  const int64_t my_position[2] = {args.first_position + my_row, args.first_position + my_row + 8};

  for (int tile = 0; tile < tiles; ++tile) {
    const int stage = tile & 1;
    const int64_t key_begin = int64_t(tile) * block_keys;
    const __nv_bfloat16* k_tile = k_tiles + stage * tile_elements;
    const __nv_bfloat16* v_tile = v_tiles + stage * tile_elements;

    copy_async_wait<1>();  // K of this tile (and Q) have landed
    __syncthreads();
    if (tile == 0) {
#pragma unroll
      for (int step = 0; step < k_steps; ++step) {
        int row = warp * 16 + (lane % 16);
        load_matrix_x4(q_fragments[step], q_tile + swizzled<head_dim>(row, 2 * step + lane / 16));
      }
    }

    // S = Q K^T for this warp's 16 queries and the tile's 64 keys.
    float s[key_tiles][4];
#pragma unroll
    for (int n = 0; n < key_tiles; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int step = 0; step < k_steps; ++step) {
#pragma unroll
      for (int n = 0; n < key_tiles; n += 2) {
        uint32_t b[4];
        int key = n * 8 + (lane % 8) + (lane / 16) * 8;
        load_matrix_x4(b, k_tile + swizzled<head_dim>(key, 2 * step + (lane / 8) % 2));
        mma_bf16_16x8x16(s[n], q_fragments[step], b[0], b[1]);
        mma_bf16_16x8x16(s[n + 1], q_fragments[step], b[2], b[3]);
      }
    }

    // Prefetch the next K tile into the other stage while the softmax runs.
    if (tile + 1 < tiles) {
      int64_t next = key_begin + block_keys;
      load_tile<head_dim, block_keys, threads>(k_tiles + (stage ^ 1) * tile_elements,
                                      k_head + next * head_dim, head_dim, key_end - next);
    }
    copy_async_commit();

    // Online softmax, base 2. Keys past a query's position are masked; only tiles that reach
    // past the block's first query position need the test.
    const bool needs_mask = key_begin + block_keys - 1 > args.first_position + query_begin;
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < key_tiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        int half = e / 2;
        float value = s[n][e] * args.scale_log2;
        if (needs_mask) {
          int64_t key = key_begin + n * 8 + 2 * (lane % 4) + (e % 2);
          if (key > my_position[half]) value = -INFINITY;
        }
        s[n][e] = value;
        tile_max[half] = fmaxf(tile_max[half], value);
      }
    }
    float correction[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      tile_max[half] = fmaxf(tile_max[half], __shfl_xor_sync(0xffffffffu, tile_max[half], 1));
      tile_max[half] = fmaxf(tile_max[half], __shfl_xor_sync(0xffffffffu, tile_max[half], 2));
      float new_max = fmaxf(row_max[half], tile_max[half]);
      // The first tile always holds key 0, which every query sees, so new_max is finite.
      correction[half] = fast_exp2(row_max[half] - new_max);
      row_max[half] = new_max;
      row_sum[half] *= correction[half];
    }
#pragma unroll
    for (int d = 0; d < dim_tiles; ++d) {
      o[d][0] *= correction[0];
      o[d][1] *= correction[0];
      o[d][2] *= correction[1];
      o[d][3] *= correction[1];
    }
    uint32_t p_fragments[key_tiles / 2][4];
#pragma unroll
    for (int n = 0; n < key_tiles; ++n) {
      float p0 = fast_exp2(s[n][0] - row_max[0]);
      float p1 = fast_exp2(s[n][1] - row_max[0]);
      float p2 = fast_exp2(s[n][2] - row_max[1]);
      float p3 = fast_exp2(s[n][3] - row_max[1]);
      row_sum[0] += p0 + p1;
      row_sum[1] += p2 + p3;
      // The C fragments of key tiles 2j and 2j+1 are exactly the A fragment of k-step j.
      p_fragments[n / 2][(n % 2) * 2 + 0] = pack_bf16_pair(p0, p1);
      p_fragments[n / 2][(n % 2) * 2 + 1] = pack_bf16_pair(p2, p3);
    }

    copy_async_wait<1>();  // V of this tile has landed
    __syncthreads();

    // O += P V.
#pragma unroll
    for (int step = 0; step < block_keys / 16; ++step) {
#pragma unroll
      for (int d = 0; d < dim_tiles; d += 2) {
        uint32_t b[4];
        int key = step * 16 + (lane % 8) + ((lane / 8) % 2) * 8;
        load_matrix_x4_transposed(b, v_tile + swizzled<head_dim>(key, d + lane / 16));
        mma_bf16_16x8x16(o[d], p_fragments[step], b[0], b[1]);
        mma_bf16_16x8x16(o[d + 1], p_fragments[step], b[2], b[3]);
      }
    }

    if (tile + 1 < tiles) {
      int64_t next = key_begin + block_keys;
      load_tile<head_dim, block_keys, threads>(v_tiles + (stage ^ 1) * tile_elements,
                                      v_head + next * head_dim, head_dim, key_end - next);
    }
    copy_async_commit();
  }
  copy_async_wait<0>();

  // Normalise and store; the four threads of a quad hold parts of the same two rows.
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    row_sum[half] += __shfl_xor_sync(0xffffffffu, row_sum[half], 1);
    row_sum[half] += __shfl_xor_sync(0xffffffffu, row_sum[half], 2);
  }
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    int64_t row = my_row + half * 8;
    if (row >= args.tokens) continue;
    float inverse = 1.0f / row_sum[half];
    __nv_bfloat16* out_row = args.out + row * row_stride + int64_t(head) * head_dim;
#pragma unroll
    for (int d = 0; d < dim_tiles; ++d) {
      int column = d * 8 + 2 * (lane % 4);
      *reinterpret_cast<uint32_t*>(out_row + column) =
          pack_bf16_pair(o[d][half * 2] * inverse, o[d][half * 2 + 1] * inverse);
    }
  }
}

template <int head_dim, int warps>
void launch_for_head_dim(const KernelArguments& args, int64_t tokens, cudaStream_t stream) {
  constexpr int block_queries = warps * 16;
  constexpr size_t shared_bytes =
      size_t(block_queries + 4 * block_keys) * head_dim * sizeof(__nv_bfloat16);
  // Above 48 KB a kernel must opt in; doing it on every launch is cheap and keeps no state.
  LOUISKV_CUDA_CHECK(cudaFuncSetAttribute(attention_prefill_kernel<head_dim, warps>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          int(shared_bytes)));
  dim3 grid(unsigned(args.query_heads), unsigned((tokens + block_queries - 1) / block_queries));
  attention_prefill_kernel<head_dim, warps><<<grid, warps * 32, shared_bytes, stream>>>(args);
  LOUISKV_CUDA_CHECK_LAUNCH();
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
  if (head_dim == 64) {
    if (warps == 4) launch_for_head_dim<64, 4>(args, tokens, stream);
    else launch_for_head_dim<64, 8>(args, tokens, stream);
  } else {
    if (warps == 4) launch_for_head_dim<128, 4>(args, tokens, stream);
    else launch_for_head_dim<128, 8>(args, tokens, stream);
  }
}

}  // namespace louiskv::kernels
