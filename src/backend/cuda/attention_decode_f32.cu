#include "backend/cuda/attention_decode_f32.h"

#include <string>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/attention_decode_arguments.h"
#include "backend/cuda/attention_decode_merge.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int warps = decode_warps_per_block;
constexpr int threads = warps * 32;
// Tokens a warp stages at a time. 16 keeps a block's stages at 66 KB for D = 128 (three blocks
// per multiprocessor), and chunks are multiples of it.
constexpr int tile_tokens = 16;
static_assert(decode_chunk_granule % tile_tokens == 0, "a chunk is a whole number of tiles");
static_assert(tile_tokens * 2 == 32, "two lanes share a token's score, one half of the dims each");
constexpr unsigned full_mask = 0xffffffffu;

// Shared memory, in floats: per warp a stage of K [tile_tokens][D + 4] (padded so that the 8
// lanes of a 16-byte load phase, 8 tokens at one dim, hit 8 bank groups) and V [tile_tokens][D];
// the item's queries [heads][D]; per warp the tile's probabilities [heads][tile_tokens]; the
// warps' softmax maxima and sums [warps][heads]. Once every warp is past its tokens, the stages
// hold the warps' weighted outputs [warps][heads][D] for the block's merge.
template <int head_dim, int heads>
struct Layout {
  static constexpr int key_pitch = head_dim + 4;
  static constexpr int stage_floats = tile_tokens * (key_pitch + head_dim);
  static constexpr int stages_floats = warps * stage_floats;
  static constexpr int q_floats = heads * head_dim;
  static constexpr int p_floats = warps * heads * tile_tokens;
  static constexpr int statistics_floats = 2 * warps * heads;
  static constexpr size_t bytes = size_t(stages_floats + q_floats + p_floats + statistics_floats) * sizeof(float);
  static_assert(warps * heads * head_dim <= stages_floats, "the merge's outputs fit over the stages");
  static_assert(stage_floats % 4 == 0 && q_floats % 4 == 0 && p_floats % 4 == 0 && tile_tokens % 4 == 0,
                "tiles start on 16 bytes");
};

using KernelArguments = DecodeKernelArguments<float>;

// (length, first_token) of a span: the walk from span to span reads only these 8 bytes.
__device__ __forceinline__ int2 span_extent(const DeviceSpan* spans, int index) {
  return __ldg(reinterpret_cast<const int2*>(&spans[index].length));
}

__device__ __forceinline__ unsigned long long span_rows(const void* const* field) {
  return __ldg(reinterpret_cast<const unsigned long long*>(field));
}

__device__ __forceinline__ float dot4(const float4& a, const float4& b, float sum) {
  sum = fmaf(a.x, b.x, sum);
  sum = fmaf(a.y, b.y, sum);
  sum = fmaf(a.z, b.z, sum);
  return fmaf(a.w, b.w, sum);
}

// A lane's dims of a row: 4 floats (D = 128) or 2 (D = 64), one vector access.
template <int count>
__device__ __forceinline__ void load_lane_dims(const float* from, float (&to)[count]) {
  if constexpr (count == 4) {
    const float4 value = *reinterpret_cast<const float4*>(from);
    to[0] = value.x;
    to[1] = value.y;
    to[2] = value.z;
    to[3] = value.w;
  } else {
    static_assert(count == 2, "64 or 128 dims over 32 lanes");
    const float2 value = *reinterpret_cast<const float2*>(from);
    to[0] = value.x;
    to[1] = value.y;
  }
}

