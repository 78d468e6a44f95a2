#include "backend/cpu/budget_fill.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "common/error.h"

namespace louiskv {

BudgetFill budget_fill(std::span<const float> scores, std::span<const int64_t> lengths,
                       int64_t budget, int64_t reserved_tokens) {
  LOUISKV_CHECK(scores.size() == lengths.size(), "budget fill: one score per unit");
  if (reserved_tokens > budget) {
    throw_error(ErrorKind::invalid_input,
                "budget of " + std::to_string(budget) + " tokens is below the " +
                    std::to_string(reserved_tokens) +
                    " tokens that are always attended (sinks, window and current token); raise "
                    "budget or lower sink_tokens/window_tokens");
  }
  std::vector<int32_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  auto rank = [&](float score) { return std::isnan(score) ? -INFINITY : score; };
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return rank(scores[a]) > rank(scores[b]); });

  BudgetFill fill;
  int64_t left = budget - reserved_tokens;
  for (int32_t unit : order) {
    int64_t length = lengths[unit];
    LOUISKV_CHECK(length >= 0, "budget fill: negative unit length");
    if (length == 0 || length > left) continue;
    fill.units.push_back(unit);
    fill.tokens += length;
    left -= length;
  }
  return fill;
}

}  // namespace louiskv
