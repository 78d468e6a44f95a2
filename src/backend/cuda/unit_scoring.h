// Unit scoring on the device: for every (sequence, KV head) row, each unit's bound of q.k for
// each query head of the group (dot, box or sphere), reduced over the group (max, sum or the mean
// of per-head softmaxes). Each row is spread over blocks of score_units_per_block units; the
// softmax takes two passes (per-block maxima and sums, then the weights).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/kv_ops.h"
#include "backend/tensor.h"

namespace louiskv::kernels {

// Query heads per KV head the kernel handles (GQA groups of Llama, Qwen and Mistral are <= 8).
constexpr int score_max_group = 16;
// Units of one row per thread block: each unit is a chain of dependent loads and shuffles, so
// latency is hidden by spreading a row's units over many blocks.
constexpr int score_units_per_block = 128;

// Bytes of workspace a softmax_mean call needs (per-block maxima and sums).
int64_t score_units_workspace_bytes(int64_t rows, int64_t max_units);

struct ScoreUnitsParams {
  TensorView q;                      // [B, Hq, D] (device), bf16 or f32 (the activations)
  const UnitRow* rows = nullptr;     // device, [row_count]
  int64_t row_count = 0;
  int64_t max_units = 0;             // the most units of any row
  UnitScoring scoring;
  float gate_threshold = 0.0f;
  float* workspace = nullptr;        // device, score_units_workspace_bytes (softmax_mean only)
  int64_t workspace_bytes = 0;
};
void launch_score_units(const ScoreUnitsParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
