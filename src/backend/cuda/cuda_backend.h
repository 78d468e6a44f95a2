// The CUDA backend: bf16 activations and KV cache, device memory from cudaMalloc, host memory
// pinned and mapped (kernels read it directly), every op asynchronous on one stream that the
// backend owns together with its cuBLAS handle and workspaces.
#pragma once

#include <memory>

#include "backend/backend.h"

namespace louiskv {

// True when a CUDA driver and at least one device are present; never throws.
bool cuda_device_available();

// A backend on device `device_index`; throws louiskv::Error (unsupported) when there is none.
std::unique_ptr<Backend> make_cuda_backend(int device_index = 0);

}  // namespace louiskv
