// LouisKV on the 20 reference pass-key prompts (1K-8K tokens) of the bundled model, CPU backend,
// at budget 256 and the tau of the model's calibration file (chosen on validation prompts from
// another haystack, never on these): it answers every prompt the full cache answers while
// re-selecting on at most a quarter of the (step, offloaded layer) pairs.
#include <gtest/gtest.h>

#include "runtime/calibration.h"
#include "runtime/evaluation.h"
#include "support/test_support.h"

namespace louiskv {
namespace {

TEST(LouisKvPasskey, AnswersWhatTheFullCacheAnswersAtAQuarterOfTheRetrievals) {
  LOUISKV_REQUIRE_SHARED();
  EngineOptions options;
  options.model_dir = testing::bundled_model_dir();
  options.device = "cpu";
  Engine engine(options);
  const std::optional<double> tau = read_calibrated_tau(options.model_dir);
  ASSERT_TRUE(tau.has_value()) << "the bundled model ships louiskv-calibration.json";

  std::vector<PasskeyItem> items;
  std::vector<bool> full_answers;
  for (const auto& item : testing::tiny_llama_reference()["passkey"]) {
    items.push_back({item["prompt"], item["key"], std::nullopt});
    full_answers.push_back(item["correct"].get<bool>());
  }
  KvConfig kv;
  kv.policy = "louiskv";
  kv.budget = 256;
  kv.tau = *tau;
  const PasskeyReport report = evaluate_passkey(engine, kv, items);
  ASSERT_EQ(report.items.size(), items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    if (full_answers[i]) {
      EXPECT_TRUE(report.items[i].correct) << "prompt " << i << " of " << report.items[i].context_tokens
                                           << " tokens: key " << items[i].key << ", answered "
                                           << report.items[i].answer;
    }
  }
  std::printf("[louiskv] tau %.4f, budget 256: accuracy %.3f, retrieval_rate %.4f, h2d_bytes_per_token %.0f\n", *tau,
              report.accuracy, report.kv.retrieval_rate(), report.kv.h2d_bytes_per_token());
  EXPECT_LE(report.kv.retrieval_rate(), 0.25);
  // It really retrieves: every offloaded layer selected on its first step at least.
  EXPECT_GT(report.kv.selections, 0);
  EXPECT_GT(report.kv.h2d_bytes, 0);
}

}  // namespace
}  // namespace louiskv
