#include "backend/cuda/attention_decode.h"

#include <cuda_bf16.h>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int threads = 128;
constexpr int warps = threads / 32;
constexpr int tile_tokens = decode_tile_tokens;
// Tiles in flight: while one tile is consumed, the next two are being read from memory.
constexpr int stages = 3;
// Spans a block reads into shared memory at a time while building its token table.
constexpr int span_cache = threads;
static_assert(tile_tokens == 32, "the softmax step maps a tile's tokens onto the lanes of a warp");

struct KernelArguments {
  const __nv_bfloat16* q;
  const DeviceSpan* spans;
  const int32_t* indptr;
  const int32_t* chunk_first_span;
  float* partial_out;  // [B * Hq, splits, D]
  float* partial_max;  // [B * Hq, splits], base-2 scores
  float* partial_sum;  // [B * Hq, splits]
  int* counters;       // [rows * head blocks], zero between launches; null: merge by a second kernel
  __nv_bfloat16* out;  // [B * Hq, D]
  float* lse;          // [B * Hq] or null
  int kv_heads;
  int query_heads;
  int group;  // query heads per KV head
  int chunk_tokens;
  int splits;
  float scale_log2;
};

// Thread layout: head_dim / 8 threads share a K or V row, each owning 8 dims (16 bytes); the
// block's threads / (head_dim / 8) "token lanes" take the tile's tokens in turn. Every thread
// copies into shared memory exactly the 16-byte pieces it later reads, so K and V tiles need
// no barrier, only the wait on the thread's own asynchronous copies.
template <int head_dim>
struct Layout {
  static constexpr int threads_per_row = head_dim / 8;
  static constexpr int token_lanes = threads / threads_per_row;
  static constexpr int tokens_per_thread = tile_tokens / token_lanes;
  static constexpr int tile_elements = tile_tokens * head_dim;
  static_assert(tile_tokens % token_lanes == 0, "tile must split evenly over the token lanes");
};

template <int head_dim, int max_heads>
constexpr size_t shared_bytes() {
  using L = Layout<head_dim>;
  size_t stage_bytes = size_t(stages) * 2 * L::tile_elements * sizeof(__nv_bfloat16);
  size_t reduce_bytes = size_t(L::token_lanes) * max_heads * head_dim * sizeof(float);
  size_t big = stage_bytes > reduce_bytes ? stage_bytes : reduce_bytes;
  size_t tables = size_t(decode_max_chunk_tokens) * 2 * sizeof(const char*);
  size_t cache = size_t(span_cache) * (2 * sizeof(const char*) + 2 * sizeof(int32_t));
  size_t softmax = size_t(2 * max_heads * tile_tokens + max_heads) * sizeof(float);
  return big + tables + cache + softmax;
}

// Sum over the threads_per_row lanes sharing a row (consecutive lanes of one warp).
template <int threads_per_row>
__device__ __forceinline__ float row_reduce_sum(float value) {
#pragma unroll
  for (int offset = threads_per_row / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

// Merges the splits' partial results of one block's heads, weighting each split by
// 2^(its max - overall max): a split whose max is -inf attended nothing and is skipped (its
// partial output was never written); no token at all gives zeros and lse = -inf.
__device__ void merge_splits(const KernelArguments& args, int64_t query_row, int d, int head_dim) {
  const float* maxima = args.partial_max + query_row * args.splits;
  const float* sums = args.partial_sum + query_row * args.splits;
  float overall = -INFINITY;
  for (int s = 0; s < args.splits; ++s) overall = fmaxf(overall, __ldcg(maxima + s));
  float value = 0.0f, total = 0.0f;
  if (overall != -INFINITY) {
    for (int s = 0; s < args.splits; ++s) {
      float maximum = __ldcg(maxima + s);
      if (maximum == -INFINITY) continue;
      float weight = exp2f(maximum - overall);
      total += weight * __ldcg(sums + s);
      value += weight * __ldcg(args.partial_out + (query_row * args.splits + s) * head_dim + d);
    }
    value /= total;
  }
  args.out[query_row * head_dim + d] = __float2bfloat16_rn(value);
  if (args.lse && d == 0) {
    args.lse[query_row] = overall == -INFINITY ? -INFINITY : (overall + log2f(total)) * 0.6931471805599453f;
  }
}

// The last block of a (row, head block) to finish merges all its splits, so that no second
// kernel is needed: each block publishes its partial results, fences, and counts itself in; the
// one that brings the count to `splits` reads everything back (the classic threadfence
// reduction) and resets the counter for the next launch.
__device__ void merge_if_last(const KernelArguments& args, int row, int64_t first_query_row, int heads_here,
                              int head_dim) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  int* counter = args.counters + int64_t(row) * gridDim.z + blockIdx.z;
  if (threadIdx.x == 0) last = atomicAdd(counter, 1) == args.splits - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int index = threadIdx.x; index < heads_here * head_dim; index += blockDim.x) {
    merge_splits(args, first_query_row + index / head_dim, index % head_dim, head_dim);
  }
  if (threadIdx.x == 0) *counter = 0;
}