// Persistent blocks: block b takes work items b, b + gridDim.x, ... An item is (row, head
// block, part); warp w of the block attends chunk part * warps + w of the row for the item's
// query heads. Per tile of 16 tokens: lanes l and l + 16 sum the scores of token l % 16 over one
// half of the dims each, the online softmax runs in base 2 over the tile, and for O += P V each
// lane owns D / 32 dims of every head.
template <int head_dim, int heads>
__global__ void __launch_bounds__(threads) attention_decode_f32_kernel(const __grid_constant__ KernelArguments args) {
  using L = Layout<head_dim, heads>;
  constexpr int pieces_per_row = head_dim / 4;         // 16-byte pieces of a K or V row
  constexpr int rows_per_copy = 32 / pieces_per_row;   // rows one warp-wide copy covers: 2 or 1
  constexpr int copies = tile_tokens / rows_per_copy;  // per lane and tile, for K and for V each
  constexpr int lane_dims = head_dim / 32;             // output dims per lane
  constexpr int half_dim = head_dim / 2;
  constexpr int64_t row_bytes = head_dim * int64_t(sizeof(float));
  extern __shared__ __align__(16) float shared[];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  float* k_stage = shared + warp * L::stage_floats;
  float* v_stage = k_stage + tile_tokens * L::key_pitch;
  float* combine = shared;                                   // [warps][heads][head_dim], after the loop
  float* q_shared = shared + L::stages_floats;               // [heads][head_dim]
  float* p_warp = q_shared + L::q_floats + warp * heads * tile_tokens;  // [heads][tile_tokens]
  float* warp_max = q_shared + L::q_floats + L::p_floats;    // [warps][heads]
  float* warp_sum = warp_max + warps * heads;                // [warps][heads]
  const int token_lane = lane % tile_tokens;  // the tile's token whose score this lane sums
  const int half = lane / tile_tokens;        // ... over dims [half * D / 2, + D / 2)

  for (int item = blockIdx.x; item < args.items; item += gridDim.x) {
    const int part = item % args.parts;
    const int row_and_block = item / args.parts;
    const int head_block = row_and_block % args.head_blocks;
    const int row = row_and_block / args.head_blocks;
    const int sequence = row / args.kv_heads;
    const int kv_head = row % args.kv_heads;
    const int first_head_in_group = head_block * heads;
    const int heads_here = min(heads, args.group - first_head_in_group);
    const int64_t first_query_row =
        int64_t(sequence) * args.query_heads + int64_t(kv_head) * args.group + first_head_in_group;

    // The item's queries (consecutive rows of q), zero past the group; every warp reads them.
    for (int i = threadIdx.x; i < heads * head_dim; i += threads) {
      q_shared[i] = i < heads_here * head_dim ? args.q[first_query_row * head_dim + i] : 0.0f;
    }
    __syncthreads();

    // This warp's chunk [chunk_begin, chunk_end) of the row's tokens, and the span it starts in.
    const int chunk = part * warps + warp;
    const bool has_chunk = chunk < args.splits;
    const int span_begin = args.indptr[row];
    const int span_end = args.indptr[row + 1];
    int cursor = has_chunk ? args.chunk_first_span[int64_t(row) * args.splits + chunk] : span_end;
    int row_tokens = 0;
    if (span_end > span_begin) {
      const int2 last = span_extent(args.spans, span_end - 1);
      row_tokens = last.y + last.x;
    }
    const int64_t chunk_begin64 = int64_t(chunk) * args.chunk_tokens;
    const int chunk_begin = int(min(chunk_begin64, int64_t(row_tokens)));
    const int chunk_end = int(min(chunk_begin64 + args.chunk_tokens, int64_t(row_tokens)));
    const int count = has_chunk ? chunk_end - chunk_begin : 0;
    const int tiles = count > 0 ? (count + tile_tokens - 1) / tile_tokens : 0;

    float o[heads][lane_dims];
    float running_max[heads], running_sum[heads];  // base 2; the same in every lane
#pragma unroll
    for (int h = 0; h < heads; ++h) {
      running_max[h] = -INFINITY;
      running_sum[h] = 0.0f;
#pragma unroll
      for (int c = 0; c < lane_dims; ++c) o[h][c] = 0.0f;
    }

    for (int tile = 0; tile < tiles; ++tile) {
      const int first_token = chunk_begin + tile * tile_tokens;
      const int valid_tokens = min(tile_tokens, chunk_end - first_token);  // >= 1
      // Lane i < valid_tokens finds the rows of the tile's token i by walking on from the cursor
      // (the span of the tile's first token: one step per span boundary crossed).
      int span = cursor;
      unsigned long long key_row = 0, value_row = 0;
      if (lane < valid_tokens) {
        const int token = first_token + lane;
        int2 extent = span_extent(args.spans, span);
        while (extent.y + extent.x <= token) extent = span_extent(args.spans, ++span);
        const unsigned long long offset = (unsigned long long)(int64_t(token - extent.y) * row_bytes);
        key_row = span_rows(&args.spans[span].keys) + offset;
        value_row = span_rows(&args.spans[span].values) + offset;
      }
      cursor = __shfl_sync(full_mask, span, valid_tokens - 1);
      // The warp copies the tile's K and V rows, 16 bytes a lane. Rows past the chunk's end are
      // zero-filled: their copies name token 0's row, which always exists, and read nothing.
      const int piece = lane % pieces_per_row;
#pragma unroll
      for (int i = 0; i < copies; ++i) {
        const int token = lane / pieces_per_row + i * rows_per_copy;
        const bool valid = token < valid_tokens;
        const int source = valid ? token : 0;
        const auto* key_source = reinterpret_cast<const char*>(__shfl_sync(full_mask, key_row, source));
        const auto* value_source = reinterpret_cast<const char*>(__shfl_sync(full_mask, value_row, source));
        copy_async_16(k_stage + token * L::key_pitch + piece * 4, key_source + piece * 16, valid);
        copy_async_16(v_stage + token * head_dim + piece * 4, value_source + piece * 16, valid);
      }
      copy_async_commit();
      copy_async_wait<0>();
      __syncwarp();  // every lane's pieces have landed

      // Scores: this lane's half of the dims of its token, for every head; then the two halves.
      float s[heads];
#pragma unroll
      for (int h = 0; h < heads; ++h) s[h] = 0.0f;
      const float* key_half = k_stage + token_lane * L::key_pitch + half * half_dim;
      const float* query_half = q_shared + half * half_dim;
#pragma unroll 4
      for (int d = 0; d < half_dim; d += 4) {
        const float4 key = *reinterpret_cast<const float4*>(key_half + d);
#pragma unroll
        for (int h = 0; h < heads; ++h) {
          s[h] = dot4(*reinterpret_cast<const float4*>(query_half + h * head_dim + d), key, s[h]);
        }
      }
#pragma unroll
      for (int h = 0; h < heads; ++h) s[h] += __shfl_xor_sync(full_mask, s[h], tile_tokens);

      // Online softmax over the tile: both halves of the warp hold the same 16 scores, so the
      // reductions stay within a half. Tokens past the chunk's end are masked.
      const bool valid = token_lane < valid_tokens;
#pragma unroll
      for (int h = 0; h < heads; ++h) {
        const float score = valid ? s[h] * args.scale_log2 : -INFINITY;
        float tile_max = score;
#pragma unroll
        for (int offset = tile_tokens / 2; offset > 0; offset /= 2) {
          tile_max = fmaxf(tile_max, __shfl_xor_sync(full_mask, tile_max, offset));
        }
        // Token 0 of every tile is valid, so the new maximum is finite.
        const float new_max = fmaxf(running_max[h], tile_max);
        const float correction = exp2f(running_max[h] - new_max);
        running_max[h] = new_max;
        const float p = exp2f(score - new_max);
        float tile_sum = p;
#pragma unroll
        for (int offset = tile_tokens / 2; offset > 0; offset /= 2) {
          tile_sum += __shfl_xor_sync(full_mask, tile_sum, offset);
        }
        running_sum[h] = running_sum[h] * correction + tile_sum;
#pragma unroll
        for (int c = 0; c < lane_dims; ++c) o[h][c] *= correction;
        if (lane < tile_tokens) p_warp[h * tile_tokens + lane] = p;
      }
      __syncwarp();  // the tile's probabilities are in shared memory

      // O += P V: lane dims [lane * D / 32, + D / 32) of every head, 4 tokens at a time.
#pragma unroll
      for (int t = 0; t < tile_tokens; t += 4) {
        float value[4][lane_dims];
#pragma unroll
        for (int u = 0; u < 4; ++u) load_lane_dims(v_stage + (t + u) * head_dim + lane * lane_dims, value[u]);
#pragma unroll
        for (int h = 0; h < heads; ++h) {
          const float4 p = *reinterpret_cast<const float4*>(p_warp + h * tile_tokens + t);
#pragma unroll
          for (int c = 0; c < lane_dims; ++c) {
            o[h][c] = fmaf(p.x, value[0][c], o[h][c]);
            o[h][c] = fmaf(p.y, value[1][c], o[h][c]);
            o[h][c] = fmaf(p.z, value[2][c], o[h][c]);
            o[h][c] = fmaf(p.w, value[3][c], o[h][c]);
          }
        }
      }
      __syncwarp();  // the stage and the probabilities are free for the next tile
    }

    // Merge the warps: each scales its output by 2^(its max - the block's max) into the combine
    // area (over the stages, free once every warp is past its loop), then the block sums them.
    __syncthreads();
    if (lane == 0) {
#pragma unroll
      for (int h = 0; h < heads; ++h) {
        warp_max[warp * heads + h] = running_max[h];
        warp_sum[warp * heads + h] = running_sum[h];
      }
    }
    __syncthreads();
#pragma unroll
    for (int h = 0; h < heads; ++h) {
      if (h >= heads_here) continue;
      float overall = -INFINITY;
#pragma unroll
      for (int w = 0; w < warps; ++w) overall = fmaxf(overall, warp_max[w * heads + h]);
      // A warp that attended nothing (max -inf) adds nothing.
      const float weight = running_max[h] == -INFINITY ? 0.0f : exp2f(running_max[h] - overall);
      float* destination = combine + (warp * heads + h) * head_dim + lane * lane_dims;
#pragma unroll
      for (int c = 0; c < lane_dims; ++c) destination[c] = o[h][c] * weight;
    }
    __syncthreads();
    for (int index = threadIdx.x; index < heads_here * head_dim; index += threads) {
      const int h = index / head_dim;
      const int d = index % head_dim;
      float overall = -INFINITY;
#pragma unroll
      for (int w = 0; w < warps; ++w) overall = fmaxf(overall, warp_max[w * heads + h]);
      float total = 0.0f, sum = 0.0f;
#pragma unroll
      for (int w = 0; w < warps; ++w) {
        const float maximum = warp_max[w * heads + h];
        total += combine[(w * heads + h) * head_dim + d];
        if (maximum != -INFINITY) sum += exp2f(maximum - overall) * warp_sum[w * heads + h];
      }
      const int64_t query_row = first_query_row + h;
      if (args.parts == 1) {
        // The whole row in one block: normalise here; a row with no token gives zeros.
        args.out[query_row * head_dim + d] = sum > 0.0f ? total / sum : 0.0f;
        if (args.lse && d == 0) {
          args.lse[query_row] = sum > 0.0f ? (overall + log2f(sum)) * 0.6931471805599453f : -INFINITY;
        }
      } else {
        const int64_t slot = query_row * args.parts + part;
        args.partial_out[slot * head_dim + d] = total;
        if (d == 0) {
          args.partial_max[slot] = overall;
          args.partial_sum[slot] = sum;
        }
      }
    }
    __syncthreads();  // the combine area and the queries are the next item's
  }
}

