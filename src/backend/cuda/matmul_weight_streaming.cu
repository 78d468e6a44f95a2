// The weight-streaming kernels' planner (see matmul_weight_streaming.h): the automatic path's
// plan table, the register kernel's own block plan, the pipelined kernel's grid, and the launch
// that hands a plan to its kernel (matmul_weight_streaming_registers.cu,
// matmul_weight_streaming_pipelined.cu).
#include "backend/cuda/matmul_weight_streaming.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/matmul_weight_streaming_common.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

using namespace streaming;

namespace {

// ---------------------------------------------------------------------------------------------
// The automatic path's plan table.

enum class AutomaticKernel { cublas, registers, pipelined };

struct AutomaticPlanRow {
  int64_t max_tokens;        // products of at most this many input rows (the batch)
  int64_t max_weight_bytes;  // and at most this many weight bytes
  AutomaticKernel kernel;
  WeightStreamingPipelineOptions pipeline{};  // the pipelined kernel's options (else unused)
};

constexpr int64_t mebibytes = int64_t(1) << 20;

// Rows are tried in order and the first that covers the product decides; a product that no row
// covers, or whose row names a kernel that cannot take it, goes to cuBLAS. To follow a
// bench_decode_gemm run, give each (batch, weight size) its `suggest |` line's kernel and
// options, narrowest rows first, and cite the run's figures here. A pipelined row reads, e.g.:
//   {1, 64 * mebibytes, AutomaticKernel::pipelined,
//    {.k_warps = 8, .stages = 8, .blocks_per_multiprocessor = 1, .resident_limit = 1,
//     .overlap = WeightStreamingOverlap::early}},
constexpr AutomaticPlanRow automatic_plan_table[] = {
    // bench_decode_gemm on an H200 (2026-12-03, second run), calls back to back, copy ceiling
    // 4187 GB/s; each figure is the finalist's repeat, against cuBLAS's; a row changed only where
    // the new winner beat the old one by more than the 1% the repeats vary by. Llama-3.1-8B's o
    // (32 MiB): pipelined, 8 warps on K, 8 stages, overlapping the previous kernel, 3224 / 3213 /
    // 3161 / 3101 GB/s at batch 1 / 2 / 4 / 8 against cuBLAS's 2106-2552 (sweep and repeat); one
    // block per multiprocessor, alone or not, within 0.7% of each other. At 16, 4 stages with the
    // input streamed step by step, 2666 against 2499 (2563 without streaming); at 32 cuBLAS
    // (2257-2408; pipelined 2135).
    {1, 32 * mebibytes, AutomaticKernel::pipelined,
     {.k_warps = 8, .stages = 8, .blocks_per_multiprocessor = 1, .resident_limit = 0,
      .overlap = WeightStreamingOverlap::early}},
    {8, 32 * mebibytes, AutomaticKernel::pipelined,
     {.k_warps = 8, .stages = 8, .blocks_per_multiprocessor = 1, .resident_limit = 1,
      .overlap = WeightStreamingOverlap::early}},
    {16, 32 * mebibytes, AutomaticKernel::pipelined,
     {.k_warps = 8, .stages = 4, .blocks_per_multiprocessor = 1, .resident_limit = 0,
      .overlap = WeightStreamingOverlap::early, .stream_input = true}},
    {32, 32 * mebibytes, AutomaticKernel::cublas},
    // qkv (48 MiB): the same kernel with 12 stages, 3572 / 3533 / 3485 GB/s at batch 1 / 2 / 4
    // (8 stages: 3489 / 3453 / 3458 in the sweep); 8 stages at 8, 3339; cuBLAS 2898-2997. cuBLAS
    // at 16 and 32 (2943 and 2926; pipelined 2733 and 1975).
    {4, 48 * mebibytes, AutomaticKernel::pipelined,
     {.k_warps = 8, .stages = 12, .blocks_per_multiprocessor = 1, .resident_limit = 0,
      .overlap = WeightStreamingOverlap::early}},
    {8, 48 * mebibytes, AutomaticKernel::pipelined,
     {.k_warps = 8, .stages = 8, .blocks_per_multiprocessor = 1, .resident_limit = 0,
      .overlap = WeightStreamingOverlap::early}},
    {32, 48 * mebibytes, AutomaticKernel::cublas},
    // down (112 MiB): pipelined 3971 GB/s at batch 1 (12 stages; 8 stages: 3919 on the automatic
    // path), 3873 at 2 (8 stages) and 3770 at 4 (4 warps on K, K split over 2 blocks) against
    // cuBLAS's 3618-3696; cuBLAS from 8 on (3495-3615).
    {1, 112 * mebibytes, AutomaticKernel::pipelined,
     {.k_warps = 8, .stages = 12, .blocks_per_multiprocessor = 1, .resident_limit = 0,
      .overlap = WeightStreamingOverlap::early}},
    {2, 112 * mebibytes, AutomaticKernel::pipelined,
     {.k_warps = 8, .stages = 8, .blocks_per_multiprocessor = 1, .resident_limit = 0,
      .overlap = WeightStreamingOverlap::early}},
    {4, 112 * mebibytes, AutomaticKernel::pipelined,
     {.k_warps = 4, .stages = 8, .blocks_per_multiprocessor = 1, .resident_limit = 0,
      .overlap = WeightStreamingOverlap::early}},
    // gate+up (224 MiB), and down past batch 4: cuBLAS, 4020-4196 GB/s on gate+up (96-100% of
    // copy). At batch 8 that run's table named the register kernel (3960) only because cuBLAS's
    // repeat, timed after the sweep, fell to 3812 (the automatic path, which took cuBLAS, read
    // the same); its sweep read 4146 there, and the first run that day 4138 / 4140 against the
    // register kernel's 3980: no streaming plan has beaten cuBLAS on this weight.
    {32, 224 * mebibytes, AutomaticKernel::cublas},
};

const AutomaticPlanRow* automatic_plan_row(int64_t tokens, int64_t inner, int64_t columns) {
  const int64_t weight_bytes = inner * columns * int64_t(sizeof(__nv_bfloat16));
  for (const AutomaticPlanRow& row : automatic_plan_table) {
    if (tokens <= row.max_tokens && weight_bytes <= row.max_weight_bytes) return &row;
  }
  return nullptr;
}

// The pipelined kernel's options where a plan must be found without a table row: a forced
// streaming path on a K the register kernel cannot take.
constexpr WeightStreamingPipelineOptions fallback_pipeline_options{};

WeightStreamingPlan register_plan(int64_t tokens, int64_t inner, int64_t columns, int multiprocessors) {
  // From bench_decode_gemm's sweeps on an H200 (Llama-3.1-8B shapes, batch 1 to 32, calls back
  // to back): a block's throughput is bound by its loads in flight, so K is split over a cluster
  // until the grid has about two blocks per multiprocessor, choosing between 64- and 128-row
  // blocks the grid closest to that (128 on a tie: the input is then read half as often); then
  // the launch overlaps the previous kernel, which gained 3-6% on such grids (and lost on larger
  // ones). 2 steps of loads in flight up to 8 tokens; 4 beyond, with the input slice staged in
  // shared memory where it fits (there cuBLAS was faster on these shapes all the same).
  const int64_t wanted_blocks = 2 * int64_t(multiprocessors > 0 ? multiprocessors : 1);
  int best_m_tiles = 2, best_splits = 1;
  int64_t best_blocks = 0;
  for (int m_tiles : {2, 1}) {
    const int64_t row_blocks = (columns + 64 * m_tiles - 1) / (64 * m_tiles);
    for (int splits : {1, 2, 4}) {
      const int64_t blocks = row_blocks * splits;
      if (blocks <= wanted_blocks && blocks > best_blocks) {
        best_blocks = blocks;
        best_m_tiles = m_tiles;
        best_splits = splits;
      }
    }
  }
  const int unroll = tokens <= 8 ? 2 : 4;
  WeightStreamingPlan plan = plan_weight_streaming(inner, best_m_tiles, unroll, best_splits, tokens > 8);
  if (plan.stage_input && staged_bytes(tokens, plan) > weight_streaming_max_staged_bytes) plan.stage_input = false;
  // best_blocks == 0: even one 128-row block per row range is more than the wanted grid.
  plan.overlap = best_blocks > 0 && tokens <= 8 ? WeightStreamingOverlap::early : WeightStreamingOverlap::none;
  return plan;
}



}  // namespace

