// Elementwise ops of the decoder: the residual add and the SwiGLU gate of the MLP.
#pragma once

#include <cuda_runtime.h>

#include "backend/tensor.h"

namespace louiskv::kernels {

// out = a + b; all three of one dtype (bf16 or f32) and one element count; out may alias a or b.
struct AddParams {
  TensorView out;
  TensorView a;
  TensorView b;
};
void launch_add(const AddParams& params, cudaStream_t stream);

// out[t, i] = silu(gate[t, i]) * up[t, i]; all [T, I] of one dtype (bf16 or f32); out may alias.
struct SwigluParams {
  TensorView out;
  TensorView gate;
  TensorView up;
};
void launch_swiglu(const SwigluParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
