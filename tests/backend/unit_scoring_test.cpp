// Unit scoring and summaries (src/kv/unit_scoring.h, unit_summary.h): the Quest box bound and
// the ArkVale sphere bound are upper bounds of q.k over their unit; group reductions.
#include "backend/cpu/unit_scoring.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "backend/cpu/unit_summary.h"

namespace louiskv {
namespace {

std::vector<float> random_values(size_t n, std::mt19937& generator, float spread = 1.0f) {
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> values(n);
  for (float& value : values) value = normal(generator);
  return values;
}

float dot(const float* a, const float* b, int dim) {
  float sum = 0.0f;
  for (int i = 0; i < dim; ++i) sum += a[i] * b[i];
  return sum;
}

TEST(UnitScoring, QuestBoundIsAtLeastTheTrueMaxOfEachPage) {
  std::mt19937 generator(1);
  const int dim = 64, page = 16, pages = 9, group = 4;
  std::vector<float> keys = random_values(size_t(pages * page * dim), generator, 2.0f);
  std::vector<float> queries = random_values(size_t(group * dim), generator);
  std::vector<float> lower(size_t(pages * dim)), upper(size_t(pages * dim));
  for (int p = 0; p < pages; ++p) {
    key_box(std::span(keys).subspan(size_t(p * page * dim)), page, dim,
            std::span(lower).subspan(size_t(p * dim)), std::span(upper).subspan(size_t(p * dim)));
  }
  std::vector<float> bounds(size_t(group * pages));
  box_upper_bounds(queries, group, lower, upper, pages, dim, bounds);
  for (int g = 0; g < group; ++g) {
    for (int p = 0; p < pages; ++p) {
      float best = -INFINITY;
      for (int t = 0; t < page; ++t) {
        best = std::max(best, dot(&queries[g * dim], &keys[(p * page + t) * dim], dim));
      }
      // Exact: each term of the bound is >= the matching term of q.k, summed in the same order.
      EXPECT_GE(bounds[g * pages + p], best) << "head " << g << " page " << p;
    }
  }
}

TEST(UnitScoring, QuestBoundIsTightForAOneTokenPage) {
  std::vector<float> key{1.0f, -2.0f, 0.5f};
  std::vector<float> query{0.3f, 0.7f, -1.0f};
  std::vector<float> bound(1);
  box_upper_bounds(query, 1, key, key, 1, 3, bound);
  EXPECT_FLOAT_EQ(bound[0], dot(query.data(), key.data(), 3));
}

TEST(UnitScoring, SphereBoundIsAtLeastTheTrueMaxOfEachPage) {
  std::mt19937 generator(2);
  const int dim = 32, page = 32, pages = 5, group = 2;
  std::vector<float> keys = random_values(size_t(pages * page * dim), generator, 3.0f);
  std::vector<float> queries = random_values(size_t(group * dim), generator);
  std::vector<float> centers(size_t(pages * dim)), radii(static_cast<size_t>(pages));
  for (int p = 0; p < pages; ++p) {
    auto unit_keys = std::span(keys).subspan(size_t(p * page * dim));
    auto center = std::span(centers).subspan(size_t(p * dim));
    mean_key(unit_keys, page, dim, center);
    radii[p] = bounding_radius(unit_keys, page, dim, center);
  }
  std::vector<float> bounds(size_t(group * pages));
  sphere_upper_bounds(queries, group, centers, radii, pages, dim, bounds);
  for (int g = 0; g < group; ++g) {
    for (int p = 0; p < pages; ++p) {
      for (int t = 0; t < page; ++t) {
        EXPECT_GE(bounds[g * pages + p], dot(&queries[g * dim], &keys[(p * page + t) * dim], dim));
      }
    }
  }
}

TEST(UnitScoring, SphereBoundIsTightAlongTheFarthestKey) {
  // A query pointing from the centre to the farthest key meets the bound: q.k = q.c + |q| r.
  std::vector<float> keys{0, 0, 3, 4};
  std::vector<float> center(2);
  mean_key(keys, 2, 2, center);
  float radius = bounding_radius(keys, 2, 2, center);
  std::vector<float> query{0.6f, 0.8f}, bound(1);
  sphere_upper_bounds(query, 1, center, std::span(&radius, 1), 1, 2, bound);
  EXPECT_GE(bound[0], dot(query.data(), &keys[2], 2));
  EXPECT_NEAR(bound[0], dot(query.data(), &keys[2], 2), 1e-5);
}

TEST(UnitScoring, DotScores) {
  std::vector<float> queries{1, 0, 0, 2};
  std::vector<float> keys{3, 4, -1, 1, 0, 0};
  std::vector<float> scores(6);
  dot_scores(queries, 2, keys, 3, 2, scores);
  EXPECT_EQ(scores, (std::vector<float>{3, -1, 0, 8, 2, 0}));
}

TEST(UnitScoring, GroupReductions) {
  // Two heads, three units.
  std::vector<float> scores{1, 5, 2, 4, 0, 3};
  std::vector<float> reduced(3);
  reduce_over_group(scores, 2, 3, GroupReduction::max, 1.0f, reduced);
  EXPECT_EQ(reduced, (std::vector<float>{4, 5, 3}));
  reduce_over_group(scores, 2, 3, GroupReduction::sum, 1.0f, reduced);
  EXPECT_EQ(reduced, (std::vector<float>{5, 5, 5}));

  reduce_over_group(scores, 2, 3, GroupReduction::softmax_mean, 0.5f, reduced);
  auto softmax = [](std::vector<double> logits) {
    double total = 0;
    for (double& l : logits) total += (l = std::exp(l));
    for (double& l : logits) l /= total;
    return logits;
  };
  std::vector<double> first = softmax({0.5, 2.5, 1.0}), second = softmax({2.0, 0.0, 1.5});
  for (int u = 0; u < 3; ++u) EXPECT_NEAR(reduced[u], (first[u] + second[u]) / 2, 1e-6);
  EXPECT_NEAR(reduced[0] + reduced[1] + reduced[2], 1.0, 1e-6);
}

TEST(UnitScoring, SoftmaxMeanIsNotDominatedByOneLoudHead) {
  // Head 0 has huge logits and prefers unit 0; heads 1-3 mildly prefer unit 1. A sum lets the
  // loud head win; the softmax average lets the majority win.
  std::vector<float> scores{100, 0, 0, 1, 0, 1, 0, 1};
  std::vector<float> reduced(2);
  reduce_over_group(scores, 4, 2, GroupReduction::sum, 1.0f, reduced);
  EXPECT_GT(reduced[0], reduced[1]);
  reduce_over_group(scores, 4, 2, GroupReduction::softmax_mean, 1.0f, reduced);
  EXPECT_GT(reduced[1], reduced[0]);
}

TEST(UnitSummary, MeanBoxAndRadius) {
  std::vector<float> keys{0, 0, 2, 0, 1, 3};
  std::vector<float> mean(2), lower(2), upper(2);
  mean_key(keys, 3, 2, mean);
  EXPECT_FLOAT_EQ(mean[0], 1.0f);
  EXPECT_FLOAT_EQ(mean[1], 1.0f);
  key_box(keys, 3, 2, lower, upper);
  EXPECT_EQ(lower, (std::vector<float>{0, 0}));
  EXPECT_EQ(upper, (std::vector<float>{2, 3}));
  EXPECT_NEAR(bounding_radius(keys, 3, 2, mean), 2.0f, 1e-6);
  EXPECT_GE(bounding_radius(keys, 3, 2, mean), 2.0f);
}

}  // namespace
}  // namespace louiskv