// Query heads a warp serves for a group: the next power of two up to decode_f32_max_heads, so
// that a group of 3 does not pay for 8.
int heads_for_group(int64_t group) {
  if (group <= 1) return 1;
  if (group <= 2) return 2;
  if (group <= 4) return 4;
  return decode_f32_max_heads;
}

// Calls `body` with the kernel instance of (head_dim, heads) and its shared-memory bytes.
template <class Body>
void with_kernel(int64_t head_dim, int heads, Body&& body) {
  auto pick = [&](auto kernel, size_t bytes) { body(kernel, bytes); };
  if (head_dim == 64) {
    switch (heads) {
      case 1: return pick(attention_decode_f32_kernel<64, 1>, Layout<64, 1>::bytes);
      case 2: return pick(attention_decode_f32_kernel<64, 2>, Layout<64, 2>::bytes);
      case 4: return pick(attention_decode_f32_kernel<64, 4>, Layout<64, 4>::bytes);
      default: return pick(attention_decode_f32_kernel<64, 8>, Layout<64, 8>::bytes);
    }
  }
  switch (heads) {
    case 1: return pick(attention_decode_f32_kernel<128, 1>, Layout<128, 1>::bytes);
    case 2: return pick(attention_decode_f32_kernel<128, 2>, Layout<128, 2>::bytes);
    case 4: return pick(attention_decode_f32_kernel<128, 4>, Layout<128, 4>::bytes);
    default: return pick(attention_decode_f32_kernel<128, 8>, Layout<128, 8>::bytes);
  }
}
static_assert(decode_f32_max_heads == 8, "with_kernel instantiates heads 1, 2, 4 and 8");

}  // namespace

