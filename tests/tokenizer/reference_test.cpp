// The bundled tiny-llama-14m tokenizer (Llama-3 style: Split regex + ByteLevel, BOS template)
// against ids and texts written by Hugging Face tokenizers (../shared/refs/tiny-llama-14m.json).

#include <algorithm>
#include <atomic>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/test_support.h"
#include "tokenizer/tokenizer.h"

namespace louiskv {
namespace {

using testing::bundled_model_dir;
using testing::tiny_llama_reference;

std::vector<int32_t> ids_of(const nlohmann::json& array) { return array.get<std::vector<int32_t>>(); }

TEST(TokenizerReference, EncodesEveryCaseWithAndWithoutSpecialTokens) {
  LOUISKV_REQUIRE_SHARED();
  Tokenizer tokenizer = Tokenizer::load(bundled_model_dir());
  const auto& cases = tiny_llama_reference()["tokenizer"];
  ASSERT_EQ(cases.size(), 25u);
  for (const auto& entry : cases) {
    std::string text = entry["text"];
    EXPECT_EQ(tokenizer.encode(text, true), ids_of(entry["ids_with_special"])) << "text: " << text;
    EXPECT_EQ(tokenizer.encode(text, false), ids_of(entry["ids"])) << "text: " << text;
  }
}

TEST(TokenizerReference, DecodesEveryCaseBackToTheReferenceText) {
  LOUISKV_REQUIRE_SHARED();
  Tokenizer tokenizer = Tokenizer::load(bundled_model_dir());
  for (const auto& entry : tiny_llama_reference()["tokenizer"]) {
    std::string expected = entry["decoded"];
    EXPECT_EQ(tokenizer.decode(ids_of(entry["ids_with_special"]), true), expected);
    EXPECT_EQ(tokenizer.decode(ids_of(entry["ids"]), true), expected);
  }
}

TEST(TokenizerReference, SpecialTokensDecodeToTheirContentUnlessSkipped) {
  Tokenizer tokenizer = Tokenizer::load(bundled_model_dir());
  std::vector<int32_t> ids = tokenizer.encode("<|bos|> special <|eos|> tokens in text", false);
  EXPECT_EQ(tokenizer.decode(ids, false), "<|bos|> special <|eos|> tokens in text");
  EXPECT_EQ(tokenizer.decode(ids, true), " special  tokens in text");
  EXPECT_TRUE(tokenizer.is_special(0));
  EXPECT_TRUE(tokenizer.is_special(1));
  EXPECT_FALSE(tokenizer.is_special(3));
  EXPECT_EQ(tokenizer.token_id("<|eos|>"), 1);
  EXPECT_EQ(tokenizer.token_id("Ġspecial"), 2816);
  EXPECT_EQ(tokenizer.token_id("no such token"), -1);
  EXPECT_EQ(tokenizer.token_bytes(2816), " special");
  EXPECT_EQ(tokenizer.vocab_size(), 4096);
}

TEST(TokenizerReference, PassKeyPromptsHaveTheReferenceLength) {
  LOUISKV_REQUIRE_SHARED();
  Tokenizer tokenizer = Tokenizer::load(bundled_model_dir());
  const auto& prompts = tiny_llama_reference()["passkey"];
  ASSERT_EQ(prompts.size(), 20u);
  for (const auto& entry : prompts) {
    std::string prompt = entry["prompt"];
    std::vector<int32_t> ids = tokenizer.encode(prompt, true);
    EXPECT_EQ(ids.size(), entry["context_tokens"].get<size_t>())
        << "pass-key prompt of " << prompt.size() << " bytes, key " << entry["key"];
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.front(), 0);
    EXPECT_EQ(tokenizer.decode(ids, true), prompt);
  }
}

TEST(TokenizerReference, LogitPromptsEncodeToTheReferenceIds) {
  LOUISKV_REQUIRE_SHARED();
  Tokenizer tokenizer = Tokenizer::load(bundled_model_dir());
  const auto& prompts = tiny_llama_reference()["logits"];
  ASSERT_FALSE(prompts.empty());
  for (const auto& entry : prompts) {
    std::string prompt = entry["prompt"];
    EXPECT_EQ(tokenizer.encode(prompt, true), ids_of(entry["ids"])) << entry["name"];
  }
}

// One tokenizer shared by several threads that start together on a cold word cache, each
// going through the cases and all pass-key prompts in its own order, so that they fill the
// cache at the same time: any unguarded shared state shows up as a wrong id or a crash.
TEST(TokenizerReference, ManyThreadsEncodeAndDecodeAtOnce) {
  LOUISKV_REQUIRE_SHARED();
  Tokenizer tokenizer = Tokenizer::load(bundled_model_dir());
  const auto& reference = tiny_llama_reference();
  const auto& cases = reference["tokenizer"];
  const auto& prompts = reference["passkey"];
  size_t thread_count = std::max(8u, std::thread::hardware_concurrency());
  std::latch start(static_cast<std::ptrdiff_t>(thread_count));
  std::atomic<int> mismatches{0};
  std::atomic<int> errors{0};
  auto work = [&](size_t thread_index) {
    start.arrive_and_wait();
    try {
      for (size_t k = 0; k < prompts.size(); ++k) {
        const auto& prompt = prompts[(k + thread_index * 7) % prompts.size()];
        if (tokenizer.encode(prompt["prompt"].get<std::string>(), true).size() !=
            prompt["context_tokens"].get<size_t>()) {
          ++mismatches;
        }
        const auto& entry = cases[(k + thread_index) % cases.size()];
        if (tokenizer.encode(entry["text"].get<std::string>(), true) !=
            ids_of(entry["ids_with_special"])) {
          ++mismatches;
        }
        if (tokenizer.decode(ids_of(entry["ids"]), true) != entry["decoded"]) ++mismatches;
      }
    } catch (...) {
      ++errors;
    }
  };
  std::vector<std::thread> threads;
  for (size_t i = 0; i < thread_count; ++i) threads.emplace_back(work, i);
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(errors.load(), 0);
}

}  // namespace
}  // namespace louiskv
