// The LouisKV trigger's measure on the device: per sequence, the mean over query heads of the
// cosine between this step's query and the previous step's, which the kernel then replaces.
#pragma once

#include <cuda_runtime.h>

#include "backend/tensor.h"

namespace louiskv::kernels {

// Sequences per launch: their previous-query pointers travel in the kernel's parameters.
constexpr int query_cosine_max_batch = 64;

struct QueryCosineParams {
  TensorView similarity;  // f32 [B] (device or mapped host)
  TensorView q;           // [B, Hq, D] (device), bf16 or f32 (the activations)
  void* previous[query_cosine_max_batch] = {};  // [Hq, D] in q's dtype each (device)
  int batch = 0;          // <= query_cosine_max_batch
};
void launch_query_cosine(const QueryCosineParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
