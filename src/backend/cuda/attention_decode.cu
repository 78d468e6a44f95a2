#include "backend/cuda/attention_decode.h"

#include <cuda_bf16.h>

#include <algorithm>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/attention_decode_arguments.h"
#include "backend/cuda/attention_decode_merge.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int warps = decode_warps_per_block;
constexpr int threads = warps * 32;
// K/V tiles per warp in shared memory: while one is consumed, the next two are being read.
constexpr int stages = 3;
// Query heads a warp serves at once: the rows of an MMA tile. Groups of up to 16 heads (all
// common GQA shapes) read their K and V once; larger groups take several head blocks.
constexpr int mma_rows = 16;
// A chunk shorter than this per warp is mostly start-up; the planner does not go below it.
constexpr int min_chunk_tokens = 32;

// One stage holds `tokens` K rows and as many V rows: 4 KB of each whatever the head dim.
// Copies: head_dim / 8 lanes share a row, each moving one 16-byte piece, so a warp-wide copy
// covers rows_per_copy whole rows (512 contiguous bytes when the rows are neighbours).
template <int head_dim>
struct Tile {
  static constexpr int tokens = 2048 / head_dim;
  static constexpr int elements = tokens * head_dim;
  static constexpr int pieces_per_row = head_dim / 8;
  static constexpr int rows_per_copy = 32 / pieces_per_row;
  static constexpr int copies = tokens / rows_per_copy;  // per lane, for K and for V each
  static constexpr int score_tiles = tokens / 8;          // n-tiles of S = Q K^T
  static constexpr int value_steps = tokens / 16;         // k-steps of P V
  static constexpr int dim_steps = head_dim / 16;         // k-steps of Q K^T
  static constexpr int dim_tiles = head_dim / 8;          // n-tiles of O
  static_assert(tokens <= 32, "one lane finds the row address of each token of a tile");
};

using KernelArguments = DecodeKernelArguments<__nv_bfloat16>;

// Rows of head_dim bf16 are stored as 16-byte pieces whose index is XORed with the row's low 3
// bits, so that the 8 rows an ldmatrix phase reads fall into 8 different bank groups.
template <int head_dim>
__device__ __forceinline__ int swizzled(int row, int piece) {
  return row * head_dim + ((piece ^ (row & 7)) << 3);
}

template <int head_dim>
struct SharedLayout {
  using T = Tile<head_dim>;
  static constexpr size_t stage_bytes = size_t(warps) * stages * 2 * T::elements * sizeof(__nv_bfloat16);
  // The warps' weighted outputs, [warps][mma_rows][head_dim + 8] floats (the padding keeps the
  // float2 stores of a warp on distinct banks), over the stages once every warp is done.
  static constexpr int combine_pitch = head_dim + 8;
  static constexpr size_t combine_bytes = size_t(warps) * mma_rows * combine_pitch * sizeof(float);
  static constexpr size_t big = stage_bytes > combine_bytes ? stage_bytes : combine_bytes;
  static constexpr size_t table_bytes = size_t(warps) * T::tokens * 2 * sizeof(const char*);
  static constexpr size_t statistics_bytes = size_t(2) * warps * mma_rows * sizeof(float);
  static constexpr size_t total = big + table_bytes + statistics_bytes;
};

// The last block of a (row, head block) to finish merges all its parts, so that no second
// kernel is needed: each block publishes its partial results, fences, and counts itself in; the
// one that brings the count to `parts` reads everything back (the classic threadfence
// reduction) and resets the counter for the next launch.
__device__ void merge_if_last(const KernelArguments& args, int counter_index, int64_t first_query_row,
                              int heads_here, int head_dim) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  int* counter = args.counters + counter_index;
  if (threadIdx.x == 0) last = atomicAdd(counter, 1) == args.parts - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int head = 0; head < heads_here; ++head) merge_row(args, first_query_row + head, head_dim);
  if (threadIdx.x == 0) *counter = 0;
}

// (length, first_token) of a span: the walk from span to span reads only these 8 bytes.
__device__ __forceinline__ int2 span_extent(const DeviceSpan* spans, int index) {
  return __ldg(reinterpret_cast<const int2*>(&spans[index].length));
}

__device__ __forceinline__ const char* span_rows(const void* const* field) {
  return reinterpret_cast<const char*>(__ldg(reinterpret_cast<const unsigned long long*>(field)));
}

