#include "backend/cpu/query_cosine.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace louiskv {

double mean_query_cosine(std::span<const float> current, std::span<const float> previous,
                         int64_t heads, int64_t dim) {
  LOUISKV_CHECK(heads > 0 && dim > 0, "query cosine needs at least one head");
  LOUISKV_CHECK(int64_t(current.size()) >= heads * dim && int64_t(previous.size()) >= heads * dim,
                "query cosine rows too short");
  double total = 0.0;
  for (int64_t h = 0; h < heads; ++h) {
    const float* a = current.data() + h * dim;
    const float* b = previous.data() + h * dim;
    double dot = 0.0, norm_a = 0.0, norm_b = 0.0;
    for (int64_t i = 0; i < dim; ++i) {
      dot += double(a[i]) * double(b[i]);
      norm_a += double(a[i]) * double(a[i]);
      norm_b += double(b[i]) * double(b[i]);
    }
    if (norm_a == 0.0 || norm_b == 0.0) {
      total += (norm_a == 0.0 && norm_b == 0.0) ? 1.0 : 0.0;
      continue;
    }
    // Identical rows give dot == norm_a == norm_b, and sqrt(x * x) == x in IEEE arithmetic, so
    // their cosine is exactly 1; the clamp only guards against rounding above 1 elsewhere.
    total += std::clamp(dot / std::sqrt(norm_a * norm_b), -1.0, 1.0);
  }
  return total / double(heads);
}

}  // namespace louiskv
