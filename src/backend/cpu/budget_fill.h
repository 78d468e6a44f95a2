// Budget fill: which units to attend, given their scores and lengths (DESIGN.md section 5). Units
// differ in length (clusters, segments, pages), so this is a knapsack, filled greedily: units are
// taken in score order, and a unit too long for what is left is skipped (a shorter, lower-scored
// unit may still fit). The budget is never exceeded. A plain function: the cpu backend's
// budget_fill runs it row by row, and the CUDA kernel (a sort, then the greedy walk) is tested
// against it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace louiskv {

struct BudgetFill {
  std::vector<int32_t> units;  // chosen units, best score first (ties: lower index first)
  int64_t tokens = 0;          // their total length
};

// `reserved_tokens` are attended whatever the scores say (sinks, the window, the current token);
// the units share budget - reserved_tokens. Throws louiskv::Error (invalid_input) naming the
// budget when the reserved tokens alone exceed it. NaN scores rank last.
BudgetFill budget_fill(std::span<const float> scores, std::span<const int64_t> lengths,
                       int64_t budget, int64_t reserved_tokens);

}  // namespace louiskv
