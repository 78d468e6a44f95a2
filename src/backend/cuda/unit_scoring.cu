#include "backend/cuda/unit_scoring.h"

#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int score_threads = 256;
constexpr int score_warps = score_threads / 32;

__device__ float warp_sum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// The bound of unit u for every head of the group, in every lane: lanes split the channels, and
// one read of the unit's summary serves all heads.
__device__ void head_scores(const UnitRow& row, UnitBound bound, int u, int group, int dim, const float* queries,
                            const float* query_norms, float (&scores)[score_max_group]) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int g = 0; g < score_max_group; ++g) scores[g] = 0.0f;
  if (bound == UnitBound::box) {
    const float* lower = row.lower + int64_t(u) * dim;
    const float* upper = row.upper + int64_t(u) * dim;
    for (int i = lane; i < dim; i += 32) {
      float low = lower[i], high = upper[i];
#pragma unroll
      for (int g = 0; g < score_max_group; ++g) {
        if (g < group) scores[g] += fmaxf(queries[g * dim + i] * low, queries[g * dim + i] * high);
      }
    }
  } else {
    const float* key = row.keys + int64_t(u) * dim;
    for (int i = lane; i < dim; i += 32) {
      float k = key[i];
#pragma unroll
      for (int g = 0; g < score_max_group; ++g) {
        if (g < group) scores[g] += queries[g * dim + i] * k;
      }
    }
  }
#pragma unroll
  for (int g = 0; g < score_max_group; ++g) {
    if (g < group) scores[g] = warp_sum(scores[g]);
  }
  if (bound == UnitBound::sphere) {
    float radius = row.radii[u];
#pragma unroll
    for (int g = 0; g < score_max_group; ++g) {
      if (g < group) scores[g] += query_norms[g] * radius;
    }
  }
}

// The group's queries (and, for spheres, their norms) in shared memory; false when the row is
// gated off. Every thread of the block calls it. Query is the activation type (bf16 or f32).
template <class Query>
__device__ bool load_row_queries(const UnitRow& row, const Query* q, int heads, int dim,
                                 const UnitScoring& scoring, float gate_threshold, float* queries) {
  if (row.similarity && !(*row.similarity < gate_threshold)) return false;
  const int group = scoring.group, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* query_norms = queries + group * dim;
  const Query* group_queries = q + (int64_t(row.query_row) * heads + int64_t(row.kv_head) * group) * dim;
  for (int i = threadIdx.x; i < group * dim; i += score_threads) queries[i] = to_float(group_queries[i]);
  __syncthreads();
  if (scoring.bound == UnitBound::sphere) {
    for (int g = warp; g < group; g += score_warps) {
      float squares = 0.0f;
      for (int i = lane; i < dim; i += 32) squares += queries[g * dim + i] * queries[g * dim + i];
      squares = warp_sum(squares);
      if (lane == 0) query_norms[g] = sqrtf(squares);
    }
    __syncthreads();
  }
  return true;
}

// Block (r, c) takes units [c * score_units_per_block, ...) of row r: the rows of a step have a few
// hundred to a few thousand units each, and spreading them over many blocks keeps the GPU busy.

// max and sum: one pass.
template <class Query>
__global__ void __launch_bounds__(score_threads)
    score_units_kernel(const Query* q, const UnitRow* rows, int heads, int dim, UnitScoring scoring,
                       float gate_threshold) {
  extern __shared__ float queries[];  // [group, dim], then the group's query norms
  const UnitRow row = rows[blockIdx.x];
  const int first = int(blockIdx.y) * score_units_per_block;
  if (first >= row.units) return;
  if (!load_row_queries(row, q, heads, dim, scoring, gate_threshold, queries)) return;
  const int group = scoring.group, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int last = min(row.units, first + score_units_per_block);
  float scores[score_max_group];
  for (int u = first + warp; u < last; u += score_warps) {
    head_scores(row, scoring.bound, u, group, dim, queries, queries + group * dim, scores);
    float reduced = scoring.reduction == GroupReduction::max ? -INFINITY : 0.0f;
#pragma unroll
    for (int g = 0; g < score_max_group; ++g) {
      if (g >= group) continue;
      reduced = scoring.reduction == GroupReduction::max ? fmaxf(reduced, scores[g]) : reduced + scores[g];
    }
    // A unit of no tokens (an empty cluster) takes no part.
    if (lane == 0) row.scores[u] = row.lengths[u] > 0 ? reduced : -INFINITY;
  }
}