bool weight_streaming_registers_apply(int64_t inner) { return inner > 0 && inner % 32 == 0; }

bool weight_streaming_applies(const TensorView& in, const TensorView& weight) {
  if (in.rank < 1 || weight.rank != 2 || in.dtype != DType::bf16 || weight.dtype != DType::bf16) return false;
  const int64_t inner = weight.dim(1);
  if (inner == 0 || in.dim(-1) != inner || inner % 8 != 0) return false;
  const int64_t tokens = in.numel() / inner;
  if (tokens < 1 || tokens > weight_streaming_max_tokens || weight.dim(0) < 1 ||
      ((reinterpret_cast<uintptr_t>(in.data) | reinterpret_cast<uintptr_t>(weight.data)) & 15) != 0) {
    return false;
  }
  return weight_streaming_registers_apply(inner) || weight_streaming_pipeline_fits(tokens, inner, fallback_pipeline_options);
}

WeightStreamingPlan plan_weight_streaming(int64_t inner, int m_tiles, int unroll, int splits, bool stage_input) {
  WeightStreamingPlan plan;
  plan.kernel = WeightStreamingKernel::registers;
  plan.stage_input = stage_input;
  plan.m_tiles = m_tiles == 2 ? 2 : 1;
  plan.unroll = unroll == 2 ? 2 : 4;
  const int64_t steps = (inner + step_k - 1) / step_k;
  int64_t wanted = splits < 1 ? 1 : splits;
  if (wanted > weight_streaming_max_splits) wanted = weight_streaming_max_splits;
  if (wanted > steps) wanted = steps;
  plan.k_per_split = (steps + wanted - 1) / wanted * step_k;
  plan.splits = int((inner + plan.k_per_split - 1) / plan.k_per_split);
  return plan;
}

