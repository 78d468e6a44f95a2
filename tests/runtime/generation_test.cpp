// The generation loop on the bundled model: stop strings cut the text and end the run, streamed
// pieces add up to the returned text, -n and EOS end it, and a sampled run is reproducible by seed.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "runtime/engine.h"
#include "support/test_support.h"

namespace louiskv {
namespace {

Engine& engine() {
  static Engine instance([] {
    EngineOptions options;
    options.model_dir = testing::bundled_model_dir();
    options.device = "cpu";
    return options;
  }());
  return instance;
}

GenerationResult generate(const std::string& prompt, GenerationConfig generation, std::string* streamed = nullptr) {
  auto policy = engine().make_policy(KvConfig{});
  TextCallback on_text;
  if (streamed) on_text = [streamed](const std::string& piece) { *streamed += piece; };
  return engine().generate(engine().tokenizer().encode(prompt, true), generation, *policy, on_text);
}

const char* prompt = "Once upon a time, there was a little girl named Lily. She loved to";

GenerationConfig greedy(int64_t tokens) {
  GenerationConfig generation;
  generation.max_new_tokens = tokens;
  generation.sampling.temperature = 0.0f;
  return generation;
}

TEST(Generation, StreamedPiecesAddUpToTheTextAndLengthEndsTheRun) {
  std::string streamed;
  GenerationResult result = generate(prompt, greedy(20), &streamed);
  EXPECT_EQ(result.ids.size(), 20u);
  EXPECT_EQ(result.stop_reason, "length");
  EXPECT_EQ(streamed, result.text);
  EXPECT_EQ(result.text, engine().tokenizer().decode(result.ids, true));
}

TEST(Generation, AStopStringEndsTheRunAndIsCutFromTextAndStream) {
  const GenerationResult full = generate(prompt, greedy(40));
  // A stop string taken from the middle of the greedy text, spanning a token boundary.
  const std::string stop = full.text.substr(12, 7);
  GenerationConfig generation = greedy(40);
  generation.stop_strings = {stop};
  std::string streamed;
  const GenerationResult cut = generate(prompt, generation, &streamed);
  EXPECT_EQ(cut.stop_reason, "stop_string");
  EXPECT_EQ(cut.text, full.text.substr(0, full.text.find(stop)));
  EXPECT_EQ(streamed, cut.text);
  EXPECT_LT(cut.ids.size(), full.ids.size());
}

TEST(Generation, SampledRunsRepeatWithTheSeedAndDifferWithout) {
  GenerationConfig generation;
  generation.max_new_tokens = 24;
  generation.sampling.temperature = 1.0f;
  generation.sampling.top_k = 0;
  generation.sampling.top_p = 1.0f;
  generation.sampling.min_p = 0.0f;
  generation.sampling.seed = 5;
  const auto first = generate(prompt, generation).ids;
  EXPECT_EQ(generate(prompt, generation).ids, first);
  generation.sampling.seed = 6;
  EXPECT_NE(generate(prompt, generation).ids, first);
}

TEST(Generation, AnEosIdFromGenerationConfigEndsTheRunUnlessIgnored) {
  // The third greedy token becomes an end-of-sequence id through generation_config.json of a
  // copy of the model: the run must stop right before it, and run through it with ignore_eos.
  const auto reference = generate(prompt, greedy(8)).ids;
  testing::TempDir dir("generation-eos");
  for (const auto& entry : std::filesystem::directory_iterator(testing::bundled_model_dir())) {
    if (entry.path().filename() != "generation_config.json") {
      std::filesystem::create_symlink(entry.path(), dir.path() / entry.path().filename());
    }
  }
  std::ofstream(dir.path() / "generation_config.json") << "{\"eos_token_id\": [1, " << reference[2] << "]}";
  EngineOptions options;
  options.model_dir = dir.path();
  options.device = "cpu";
  Engine copy(options);
  auto run = [&](bool ignore_eos) {
    GenerationConfig generation = greedy(8);
    generation.ignore_eos = ignore_eos;
    auto policy = copy.make_policy(KvConfig{});
    return copy.generate(copy.tokenizer().encode(prompt, true), generation, *policy);
  };
  const GenerationResult stopped = run(false);
  EXPECT_EQ(stopped.stop_reason, "eos");
  EXPECT_EQ(stopped.ids, std::vector<int32_t>(reference.begin(), reference.begin() + 2));
  const GenerationResult ignored = run(true);
  EXPECT_EQ(ignored.stop_reason, "length");
  EXPECT_EQ(ignored.ids, reference);
}

}  // namespace
}  // namespace louiskv
