#include "runtime/sampler.h"

#include <cmath>
#include <map>

#include <gtest/gtest.h>

#include "common/error.h"

namespace louiskv {
namespace {

TEST(Sampler, GreedyIsArgmaxWithTiesToTheLowestId) {
  Sampler sampler(SamplingConfig{.temperature = 0.0f});
  std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(sampler.sample(logits, {}), 1);
}

TEST(Sampler, TopKOfOneIsGreedyAtAnyTemperature) {
  Sampler sampler(SamplingConfig{.temperature = 5.0f, .top_k = 1, .top_p = 1.0f, .min_p = 0.0f});
  std::vector<float> logits = {0.1f, 0.2f, 0.3f, 0.25f};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(sampler.sample(logits, {}), 2);
}

TEST(Sampler, SameSeedSameDrawsAndFrequenciesFollowTheSoftmax) {
  SamplingConfig config{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = 7};
  std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  Sampler a(config), b(config);
  std::map<int32_t, int> counts;
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) {
    int32_t token = a.sample(logits, {});
    EXPECT_EQ(token, b.sample(logits, {}));
    counts[token]++;
  }
  EXPECT_NEAR(counts[0] / double(draws), 0.5, 0.02);
  EXPECT_NEAR(counts[1] / double(draws), 0.3, 0.02);
  EXPECT_NEAR(counts[2] / double(draws), 0.2, 0.02);
}

TEST(Sampler, TopPAndMinPCutTheTail) {
  std::vector<float> logits = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
  Sampler top_p(SamplingConfig{.temperature = 1.0f, .top_k = 0, .top_p = 0.85f, .min_p = 0.0f, .seed = 1});
  Sampler min_p(SamplingConfig{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.6f, .seed = 1});
  for (int i = 0; i < 2000; ++i) {
    EXPECT_NE(top_p.sample(logits, {}), 2);  // 0.6 + 0.3 reaches 0.85: token 2 is cut
    EXPECT_EQ(min_p.sample(logits, {}), 0);  // 0.3 < 0.6 * 0.6: only token 0 survives
  }
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  Sampler sampler(SamplingConfig{.temperature = 0.0f, .repetition_penalty = 2.0f});
  std::vector<float> logits = {3.0f, 2.0f, -1.0f};
  std::vector<int32_t> history = {0};
  EXPECT_EQ(sampler.sample(logits, history), 1);  // 3 / 2 = 1.5 < 2
  std::vector<float> negative = {-1.0f, -1.5f};
  std::vector<int32_t> seen = {0};
  EXPECT_EQ(sampler.sample(negative, seen), 1);  // -1 * 2 = -2 < -1.5
}

TEST(Sampler, RejectsOutOfRangeSettingsNamingThem) {
  try {
    Sampler sampler(SamplingConfig{.top_p = 1.5f});
    FAIL() << "top-p 1.5 accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::invalid_input);
    EXPECT_NE(std::string(error.what()).find("top-p"), std::string::npos);
  }
}

}  // namespace
}  // namespace louiskv
