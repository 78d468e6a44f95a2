// The LouisKV trigger's measure (src/kv/query_cosine.h).
#include "backend/cpu/query_cosine.h"

#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace louiskv {
namespace {

TEST(QueryCosine, IdenticalRowsGiveExactlyOne) {
  std::mt19937 generator(4);
  std::normal_distribution<float> normal;
  for (int round = 0; round < 50; ++round) {
    std::vector<float> rows(8 * 128);
    for (float& value : rows) value = normal(generator) * 37.0f;
    EXPECT_EQ(mean_query_cosine(rows, rows, 8, 128), 1.0);
  }
}

TEST(QueryCosine, MeanOverHeads) {
  // Head 0: same direction (cos 1); head 1: orthogonal (0); head 2: opposite (-1); head 3:
  // 60 degrees apart (0.5). Mean 0.125.
  std::vector<float> current{1, 0, 0, 1, 1, 0, 1, 0};
  std::vector<float> previous{3, 0, 1, 0, -2, 0, 0.5f, std::sqrt(3.0f) / 2};
  EXPECT_NEAR(mean_query_cosine(current, previous, 4, 2), 0.125, 1e-7);
}

TEST(QueryCosine, ZeroRows) {
  std::vector<float> zero{0, 0}, one{1, 0};
  EXPECT_EQ(mean_query_cosine(zero, zero, 1, 2), 1.0);
  EXPECT_EQ(mean_query_cosine(zero, one, 1, 2), 0.0);
}

}  // namespace
}  // namespace louiskv