// Persistent blocks: block b takes work items b, b + gridDim.x, ... An item is (row, head
// block, part); warp w of the block attends chunk part * warps + w of the row with the item's
// query heads as MMA rows: S = Q K^T and O += P V on the tensor cores (bf16 in, fp32
// accumulators), online softmax in base 2 on the fragments in registers.
template <int head_dim>
__global__ void __launch_bounds__(threads) attention_decode_kernel(const __grid_constant__ KernelArguments args) {
  using T = Tile<head_dim>;
  using Layout = SharedLayout<head_dim>;
  extern __shared__ __align__(128) unsigned char shared[];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;  // fragment row (and row + 8)
  const int c = lane % 4;  // fragment column pair
  __nv_bfloat16* warp_stages = reinterpret_cast<__nv_bfloat16*>(shared) + size_t(warp) * stages * 2 * T::elements;
  // This warp's row addresses of the tile being issued: [tokens][key, value].
  const char** table = reinterpret_cast<const char**>(shared + Layout::big) + warp * T::tokens * 2;
  float* warp_max = reinterpret_cast<float*>(shared + Layout::big + Layout::table_bytes);  // [warps][mma_rows]
  float* warp_sum = warp_max + warps * mma_rows;                                           // [warps][mma_rows]
  float* combine = reinterpret_cast<float*>(shared);
  constexpr int64_t row_bytes = head_dim * sizeof(__nv_bfloat16);

  wait_for_previous_grid();
  allow_next_grid();

  for (int item = blockIdx.x; item < args.items; item += gridDim.x) {
    const int part = item % args.parts;
    const int row_and_block = item / args.parts;
    const int head_block = row_and_block % args.head_blocks;
    const int row = row_and_block / args.head_blocks;
    const int sequence = row / args.kv_heads;
    const int kv_head = row % args.kv_heads;
    const int first_head_in_group = head_block * mma_rows;
    const int heads_here = min(mma_rows, args.group - first_head_in_group);
    const int64_t first_query_row =
        int64_t(sequence) * args.query_heads + int64_t(kv_head) * args.group + first_head_in_group;

    // This warp's chunk [chunk_begin, chunk_end) of the row's tokens, and the span it starts in.
    const int chunk = part * warps + warp;
    const bool has_chunk = chunk < args.splits;
    const int span_begin = args.indptr[row];
    const int span_end = args.indptr[row + 1];
    int cursor = has_chunk ? args.chunk_first_span[int64_t(row) * args.splits + chunk] : span_end;
    int row_tokens = 0;
    if (span_end > span_begin) {
      int2 last = span_extent(args.spans, span_end - 1);
      row_tokens = last.y + last.x;
    }
    const int64_t chunk_begin64 = int64_t(chunk) * args.chunk_tokens;
    const int chunk_begin = int(min(chunk_begin64, int64_t(row_tokens)));
    const int chunk_end = int(min(chunk_begin64 + args.chunk_tokens, int64_t(row_tokens)));
    const int count = has_chunk ? chunk_end - chunk_begin : 0;
    const int tiles = count > 0 ? (count + T::tokens - 1) / T::tokens : 0;

    // Q as the A operand: rows g and g + 8 are heads of the block (zero past the group).
    uint32_t q_fragments[T::dim_steps][4];
    {
      const uint32_t* q_low = g < heads_here
                                  ? reinterpret_cast<const uint32_t*>(args.q + (first_query_row + g) * head_dim)
                                  : nullptr;
      const uint32_t* q_high = g + 8 < heads_here
                                   ? reinterpret_cast<const uint32_t*>(args.q + (first_query_row + g + 8) * head_dim)
                                   : nullptr;
#pragma unroll
      for (int step = 0; step < T::dim_steps; ++step) {
        q_fragments[step][0] = q_low ? __ldg(q_low + step * 8 + c) : 0u;
        q_fragments[step][1] = q_high ? __ldg(q_high + step * 8 + c) : 0u;
        q_fragments[step][2] = q_low ? __ldg(q_low + step * 8 + 4 + c) : 0u;
        q_fragments[step][3] = q_high ? __ldg(q_high + step * 8 + 4 + c) : 0u;
      }
    }

    // Lane i < tokens finds the span of the tile's token i by walking on from the cursor (the
    // span of the tile's first token: one step per span boundary crossed, none inside a long
    // span), then the warp copies the tile's K and V rows into the tile's stage.
    auto issue_tile = [&](int tile) {
      if (tile < tiles) {
        const int first_token = chunk_begin + tile * T::tokens;
        const int valid_tokens = min(T::tokens, chunk_end - first_token);
        int span = cursor;
        if (lane < valid_tokens) {
          const int token = first_token + lane;
          int2 extent = span_extent(args.spans, span);
          while (extent.y + extent.x <= token) extent = span_extent(args.spans, ++span);
          const int64_t offset = int64_t(token - extent.y) * row_bytes;
          table[2 * lane] = span_rows(&args.spans[span].keys) + offset;
          table[2 * lane + 1] = span_rows(&args.spans[span].values) + offset;
        }
        cursor = __shfl_sync(0xffffffffu, span, valid_tokens - 1);
        __syncwarp();
        __nv_bfloat16* k_stage = warp_stages + (tile % stages) * 2 * T::elements;
        __nv_bfloat16* v_stage = k_stage + T::elements;
        const int piece = lane % T::pieces_per_row;
#pragma unroll
        for (int i = 0; i < T::copies; ++i) {
          const int token = lane / T::pieces_per_row + i * T::rows_per_copy;
          const bool valid = token < valid_tokens;
          const int source = valid ? token : 0;
          copy_async_16(k_stage + swizzled<head_dim>(token, piece), table[2 * source] + piece * 16, valid);
          copy_async_16(v_stage + swizzled<head_dim>(token, piece), table[2 * source + 1] + piece * 16, valid);
        }
        __syncwarp();  // every lane has read the table before the next tile rewrites it
      }
      copy_async_commit();  // an empty group past the end keeps the wait counts uniform
    };

#pragma unroll
    for (int tile = 0; tile < stages - 1; ++tile) issue_tile(tile);

    float o[T::dim_tiles][4];
#pragma unroll
    for (int d = 0; d < T::dim_tiles; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
    // Softmax state of rows g and g + 8, base 2; each lane sums its own columns (a quad's lanes
    // are added at the end).
    float running_max[2] = {-INFINITY, -INFINITY};
    float running_sum[2] = {0.0f, 0.0f};

    for (int tile = 0; tile < tiles; ++tile) {
      copy_async_wait<stages - 2>();  // this lane's pieces of `tile` have landed
      __syncwarp();                   // ... and every other lane's
      issue_tile(tile + stages - 1);  // into the stage the warp finished with last time
      const __nv_bfloat16* k_stage = warp_stages + (tile % stages) * 2 * T::elements;
      const __nv_bfloat16* v_stage = k_stage + T::elements;

      // S = Q K^T: K rows are the B operand's columns, read by ldmatrix without transposition.
      float s[T::score_tiles][4];
#pragma unroll
      for (int n = 0; n < T::score_tiles; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
      for (int step = 0; step < T::dim_steps; ++step) {
#pragma unroll
        for (int n = 0; n < T::score_tiles; n += 2) {
          uint32_t b[4];
          const int key = n * 8 + (lane % 8) + (lane / 16) * 8;
          load_matrix_x4(b, k_stage + swizzled<head_dim>(key, 2 * step + (lane / 8) % 2));
          mma_bf16_16x8x16(s[n], q_fragments[step], b[0], b[1]);
          mma_bf16_16x8x16(s[n + 1], q_fragments[step], b[2], b[3]);
        }
      }

      // Online softmax; tokens past the chunk's end (a partial last tile) are masked.
      const int valid_tokens = chunk_end - (chunk_begin + tile * T::tokens);
      float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int n = 0; n < T::score_tiles; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int token = n * 8 + 2 * c + (e % 2);
          const float value = token < valid_tokens ? s[n][e] * args.scale_log2 : -INFINITY;
          s[n][e] = value;
          tile_max[e / 2] = fmaxf(tile_max[e / 2], value);
        }
      }
      float correction[2];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        tile_max[half] = fmaxf(tile_max[half], __shfl_xor_sync(0xffffffffu, tile_max[half], 1));
        tile_max[half] = fmaxf(tile_max[half], __shfl_xor_sync(0xffffffffu, tile_max[half], 2));
        // Every tile holds a valid token, so the new maximum is finite.
        const float new_max = fmaxf(running_max[half], tile_max[half]);
        correction[half] = fast_exp2(running_max[half] - new_max);
        running_max[half] = new_max;
        running_sum[half] *= correction[half];
      }
      // Once the maxima settle the corrections are exactly 1: skip the rescale then.
      if (!__all_sync(0xffffffffu, correction[0] == 1.0f && correction[1] == 1.0f)) {
#pragma unroll
        for (int d = 0; d < T::dim_tiles; ++d) {
          o[d][0] *= correction[0];
          o[d][1] *= correction[0];
          o[d][2] *= correction[1];
          o[d][3] *= correction[1];
        }
      }
      uint32_t p_fragments[T::value_steps][4];
#pragma unroll
      for (int n = 0; n < T::score_tiles; ++n) {
        const float p0 = fast_exp2(s[n][0] - running_max[0]);
        const float p1 = fast_exp2(s[n][1] - running_max[0]);
        const float p2 = fast_exp2(s[n][2] - running_max[1]);
        const float p3 = fast_exp2(s[n][3] - running_max[1]);
        running_sum[0] += p0 + p1;
        running_sum[1] += p2 + p3;
        // The C fragments of score tiles 2j and 2j+1 are exactly the A fragment of k-step j.
        p_fragments[n / 2][(n % 2) * 2 + 0] = pack_bf16_pair(p0, p1);
        p_fragments[n / 2][(n % 2) * 2 + 1] = pack_bf16_pair(p2, p3);
      }

      // O += P V: V rows are k-major for the B operand, read by ldmatrix with transposition.
#pragma unroll
      for (int step = 0; step < T::value_steps; ++step) {
#pragma unroll
        for (int d = 0; d < T::dim_tiles; d += 2) {
          uint32_t b[4];
          const int key = step * 16 + (lane % 8) + ((lane / 8) % 2) * 8;
          load_matrix_x4_transposed(b, v_stage + swizzled<head_dim>(key, d + lane / 16));
          mma_bf16_16x8x16(o[d], p_fragments[step], b[0], b[1]);
          mma_bf16_16x8x16(o[d + 1], p_fragments[step], b[2], b[3]);
        }
      }
    }
    copy_async_wait<0>();
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      running_sum[half] += __shfl_xor_sync(0xffffffffu, running_sum[half], 1);
      running_sum[half] += __shfl_xor_sync(0xffffffffu, running_sum[half], 2);
    }

    // Merge the warps: each scales its output by 2^(its max - the block's max) into the combine
    // area (over the stages, free once every warp is past its loop), then the block sums them.
    __syncthreads();
    if (c == 0) {
      warp_max[warp * mma_rows + g] = running_max[0];
      warp_max[warp * mma_rows + g + 8] = running_max[1];
      warp_sum[warp * mma_rows + g] = running_sum[0];
      warp_sum[warp * mma_rows + g + 8] = running_sum[1];
    }
    __syncthreads();
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int head = g + 8 * half;
      if (head < heads_here) {
        float overall = -INFINITY;
#pragma unroll
        for (int w = 0; w < warps; ++w) overall = fmaxf(overall, warp_max[w * mma_rows + head]);
        const float weight = running_max[half] == -INFINITY ? 0.0f : fast_exp2(running_max[half] - overall);
        float* destination = combine + (warp * mma_rows + head) * Layout::combine_pitch + 2 * c;
#pragma unroll
        for (int d = 0; d < T::dim_tiles; ++d) {
          *reinterpret_cast<float2*>(destination + d * 8) =
              make_float2(o[d][2 * half] * weight, o[d][2 * half + 1] * weight);
        }
      }
    }
    __syncthreads();
    for (int index = threadIdx.x; index < heads_here * head_dim; index += threads) {
      const int head = index / head_dim;
      const int d = index % head_dim;
      float overall = -INFINITY;
#pragma unroll
      for (int w = 0; w < warps; ++w) overall = fmaxf(overall, warp_max[w * mma_rows + head]);
      float total = 0.0f, sum = 0.0f;
#pragma unroll
      for (int w = 0; w < warps; ++w) {
        const float maximum = warp_max[w * mma_rows + head];
        total += combine[(w * mma_rows + head) * Layout::combine_pitch + d];
        if (maximum != -INFINITY) sum += fast_exp2(maximum - overall) * warp_sum[w * mma_rows + head];
      }
      const int64_t query_row = first_query_row + head;
      if (args.parts == 1) {
        // The whole row in one block: normalise here; a row with no token gives zeros.
        args.out[query_row * head_dim + d] = __float2bfloat16_rn(sum > 0.0f ? total / sum : 0.0f);
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
    if (args.parts > 1 && args.counters) {
      merge_if_last(args, row * args.head_blocks + head_block, first_query_row, heads_here, head_dim);
    }
    __syncthreads();  // the combine area is the next item's stages
  }
}

