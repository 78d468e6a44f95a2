// with_greedy_continuation (src/runtime/evaluation.cpp): a prompt followed by the full cache's
// own greedy output, the text that `eval fidelity --generate` teacher-forces the policies on.
// The oracle is the reference implementation's greedy ids in ../shared/refs.
#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/evaluation.h"
#include "support/test_support.h"

namespace louiskv {
namespace {

Engine bundled_engine() {
  EngineOptions options;
  options.model_dir = testing::bundled_model_dir();
  options.device = "cpu";
  options.threads = 1;
  return Engine(options);
}

TEST(GreedyContinuation, IsTheReferenceGreedyOutputAfterThePrompt) {
  LOUISKV_REQUIRE_SHARED();
  Engine engine = bundled_engine();
  for (int item = 0; item < 2; ++item) {
    const auto& reference = testing::tiny_llama_reference()["logits"][item];
    const auto prompt = reference["ids"].get<std::vector<int32_t>>();
    const auto greedy = reference["greedy_ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> expected = prompt;
    expected.insert(expected.end(), greedy.begin(), greedy.end());
    EXPECT_EQ(with_greedy_continuation(engine, prompt, int64_t(greedy.size())), expected) << "item " << item;
  }
}

TEST(GreedyContinuation, EachTokenIsTheFullCachesArgmaxAfterThoseBeforeIt) {
  Engine engine = bundled_engine();
  const std::vector<int32_t> prompt = engine.tokenizer().encode("Once upon a time", true);
  const int64_t steps = 40, context = int64_t(prompt.size()), vocab = engine.config().vocab_size;
  const std::vector<int32_t> tokens = with_greedy_continuation(engine, prompt, steps);
  ASSERT_EQ(int64_t(tokens.size()), context + steps);
  KvConfig full;
  full.policy = "full";
  auto policy = engine.make_policy(full);
  const SequenceId id = engine.new_sequence_id();
  policy->add_sequence(id, context + steps);
  std::vector<float> logits(static_cast<size_t>(vocab));
  engine.decoder().prefill(id, prompt, *policy, context - 1, [&](int64_t, const float* row, int64_t rows) {
    std::copy(row + (rows - 1) * vocab, row + rows * vocab, logits.begin());
  });
  for (int64_t step = 0; step < steps; ++step) {
    const int32_t next = tokens[size_t(context + step)];
    EXPECT_EQ(std::max_element(logits.begin(), logits.end()) - logits.begin(), next) << "step " << step;
    const SequenceId batch[1] = {id};
    const int32_t fed[1] = {next};
    const int64_t position[1] = {context + step};
    engine.decoder().decode(batch, fed, position, *policy, logits.data());
  }
}

TEST(GreedyContinuation, RejectsNoTokensAndAContinuationPastTheContext) {
  Engine engine = bundled_engine();
  const std::vector<int32_t> prompt{0, 3325};
  try {
    with_greedy_continuation(engine, prompt, 0);
    ADD_FAILURE() << "no error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("--generate must be at least 1"), std::string::npos) << error.what();
  }
  EXPECT_THROW(with_greedy_continuation(engine, prompt, engine.config().max_position_embeddings), Error);
}

}  // namespace
}  // namespace louiskv