// softmax_mean, pass 1: each block's largest scaled score per head and its sum of exponentials
// over the block's units (online: the sum is rescaled whenever the maximum grows), to
// partials[(r * chunks + c) * 2 * max_group ...]: maxima, then sums.
template <class Query>
__global__ void __launch_bounds__(score_threads)
    softmax_partials_kernel(const Query* q, const UnitRow* rows, int heads, int dim, UnitScoring scoring,
                            float gate_threshold, float* partials) {
  extern __shared__ float queries[];
  __shared__ float head_max[score_warps][score_max_group], head_sum[score_warps][score_max_group];
  const UnitRow row = rows[blockIdx.x];
  const int first = int(blockIdx.y) * score_units_per_block;
  float* partial = partials + (int64_t(blockIdx.x) * gridDim.y + blockIdx.y) * 2 * score_max_group;
  if (first >= row.units) {
    if (threadIdx.x < score_max_group) {
      partial[threadIdx.x] = -INFINITY;
      partial[score_max_group + threadIdx.x] = 0.0f;
    }
    return;
  }
  if (!load_row_queries(row, q, heads, dim, scoring, gate_threshold, queries)) return;
  const int group = scoring.group, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int last = min(row.units, first + score_units_per_block);
  float scores[score_max_group], largest[score_max_group], total[score_max_group];
#pragma unroll
  for (int g = 0; g < score_max_group; ++g) {
    largest[g] = -INFINITY;
    total[g] = 0.0f;
  }
  for (int u = first + warp; u < last; u += score_warps) {
    if (row.lengths[u] <= 0) continue;
    head_scores(row, scoring.bound, u, group, dim, queries, queries + group * dim, scores);
#pragma unroll
    for (int g = 0; g < score_max_group; ++g) {
      if (g >= group) continue;
      float logit = scoring.scale * scores[g];
      if (logit > largest[g]) {
        total[g] = total[g] * expf(largest[g] - logit) + 1.0f;
        largest[g] = logit;
      } else {
        total[g] += expf(logit - largest[g]);
      }
    }
  }
  if (lane == 0) {
#pragma unroll
    for (int g = 0; g < score_max_group; ++g) {
      head_max[warp][g] = largest[g];
      head_sum[warp][g] = total[g];
    }
  }
  __syncthreads();
  if (threadIdx.x < score_max_group) {
    const int g = threadIdx.x;
    float block_max = -INFINITY, block_sum = 0.0f;
    for (int w = 0; w < score_warps; ++w) block_max = fmaxf(block_max, head_max[w][g]);
    for (int w = 0; w < score_warps; ++w) {
      if (head_max[w][g] > -INFINITY) block_sum += head_sum[w][g] * expf(head_max[w][g] - block_max);
    }
    partial[g] = block_max;
    partial[score_max_group + g] = block_sum;
  }
}

// softmax_mean, pass 2: every block combines its row's partials into each head's maximum and sum,
// then writes the mean over heads of each of its units' softmax weights. A head with no unit to
// weigh (every unit empty) adds nothing.
template <class Query>
__global__ void __launch_bounds__(score_threads)
    softmax_scores_kernel(const Query* q, const UnitRow* rows, int heads, int dim, UnitScoring scoring,
                          float gate_threshold, const float* partials) {
  extern __shared__ float queries[];
  __shared__ float row_max[score_max_group], row_sum[score_max_group];
  const UnitRow row = rows[blockIdx.x];
  const int first = int(blockIdx.y) * score_units_per_block;
  if (first >= row.units) return;
  if (!load_row_queries(row, q, heads, dim, scoring, gate_threshold, queries)) return;
  const int group = scoring.group, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x < score_max_group) {
    const int g = threadIdx.x;
    const float* row_partials = partials + int64_t(blockIdx.x) * gridDim.y * 2 * score_max_group;
    float largest = -INFINITY, total = 0.0f;
    for (unsigned c = 0; c < gridDim.y; ++c) largest = fmaxf(largest, row_partials[c * 2 * score_max_group + g]);
    for (unsigned c = 0; c < gridDim.y; ++c) {
      float chunk_max = row_partials[c * 2 * score_max_group + g];
      if (chunk_max > -INFINITY) total += row_partials[c * 2 * score_max_group + score_max_group + g] * expf(chunk_max - largest);
    }
    row_max[g] = largest;
    row_sum[g] = total;
  }
  __syncthreads();
  const int last = min(row.units, first + score_units_per_block);
  float scores[score_max_group];
  for (int u = first + warp; u < last; u += score_warps) {
    if (row.lengths[u] <= 0) {
      if (lane == 0) row.scores[u] = -INFINITY;
      continue;
    }
    head_scores(row, scoring.bound, u, group, dim, queries, queries + group * dim, scores);
    float reduced = 0.0f;
#pragma unroll
    for (int g = 0; g < score_max_group; ++g) {
      if (g >= group || row_max[g] == -INFINITY) continue;
      reduced += expf(scoring.scale * scores[g] - row_max[g]) / row_sum[g] / float(group);
    }
    if (lane == 0) row.scores[u] = reduced;
  }
}

