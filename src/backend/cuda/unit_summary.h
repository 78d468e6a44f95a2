// What a unit carries besides its tokens, computed on the device for many units at once: mean
// key, per-channel key box, bounding radius around the mean, and the unit's length.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/kv_ops.h"
#include "common/dtype.h"

namespace louiskv::kernels {

struct UnitSummaryParams {
  const UnitSummaryJob* jobs = nullptr;  // device, [job_count]; keys [length, head_dim] in kv_dtype
  int64_t job_count = 0;
  int64_t head_dim = 0;
  DType kv_dtype = DType::bf16;  // bf16 or f32
};
void launch_unit_summary(const UnitSummaryParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
