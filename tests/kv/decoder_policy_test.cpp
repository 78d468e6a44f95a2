// Every policy inside the real decoder (the bundled tiny-llama-14m on the CPU backend: 8 layers,
// 6 query heads over 2 KV heads, head_dim 64), teacher-forced on the same tokens: with a budget
// of at least the context each gives the full cache's logits; with a small budget each runs to
// the end within its budget, and its stats are printed for the record (not asserted: they are
// measures, not properties).
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kv/kv_policy.h"
#include "model/decoder.h"
#include "model/model.h"
#include "support/test_support.h"

namespace louiskv {
namespace {

constexpr int64_t prompt_tokens = 300, decode_steps = 32;

struct Tokens {
  std::vector<int32_t> prompt, continuation;
};

Tokens random_tokens(int64_t vocab) {
  std::mt19937 generator(5);
  std::uniform_int_distribution<int32_t> id(3, int32_t(vocab) - 1);
  Tokens tokens;
  for (int64_t i = 0; i < prompt_tokens; ++i) tokens.prompt.push_back(id(generator));
  for (int64_t i = 0; i < decode_steps; ++i) tokens.continuation.push_back(id(generator));
  return tokens;
}

struct DecoderRun {
  std::vector<std::vector<float>> logits;  // per decode step, [vocab]
  KvStats stats;
};

class DecoderWithPolicies : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    backend_ = make_cpu_backend(1).release();
    model_ = Model::load(testing::bundled_model_dir(), *backend_).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete backend_;
  }

  DecoderRun run(const KvConfig& config) {
    const ModelConfig& c = model_->config();
    KvShape shape{c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim};
    auto policy = make_kv_policy(config, shape, *backend_);
    Decoder decoder(*model_, *backend_, 1, 64);
    Tokens tokens = random_tokens(c.vocab_size);
    policy->add_sequence(0, prompt_tokens + decode_steps);
    decoder.prefill(0, tokens.prompt, *policy, prompt_tokens, [](int64_t, const float*, int64_t) {});
    DecoderRun result;
    std::vector<SequenceId> batch{0};
    for (int64_t step = 0; step < decode_steps; ++step) {
      std::vector<float> logits(size_t(c.vocab_size));
      std::vector<int32_t> token{tokens.continuation[size_t(step)]};
      std::vector<int64_t> position{prompt_tokens + step};
      decoder.decode(batch, token, position, *policy, logits.data());
      result.logits.push_back(std::move(logits));
    }
    result.stats = policy->stats(0);
    return result;
  }

  static KvConfig config_for(const std::string& policy, int64_t budget) {
    KvConfig config;
    config.policy = policy;
    config.budget = budget;
    config.sink_tokens = 4;
    config.window_tokens = 16;
    config.max_segment_tokens = 8;
    return config;
  }

  static inline Backend* backend_ = nullptr;
  static inline Model* model_ = nullptr;
};

TEST_F(DecoderWithPolicies, BudgetOfTheContextGivesTheFullCacheLogits) {
  DecoderRun full = run(config_for("full", 0));
  for (const char* name : {"streaming", "h2o", "quest", "arkvale", "clusterkv", "louiskv"}) {
    SCOPED_TRACE(name);
    DecoderRun policy = run(config_for(name, prompt_tokens + decode_steps));
    ASSERT_EQ(policy.logits.size(), full.logits.size());
    double worst = 0;
    for (size_t step = 0; step < full.logits.size(); ++step) {
      for (size_t i = 0; i < full.logits[step].size(); ++i) {
        worst = std::max(worst, double(std::abs(policy.logits[step][i] - full.logits[step][i])));
      }
    }
    // The same tokens are attended. Streaming, H2O and Quest attend them in position order, as
    // the full cache does, so the logits are identical; the offloading policies attend them in
    // unit order, so the softmax sums round differently.
    bool same_order = std::string(name) == "streaming" || std::string(name) == "h2o" ||
                      std::string(name) == "quest";
    if (same_order) {
      EXPECT_EQ(worst, 0.0) << "largest logit difference";
    } else {
      EXPECT_LT(worst, 1e-3) << "largest logit difference";
    }
    std::printf("  %-9s largest logit difference from full %.2g\n", name, worst);
  }
}

TEST_F(DecoderWithPolicies, SmallBudgetRunsWithinItsBudget) {
  const int64_t budget = 64;
  DecoderRun full = run(config_for("full", 0));
  for (const char* name : {"streaming", "h2o", "quest", "arkvale", "clusterkv", "louiskv"}) {
    SCOPED_TRACE(name);
    DecoderRun policy = run(config_for(name, budget));
    const KvStats& stats = policy.stats;
    EXPECT_EQ(stats.decode_steps, decode_steps);
    EXPECT_EQ(stats.offloaded_layers, 6);  // 8 layers, the first two dense
    // Offloaded layers attend at most the budget per KV head; dense layers everything.
    int64_t dense_most = 2 * 2 * (prompt_tokens + decode_steps);
    EXPECT_LE(stats.attended_tokens, decode_steps * (6 * 2 * budget + dense_most));
    int agree = 0;
    for (size_t step = 0; step < full.logits.size(); ++step) {
      auto argmax = [](const std::vector<float>& row) {
        return std::max_element(row.begin(), row.end()) - row.begin();
      };
      agree += argmax(policy.logits[step]) == argmax(full.logits[step]);
    }
    std::printf("  %-9s budget %lld: top1_agreement %.2f retrieval_rate %.2f h2d_bytes_per_token %.0f "
                "tokens_dropped %lld score_ms %.2f\n",
                name, (long long)budget, double(agree) / double(decode_steps),
                stats.retrieval_rate(), stats.h2d_bytes_per_token(),
                (long long)stats.tokens_dropped, stats.score_ms);
  }
}

}  // namespace
}  // namespace louiskv
