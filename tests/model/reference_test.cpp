// The bundled tiny-llama-14m on the CPU backend against Hugging Face transformers (float32, full
// attention): logits at recorded positions, the whole last row, and greedy continuations.
#include <algorithm>
#include <cmath>
#include <numeric>

#include <gtest/gtest.h>

#include "runtime/engine.h"
#include "support/test_support.h"

namespace louiskv {
namespace {

EngineOptions cpu_options() {
  EngineOptions options;
  options.model_dir = testing::bundled_model_dir();
  options.device = "cpu";
  return options;
}

// One engine for the whole suite: loading is cheap, but there is no reason to repeat it.
Engine& shared_engine() {
  static Engine engine(cpu_options());
  return engine;
}

std::vector<int32_t> ids_of(const nlohmann::json& array) { return array.get<std::vector<int32_t>>(); }

TEST(ReferenceLogits, TopTenIdsAndLogitsMatchTransformersAtEveryRecordedPosition) {
  LOUISKV_REQUIRE_SHARED();
  Engine& engine = shared_engine();
  const int64_t vocab = engine.config().vocab_size;
  for (const auto& prompt : testing::tiny_llama_reference()["logits"]) {
    SCOPED_TRACE(prompt["name"].get<std::string>());
    const auto ids = ids_of(prompt["ids"]);
    std::vector<float> all(ids.size() * size_t(vocab));
    auto policy = engine.make_policy(KvConfig{});
    policy->add_sequence(0, int64_t(ids.size()));
    engine.decoder().prefill(0, ids, *policy, 0, [&](int64_t first, const float* logits, int64_t rows) {
      std::copy(logits, logits + rows * vocab, all.begin() + first * vocab);
    });
    for (const auto& [position_text, expected] : prompt["positions"].items()) {
      const size_t position = std::stoul(position_text);
      const float* row = all.data() + position * size_t(vocab);
      const auto expected_ids = ids_of(expected["top_ids"]);
      const auto expected_logits = expected["top_logits"].get<std::vector<double>>();
      std::vector<int32_t> order(static_cast<size_t>(vocab));
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + ptrdiff_t(expected_ids.size()), order.end(),
                        [row](int32_t a, int32_t b) { return row[a] > row[b]; });
      for (size_t i = 0; i < expected_ids.size(); ++i) {
        EXPECT_EQ(order[i], expected_ids[i]) << "position " << position << " rank " << i;
        EXPECT_NEAR(row[expected_ids[i]], expected_logits[i], 2e-3) << "position " << position << " id " << expected_ids[i];
      }
      double maximum = *std::max_element(row, row + vocab), sum = 0;
      for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(row[i]) - maximum);
      EXPECT_NEAR(maximum + std::log(sum), expected["logsumexp"].get<double>(), 2e-3) << "position " << position;
    }
    const auto last = prompt["last_logits"].get<std::vector<double>>();
    ASSERT_EQ(int64_t(last.size()), vocab);
    const float* row = all.data() + (ids.size() - 1) * size_t(vocab);
    double worst = 0;
    for (int64_t i = 0; i < vocab; ++i) worst = std::max(worst, std::abs(row[i] - last[size_t(i)]));
    EXPECT_LT(worst, 2e-3) << "largest difference over the last row";
  }
}

TEST(ReferenceGreedy, FortyEightGreedyTokensMatchTransformers) {
  LOUISKV_REQUIRE_SHARED();
  Engine& engine = shared_engine();
  for (const auto& prompt : testing::tiny_llama_reference()["logits"]) {
    SCOPED_TRACE(prompt["name"].get<std::string>());
    const auto expected = ids_of(prompt["greedy_ids"]);
    GenerationConfig generation;
    generation.max_new_tokens = int64_t(expected.size());
    generation.sampling.temperature = 0.0f;
    auto policy = engine.make_policy(KvConfig{});
    GenerationResult result = engine.generate(ids_of(prompt["ids"]), generation, *policy);
    EXPECT_EQ(result.ids, expected);
    EXPECT_EQ(result.text, prompt["greedy_text"].get<std::string>());
  }
}

TEST(ReferencePasskey, AllTwentyPromptsGiveTheFullAttentionAnswers) {
  LOUISKV_REQUIRE_SHARED();
  Engine& engine = shared_engine();
  int index = 0;
  for (const auto& item : testing::tiny_llama_reference()["passkey"]) {
    SCOPED_TRACE("pass-key prompt " + std::to_string(index++) + " of " + std::to_string(item["context_tokens"].get<int>()) +
                 " tokens");
    const std::string expected = item["full_attention_answer"];
    const auto prompt = engine.tokenizer().encode(item["prompt"].get<std::string>(), true);
    ASSERT_EQ(int64_t(prompt.size()), item["context_tokens"].get<int64_t>());
    GenerationConfig generation;
    generation.max_new_tokens = 6;
    generation.sampling.temperature = 0.0f;
    auto policy = engine.make_policy(KvConfig{});
    GenerationResult result = engine.generate(prompt, generation, *policy);
    EXPECT_EQ(result.text.substr(0, expected.size()), expected);
  }
}

}  // namespace
}  // namespace louiskv