// Block (row, split, head block): row = sequence * kv_heads + kv head; it attends the chunk
// [split * chunk_tokens, +chunk_tokens) of the row's tokens with query heads
// [head_block * max_heads, +max_heads) of the group, and writes unnormalised partial results.
template <int head_dim, int max_heads>
__global__ void __launch_bounds__(threads) attention_decode_kernel(const KernelArguments args) {
  using L = Layout<head_dim>;
  extern __shared__ __align__(16) unsigned char shared[];
  auto* stage_base = reinterpret_cast<__nv_bfloat16*>(shared);
  constexpr size_t stage_bytes = size_t(stages) * 2 * L::tile_elements * sizeof(__nv_bfloat16);
  constexpr size_t reduce_bytes = size_t(L::token_lanes) * max_heads * head_dim * sizeof(float);
  constexpr size_t big = stage_bytes > reduce_bytes ? stage_bytes : reduce_bytes;
  auto* key_rows = reinterpret_cast<const char**>(shared + big);
  const char** value_rows = key_rows + decode_max_chunk_tokens;
  const char** cached_keys = value_rows + decode_max_chunk_tokens;  // [span_cache]
  const char** cached_values = cached_keys + span_cache;              // [span_cache]
  auto* cached_first = reinterpret_cast<int32_t*>(cached_values + span_cache);
  int32_t* cached_length = cached_first + span_cache;
  auto* scores = reinterpret_cast<float*>(cached_length + span_cache);              // [max_heads][tile]
  float* probabilities = scores + max_heads * tile_tokens;                         // [max_heads][tile]
  float* corrections = probabilities + max_heads * tile_tokens;                    // [max_heads]

  const int row = blockIdx.x;
  const int split = blockIdx.y;
  const int first_head_in_group = blockIdx.z * max_heads;
  const int sequence = row / args.kv_heads;
  const int kv_head = row % args.kv_heads;
  const int heads_here = min(max_heads, args.group - first_head_in_group);
  const int first_query_head = kv_head * args.group + first_head_in_group;
  const int64_t first_query_row = int64_t(sequence) * args.query_heads + first_query_head;

  const int span_begin = args.indptr[row];
  const int span_end = args.indptr[row + 1];
  int row_tokens = 0;
  if (span_end > span_begin) {
    const DeviceSpan& last = args.spans[span_end - 1];
    row_tokens = last.first_token + last.length;
  }
  const int chunk_begin = split * args.chunk_tokens;
  const int count = min(args.chunk_tokens, row_tokens - chunk_begin);
  if (count <= 0) {
    // Nothing to attend in this chunk: the merge skips it by its -inf maximum; a row with no
    // token at all (one split) gets zeros and lse = -inf.
    if (args.splits == 1) {
      for (int index = threadIdx.x; index < heads_here * head_dim; index += threads) {
        args.out[first_query_row * head_dim + index] = __float2bfloat16_rn(0.0f);
      }
      if (args.lse && threadIdx.x < heads_here) args.lse[first_query_row + threadIdx.x] = -INFINITY;
      return;
    }
    if (threadIdx.x < heads_here) {
      int64_t index = (first_query_row + threadIdx.x) * args.splits + split;
      args.partial_max[index] = -INFINITY;
      args.partial_sum[index] = 0.0f;
    }
    if (args.counters) merge_if_last(args, row, first_query_row, heads_here, head_dim);
    return;
  }

  // Row addresses of the chunk's tokens. The spans from the chunk's first one on are read into
  // shared memory, one per thread, and each token finds its span by binary search there; a
  // chunk of more spans than threads (spans of a few tokens) takes several rounds.
  constexpr int64_t row_bytes = head_dim * sizeof(__nv_bfloat16);
  const int chunk_end = chunk_begin + count;
  for (int round_first = args.chunk_first_span[int64_t(row) * args.splits + split];;
       round_first += span_cache) {
    const int cached = min(span_cache, span_end - round_first);
    if (threadIdx.x < cached) {
      const DeviceSpan& span = args.spans[round_first + threadIdx.x];
      cached_keys[threadIdx.x] = static_cast<const char*>(span.keys);
      cached_values[threadIdx.x] = static_cast<const char*>(span.values);
      cached_first[threadIdx.x] = span.first_token;
      cached_length[threadIdx.x] = span.length;
    }
    __syncthreads();
    const int round_begin = cached_first[0];
    const int round_end = cached_first[cached - 1] + cached_length[cached - 1];
    for (int i = threadIdx.x; i < count; i += threads) {
      int token = chunk_begin + i;
      if (token < round_begin || token >= round_end) continue;
      int low = 0, high = cached - 1;
      while (low < high) {
        int middle = (low + high + 1) / 2;
        if (cached_first[middle] <= token) low = middle; else high = middle - 1;
      }
      int64_t offset = int64_t(token - cached_first[low]) * row_bytes;
      key_rows[i] = cached_keys[low] + offset;
      value_rows[i] = cached_values[low] + offset;
    }
    __syncthreads();  // the cache is read by every thread before the next round overwrites it
    if (round_end >= chunk_end || round_first + cached >= span_end) break;
  }

  const int column = threadIdx.x % L::threads_per_row;  // this thread's 8 dims
  const int token_lane = threadIdx.x / L::threads_per_row;

  // Queries, pre-scaled so that scores come out in base 2; absent heads (a group that does not
  // fill max_heads) get zeros and are never written.
  float q[max_heads][8];
#pragma unroll
  for (int h = 0; h < max_heads; ++h) {
    if (h < heads_here) {
      const uint4* source = reinterpret_cast<const uint4*>(
          args.q + (first_query_row + h) * head_dim + column * 8);
      unpack_bf16x8(*source, q[h]);
#pragma unroll
      for (int e = 0; e < 8; ++e) q[h][e] *= args.scale_log2;
    } else {
#pragma unroll
      for (int e = 0; e < 8; ++e) q[h][e] = 0.0f;
    }
  }

  auto issue_tile = [&](int tile) {
    if (tile * tile_tokens < count) {
      __nv_bfloat16* k_stage = stage_base + (tile % stages) * 2 * L::tile_elements;
      __nv_bfloat16* v_stage = k_stage + L::tile_elements;
#pragma unroll
      for (int j = 0; j < L::tokens_per_thread; ++j) {
        int token = token_lane + j * L::token_lanes;
        int index = tile * tile_tokens + token;
        bool valid = index < count;
        const char* k_source = valid ? key_rows[index] + column * 16 : key_rows[0];
        const char* v_source = valid ? value_rows[index] + column * 16 : value_rows[0];
        copy_async_16(k_stage + token * head_dim + column * 8, k_source, valid);
        copy_async_16(v_stage + token * head_dim + column * 8, v_source, valid);
      }
    }
    copy_async_commit();  // an empty group past the end keeps the wait counts uniform
  };

  const int tiles = (count + tile_tokens - 1) / tile_tokens;
#pragma unroll
  for (int tile = 0; tile < stages - 1; ++tile) issue_tile(tile);

  float accumulator[max_heads][8];
#pragma unroll
  for (int h = 0; h < max_heads; ++h)
#pragma unroll
    for (int e = 0; e < 8; ++e) accumulator[h][e] = 0.0f;
  // Running maximum and sum of the heads this warp's softmax step owns (h = warp, warp + 4).
  float running_max[(max_heads + warps - 1) / warps];
  float running_sum[(max_heads + warps - 1) / warps];
#pragma unroll
  for (int i = 0; i < (max_heads + warps - 1) / warps; ++i) {
    running_max[i] = -INFINITY;
    running_sum[i] = 0.0f;
  }
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;

  for (int tile = 0; tile < tiles; ++tile) {
    copy_async_wait<stages - 2>();  // this thread's pieces of `tile` have landed
    issue_tile(tile + stages - 1);  // reuses the stage this thread finished with last time
    const __nv_bfloat16* k_stage = stage_base + (tile % stages) * 2 * L::tile_elements;
    const __nv_bfloat16* v_stage = k_stage + L::tile_elements;

    // Scores of this thread's tokens for every head of the block.
#pragma unroll
    for (int j = 0; j < L::tokens_per_thread; ++j) {
      int token = token_lane + j * L::token_lanes;
      float k[8];
      unpack_bf16x8(*reinterpret_cast<const uint4*>(k_stage + token * head_dim + column * 8), k);
#pragma unroll
      for (int h = 0; h < max_heads; ++h) {
        float partial = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) partial = fmaf(q[h][e], k[e], partial);
        float score = row_reduce_sum<L::threads_per_row>(partial);
        if (column == h % L::threads_per_row) scores[h * tile_tokens + token] = score;
      }
    }
    __syncthreads();

    // Online softmax of the tile: a warp per head, a lane per token.
#pragma unroll
    for (int i = 0; i < (max_heads + warps - 1) / warps; ++i) {
      int h = warp + i * warps;
      if (h < max_heads) {
        bool valid = tile * tile_tokens + lane < count;
        float score = valid ? scores[h * tile_tokens + lane] : -INFINITY;
        float tile_max = score;
#pragma unroll
        for (int offset = 16; offset > 0; offset /= 2) {
          tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
        }
        // Every tile holds at least one valid token, so new_max is finite.
        float new_max = fmaxf(running_max[i], tile_max);
        float p = fast_exp2(score - new_max);
        float tile_sum = p;
#pragma unroll
        for (int offset = 16; offset > 0; offset /= 2) {
          tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, offset);
        }
        float correction = fast_exp2(running_max[i] - new_max);
        running_sum[i] = running_sum[i] * correction + tile_sum;
        running_max[i] = new_max;
        probabilities[h * tile_tokens + lane] = p;
        if (lane == 0) corrections[h] = correction;
      }
    }
    __syncthreads();

    // accumulator = accumulator * correction + P V.