template <class Kernel, class... Arguments>
void launch(Kernel kernel, unsigned blocks, unsigned block_threads, size_t shared, bool overlap, cudaStream_t stream,
            const Arguments&... arguments) {
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(blocks);
  config.blockDim = dim3(block_threads);
  config.dynamicSmemBytes = shared;
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = overlap ? 1 : 0;
  LOUISKV_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, arguments...));
}

template <int head_dim>
void launch_for_head_dim(const KernelArguments& args, int concurrent_blocks, bool overlap, cudaStream_t stream) {
  constexpr size_t bytes = SharedLayout<head_dim>::total;
  LOUISKV_CUDA_CHECK(cudaFuncSetAttribute(attention_decode_kernel<head_dim>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  launch(attention_decode_kernel<head_dim>, decode_grid_blocks(args, concurrent_blocks), threads, bytes, overlap, stream,
         args);
}

}  // namespace

int decode_blocks_per_multiprocessor(int64_t head_dim, int64_t /*query_heads_per_kv_head*/) {
  auto query = [](auto kernel, size_t bytes) {
    LOUISKV_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    int blocks = 0;
    LOUISKV_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, bytes));
    return blocks;
  };
  if (head_dim == 64) return query(attention_decode_kernel<64>, SharedLayout<64>::total);
  return query(attention_decode_kernel<128>, SharedLayout<128>::total);
}