template <class Query>
void launch_for_queries(const ScoreUnitsParams& params, const Query* q, dim3 grid, size_t shared, int heads, int dim,
                        cudaStream_t stream) {
  if (params.scoring.reduction != GroupReduction::softmax_mean) {
    score_units_kernel<<<grid, score_threads, shared, stream>>>(q, params.rows, heads, dim, params.scoring,
                                                                 params.gate_threshold);
    LOUISKV_CUDA_CHECK_LAUNCH();
    return;
  }
  softmax_partials_kernel<<<grid, score_threads, shared, stream>>>(q, params.rows, heads, dim, params.scoring,
                                                                   params.gate_threshold, params.workspace);
  LOUISKV_CUDA_CHECK_LAUNCH();
  softmax_scores_kernel<<<grid, score_threads, shared, stream>>>(q, params.rows, heads, dim, params.scoring,
                                                                 params.gate_threshold, params.workspace);
  LOUISKV_CUDA_CHECK_LAUNCH();
}

}  // namespace

int64_t score_units_workspace_bytes(int64_t rows, int64_t max_units) {
  const int64_t chunks = (max_units + score_units_per_block - 1) / score_units_per_block;
  return rows * (chunks > 0 ? chunks : 1) * 2 * score_max_group * int64_t(sizeof(float));
}

void launch_score_units(const ScoreUnitsParams& params, cudaStream_t stream) {
  const char* op = "score_units";
  if (params.row_count == 0 || params.max_units == 0) return;
  require_on_device(params.q, op, "q");
  LOUISKV_REQUIRE(params.q.dtype == DType::bf16 || params.q.dtype == DType::f32, op,
                  "q (" + params.q.describe() + ") must be bf16 or f32");
  require_rank(params.q, 3, op, "q");
  const int64_t heads = params.q.dim(1), dim = params.q.dim(2), group = params.scoring.group;
  LOUISKV_REQUIRE(group >= 1 && group <= score_max_group && heads % group == 0, op,
                  "a group of " + std::to_string(group) + " query heads per KV head (this kernel takes 1 to " +
                      std::to_string(score_max_group) + ", dividing the " + std::to_string(heads) + " heads)");
  LOUISKV_REQUIRE(params.rows != nullptr, op, "no row table");
  require_grid_dimension(params.row_count, int64_t(1) << 31, op, "one block row per row");
  const int64_t chunks = (params.max_units + score_units_per_block - 1) / score_units_per_block;
  require_grid_dimension(chunks, 65535, op, "blocks per row");
  const size_t shared = size_t(group * dim + group) * sizeof(float);
  LOUISKV_REQUIRE(shared <= 48 * 1024, op, "the group's queries do not fit in shared memory");
  const dim3 grid(unsigned(params.row_count), unsigned(chunks));
  if (params.scoring.reduction == GroupReduction::softmax_mean) {
    LOUISKV_REQUIRE(params.workspace != nullptr &&
                        params.workspace_bytes >= score_units_workspace_bytes(params.row_count, params.max_units),
                    op, "the softmax workspace is missing or too small");
  }
  if (params.q.dtype == DType::f32) {
    launch_for_queries(params, params.q.as<const float>(), grid, shared, int(heads), int(dim), stream);
  } else {
    launch_for_queries(params, params.q.as<const __nv_bfloat16>(), grid, shared, int(heads), int(dim), stream);
  }
}

}  // namespace louiskv::kernels