#pragma unroll
    for (int h = 0; h < max_heads; ++h) {
      float correction = corrections[h];
#pragma unroll
      for (int e = 0; e < 8; ++e) accumulator[h][e] *= correction;
    }
#pragma unroll
    for (int j = 0; j < L::tokens_per_thread; ++j) {
      int token = token_lane + j * L::token_lanes;
      float v[8];
      unpack_bf16x8(*reinterpret_cast<const uint4*>(v_stage + token * head_dim + column * 8), v);
#pragma unroll
      for (int h = 0; h < max_heads; ++h) {
        float p = probabilities[h * tile_tokens + token];
#pragma unroll
        for (int e = 0; e < 8; ++e) accumulator[h][e] = fmaf(p, v[e], accumulator[h][e]);
      }
    }
  }
  copy_async_wait<0>();
  __syncthreads();  // every thread is done with the stages: reuse them for the reduction

  // Sum the token lanes' accumulators through shared memory: [token_lanes][max_heads][head_dim];
  // the softmax warps leave each head's maximum and sum beside it (in the scores' place).
  auto* reduce = reinterpret_cast<float*>(shared);
#pragma unroll
  for (int h = 0; h < max_heads; ++h) {
    float* destination = reduce + (token_lane * max_heads + h) * head_dim + column * 8;
    reinterpret_cast<float4*>(destination)[0] =
        make_float4(accumulator[h][0], accumulator[h][1], accumulator[h][2], accumulator[h][3]);
    reinterpret_cast<float4*>(destination)[1] =
        make_float4(accumulator[h][4], accumulator[h][5], accumulator[h][6], accumulator[h][7]);
  }
  float* head_max = scores;
  float* head_sum = scores + max_heads;
