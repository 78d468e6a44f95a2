// The CUDA backend: activations and KV cache in bf16 (the fast path: tensor-core attention and
// GEMMs) or in f32 (the precision mode, which tracks the CPU reference op for op: f32 weights in
// fp32 cuBLAS GEMMs, fp32 attention kernels); device memory from cudaMalloc, host memory pinned
// and mapped (kernels read it directly), every op asynchronous on one stream that the backend
// owns together with its cuBLAS handle and workspaces.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace louiskv {

// True when a CUDA driver and at least one device are present; never throws.
bool cuda_device_available();

// A backend on device `device_index` whose activations and KV cache are `activations` (bf16 or
// f32); throws louiskv::Error (unsupported) when there is no such device or the dtype is another.
std::unique_ptr<Backend> make_cuda_backend(int device_index = 0, DType activations = DType::bf16);

}  // namespace louiskv
