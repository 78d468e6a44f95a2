#include "backend/cuda/attention_prefill_f32.h"

#include <string>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

// A block of 128 threads owns 32 queries of one head and walks the key tiles of 64 keys up to the
// causal limit of its last query. Each thread computes a 4 x 4 patch of the tile's scores (4
// queries, 4 keys); the 16 threads sharing a group of 4 queries are one half of a warp, so the
// row maxima and sums are shuffles within it, and each of them accumulates a quarter (D = 64) or
// an eighth (D = 128) of those queries' output dims. The probabilities go through shared memory,
// transposed, from the key-major layout of S to the query-major use of P V.
constexpr int threads = 128;
constexpr int block_queries = 32;
constexpr int block_keys = 64;
constexpr int queries_per_thread = 4;
constexpr int keys_per_thread = 4;
constexpr int key_lanes = block_keys / keys_per_thread;  // threads sharing a query group: 16
static_assert(threads == key_lanes * (block_queries / queries_per_thread), "one thread per 4 x 4 patch of S");
static_assert(key_lanes == 16, "a query group is one half of a warp (the shuffles below rely on it)");

// Shared-memory tiles, in floats. K rows are padded by 4 floats so that the 8 threads of a
// 16-byte load phase, which read 8 consecutive keys at one dim, hit 8 different bank groups; the
// transposed P is padded likewise for its stores. Q and V are read by whole rows or broadcast.
template <int head_dim>
struct Layout {
  static constexpr int key_pitch = head_dim + 4;
  static constexpr int probability_pitch = block_queries + 4;
  static constexpr int q_floats = block_queries * head_dim;
  static constexpr int k_floats = block_keys * key_pitch;
  static constexpr int v_floats = block_keys * head_dim;
  static constexpr int p_floats = block_keys * probability_pitch;  // [key][query]
  static constexpr size_t bytes = size_t(q_floats + k_floats + v_floats + p_floats) * sizeof(float);
  static_assert(q_floats % 4 == 0 && k_floats % 4 == 0 && v_floats % 4 == 0 && key_pitch % 4 == 0 &&
                    probability_pitch % 4 == 0,
                "every tile and row starts on 16 bytes");
};

struct KernelArguments {
  float* out;
  const float* q;
  const float* k;
  const float* v;
  int64_t tokens;
  int64_t first_position;
  int64_t capacity;
  int query_heads;
  int group;         // query heads per KV head
  float scale_log2;  // softmax scale times log2(e), positive: the kernel works in base 2
};

__device__ __forceinline__ float dot4(const float4& a, const float4& b, float sum) {
  sum = fmaf(a.x, b.x, sum);
  sum = fmaf(a.y, b.y, sum);
  sum = fmaf(a.z, b.z, sum);
  return fmaf(a.w, b.w, sum);
}

