// Budget fill on the device: per (sequence, KV head) row, the units in score order that fit the
// row's budget (a unit too long for what is left is skipped for shorter ones after it). One
// thread block per row: a bitonic sort of (score, unit) keys in shared memory, then the greedy
// walk over the sorted lengths.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/kv_ops.h"

namespace louiskv::kernels {

// Shared memory per sorted entry: a 64-bit key and a 32-bit length.
constexpr int64_t budget_fill_entry_bytes = 12;
// The most units one row may hold on this device (a power of two that fits in the shared memory
// a block may opt into); queried once per device.
int64_t budget_fill_max_units(int device);

struct BudgetFillParams {
  const UnitRow* rows = nullptr;  // device, [row_count]
  int64_t row_count = 0;
  int64_t max_units = 0;          // the most units of any row of the call
  float gate_threshold = 0.0f;
  int device = 0;
};
void launch_budget_fill(const BudgetFillParams& params, cudaStream_t stream);

}  // namespace louiskv::kernels
