// The LouisKV trigger's measure (DESIGN.md section 5): r = mean over query heads of
// cos(q_t, q_{t-1}). A plain function over fp32 host arrays [heads, dim]: the cpu backend's
// query_cosine runs it sequence by sequence; on the device it is one small reduction per layer.
#pragma once

#include <cstdint>
#include <span>

namespace louiskv {

// Mean over heads of the cosine of current[h] and previous[h], each in [-1, 1]. Identical rows
// give exactly 1. A zero row has no direction: its cosine counts as 1 when both rows are zero
// and 0 otherwise.
double mean_query_cosine(std::span<const float> current, std::span<const float> previous,
                         int64_t heads, int64_t dim);

}  // namespace louiskv