template <int head_dim>
__global__ void __launch_bounds__(threads) attention_prefill_f32_kernel(const __grid_constant__ KernelArguments args) {
  using L = Layout<head_dim>;
  constexpr int row_vectors = head_dim / 4;        // float4s per row
  constexpr int output_vectors = head_dim / 64;    // float4s of a query's output per thread: 1 or 2
  extern __shared__ __align__(16) float shared[];
  float* q_tile = shared;
  float* k_tile = q_tile + L::q_floats;
  float* v_tile = k_tile + L::k_floats;
  float* p_tile = v_tile + L::v_floats;

  const int head = blockIdx.x;
  const int kv_head = head / args.group;
  // The heaviest query blocks (most keys under the causal limit) start first.
  const int64_t query_begin = int64_t(gridDim.y - 1 - blockIdx.y) * block_queries;
  const int64_t remaining = args.tokens - query_begin;
  const int valid_queries = remaining < block_queries ? int(remaining) : block_queries;
  // Keys [0, key_end) are seen by some query of this block.
  const int64_t key_end = args.first_position + query_begin + valid_queries;
  const int tiles = int((key_end + block_keys - 1) / block_keys);
  const int query_group = threadIdx.x / key_lanes;  // queries query_group * 4 .. + 3 of the block
  const int key_lane = threadIdx.x % key_lanes;     // keys key_lane + 16 j of each tile
  const int64_t row_stride = int64_t(args.query_heads) * head_dim;
  const float* k_head = args.k + int64_t(kv_head) * args.capacity * head_dim;
  const float* v_head = args.v + int64_t(kv_head) * args.capacity * head_dim;

  // Q rows past the chunk are zero-filled (their results are not stored).
  for (int i = threadIdx.x; i < block_queries * row_vectors; i += threads) {
    const int row = i / row_vectors, vector = i % row_vectors;
    const bool valid = row < valid_queries;
    const float* from = args.q + (query_begin + (valid ? row : 0)) * row_stride + int64_t(head) * head_dim + vector * 4;
    copy_async_16(q_tile + row * head_dim + vector * 4, from, valid);
  }
  // (committed with the first K/V tile)

  int64_t position[queries_per_thread];
  float running_max[queries_per_thread], running_sum[queries_per_thread];
  float o[queries_per_thread][output_vectors][4];
#pragma unroll
  for (int i = 0; i < queries_per_thread; ++i) {
    position[i] = args.first_position + query_begin + query_group * queries_per_thread + i;
    running_max[i] = -INFINITY;
    running_sum[i] = 0.0f;  // this thread's keys only; the 16 threads' shares are added at the end
#pragma unroll
    for (int c = 0; c < output_vectors; ++c) o[i][c][0] = o[i][c][1] = o[i][c][2] = o[i][c][3] = 0.0f;
  }

  for (int tile = 0; tile < tiles; ++tile) {
    const int64_t key_begin = int64_t(tile) * block_keys;
    const int64_t valid_keys = key_end - key_begin < block_keys ? key_end - key_begin : block_keys;
    if (tile > 0) __syncthreads();  // every thread is done with the previous tile's K, V and P
    // Rows at or past key_end are zero-filled, never read: the cache may hold anything there.
    for (int i = threadIdx.x; i < block_keys * row_vectors; i += threads) {
      const int row = i / row_vectors, vector = i % row_vectors;
      const bool valid = row < valid_keys;
      const int64_t key = key_begin + (valid ? row : 0);
      copy_async_16(k_tile + row * L::key_pitch + vector * 4, k_head + key * head_dim + vector * 4, valid);
      copy_async_16(v_tile + row * head_dim + vector * 4, v_head + key * head_dim + vector * 4, valid);
    }
    copy_async_commit();
    copy_async_wait<0>();
    __syncthreads();

    // S = Q K^T for this thread's 4 x 4 patch.
    float s[queries_per_thread][keys_per_thread];
#pragma unroll
    for (int i = 0; i < queries_per_thread; ++i)
#pragma unroll
      for (int j = 0; j < keys_per_thread; ++j) s[i][j] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < head_dim; d += 4) {
      float4 query[queries_per_thread], key[keys_per_thread];
#pragma unroll
      for (int i = 0; i < queries_per_thread; ++i) {
        query[i] = *reinterpret_cast<const float4*>(q_tile + (query_group * queries_per_thread + i) * head_dim + d);
      }
#pragma unroll
      for (int j = 0; j < keys_per_thread; ++j) {
        key[j] = *reinterpret_cast<const float4*>(k_tile + (key_lane + key_lanes * j) * L::key_pitch + d);
      }
#pragma unroll
      for (int i = 0; i < queries_per_thread; ++i)
#pragma unroll
        for (int j = 0; j < keys_per_thread; ++j) s[i][j] = dot4(query[i], key[j], s[i][j]);
    }

    // Online softmax in base 2; keys past a query's position are masked.
#pragma unroll
    for (int i = 0; i < queries_per_thread; ++i) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < keys_per_thread; ++j) {
        const int64_t key = key_begin + key_lane + key_lanes * j;
        s[i][j] = key <= position[i] && key < key_end ? s[i][j] * args.scale_log2 : -INFINITY;
        tile_max = fmaxf(tile_max, s[i][j]);
      }
#pragma unroll
      for (int offset = key_lanes / 2; offset > 0; offset /= 2) {
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
      }
      // The first tile holds key 0, which every query sees, so the maximum is finite from then
      // on, and the first correction is 2^-inf = 0 (of a sum and output that are still zero).
      const float new_max = fmaxf(running_max[i], tile_max);
      const float correction = exp2f(running_max[i] - new_max);
      running_max[i] = new_max;
      running_sum[i] *= correction;
#pragma unroll
      for (int c = 0; c < output_vectors; ++c) {
#pragma unroll
        for (int e = 0; e < 4; ++e) o[i][c][e] *= correction;
      }
#pragma unroll
      for (int j = 0; j < keys_per_thread; ++j) {
        s[i][j] = exp2f(s[i][j] - new_max);
        running_sum[i] += s[i][j];
      }
    }
    // P transposed, [key][query]: each thread stores its 4 queries of a key as one float4.
#pragma unroll
    for (int j = 0; j < keys_per_thread; ++j) {
      *reinterpret_cast<float4*>(p_tile + (key_lane + key_lanes * j) * L::probability_pitch +
                                 query_group * queries_per_thread) = make_float4(s[0][j], s[1][j], s[2][j], s[3][j]);
    }
    // A query group's P is written and read by the same half warp.
    __syncwarp();

    // O += P V over the tile's keys, this thread's dims key_lane * 4 + 64 c .. + 3.
