// PrefilledPrompt against the real thing: for every policy, a prompt prefilled once and replayed
// into the policy decodes to exactly the logits of a prefill run with that policy (bundled
// tiny-llama-14m, CPU backend). The prompt is cut into several prefill chunks, the last one short,
// and the budget is small, so that every policy clusters, pages, evicts and re-selects.
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kv/kv_policy.h"
#include "model/decoder.h"
#include "model/model.h"
#include "runtime/prefilled_prompt.h"
#include "support/test_support.h"

namespace louiskv {
namespace {

constexpr int64_t prompt_tokens = 300, prefill_chunk = 64, decode_steps = 24;

class PrefilledPromptTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    backend_ = make_cpu_backend(1).release();
    model_ = Model::load(testing::bundled_model_dir(), *backend_).release();
    std::mt19937 generator(11);
    std::uniform_int_distribution<int32_t> id(3, int32_t(model_->config().vocab_size) - 1);
    for (int64_t i = 0; i < prompt_tokens + decode_steps; ++i) tokens_.push_back(id(generator));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete backend_;
  }

  static std::span<const int32_t> prompt() { return std::span<const int32_t>(tokens_).first(prompt_tokens); }

  static KvConfig config_for(const std::string& policy) {
    KvConfig config;
    config.policy = policy;
    config.budget = 64;
    config.sink_tokens = 4;
    config.window_tokens = 16;
    config.max_segment_tokens = 8;
    config.tau = 0.9;  // LouisKV re-selects on some steps and keeps its selection on others
    return config;
  }

  // Logits of the prompt's last position, then of each teacher-forced decode step. With a
  // `prefilled` prompt the policy gets it by replay, else from a prefill of its own.
  static std::vector<std::vector<float>> decode(const KvConfig& config, Decoder& decoder,
                                                const PrefilledPrompt* prefilled) {
    const ModelConfig& c = model_->config();
    auto policy = make_kv_policy(config, {c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim}, *backend_);
    const SequenceId id = 7;
    policy->add_sequence(id, prompt_tokens + decode_steps);
    std::vector<std::vector<float>> logits(1, std::vector<float>(size_t(c.vocab_size)));
    if (prefilled) {
      prefilled->replay(*policy, id);
      logits[0].assign(prefilled->last_logits().begin(), prefilled->last_logits().end());
    } else {
      decoder.prefill(id, prompt(), *policy, prompt_tokens - 1, [&](int64_t, const float* row, int64_t) {
        std::copy_n(row, c.vocab_size, logits[0].begin());
      });
    }
    const SequenceId batch[1] = {id};
    for (int64_t step = 0; step < decode_steps; ++step) {
      const int32_t token[1] = {tokens_[size_t(prompt_tokens + step)]};
      const int64_t position[1] = {prompt_tokens + step};
      logits.emplace_back(size_t(c.vocab_size));
      decoder.decode(batch, token, position, *policy, logits.back().data());
    }
    return logits;
  }

  static inline Backend* backend_ = nullptr;
  static inline Model* model_ = nullptr;
  static inline std::vector<int32_t> tokens_;
};

TEST_F(PrefilledPromptTest, ReplayDecodesExactlyAsAPrefillForEveryPolicy) {
  Decoder decoder(*model_, *backend_, 1, prefill_chunk);
  const PrefilledPrompt prefilled = PrefilledPrompt::capture(*model_, decoder, *backend_, prompt());
  ASSERT_EQ(prefilled.tokens().size(), size_t(prompt_tokens));
  for (const std::string& name : kv_policy_names()) {
    SCOPED_TRACE(name);
    const auto expected = decode(config_for(name), decoder, nullptr);
    const auto replayed = decode(config_for(name), decoder, &prefilled);
    ASSERT_EQ(replayed.size(), expected.size());
    for (size_t step = 0; step < expected.size(); ++step) {
      // Bit for bit: the policy saw the same K/V in the same chunks.
      ASSERT_EQ(replayed[step], expected[step]) << "logits differ at step " << step;
    }
  }
}

TEST_F(PrefilledPromptTest, OnePrefillServesPoliciesOneAfterAnother) {
  // Replay leaves the captured prompt as it was: a second policy, or the same one again, gets
  // the same K/V.
  Decoder decoder(*model_, *backend_, 1, prefill_chunk);
  const PrefilledPrompt prefilled = PrefilledPrompt::capture(*model_, decoder, *backend_, prompt());
  const auto first = decode(config_for("louiskv"), decoder, &prefilled);
  decode(config_for("h2o"), decoder, &prefilled);
  EXPECT_EQ(decode(config_for("louiskv"), decoder, &prefilled), first);
}

TEST_F(PrefilledPromptTest, EmptyPromptIsRefused) {
  Decoder decoder(*model_, *backend_, 1, prefill_chunk);
  try {
    PrefilledPrompt::capture(*model_, decoder, *backend_, {});
    FAIL() << "an empty prompt was captured";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::invalid_input);
    EXPECT_NE(std::string(error.what()).find("empty"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace louiskv