DecodeSplit choose_decode_split(int64_t rows, int64_t query_heads_per_kv_head, int64_t max_row_tokens,
                                int64_t concurrent_blocks) {
  DecodeSplit best;
  best.concurrent_blocks = int(concurrent_blocks > 0 ? concurrent_blocks : 0);
  if (max_row_tokens <= 0 || rows <= 0) return best;
  const int64_t head_blocks = (query_heads_per_kv_head + mma_rows - 1) / mma_rows;
  const int64_t base_blocks = rows * head_blocks;
  const int64_t slots = concurrent_blocks > 0 ? concurrent_blocks : base_blocks;
  // A time model in units of one block streaming one token at its share of a full GPU:
  // - blocks take parts in waves of `slots`; each part costs its tokens plus a start-up
  //   (the dependent loads of the plan, then the pipeline filling: about 96 tokens' worth on an
  //   H200, bench_attention_decode's chunk sweep);
  // - with fewer blocks than slots each streams faster, up to 1.4 times its share (the bytes a
  //   block keeps in flight bound it: 64 blocks of batch 8 read 22 GB/s each, against 16 at
  //   full occupancy);
  // - several parts per row cost a merge (about 80 tokens' worth).
  // The sweep's best chunks (512 tokens for 256 rows, 256 for 128, 128 for 64) are what it picks.
  constexpr double start_tokens = 96.0, merge_tokens = 80.0, lone_block_speedup = 1.4;
  double best_cost = -1.0;
  for (int64_t parts = 1; parts <= 4096; ++parts) {
    int64_t chunk = (max_row_tokens + parts * warps - 1) / (parts * warps);
    chunk = (chunk + decode_chunk_granule - 1) / decode_chunk_granule * decode_chunk_granule;
    if (parts > 1 && chunk < min_chunk_tokens) break;
    const int64_t splits = (max_row_tokens + chunk - 1) / chunk;
    if (decode_parts(int(splits)) != parts) continue;
    const int64_t blocks = base_blocks * parts;
    const int64_t waves = (blocks + slots - 1) / slots;
    const double speedup = std::min(lone_block_speedup, double(slots) / double(std::min(blocks, slots)));
    const double cost = double(waves) * (double(warps * chunk) / speedup + start_tokens) +
                        (parts > 1 ? merge_tokens : 0.0);
    // Fewer parts unless clearly cheaper (the model is rough).
    if (best_cost < 0.0 || cost < 0.97 * best_cost) {
      best_cost = cost;
      best.chunk_tokens = int(chunk);
      best.splits = int(splits);
    }
  }
  return best;
}

