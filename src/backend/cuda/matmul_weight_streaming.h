// Projections of a few rows (decode: T <= 32 tokens), which are a single pass over the weights:
// each warp streams 16 weight rows straight from memory into tensor-core fragments with 16-byte
// loads, so the weights are read once at close to full bandwidth. Long K ranges are split across
// blocks to fill the GPU; the last block of each row range to finish adds the partial sums
// (split-K in one launch, no second kernel).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/tensor.h"

namespace louiskv::kernels {

constexpr int64_t weight_streaming_max_tokens = 32;

// Whether the weight-streaming kernel takes this product (else cuBLAS): at most 32 rows of
// input, K a multiple of 32, 16-byte aligned operands.
bool weight_streaming_applies(const TensorView& in, const TensorView& weight);

// The K split for a product, and the fp32 workspace it needs (partial sums and counters).
struct WeightStreamingPlan {
  int splits = 1;
  int64_t k_per_split = 0;
  int64_t workspace_bytes = 0;
};
WeightStreamingPlan plan_weight_streaming(int64_t tokens, int64_t inner, int64_t columns,
                                          int multiprocessors);

// in [T, K] bf16, weight [N, K] bf16, out [T, N] bf16 or f32, bias [N] any float or empty; all
// on the device. `workspace` holds plan.workspace_bytes, and its counter part is zero before the
// first launch (each launch leaves it zero again).
struct WeightStreamingParams {
  TensorView out;
  TensorView in;
  TensorView weight;
  TensorView bias;
  WeightStreamingPlan plan;
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
};
void launch_matmul_weight_streaming(const WeightStreamingParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