#pragma unroll
  for (int i = 0; i < (max_heads + warps - 1) / warps; ++i) {
    int h = warp + i * warps;
    if (h < max_heads && lane == 0) {
      head_max[h] = running_max[i];
      head_sum[h] = running_sum[i];
    }
  }
  __syncthreads();
  for (int index = threadIdx.x; index < heads_here * head_dim; index += threads) {
    int h = index / head_dim;
    int d = index % head_dim;
    float total = 0.0f;
#pragma unroll
    for (int t = 0; t < L::token_lanes; ++t) total += reduce[(t * max_heads + h) * head_dim + d];
    if (args.splits == 1) {
      // The whole row in one chunk: normalise here, no partial results.
      args.out[(first_query_row + h) * head_dim + d] = __float2bfloat16_rn(total / head_sum[h]);
      if (args.lse && d == 0) {
        args.lse[first_query_row + h] = (head_max[h] + log2f(head_sum[h])) * 0.6931471805599453f;
      }
    } else {
      args.partial_out[((first_query_row + h) * args.splits + split) * head_dim + d] = total;
    }
  }
  if (args.splits == 1) return;
  if (threadIdx.x < heads_here) {
    int64_t index = (first_query_row + threadIdx.x) * args.splits + split;
    args.partial_max[index] = head_max[threadIdx.x];
    args.partial_sum[index] = head_sum[threadIdx.x];
  }
  if (args.counters) merge_if_last(args, row, first_query_row, heads_here, head_dim);
}