int decode_f32_blocks_per_multiprocessor(int64_t head_dim, int64_t query_heads_per_kv_head) {
  int blocks = 0;
  // Head dims other than 64 and 128 are rejected at launch; the plan may ask before that.
  with_kernel(head_dim == 64 ? 64 : 128, heads_for_group(query_heads_per_kv_head), [&](auto kernel, size_t bytes) {
    LOUISKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    LOUISKV_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, bytes));
  });
  return blocks;
}

void launch_attention_decode_f32(const DecodeAttentionParams& params, cudaStream_t stream) {
  const DecodeAttentionShape shape = check_decode_attention_params(params, DType::f32);
  const int heads = heads_for_group(shape.group);
  // The parts of a row are always merged by the second kernel: no counters.
  const KernelArguments args = decode_kernel_arguments<float>(params, shape, heads, false);
  if (shape.batch == 0) return;
  const unsigned blocks = decode_grid_blocks(args, params.split.concurrent_blocks);
  with_kernel(shape.head_dim, heads, [&](auto kernel, size_t bytes) {
    // Above 48 KB a kernel must opt in; doing it on every launch is cheap and keeps no state.
    LOUISKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    kernel<<<blocks, threads, bytes, stream>>>(args);
    LOUISKV_CUDA_CHECK_LAUNCH();
  });
  if (args.parts > 1) {
    merge_parts_kernel<float><<<unsigned(shape.query_rows), unsigned(merge_threads), 0, stream>>>(args,
                                                                                                  int(shape.head_dim));
    LOUISKV_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace louiskv::kernels