bool weight_streaming_preferred(int64_t tokens, int64_t inner, int64_t columns) {
  if (tokens < 1 || tokens > weight_streaming_max_tokens || inner < 8 || inner % 8 != 0 || columns < 1) return false;
  const AutomaticPlanRow* row = automatic_plan_row(tokens, inner, columns);
  if (row == nullptr) return false;
  switch (row->kernel) {
    case AutomaticKernel::cublas: return false;
    case AutomaticKernel::registers: return weight_streaming_registers_apply(inner);
    case AutomaticKernel::pipelined: return weight_streaming_pipeline_fits(tokens, inner, row->pipeline);
  }
  return false;
}

WeightStreamingPlan plan_weight_streaming(int64_t tokens, int64_t inner, int64_t columns, int multiprocessors) {
  const AutomaticPlanRow* row = automatic_plan_row(tokens, inner, columns);
  if (row != nullptr && row->kernel == AutomaticKernel::pipelined && weight_streaming_pipeline_fits(tokens, inner, row->pipeline)) {
    return plan_weight_streaming_pipelined(tokens, inner, columns, multiprocessors, row->pipeline);
  }
  if (weight_streaming_registers_apply(inner)) return register_plan(tokens, inner, columns, multiprocessors);
  return plan_weight_streaming_pipelined(tokens, inner, columns, multiprocessors, fallback_pipeline_options);
}

int64_t weight_streaming_staged_bytes(int64_t tokens, const WeightStreamingPlan& plan) {
  return plan.kernel == WeightStreamingKernel::registers && plan.stage_input ? staged_bytes(tokens, plan) : 0;
}

bool weight_streaming_pipeline_fits(int64_t tokens, int64_t inner, const WeightStreamingPipelineOptions& options) {
  int64_t k_per_split = 0;
  return pipeline_splits(tokens, inner, options, k_per_split) > 0;
}

WeightStreamingPlan plan_weight_streaming_pipelined(int64_t tokens, int64_t inner, int64_t columns, int multiprocessors,
                                                    const WeightStreamingPipelineOptions& options) {
  WeightStreamingPlan plan;
  plan.kernel = WeightStreamingKernel::pipelined;
  plan.splits = pipeline_splits(tokens, inner, options, plan.k_per_split);
  LOUISKV_REQUIRE(plan.splits > 0, "matmul",
                  "the pipelined weight-streaming kernel cannot take " + std::to_string(tokens) + " rows of K = " +
                      std::to_string(inner) +
                      " with these options (K must be a multiple of 8, and the input slice of the largest split "
                      "must fit in shared memory): a bug in the caller, which should ask "
                      "weight_streaming_pipeline_fits first");
  plan.k_warps = options.k_warps;
  plan.stages = options.stages;
  plan.resident_limit = options.resident_limit;
  plan.overlap = options.overlap;
  plan.stream_input = options.stream_input;
  // About multiprocessors x blocks_per_multiprocessor blocks in all. Where the rows alone cannot
  // fill that grid (a block of few K warps covers many rows: o at k_warps 1 has 32 blocks of
  // rows), K is split further over a cluster, up to 8 blocks.
  const int64_t groups = ceil_div(std::max<int64_t>(columns, 1), tile_rows);
  const int64_t teams_per_block = pipelined_warps / options.k_warps;
  const int64_t wanted_blocks = int64_t(std::max(multiprocessors, 1)) * options.blocks_per_multiprocessor;
  const int64_t wanted_splits = std::min<int64_t>(weight_streaming_max_splits,
                                                  ceil_div(wanted_blocks, ceil_div(groups, teams_per_block)));
  for (int splits = int(wanted_splits); splits > plan.splits; --splits) {
    int64_t k_per_split = 0;
    if (pipeline_split_fits(tokens, inner, options, splits, k_per_split)) {
      plan.splits = splits;
      plan.k_per_split = k_per_split;
      break;
    }
  }
  // Rows: no more blocks than would each get a team's worth of groups, and no team with more
  // than 4 groups (2 above 16 tokens).
  int64_t row_blocks = std::max<int64_t>(1, wanted_blocks / plan.splits);
  row_blocks = std::min(row_blocks, ceil_div(groups, teams_per_block));
  int64_t per_team = ceil_div(groups, row_blocks * teams_per_block);
  const int64_t most_per_team = max_groups_per_warp_for(tokens);
  if (per_team > most_per_team) {
    row_blocks = ceil_div(groups, most_per_team * teams_per_block);
    per_team = ceil_div(groups, row_blocks * teams_per_block);
  }
  plan.row_blocks = row_blocks;
  plan.groups_per_warp = per_team <= 1 ? 1 : per_team <= 2 ? 2 : 4;
  return plan;
}

