// The evaluations through the real decoder (bundled tiny-llama-14m, CPU backend): with a budget
// that holds the whole sequence every policy is the full cache (teacher-forced fidelity of 1, no
// divergence, all the attention mass), and comparing several policies in one run (one prefill)
// gives each the report it gets alone.
#include <gtest/gtest.h>

#include "runtime/evaluation.h"
#include "support/test_support.h"

namespace louiskv {
namespace {

constexpr int64_t context = 320, steps = 24;

class EvaluationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineOptions options;
    options.model_dir = testing::bundled_model_dir();
    options.threads = 1;
    options.prefill_chunk = 128;
    engine_ = new Engine(options);
    const std::string text = load_evaluation_text(testing::source_dir() / "data" / "haystack.txt", 0.0);
    tokens_ = new std::vector<int32_t>(engine_->tokenizer().encode(text.substr(0, 4000), true));
  }
  static void TearDownTestSuite() {
    delete tokens_;
    delete engine_;
  }

  static KvConfig config(const std::string& policy, int64_t budget) {
    KvConfig kv;
    kv.policy = policy;
    kv.budget = budget;
    kv.sink_tokens = 4;
    kv.window_tokens = 16;
    kv.max_segment_tokens = 8;
    return kv;
  }

  static inline Engine* engine_ = nullptr;
  static inline std::vector<int32_t>* tokens_ = nullptr;
};

TEST_F(EvaluationTest, EveryPolicyWithABudgetOfTheContextIsTheFullCache) {
  ASSERT_GE(int64_t(tokens_->size()), context + steps);
  std::vector<KvConfig> configs;
  for (const std::string& name : kv_policy_names()) configs.push_back(config(name, context + steps));
  const auto reports = evaluate_teacher_forced(*engine_, configs, *tokens_, context, steps, true);
  for (size_t i = 0; i < configs.size(); ++i) {
    SCOPED_TRACE(configs[i].policy);
    EXPECT_EQ(reports[i].top1_agreement, 1.0);
    // Offloading policies attend the same tokens in unit order: the sums round differently.
    EXPECT_LT(reports[i].kl_to_full, 1e-6);
    EXPECT_GT(reports[i].attn_recall, 1.0 - 1e-5);
    EXPECT_NEAR(reports[i].perplexity, reports[i].perplexity_full, 1e-3 * reports[i].perplexity_full);
  }
}

TEST_F(EvaluationTest, PoliciesComparedTogetherReportWhatEachReportsAlone) {
  const std::vector<KvConfig> configs{config("h2o", 64), config("louiskv", 64)};
  const auto together = evaluate_teacher_forced(*engine_, configs, *tokens_, context, steps, true);
  for (size_t i = 0; i < configs.size(); ++i) {
    SCOPED_TRACE(configs[i].policy);
    const FidelityReport alone = evaluate_teacher_forced(*engine_, configs[i], *tokens_, context, steps, true);
    EXPECT_EQ(together[i].kl_to_full, alone.kl_to_full);
    EXPECT_EQ(together[i].top1_agreement, alone.top1_agreement);
    EXPECT_EQ(together[i].attn_recall, alone.attn_recall);
    EXPECT_EQ(together[i].kv.selections, alone.kv.selections);
    EXPECT_LT(together[i].top1_agreement + together[i].attn_recall, 2.0) << "the budget should cut something";
  }
}

}  // namespace
}  // namespace louiskv