// One block per (sequence, query head): the merge as a second kernel, the default (see
// DecodeAttentionParams::merge_in_kernel).
__global__ void merge_splits_kernel(const KernelArguments args, int head_dim) {
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) merge_splits(args, blockIdx.x, d, head_dim);
}

template <int head_dim, int max_heads>
void launch_kernels(const KernelArguments& args, int rows, int head_blocks, cudaStream_t stream) {
  constexpr size_t bytes = shared_bytes<head_dim, max_heads>();
  LOUISKV_CUDA_CHECK(cudaFuncSetAttribute(attention_decode_kernel<head_dim, max_heads>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  dim3 grid(unsigned(rows), unsigned(args.splits), unsigned(head_blocks));
  attention_decode_kernel<head_dim, max_heads><<<grid, threads, bytes, stream>>>(args);
  LOUISKV_CUDA_CHECK_LAUNCH();
}

template <int head_dim>
void launch_for_head_dim(const KernelArguments& args, int rows, cudaStream_t stream) {
  // The block covers a whole group when it has at most 8 heads; larger groups take several
  // blocks of 8, each reading the KV once more.
  if (args.group <= 1) {
    launch_kernels<head_dim, 1>(args, rows, 1, stream);
  } else if (args.group <= 2) {
    launch_kernels<head_dim, 2>(args, rows, 1, stream);
  } else if (args.group <= 4) {
    launch_kernels<head_dim, 4>(args, rows, 1, stream);
  } else {
    launch_kernels<head_dim, 8>(args, rows, (args.group + 7) / 8, stream);
  }
}

}  // namespace

int decode_blocks_per_multiprocessor(int64_t head_dim, int64_t query_heads_per_kv_head) {
  auto query = [](auto kernel, size_t bytes) {
    LOUISKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    int blocks = 0;
    LOUISKV_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, bytes));
    return blocks;
  };
  const int64_t g = query_heads_per_kv_head;
  if (head_dim == 64) {
    if (g <= 1) return query(attention_decode_kernel<64, 1>, shared_bytes<64, 1>());
    if (g <= 2) return query(attention_decode_kernel<64, 2>, shared_bytes<64, 2>());
    if (g <= 4) return query(attention_decode_kernel<64, 4>, shared_bytes<64, 4>());
    return query(attention_decode_kernel<64, 8>, shared_bytes<64, 8>());
  }
  if (g <= 1) return query(attention_decode_kernel<128, 1>, shared_bytes<128, 1>());
  if (g <= 2) return query(attention_decode_kernel<128, 2>, shared_bytes<128, 2>());
  if (g <= 4) return query(attention_decode_kernel<128, 4>, shared_bytes<128, 4>());
  return query(attention_decode_kernel<128, 8>, shared_bytes<128, 8>());
}

