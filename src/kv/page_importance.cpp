#include "kv/page_importance.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/error.h"

namespace louiskv {

void query_key_scores(std::span<const float> queries, int64_t group, std::span<const float> keys, int64_t tokens,
                      int64_t dim, std::span<float> scores) {
  LOUISKV_CHECK(queries.size() >= size_t(group * dim) && keys.size() >= size_t(tokens * dim) &&
                    scores.size() >= size_t(group * tokens),
                "query_key_scores: spans smaller than their shapes");
  for (int64_t g = 0; g < group; ++g) {
    const float* query = queries.data() + g * dim;
    for (int64_t t = 0; t < tokens; ++t) {
      const float* key = keys.data() + t * dim;
      float sum = 0.0f;
      for (int64_t i = 0; i < dim; ++i) sum += query[i] * key[i];
      scores[size_t(g * tokens + t)] = sum;
    }
  }
}

std::vector<bool> important_pages(std::span<const float> token_scores, int64_t group,
                                  std::span<const int64_t> page_lengths, float scale,
                                  double ratio) {
  const int64_t tokens = std::accumulate(page_lengths.begin(), page_lengths.end(), int64_t(0));
  LOUISKV_CHECK(group > 0 && int64_t(token_scores.size()) == group * tokens,
                "page importance: token_scores must be [group, tokens]");
  LOUISKV_CHECK(ratio > 0.0 && ratio <= 1.0, "page importance: ratio must be in (0, 1]");
  std::vector<bool> important(page_lengths.size(), false);
  if (tokens == 0) return important;
  // In score units: a page qualifies when its best score is at least the head's best + margin.
  const double margin = std::log(ratio) / double(scale);
  std::vector<float> page_best(page_lengths.size());
  for (int64_t g = 0; g < group; ++g) {
    const float* scores = token_scores.data() + g * tokens;
    float head_best = -std::numeric_limits<float>::infinity();
    int64_t first = 0;
    for (size_t page = 0; page < page_lengths.size(); ++page) {
      const int64_t length = page_lengths[page];
      page_best[page] = length > 0 ? *std::max_element(scores + first, scores + first + length)
                                   : -std::numeric_limits<float>::infinity();
      head_best = std::max(head_best, page_best[page]);
      first += length;
    }
    const double threshold = double(head_best) + margin;
    for (size_t page = 0; page < page_lengths.size(); ++page) {
      if (double(page_best[page]) >= threshold) important[page] = true;
    }
  }
  return important;
}

}  // namespace louiskv
