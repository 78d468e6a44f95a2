// What the two weight-streaming kernels (matmul_weight_streaming_registers.cu,
// matmul_weight_streaming_pipelined.cu) and their planner (matmul_weight_streaming.cu) share:
// the MMA step and the output store, the pipelined kernel's geometry and shared-memory layout,
// and the launchers the planner calls. Internal to those three files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/async_copy.cuh"
#include "backend/cuda/matmul_weight_streaming.h"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels::streaming {

// K covered by one step: each lane reads two 16-byte pieces of each of its rows, 64 bytes apart,
// so that one load instruction of the 4 lanes of a row covers 64 contiguous bytes (two whole
// sectors, each fetched once) and the pair covers 128.
constexpr int step_k = 64;
using Overlap = WeightStreamingOverlap;

enum class BiasType : int { none, f32, f16, bf16 };

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

// Output `column` of `token` plus its bias into out [T, pitch] (bf16 or f32).
__device__ __forceinline__ void store_value(void* out, const void* bias, BiasType bias_type, bool out_f32,
                                            int64_t pitch, int64_t token, int64_t column, float value) {
  switch (bias_type) {
    case BiasType::f32: value += static_cast<const float*>(bias)[column]; break;
    case BiasType::f16: value += __half2float(static_cast<const __half*>(bias)[column]); break;
    case BiasType::bf16: value += __bfloat162float(static_cast<const __nv_bfloat16*>(bias)[column]); break;
    case BiasType::none: break;
  }
  const int64_t index = token * pitch + column;
  if (out_f32) {
    static_cast<float*>(out)[index] = value;
  } else {
    static_cast<__nv_bfloat16*>(out)[index] = __float2bfloat16_rn(value);
  }
}

// Arguments: the register kernel's (out, bias, columns, out_f32, bias_type).
template <class Arguments>
__device__ __forceinline__ void store_output(const Arguments& args, int64_t token, int64_t column, float value) {
  store_value(args.out, args.bias, args.bias_type, args.out_f32, args.columns, token, column, value);
}

// The pipelined kernel's products, by output column: columns [first[p], first[p + 1]) are part
// p's, with its own weight rows, output [T, first[p + 1] - first[p]] and bias. One part is a
// plain product.
struct ColumnParts {
  const __nv_bfloat16* weight[weight_streaming_max_parts];
  void* out[weight_streaming_max_parts];
  const void* bias[weight_streaming_max_parts];
  int64_t first[weight_streaming_max_parts + 1];
  int count;

  __device__ int part_of(int64_t column) const {
    int part = 0;
#pragma unroll
    for (int p = 1; p < weight_streaming_max_parts; ++p) {
      if (p < count && column >= first[p]) part = p;
    }
    return part;
  }
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Token tiles of 8 a kernel instantiation covers: 1, 2 or 4 (3 runs as 4).
inline int64_t token_tiles_for(int64_t tokens) {
  const int64_t tiles = ceil_div(tokens, 8);
  return tiles <= 2 ? tiles : 4;
}

inline BiasType bias_type_of(const TensorView& bias, const char* op) {
  if (bias.empty()) return BiasType::none;
  switch (bias.dtype) {
    case DType::f32: return BiasType::f32;
    case DType::f16: return BiasType::f16;
    case DType::bf16: return BiasType::bf16;
    case DType::i32: break;
  }
  fail(op, "bias (" + bias.describe() + ") must be f32, f16 or bf16");
}

// ---------------------------------------------------------------------------------------------
// The register kernel (matmul_weight_streaming_registers.cu).

// Shared memory the staged input slice of a plan takes.
int64_t staged_bytes(int64_t tokens, const WeightStreamingPlan& plan);
void launch_register_kernel(const WeightStreamingParams& params, int64_t tokens, int64_t inner, int64_t columns,
                            cudaStream_t stream);

// ---------------------------------------------------------------------------------------------
// The pipelined kernel (matmul_weight_streaming_pipelined.cu).

constexpr int pipelined_warps = 8;
constexpr int pipelined_threads = pipelined_warps * 32;
constexpr int tile_rows = 16;
constexpr int tile_pieces = tile_rows * step_k / 8;  // pieces of 16 bytes
constexpr int64_t tile_bytes = int64_t(tile_pieces) * 16;
// A warp streams at most 4 groups of 16 rows; 2 above 16 tokens, where 4 groups' accumulators
// would pass the 128 registers that two resident blocks allow (the compiler spilled them).
constexpr int max_groups_per_warp = 4;
inline int64_t max_groups_per_warp_for(int64_t tokens) { return tokens > 16 ? 2 : max_groups_per_warp; }

// The pipelined kernel's dynamic shared memory, in bytes (all multiples of 16).
struct PipelineLayout {
  int64_t warp_region = 0;  // each warp's ring (and streamed input steps), later its partial sums
  int64_t input_offset = 0;  // the staged input slice (none when streamed)
  int64_t block_sums_offset = 0;
  int64_t block_sums_pitch = 0;  // floats
  int64_t total = 0;
};
PipelineLayout pipeline_layout(int64_t tokens, int64_t k_per_split, int splits, int k_warps, int stages,
                               int groups_per_warp, bool stream_input);


// Shared memory a block may take on sm_90 (H100, H200): 227 KB with the opt-in, and where two
// blocks must fit on one multiprocessor, half of its 228 KB less the 1 KB each block reserves.
// The launch checks the device's own limit.
constexpr int64_t shared_per_block_limit = 227 * 1024;
constexpr int64_t shared_per_block_two_resident = 228 * 1024 / 2 - 1024;

bool pipeline_options_valid(const WeightStreamingPipelineOptions& options);


// Whether K cut into `splits` slices (of a multiple of 64 each, every slice non-empty) fits the
// options' shared-memory budget, counting the partial sums for the most groups a warp can get
bool pipeline_split_fits(int64_t tokens, int64_t inner, const WeightStreamingPipelineOptions& options, int splits,
                         int64_t& k_per_split);

// The smallest split of K (1 to 8 blocks of a cluster) that fits; 0 where none does.
int pipeline_splits(int64_t tokens, int64_t inner, const WeightStreamingPipelineOptions& options, int64_t& k_per_split);

void launch_pipelined_kernel(const WeightStreamingParams& params, int64_t tokens, int64_t inner, int64_t columns,
                             cudaStream_t stream);

}  // namespace louiskv::kernels::streaming