DecodeSplit choose_decode_split(int64_t rows, int64_t query_heads_per_kv_head,
                                int64_t max_row_tokens, int64_t concurrent_blocks) {
  DecodeSplit best;
  if (max_row_tokens <= 0 || rows <= 0) return best;
  // The largest chunk always works; the launcher rejects a split count above the grid limit.
  best.chunk_tokens = decode_max_chunk_tokens;
  best.splits = int((max_row_tokens + decode_max_chunk_tokens - 1) / decode_max_chunk_tokens);
  constexpr int64_t min_chunk = 64;
  const int64_t head_blocks = (query_heads_per_kv_head + 7) / 8;
  const int64_t base_blocks = rows * head_blocks;
  if (concurrent_blocks < 1) concurrent_blocks = 1;
  double best_score = -1.0;
  int64_t previous_splits = 0;
  for (int64_t chunk = decode_max_chunk_tokens; chunk >= min_chunk; chunk -= tile_tokens) {
    int64_t splits = (max_row_tokens + chunk - 1) / chunk;
    if (splits == previous_splits || splits > 65535) continue;
    previous_splits = splits;
    int64_t tight_chunk = (max_row_tokens + splits - 1) / splits;
    tight_chunk = (tight_chunk + tile_tokens - 1) / tile_tokens * tile_tokens;
    int64_t blocks = base_blocks * splits;
    int64_t waves = (blocks + concurrent_blocks - 1) / concurrent_blocks;
    // The share of the GPU's block slots kept busy; a grid of less than one wave is scored by
    // the slots it fills, so that small batches still spread over every multiprocessor.
    double score = double(blocks) / double(waves * concurrent_blocks);
    // Each split costs a little setup and merge work: prefer fewer unless clearly better.
    if (score > best_score + 0.02) {
      best_score = score;
      best.chunk_tokens = int(tight_chunk);
      best.splits = int((max_row_tokens + tight_chunk - 1) / tight_chunk);
    }
  }
  return best;
}

int64_t decode_workspace_bytes(int64_t query_rows, int splits, int64_t head_dim) {
  return decode_counter_bytes + query_rows * splits * (head_dim + 2) * int64_t(sizeof(float));
}