int64_t decode_workspace_bytes(int64_t query_rows, int splits, int64_t head_dim) {
  return decode_counter_bytes + query_rows * decode_parts(splits) * (head_dim + 2) * int64_t(sizeof(float));
}

DecodeAttentionShape check_decode_attention_params(const DecodeAttentionParams& params, DType activation) {
  const char* op = "attention_decode";
  require_on_device(params.out, op, "out");
  require_on_device(params.q, op, "q");
  require_rank(params.q, 3, op, "q");
  require_dtype(params.q, activation, op, "q");
  require_dtype(params.out, activation, op, "out");
  DecodeAttentionShape shape;
  shape.batch = params.q.dim(0);
  shape.query_heads = params.q.dim(1);
  shape.head_dim = params.q.dim(2);
  LOUISKV_REQUIRE(params.out.numel() == params.q.numel(), op,
                  "out (" + params.out.describe() + ") must have q's element count (" + params.q.describe() + ")");
  LOUISKV_REQUIRE(shape.head_dim == 64 || shape.head_dim == 128, op,
                  "head dim " + std::to_string(shape.head_dim) + " is not supported (64 or 128)");
  LOUISKV_REQUIRE(params.kv_heads > 0 && shape.query_heads % params.kv_heads == 0, op,
                  "query heads (" + std::to_string(shape.query_heads) + ") must be a multiple of KV heads (" +
                      std::to_string(params.kv_heads) + ")");
  if (!params.lse.empty()) {
    require_on_device(params.lse, op, "lse");
    require_dtype(params.lse, DType::f32, op, "lse");
    LOUISKV_REQUIRE(params.lse.numel() == shape.batch * shape.query_heads, op,
                    "lse (" + params.lse.describe() + ") must hold batch x query heads values");
  }
  LOUISKV_REQUIRE(reinterpret_cast<uintptr_t>(params.q.data) % 16 == 0, op, "q must be 16-byte aligned");
  LOUISKV_REQUIRE(params.split.splits >= 1 && params.split.chunk_tokens > 0 &&
                      params.split.chunk_tokens % decode_chunk_granule == 0,
                  op, "invalid split of the rows into chunks (a bug in the caller's plan)");
  shape.rows = shape.batch * params.kv_heads;
  shape.query_rows = shape.batch * shape.query_heads;
  shape.group = shape.query_heads / params.kv_heads;
  LOUISKV_REQUIRE(shape.query_rows < (int64_t(1) << 31), op, "too many query rows for one launch");
  LOUISKV_REQUIRE(params.workspace != nullptr &&
                      params.workspace_bytes >= decode_workspace_bytes(shape.query_rows, params.split.splits,
                                                                       shape.head_dim),
                  op, "workspace too small for this batch and split");
  if (shape.batch > 0) {
    LOUISKV_REQUIRE(params.spans != nullptr && params.indptr != nullptr && params.chunk_first_span != nullptr, op,
                    "the span plan is missing");
  }
  return shape;
}

void launch_attention_decode(const DecodeAttentionParams& params, cudaStream_t stream) {
  const DecodeAttentionShape shape = check_decode_attention_params(params, DType::bf16);
  const KernelArguments args = decode_kernel_arguments<__nv_bfloat16>(params, shape, mma_rows, params.merge_in_kernel);
  if (shape.batch == 0) return;
  const bool overlap = params.overlap_previous_kernel;
  if (shape.head_dim == 64) {
    launch_for_head_dim<64>(args, params.split.concurrent_blocks, overlap, stream);
  } else {
    launch_for_head_dim<128>(args, params.split.concurrent_blocks, overlap, stream);
  }
  if (args.parts > 1 && args.counters == nullptr) {
    // The default (see DecodeAttentionParams::merge_in_kernel): one block per query row.
    launch(merge_parts_kernel<__nv_bfloat16>, unsigned(shape.query_rows), unsigned(merge_threads), 0, overlap, stream,
           args, int(shape.head_dim));
  }
}

}  // namespace louiskv::kernels
