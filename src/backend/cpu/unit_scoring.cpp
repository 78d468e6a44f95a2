#include "backend/cpu/unit_scoring.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/error.h"

namespace louiskv {
namespace {

void check_scores(std::span<const float> queries, int64_t group, int64_t units, int64_t dim,
                  std::span<const float> scores) {
  LOUISKV_CHECK(group >= 0 && units >= 0 && dim > 0, "unit scoring sizes must be non-negative");
  LOUISKV_CHECK(int64_t(queries.size()) >= group * dim, "unit scoring queries too short");
  LOUISKV_CHECK(int64_t(scores.size()) >= group * units, "unit scoring output too short");
}

}  // namespace

void dot_scores(std::span<const float> queries, int64_t group, std::span<const float> keys,
                int64_t units, int64_t dim, std::span<float> scores) {
  check_scores(queries, group, units, dim, scores);
  LOUISKV_CHECK(int64_t(keys.size()) >= units * dim, "unit scoring keys too short");
  for (int64_t g = 0; g < group; ++g) {
    const float* query = queries.data() + g * dim;
    for (int64_t u = 0; u < units; ++u) {
      const float* key = keys.data() + u * dim;
      float sum = 0.0f;
      for (int64_t i = 0; i < dim; ++i) sum += query[i] * key[i];
      scores[g * units + u] = sum;
    }
  }
}

void box_upper_bounds(std::span<const float> queries, int64_t group, std::span<const float> lower,
                      std::span<const float> upper, int64_t units, int64_t dim,
                      std::span<float> scores) {
  check_scores(queries, group, units, dim, scores);
  LOUISKV_CHECK(int64_t(lower.size()) >= units * dim && int64_t(upper.size()) >= units * dim,
                "unit scoring boxes too short");
  for (int64_t g = 0; g < group; ++g) {
    const float* query = queries.data() + g * dim;
    for (int64_t u = 0; u < units; ++u) {
      const float* low = lower.data() + u * dim;
      const float* high = upper.data() + u * dim;
      float sum = 0.0f;
      for (int64_t i = 0; i < dim; ++i) sum += std::max(query[i] * low[i], query[i] * high[i]);
      scores[g * units + u] = sum;
    }
  }
}

void sphere_upper_bounds(std::span<const float> queries, int64_t group,
                         std::span<const float> centers, std::span<const float> radii,
                         int64_t units, int64_t dim, std::span<float> scores) {
  check_scores(queries, group, units, dim, scores);
  LOUISKV_CHECK(int64_t(centers.size()) >= units * dim && int64_t(radii.size()) >= units,
                "unit scoring spheres too short");
  for (int64_t g = 0; g < group; ++g) {
    const float* query = queries.data() + g * dim;
    float squared_norm = 0.0f;
    for (int64_t i = 0; i < dim; ++i) squared_norm += query[i] * query[i];
    float norm = std::sqrt(squared_norm);
    for (int64_t u = 0; u < units; ++u) {
      const float* center = centers.data() + u * dim;
      float sum = 0.0f;
      for (int64_t i = 0; i < dim; ++i) sum += query[i] * center[i];
      scores[g * units + u] = sum + norm * radii[u];
    }
  }
}

void reduce_over_group(std::span<const float> scores, int64_t group, int64_t units,
                       GroupReduction reduction, float scale, std::span<float> reduced) {
  LOUISKV_CHECK(group > 0 && units >= 0, "group reduction needs at least one head");
  LOUISKV_CHECK(int64_t(scores.size()) >= group * units, "group reduction scores too short");
  LOUISKV_CHECK(int64_t(reduced.size()) >= units, "group reduction output too short");
  switch (reduction) {
    case GroupReduction::max:
      for (int64_t u = 0; u < units; ++u) {
        float best = -std::numeric_limits<float>::infinity();
        for (int64_t g = 0; g < group; ++g) best = std::max(best, scores[g * units + u]);
        reduced[u] = best;
      }
      return;
    case GroupReduction::sum:
      for (int64_t u = 0; u < units; ++u) {
        float sum = 0.0f;
        for (int64_t g = 0; g < group; ++g) sum += scores[g * units + u];
        reduced[u] = sum;
      }
      return;
    case GroupReduction::softmax_mean: {
      std::fill_n(reduced.begin(), units, 0.0f);
      if (units == 0) return;
      std::vector<float> weights(static_cast<size_t>(units));
      for (int64_t g = 0; g < group; ++g) {
        const float* row = scores.data() + g * units;
        float largest = -std::numeric_limits<float>::infinity();
        for (int64_t u = 0; u < units; ++u) largest = std::max(largest, scale * row[u]);
        if (largest == -std::numeric_limits<float>::infinity()) continue;  // no unit to weigh
        float total = 0.0f;
        for (int64_t u = 0; u < units; ++u) {
          weights[u] = std::exp(scale * row[u] - largest);
          total += weights[u];
        }
        for (int64_t u = 0; u < units; ++u) reduced[u] += weights[u] / total / float(group);
      }
      return;
    }
  }
}

}  // namespace louiskv