void launch_attention_decode(const DecodeAttentionParams& params, cudaStream_t stream) {
  const char* op = "attention_decode";
  require_on_device(params.out, op, "out");
  require_on_device(params.q, op, "q");
  require_rank(params.q, 3, op, "q");
  require_dtype(params.q, DType::bf16, op, "q");
  require_dtype(params.out, DType::bf16, op, "out");
  int64_t batch = params.q.dim(0);
  int64_t query_heads = params.q.dim(1);
  int64_t head_dim = params.q.dim(2);
  LOUISKV_REQUIRE(params.out.numel() == params.q.numel(), op,
          "out (" + params.out.describe() + ") must have q's element count (" + params.q.describe() + ")");
  LOUISKV_REQUIRE(head_dim == 64 || head_dim == 128, op,
          "head dim " + std::to_string(head_dim) + " is not supported (64 or 128)");
  LOUISKV_REQUIRE(params.kv_heads > 0 && query_heads % params.kv_heads == 0, op,
          "query heads (" + std::to_string(query_heads) + ") must be a multiple of KV heads (" +
              std::to_string(params.kv_heads) + ")");
  if (!params.lse.empty()) {
    require_on_device(params.lse, op, "lse");
    require_dtype(params.lse, DType::f32, op, "lse");
    LOUISKV_REQUIRE(params.lse.numel() == batch * query_heads, op,
            "lse (" + params.lse.describe() + ") must hold batch x query heads values");
  }
  LOUISKV_REQUIRE(reinterpret_cast<uintptr_t>(params.q.data) % 16 == 0, op, "q must be 16-byte aligned");
  LOUISKV_REQUIRE(params.split.splits >= 1 && params.split.chunk_tokens % tile_tokens == 0 &&
              params.split.chunk_tokens > 0 && params.split.chunk_tokens <= decode_max_chunk_tokens,
          op, "invalid split of the rows into chunks (a bug in the caller's plan)");
  int64_t rows = batch * params.kv_heads;
  int64_t query_rows = batch * query_heads;
  require_grid_dimension(params.split.splits, 65535, op, "the longest row's chunks");
  LOUISKV_REQUIRE(params.workspace != nullptr &&
                      params.workspace_bytes >= decode_workspace_bytes(query_rows, params.split.splits, head_dim),
                  op, "workspace too small for this batch and split");
  if (batch == 0) return;
  LOUISKV_REQUIRE(params.spans != nullptr && params.indptr != nullptr && params.chunk_first_span != nullptr, op,
                  "the span plan is missing");

  KernelArguments args{};
  args.q = params.q.as<const __nv_bfloat16>();
  args.spans = params.spans;
  args.indptr = params.indptr;
  args.chunk_first_span = params.chunk_first_span;
  int64_t partial_floats = query_rows * params.split.splits;
  const int64_t head_blocks = (query_heads / params.kv_heads + 7) / 8;
  const bool merge_in_kernel = params.merge_in_kernel && rows * head_blocks <= decode_max_counters;
  args.counters = merge_in_kernel ? static_cast<int*>(params.workspace) : nullptr;
  args.partial_out = reinterpret_cast<float*>(static_cast<char*>(params.workspace) + decode_counter_bytes);
  args.partial_max = args.partial_out + partial_floats * head_dim;
  args.partial_sum = args.partial_max + partial_floats;
  args.out = params.out.as<__nv_bfloat16>();
  args.lse = params.lse.empty() ? nullptr : params.lse.as<float>();
  args.kv_heads = params.kv_heads;
  args.query_heads = int(query_heads);
  args.group = int(query_heads / params.kv_heads);
  args.chunk_tokens = params.split.chunk_tokens;
  args.splits = params.split.splits;
  args.scale_log2 = params.scale * 1.4426950408889634f;
  if (head_dim == 64) {
    launch_for_head_dim<64>(args, int(rows), stream);
  } else {
    launch_for_head_dim<128>(args, int(rows), stream);
  }
  if (args.splits > 1 && !merge_in_kernel) {
    merge_splits_kernel<<<unsigned(query_rows), unsigned(head_dim), 0, stream>>>(args, int(head_dim));
    LOUISKV_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace louiskv::kernels
