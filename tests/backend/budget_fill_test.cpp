// Budget fill (src/kv/budget_fill.h): never over the budget, the reserved tokens (sinks, window)
// always left out of the units' share, and the edges of DESIGN.md's test list.
#include "backend/cpu/budget_fill.h"

#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"

namespace louiskv {
namespace {

int64_t total_length(const BudgetFill& fill, const std::vector<int64_t>& lengths) {
  int64_t total = 0;
  for (int32_t unit : fill.units) total += lengths[unit];
  return total;
}

TEST(BudgetFill, TakesUnitsInScoreOrder) {
  std::vector<float> scores{0.1f, 0.9f, 0.5f, 0.7f};
  std::vector<int64_t> lengths{4, 4, 4, 4};
  BudgetFill fill = budget_fill(scores, lengths, 20, 8);  // room for three units
  EXPECT_EQ(fill.units, (std::vector<int32_t>{1, 3, 2}));
  EXPECT_EQ(fill.tokens, 12);
}

TEST(BudgetFill, SkipsAUnitTooLongAndTakesAShorterOne) {
  std::vector<float> scores{0.9f, 0.8f, 0.1f};
  std::vector<int64_t> lengths{6, 10, 3};
  BudgetFill fill = budget_fill(scores, lengths, 10, 0);
  EXPECT_EQ(fill.units, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(fill.tokens, 9);
}

TEST(BudgetFill, NeverExceedsTheBudgetOnRandomUnits) {
  std::mt19937 generator(3);
  std::uniform_int_distribution<int64_t> length(1, 40);
  std::normal_distribution<float> score;
  for (int round = 0; round < 200; ++round) {
    int units = round % 37;
    std::vector<float> scores(static_cast<size_t>(units));
    std::vector<int64_t> lengths(static_cast<size_t>(units));
    for (int u = 0; u < units; ++u) {
      scores[u] = score(generator);
      lengths[u] = length(generator);
    }
    int64_t reserved = round % 80;
    int64_t budget = reserved + round * 3 % 257;
    BudgetFill fill = budget_fill(scores, lengths, budget, reserved);
    EXPECT_LE(fill.tokens + reserved, budget);
    EXPECT_EQ(fill.tokens, total_length(fill, lengths));
    // Greedy: every unit left out is longer than what was left when its turn came, so in
    // particular longer than what is left now.
    std::vector<bool> taken(static_cast<size_t>(units), false);
    for (int32_t unit : fill.units) taken[unit] = true;
    for (int u = 0; u < units; ++u) {
      if (!taken[u]) {
        EXPECT_GT(lengths[u], budget - reserved - fill.tokens);
      }
    }
  }
}

TEST(BudgetFill, BudgetEqualToSinksAndWindowTakesNoUnit) {
  std::vector<float> scores{1.0f, 2.0f};
  std::vector<int64_t> lengths{1, 16};
  BudgetFill fill = budget_fill(scores, lengths, 16 + 64, 16 + 64);
  EXPECT_TRUE(fill.units.empty());
  EXPECT_EQ(fill.tokens, 0);
}

TEST(BudgetFill, BudgetOfOneUnitTakesTheBestUnitThatFits) {
  std::vector<float> scores{0.2f, 0.9f, 0.5f};
  std::vector<int64_t> lengths{16, 16, 16};
  BudgetFill fill = budget_fill(scores, lengths, 80 + 16, 80);
  EXPECT_EQ(fill.units, (std::vector<int32_t>{1}));
}

TEST(BudgetFill, ContextOnePastAUnitBoundaryFitsExactly) {
  // 3 full pages of 16 and a page of 1 token: a budget of 49 takes all of them, 48 leaves the
  // lowest-scored page that no longer fits.
  std::vector<float> scores{0.4f, 0.3f, 0.2f, 0.1f};
  std::vector<int64_t> lengths{16, 16, 16, 1};
  EXPECT_EQ(budget_fill(scores, lengths, 49, 0).tokens, 49);
  BudgetFill fill = budget_fill(scores, lengths, 48, 0);
  EXPECT_EQ(fill.tokens, 48);
  EXPECT_EQ(fill.units, (std::vector<int32_t>{0, 1, 2}));
}

TEST(BudgetFill, NanScoresRankLast) {
  std::vector<float> scores{NAN, 0.1f};
  std::vector<int64_t> lengths{4, 4};
  EXPECT_EQ(budget_fill(scores, lengths, 4, 0).units, (std::vector<int32_t>{1}));
}

TEST(BudgetFill, ReservedAboveBudgetNamesTheBudget) {
  try {
    budget_fill({}, {}, 10, 11);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::invalid_input);
    EXPECT_NE(std::string(error.what()).find("budget of 10 tokens"), std::string::npos);
  }
}

}  // namespace
}  // namespace louiskv