#pragma unroll 4
    for (int key = 0; key < block_keys; ++key) {
      const float4 p =
          *reinterpret_cast<const float4*>(p_tile + key * L::probability_pitch + query_group * queries_per_thread);
      const float weights[queries_per_thread] = {p.x, p.y, p.z, p.w};
#pragma unroll
      for (int c = 0; c < output_vectors; ++c) {
        const float4 value = *reinterpret_cast<const float4*>(v_tile + key * head_dim + c * 64 + key_lane * 4);
#pragma unroll
        for (int i = 0; i < queries_per_thread; ++i) {
          o[i][c][0] = fmaf(weights[i], value.x, o[i][c][0]);
          o[i][c][1] = fmaf(weights[i], value.y, o[i][c][1]);
          o[i][c][2] = fmaf(weights[i], value.z, o[i][c][2]);
          o[i][c][3] = fmaf(weights[i], value.w, o[i][c][3]);
        }
      }
    }
  }

  // Normalise and store: the 16 threads of a query group add their shares of each row's sum.
#pragma unroll
  for (int i = 0; i < queries_per_thread; ++i) {
    float sum = running_sum[i];
#pragma unroll
    for (int offset = key_lanes / 2; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    const int row = query_group * queries_per_thread + i;
    if (row >= valid_queries) continue;
    const float inverse = 1.0f / sum;
    float* out_row = args.out + (query_begin + row) * row_stride + int64_t(head) * head_dim;
#pragma unroll
    for (int c = 0; c < output_vectors; ++c) {
      *reinterpret_cast<float4*>(out_row + c * 64 + key_lane * 4) =
          make_float4(o[i][c][0] * inverse, o[i][c][1] * inverse, o[i][c][2] * inverse, o[i][c][3] * inverse);
    }
  }
}

template <int head_dim>
void launch_for_head_dim(const KernelArguments& args, int64_t tokens, cudaStream_t stream) {
  constexpr size_t shared_bytes = Layout<head_dim>::bytes;
  auto kernel = attention_prefill_f32_kernel<head_dim>;
  // Above 48 KB a kernel must opt in; doing it on every launch is cheap and keeps no state.
  LOUISKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared_bytes)));
  dim3 grid(unsigned(args.query_heads), unsigned((tokens + block_queries - 1) / block_queries));
  kernel<<<grid, threads, shared_bytes, stream>>>(args);
  LOUISKV_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_attention_prefill_f32(const PrefillAttentionF32Params& params, cudaStream_t stream) {
  const char* op = "attention_prefill";
  require_on_device(params.out, op, "out");
  require_on_device(params.q, op, "q");
  require_device_accessible(params.k, op, "k");
  require_device_accessible(params.v, op, "v");
  require_rank(params.q, 3, op, "q");
  require_rank(params.k, 3, op, "k");
  require_dtype(params.q, DType::f32, op, "q");
  require_dtype(params.out, DType::f32, op, "out");
  require_dtype(params.k, DType::f32, op, "k");
  require_dtype(params.v, DType::f32, op, "v");
  const int64_t tokens = params.q.dim(0);
  const int64_t query_heads = params.q.dim(1);
  const int64_t head_dim = params.q.dim(2);
  const int64_t kv_heads = params.k.dim(0);
  const int64_t capacity = params.k.dim(1);
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
  // 16-byte loads and stores of rows (D * 4 bytes, a multiple of 16) from these bases.
  LOUISKV_REQUIRE(reinterpret_cast<uintptr_t>(params.q.data) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(params.k.data) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(params.v.data) % 16 == 0 &&
                      reinterpret_cast<uintptr_t>(params.out.data) % 16 == 0,
                  op, "q, k, v and out must be 16-byte aligned");
  require_grid_dimension((tokens + block_queries - 1) / block_queries, 65535, op, "the prompt chunk");
  if (tokens == 0) return;

  KernelArguments args{};
  args.out = params.out.as<float>();
  args.q = params.q.as<const float>();
  args.k = params.k.as<const float>();
  args.v = params.v.as<const float>();
  args.tokens = tokens;
  args.first_position = params.first_position;
  args.capacity = capacity;
  args.query_heads = int(query_heads);
  args.group = int(query_heads / kv_heads);
  args.scale_log2 = params.scale * 1.4426950408889634f;
  if (head_dim == 64) {
    launch_for_head_dim<64>(args, tokens, stream);
  } else {
    launch_for_head_dim<128>(args, tokens, stream);
  }
}

}  // namespace louiskv::kernels
