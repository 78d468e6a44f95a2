// Added tokens are found in the text before pre-tokenization: leftmost, then longest, with the
// lstrip / rstrip / single_word flags as Hugging Face applies them.

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tokenizer_test_helpers.h"

namespace louiskv {
namespace {

using testing::byte_ids;
using testing::byte_level_tokenizer_json;
using testing::TokenizerFile;
using Ids = std::vector<int32_t>;

nlohmann::json added(int32_t id, const std::string& content, bool special,
                     nlohmann::json flags = nlohmann::json::object()) {
  nlohmann::json token = {{"id", id},        {"content", content}, {"single_word", false},
                          {"lstrip", false}, {"rstrip", false},    {"normalized", !special},
                          {"special", special}};
  token.update(flags);
  return token;
}

Tokenizer tokenizer_with(const TokenizerFile& file, const std::vector<nlohmann::json>& added_tokens) {
  nlohmann::json json = byte_level_tokenizer_json();
  json["added_tokens"] = added_tokens;
  return file.load(json);
}

TEST(AddedTokens, AreCutOutBeforePreTokenization) {
  TokenizerFile file("added-basic");
  Tokenizer tokenizer = tokenizer_with(file, {added(300, "<|end|>", true)});
  EXPECT_EQ(tokenizer.encode("a<|end|>b", false), (Ids{'a', 300, 'b'}));
  EXPECT_EQ(tokenizer.encode("<|end|><|end|>", false), (Ids{300, 300}));
  EXPECT_EQ(tokenizer.encode("<|end|", false), byte_ids("<|end|"));
  EXPECT_EQ(tokenizer.vocab_size(), 301);
  EXPECT_TRUE(tokenizer.is_special(300));
  EXPECT_EQ(tokenizer.token_id("<|end|>"), 300);
  EXPECT_EQ(tokenizer.decode(Ids{'a', 300}, false), "a<|end|>");
  EXPECT_EQ(tokenizer.decode(Ids{'a', 300}, true), "a");
}

TEST(AddedTokens, LeftmostThenLongestMatchWins) {
  TokenizerFile file("added-longest");
  Tokenizer tokenizer = tokenizer_with(
      file, {added(300, "<a>", true), added(301, "<a><b>", true), added(302, "a><", false)});
  EXPECT_EQ(tokenizer.encode("<a><b>", false), (Ids{301}));
  EXPECT_EQ(tokenizer.encode("<a>x", false), (Ids{300, 'x'}));
  // "a><" would start later than "<a>", so it loses even though both are three bytes.
  EXPECT_EQ(tokenizer.encode("<a><c", false), (Ids{300, '<', 'c'}));
  EXPECT_EQ(tokenizer.encode("xa><c", false), (Ids{'x', 302, 'c'}));
  EXPECT_FALSE(tokenizer.is_special(302));
  EXPECT_EQ(tokenizer.decode(Ids{302}, true), "a><") << "non-special tokens are never skipped";
}

TEST(AddedTokens, LstripAndRstripSwallowWhitespace) {
  TokenizerFile file("added-strip");
  Tokenizer tokenizer = tokenizer_with(
      file, {added(300, "[L]", true, {{"lstrip", true}}), added(301, "[R]", true, {{"rstrip", true}}),
             added(302, "[N]", true)});
  EXPECT_EQ(tokenizer.encode("a \t[L] b", false), (Ids{'a', 300, ' ', 'b'}));
  EXPECT_EQ(tokenizer.encode("a [R] \xC2\xA0 b", false), (Ids{'a', ' ', 301, 'b'}));
  EXPECT_EQ(tokenizer.encode("a [N] b", false), (Ids{'a', ' ', 302, ' ', 'b'}));
  // lstrip stops at the previous token: the whitespace it would take is not there twice.
  EXPECT_EQ(tokenizer.encode("[R]  [L]", false), (Ids{301, 300}));
}

TEST(AddedTokens, SingleWordTokensOnlyMatchWholeWords) {
  TokenizerFile file("added-single-word");
  Tokenizer tokenizer = tokenizer_with(file, {added(300, "cat", false, {{"single_word", true}})});
  EXPECT_EQ(tokenizer.encode("a cat b", false), (Ids{'a', ' ', 300, ' ', 'b'}));
  EXPECT_EQ(tokenizer.encode("cat,", false), (Ids{300, ','}));
  EXPECT_EQ(tokenizer.encode("concat", false), byte_ids("concat"));
  EXPECT_EQ(tokenizer.encode("cats", false), byte_ids("cats"));
  EXPECT_EQ(tokenizer.encode("\xC3\xA9" "cat", false), byte_ids("\xC3\xA9" "cat"))
      << "é is a word character";
}

TEST(AddedTokens, MatchBeforeMergesAndRegex) {
  TokenizerFile file("added-before-merges");
  nlohmann::json json = byte_level_tokenizer_json({{" ", "<"}});
  json["added_tokens"] = nlohmann::json::array({added(300, "<x>", true)});
  Tokenizer tokenizer = file.load(json);
  // Without the added token, " <" would merge; the token takes "<x>" first.
  EXPECT_EQ(tokenizer.encode("a <x>", false), (Ids{'a', ' ', 300}));
  EXPECT_EQ(tokenizer.encode("a <y>", false), (Ids{'a', 256, 'y', '>'}));
}

}  // namespace
}  // namespace louiskv
