#include "backend/cuda/budget_fill.h"

#include <map>
#include <mutex>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int fill_threads = 1024;

// Orders floats like their values, as unsigned integers; NaN ranks as -inf (last, as on the CPU),
// and -0 as +0 so that equal scores tie and fall back to the unit order.
__device__ uint32_t ascending_bits(float score) {
  if (isnan(score)) score = -INFINITY;
  if (score == 0.0f) score = 0.0f;
  uint32_t bits = __float_as_uint(score);
  return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

__global__ void __launch_bounds__(fill_threads) budget_fill_kernel(const UnitRow* rows, int entries, float gate_threshold) {
  extern __shared__ unsigned char shared[];
  auto* keys = reinterpret_cast<uint64_t*>(shared);           // [entries]
  auto* lengths = reinterpret_cast<int32_t*>(keys + entries);  // [entries]
  const UnitRow row = rows[blockIdx.x];
  if (row.similarity && !(*row.similarity < gate_threshold)) {
    if (threadIdx.x == 0) {
      row.chosen_count[0] = -1;
      row.chosen_count[1] = 0;
    }
    return;
  }
  const int units = row.units;
  // Best score first, then the lower unit: ascending keys of (inverted score, unit).
  for (int i = threadIdx.x; i < entries; i += fill_threads) {
    keys[i] = i < units ? (uint64_t(~ascending_bits(row.scores[i])) << 32) | uint32_t(i) : ~uint64_t(0);
  }
  __syncthreads();
  for (int size = 2; size <= entries; size *= 2) {
    for (int stride = size / 2; stride > 0; stride /= 2) {
      for (int i = threadIdx.x; i < entries; i += fill_threads) {
        int partner = i ^ stride;
        if (partner <= i) continue;
        bool ascending = (i & size) == 0;
        uint64_t a = keys[i], b = keys[partner];
        if ((a > b) == ascending) {
          keys[i] = b;
          keys[partner] = a;
        }
      }
      __syncthreads();
    }
  }
  for (int i = threadIdx.x; i < units; i += fill_threads) lengths[i] = row.lengths[uint32_t(keys[i])];
  __syncthreads();
  if (threadIdx.x != 0) return;
  // The greedy walk is sequential: whether a unit fits depends on every unit taken before it.
  int32_t left = row.budget, taken = 0, tokens = 0;
  for (int i = 0; i < units && left > 0; ++i) {
    int32_t length = lengths[i];
    if (length <= 0 || length > left) continue;
    int32_t unit = int32_t(uint32_t(keys[i]));
    row.chosen[taken] = unit;
    row.chosen_scores[taken] = row.scores[unit];
    ++taken;
    tokens += length;
    left -= length;
  }
  row.chosen_count[0] = taken;
  row.chosen_count[1] = tokens;
}

}  // namespace

int64_t budget_fill_max_units(int device) {
  static std::mutex mutex;
  static std::map<int, int64_t> known;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = known.find(device);
  if (found != known.end()) return found->second;
  int optin = 0;
  LOUISKV_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  int64_t entries = 1;
  while (entries * 2 * budget_fill_entry_bytes <= optin) entries *= 2;
  return known[device] = entries;
}

void launch_budget_fill(const BudgetFillParams& params, cudaStream_t stream) {
  const char* op = "budget_fill";
  if (params.row_count == 0) return;
  LOUISKV_REQUIRE(params.rows != nullptr, op, "no row table");
  const int64_t limit = budget_fill_max_units(params.device);
  LOUISKV_REQUIRE(params.max_units <= limit, op,
                  "a row of " + std::to_string(params.max_units) + " units; this device sorts at most " +
                      std::to_string(limit) + " per row in shared memory");
  int64_t entries = 1;
  while (entries < params.max_units) entries *= 2;
  const size_t shared = size_t(entries * budget_fill_entry_bytes);
  LOUISKV_CUDA_CHECK(cudaFuncSetAttribute(budget_fill_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)));
  require_grid_dimension(params.row_count, int64_t(1) << 31, op, "one block per row");
  budget_fill_kernel<<<unsigned(params.row_count), fill_threads, shared, stream>>>(params.rows, int(entries),
                                                                                   params.gate_threshold);
  LOUISKV_CUDA_CHECK_LAUNCH();
}

}  // namespace louiskv::kernels
