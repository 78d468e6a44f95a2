// The Split pre-tokenizer's behaviors, seen through merges that can only happen when the
// characters they join end up in the same word: Sequence[Split, ByteLevel(use_regex=false)].

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tokenizer_test_helpers.h"

namespace louiskv {
namespace {

using testing::byte_level_tokenizer_json;
using testing::TokenizerFile;
using Ids = std::vector<int32_t>;

// Merges: a - -> 256 "a-", - b -> 257 "-b", - - -> 258 "--"
Tokenizer split_tokenizer(const TokenizerFile& file, nlohmann::json pattern,
                          const std::string& behavior, bool invert = false) {
  nlohmann::json json = byte_level_tokenizer_json({{"a", "-"}, {"-", "b"}, {"-", "-"}});
  json["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"}, {"pattern", pattern}, {"behavior", behavior}, {"invert", invert}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
         {"use_regex", false}}}}};
  return file.load(json);
}

const nlohmann::json dash = {{"String", "-"}};

TEST(SplitPreTokenizer, IsolatedKeepsEachMatchAlone) {
  TokenizerFile file("split-isolated");
  Tokenizer tokenizer = split_tokenizer(file, dash, "Isolated");
  EXPECT_EQ(tokenizer.encode("a-b", false), (Ids{'a', '-', 'b'}));
  EXPECT_EQ(tokenizer.encode("a--b", false), (Ids{'a', '-', '-', 'b'}));
}

TEST(SplitPreTokenizer, RemovedDropsTheMatches) {
  TokenizerFile file("split-removed");
  Tokenizer tokenizer = split_tokenizer(file, dash, "Removed");
  EXPECT_EQ(tokenizer.encode("a-b", false), (Ids{'a', 'b'}));
  EXPECT_EQ(tokenizer.encode("--", false), (Ids{}));
}

TEST(SplitPreTokenizer, MergedWithPreviousJoinsTheWordBefore) {
  TokenizerFile file("split-previous");
  Tokenizer tokenizer = split_tokenizer(file, dash, "MergedWithPrevious");
  EXPECT_EQ(tokenizer.encode("a-b", false), (Ids{256, 'b'}));
  // A second match in a row starts a word of its own, as in Hugging Face.
  EXPECT_EQ(tokenizer.encode("a--b", false), (Ids{256, '-', 'b'}));
}

TEST(SplitPreTokenizer, MergedWithNextJoinsTheWordAfter) {
  TokenizerFile file("split-next");
  Tokenizer tokenizer = split_tokenizer(file, dash, "MergedWithNext");
  EXPECT_EQ(tokenizer.encode("a-b", false), (Ids{'a', 257}));
  EXPECT_EQ(tokenizer.encode("a--b", false), (Ids{'a', '-', 257}));
}

TEST(SplitPreTokenizer, ContiguousJoinsRunsOfMatches) {
  TokenizerFile file("split-contiguous");
  Tokenizer tokenizer = split_tokenizer(file, dash, "Contiguous");
  EXPECT_EQ(tokenizer.encode("a--b", false), (Ids{'a', 258, 'b'}));
  EXPECT_EQ(tokenizer.encode("a-b", false), (Ids{'a', '-', 'b'}));
}

TEST(SplitPreTokenizer, InvertSwapsMatchesAndGaps) {
  TokenizerFile file("split-invert");
  // Removed + invert on letters: everything but the letters is dropped.
  Tokenizer tokenizer = split_tokenizer(file, {{"Regex", "\\p{L}+"}}, "Removed", true);
  EXPECT_EQ(tokenizer.encode("ab-12-cd", false), (Ids{'a', 'b', 'c', 'd'}));
  TokenizerFile plain_file("split-no-invert");
  Tokenizer plain = split_tokenizer(plain_file, {{"Regex", "\\p{L}+"}}, "Removed", false);
  EXPECT_EQ(plain.encode("ab-12-cd", false), (Ids{'-', '1', '2', '-'}));
}

TEST(SplitPreTokenizer, LiteralPatternsAreNotRegexes) {
  TokenizerFile file("split-literal");
  Tokenizer tokenizer = split_tokenizer(file, {{"String", "."}}, "Removed");
  EXPECT_EQ(tokenizer.encode("a.b-c", false), (Ids{'a', 'b', '-', 'c'}));
}

// Unicode classes and caseless groups, as Llama-3's pattern uses them. In "ÉC'Sx" the caseless
// contraction takes "'S" as a word, so the merge S x (ranked before ' S) cannot apply; and
// \p{N}{1,3} cuts "12345" into "123" and "45", so the merge 3 4 cannot either.
TEST(SplitPreTokenizer, UnicodePropertiesAndCaselessGroups) {
  // C3 89 -> 256 "É", S x -> 257, ' S -> 258, É C -> 259, 3 4 -> 260
  nlohmann::json json = byte_level_tokenizer_json(
      {{"\xC3", "\x89"}, {"S", "x"}, {"'", "S"}, {"\xC3\x89", "C"}, {"3", "4"}});
  json["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"Regex", "(?i:'s|'t)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|\\s+"}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  TokenizerFile file("split-unicode");
  Tokenizer tokenizer = file.load(json);
  EXPECT_EQ(tokenizer.encode("\xC3\x89" "C'Sx", false), (Ids{259, 258, 'x'}));
  EXPECT_EQ(tokenizer.encode("12345", false), (Ids{'1', '2', '3', '4', '5'}));
  EXPECT_EQ(tokenizer.encode("345", false), (Ids{260, '5'}));
}

// A group repeated over a long run needs more than PCRE2's JIT stack; the match must still
// succeed (the interpreter takes over) rather than fail on a long prompt.
TEST(SplitPreTokenizer, LongMatchesOfRepeatedGroups) {
  TokenizerFile file("split-long-group");
  Tokenizer tokenizer = split_tokenizer(file, {{"Regex", "(?:a|-)+"}}, "Isolated");
  std::string text;
  for (int i = 0; i < 100000; ++i) text += "a-";
  text += "b";
  // One word "a-a-...a-", whose every "a-" merges, then "b".
  Ids expected(100000, 256);
  expected.push_back('b');
  EXPECT_EQ(tokenizer.encode(text, false), expected);
}

}  // namespace
}  // namespace louiskv