int64_t weight_streaming_pipeline_shared_bytes(int64_t tokens, const WeightStreamingPlan& plan) {
  if (plan.kernel != WeightStreamingKernel::pipelined) return 0;
  return pipeline_layout(tokens, plan.k_per_split, plan.splits, plan.k_warps, plan.stages, plan.groups_per_warp,
                         plan.stream_input)
      .total;
}

bool weight_streaming_parts_apply(const TensorView& in, std::span<const WeightStreamingPart> parts) {
  if (parts.empty() || parts.size() > size_t(weight_streaming_max_parts)) return false;
  const WeightStreamingPart& first = parts.front();
  for (size_t i = 0; i < parts.size(); ++i) {
    const WeightStreamingPart& part = parts[i];
    if (!weight_streaming_applies(in, part.weight) || part.weight.dim(1) != first.weight.dim(1) ||
        part.out.dtype != first.out.dtype || part.bias.empty() != first.bias.empty() ||
        (!part.bias.empty() && part.bias.dtype != first.bias.dtype)) {
      return false;
    }
    if (i + 1 < parts.size() && part.weight.dim(0) % tile_rows != 0) return false;
  }
  return true;
}

void launch_matmul_weight_streaming(const WeightStreamingParams& params, cudaStream_t stream) {
  const char* op = "matmul";
  LOUISKV_REQUIRE(weight_streaming_applies(params.in, params.weight), op,
                  "in (" + params.in.describe() + ") and weight (" + params.weight.describe() +
                      ") do not fit the weight-streaming kernels");
  const int64_t inner = params.weight.dim(1);
  const int64_t tokens = params.in.numel() / inner;
  int64_t columns = 0;
  auto check_part = [&](const TensorView& out, const TensorView& weight, const TensorView& bias) {
    const int64_t part_columns = weight.dim(0);
    LOUISKV_REQUIRE(out.numel() == tokens * part_columns && (out.dtype == DType::bf16 || out.dtype == DType::f32), op,
                    "out (" + out.describe() + ") must hold " + std::to_string(tokens) + " rows of " +
                        std::to_string(part_columns) + " bf16 or f32 values");
    LOUISKV_REQUIRE(bias.empty() || bias.numel() == part_columns, op,
                    "bias (" + bias.describe() + ") must hold one value per output column");
    columns += part_columns;
  };
  check_part(params.out, params.weight, params.bias);
  if (!params.more_parts.empty()) {
    std::vector<WeightStreamingPart> parts{{params.out, params.weight, params.bias}};
    parts.insert(parts.end(), params.more_parts.begin(), params.more_parts.end());
    LOUISKV_REQUIRE(params.plan.kernel == WeightStreamingKernel::pipelined && weight_streaming_parts_apply(params.in, parts),
                    op,
                    "these " + std::to_string(parts.size()) +
                        " parts cannot share one launch (at most 3, the pipelined kernel, one K, one output and bias "
                        "dtype, every part but the last a multiple of 16 rows): a bug in the caller");
    for (const WeightStreamingPart& part : params.more_parts) check_part(part.out, part.weight, part.bias);
  }
  if (params.plan.kernel == WeightStreamingKernel::pipelined) {
    launch_pipelined_kernel(params, tokens, inner, columns, stream);
  } else {
    launch_register_kernel(params, tokens, inner, columns, stream);
  }
}


}  // namespace louiskv::kernels
