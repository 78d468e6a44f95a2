// A GPT-2 style tokenizer (ByteLevel pre-tokenizer with GPT-2's regex) built in the test, with
// a vocabulary of the 256 bytes (id = byte) plus hand-picked merges, so every expected id
// follows by hand.

#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tokenizer_test_helpers.h"

namespace louiskv {
namespace {

using testing::byte_ids;
using testing::byte_level_tokenizer_json;
using testing::in_alphabet;
using testing::TokenizerFile;
using Ids = std::vector<int32_t>;

void append_utf8(std::string& out, char32_t code_point) {
  if (code_point < 0x80) {
    out += char(code_point);
  } else if (code_point < 0x800) {
    out += {char(0xC0 | (code_point >> 6)), char(0x80 | (code_point & 0x3F))};
  } else if (code_point < 0x10000) {
    out += {char(0xE0 | (code_point >> 12)), char(0x80 | ((code_point >> 6) & 0x3F)),
            char(0x80 | (code_point & 0x3F))};
  } else {
    out += {char(0xF0 | (code_point >> 18)), char(0x80 | ((code_point >> 12) & 0x3F)),
            char(0x80 | ((code_point >> 6) & 0x3F)), char(0x80 | (code_point & 0x3F))};
  }
}

TEST(ByteLevelBpe, WithoutMergesEveryByteIsItsOwnToken) {
  TokenizerFile file("bpe-no-merges");
  Tokenizer tokenizer = file.load(byte_level_tokenizer_json());
  for (std::string text : {"Hello, world!", "  two  spaces\n\tand tabs ", "wörld 你好 😀 ❤️",
                           "'s 's 123 4567", "\r\n\r\n"}) {
    EXPECT_EQ(tokenizer.encode(text, false), byte_ids(text)) << text;
    EXPECT_EQ(tokenizer.encode(text, true), byte_ids(text)) << "no post-processor: " << text;
    EXPECT_EQ(tokenizer.decode(byte_ids(text)), text);
  }
  EXPECT_EQ(tokenizer.vocab_size(), 256);
  EXPECT_EQ(tokenizer.token_bytes(' '), " ");
  EXPECT_EQ(tokenizer.token_bytes(0xFF), "\xFF");
}

TEST(ByteLevelBpe, MergesFollowTheirRank) {
  TokenizerFile file("bpe-merges");
  // t h -> 256 "th", th e -> 257 "the", Ġ c -> 258, Ġc a -> 259, Ġca t -> 260
  Tokenizer tokenizer = file.load(
      byte_level_tokenizer_json({{"t", "h"}, {"th", "e"}, {" ", "c"}, {" c", "a"}, {" ca", "t"}}));
  EXPECT_EQ(tokenizer.encode("the cat", false), (Ids{257, 260}));
  EXPECT_EQ(tokenizer.encode("then", false), (Ids{257, 'n'}));
  EXPECT_EQ(tokenizer.encode(" cab", false), (Ids{259, 'b'}));
  EXPECT_EQ(tokenizer.decode(Ids{257, 260}), "the cat");
  EXPECT_EQ(tokenizer.token_bytes(260), " cat");
  EXPECT_EQ(tokenizer.token_id(in_alphabet(" cat")), 260);
}

TEST(ByteLevelBpe, LowerRankMergesFirstAndTiesGoLeftmost) {
  TokenizerFile first("bpe-rank-bc");
  // "abc": b c (rank 0) wins over a b (rank 1).
  Tokenizer bc_first = first.load(byte_level_tokenizer_json({{"b", "c"}, {"a", "b"}}));
  EXPECT_EQ(bc_first.encode("abc", false), (Ids{'a', 256}));
  TokenizerFile second("bpe-rank-ab");
  Tokenizer ab_first = second.load(byte_level_tokenizer_json({{"a", "b"}, {"b", "c"}}));
  EXPECT_EQ(ab_first.encode("abc", false), (Ids{256, 'c'}));
  TokenizerFile third("bpe-ties");
  // a a -> 256; aa aa -> 257. "aaa": the leftmost pair merges first.
  Tokenizer ties = third.load(byte_level_tokenizer_json({{"a", "a"}, {"aa", "aa"}}));
  EXPECT_EQ(ties.encode("aaa", false), (Ids{256, 'a'}));
  EXPECT_EQ(ties.encode("aaaa", false), (Ids{257}));
  EXPECT_EQ(ties.encode("aaaaa", false), (Ids{257, 'a'}));
}

TEST(ByteLevelBpe, StringAndPairMergesAreTheSame) {
  nlohmann::json pairs = byte_level_tokenizer_json({{"t", "h"}, {"th", "e"}, {" ", "c"}});
  nlohmann::json strings = pairs;
  for (auto& merge : strings["model"]["merges"]) {
    merge = merge[0].get<std::string>() + " " + merge[1].get<std::string>();
  }
  ASSERT_TRUE(strings["model"]["merges"][2].is_string());
  TokenizerFile pair_file("bpe-pairs");
  TokenizerFile string_file("bpe-strings");
  Tokenizer from_pairs = pair_file.load(pairs);
  Tokenizer from_strings = string_file.load(strings);
  for (std::string text : {"the cat", "bathe the c", "thethe"}) {
    EXPECT_EQ(from_strings.encode(text, false), from_pairs.encode(text, false)) << text;
  }
  EXPECT_EQ(from_strings.encode("the cat", false), (Ids{257, 258, 'a', 't'}));
}

// Merges never cross the words GPT-2's regex cuts the text into.
TEST(ByteLevelBpe, Gpt2PatternDecidesTheWords) {
  TokenizerFile file("bpe-gpt2-words");
  Tokenizer tokenizer = file.load(byte_level_tokenizer_json({
      {"o", " "},   // 256: would join "o" and " w" if they were one word
      {"'", "s"},   // 257: "'s" is a word of its own
      {"'", "S"},   // 258: but "'S" is not (the pattern is case-sensitive)
      {" ", " "},   // 259: "  " before a word is split as " " + " word"
      {" ", "b"},   // 260
      {"1", "2"},   // 261
      {"12", "3"},  // 262
      {"3", " "},   // 263: digits and the space after them are separate words
  }));
  EXPECT_EQ(tokenizer.encode("o w", false), (Ids{'o', ' ', 'w'}));
  EXPECT_EQ(tokenizer.encode("it's", false), (Ids{'i', 't', 257}));
  EXPECT_EQ(tokenizer.encode("IT'S", false), (Ids{'I', 'T', '\'', 'S'}));
  EXPECT_EQ(tokenizer.encode("a  b", false), (Ids{'a', ' ', 260}));
  EXPECT_EQ(tokenizer.encode("a   ", false), (Ids{'a', 259, ' '}));
  EXPECT_EQ(tokenizer.encode("123 b", false), (Ids{262, 260}));
  EXPECT_EQ(tokenizer.encode("x 123", false), (Ids{'x', ' ', 262}));
}

TEST(ByteLevelBpe, AddPrefixSpaceStartsTheTextWithASpace) {
  nlohmann::json json = byte_level_tokenizer_json({{" ", "h"}, {" h", "i"}});
  json["pre_tokenizer"]["add_prefix_space"] = true;
  TokenizerFile file("bpe-prefix-space");
  Tokenizer tokenizer = file.load(json);
  EXPECT_EQ(tokenizer.encode("hi", false), (Ids{257}));
  EXPECT_EQ(tokenizer.encode(" hi", false), (Ids{257})) << "no second space";
  EXPECT_EQ(tokenizer.decode(tokenizer.encode("hi", false)), " hi");
}

TEST(ByteLevelBpe, IgnoreMergesTakesAWholeVocabularyWordDirectly) {
  nlohmann::json json = byte_level_tokenizer_json({{"a", "b"}});
  json["model"]["vocab"][in_alphabet(" abc")] = 300;  // no merge leads to it
  TokenizerFile plain_file("bpe-keep-merges");
  Tokenizer plain = plain_file.load(json);
  EXPECT_EQ(plain.encode(" abc", false), (Ids{' ', 256, 'c'}));
  json["model"]["ignore_merges"] = true;
  TokenizerFile ignoring_file("bpe-ignore-merges");
  Tokenizer ignoring = ignoring_file.load(json);
  EXPECT_EQ(ignoring.encode(" abc", false), (Ids{300}));
  EXPECT_EQ(ignoring.encode(" abcd", false), (Ids{' ', 256, 'c', 'd'}));
  EXPECT_EQ(ignoring.decode(Ids{300}), " abc");
}

TEST(ByteLevelBpe, UnknownCharactersBecomeUnkOrAreDropped) {
  // A vocabulary without the byte 'z', as a model trained without it would have.
  nlohmann::json json = byte_level_tokenizer_json();
  json["model"]["vocab"].erase("z");
  json["model"]["vocab"]["<unk>"] = 300;
  TokenizerFile drop_file("bpe-drop-unknown");
  EXPECT_EQ(drop_file.load(json).encode("azzb", false), (Ids{'a', 'b'}));
  json["model"]["unk_token"] = "<unk>";
  TokenizerFile unk_file("bpe-unknown");
  EXPECT_EQ(unk_file.load(json).encode("azzb", false), (Ids{'a', 300, 300, 'b'}));
  json["model"]["fuse_unk"] = true;
  TokenizerFile fuse_file("bpe-fuse-unknown");
  EXPECT_EQ(fuse_file.load(json).encode("azzb", false), (Ids{'a', 300, 'b'}));
}

// Any text round-trips, and with no merges encodes to its bytes: random code points from every
// plane, whitespace of all kinds, and very long runs (the regex engine must not run out of stack).
TEST(ByteLevelBpe, RandomAndLongTextsRoundTrip) {
  TokenizerFile file("bpe-round-trip");
  Tokenizer tokenizer = file.load(byte_level_tokenizer_json());
  std::mt19937 random(20240521);
  const char32_t pools[][2] = {{0x20, 0x7E}, {0x09, 0x0D}, {0xA0, 0x17F}, {0x300, 0x36F},
                               {0x2000, 0x206F}, {0x4E00, 0x4FFF}, {0x1F300, 0x1F6FF}};
  for (int sample = 0; sample < 200; ++sample) {
    std::string text;
    int length = std::uniform_int_distribution<int>(0, 40)(random);
    for (int i = 0; i < length; ++i) {
      const auto& pool = pools[std::uniform_int_distribution<size_t>(0, std::size(pools) - 1)(random)];
      char32_t code_point = std::uniform_int_distribution<char32_t>(pool[0], pool[1])(random);
      append_utf8(text, code_point);
    }
    ASSERT_EQ(tokenizer.encode(text, false), byte_ids(text)) << text;
    ASSERT_EQ(tokenizer.decode(tokenizer.encode(text, false)), text);
  }
  for (std::string text : {std::string(200000, 'a'), std::string(200000, ' ') + "x",
                           std::string(100000, '\n') + std::string(100000, ' '),
                           std::string(50000, '7'), std::string(60000, '!')}) {
    EXPECT_EQ(tokenizer.encode(text, false), byte_ids(text)) << text.size() << " bytes";
  }
}

TEST(ByteLevelBpe, LongWordsMergeCompletely) {
  TokenizerFile file("bpe-long-word");
  // a a -> 256, aa aa -> 257, aaaa aaaa -> 258
  Tokenizer tokenizer = file.load(byte_level_tokenizer_json({{"a", "a"}, {"aa", "aa"}, {"aaaa", "aaaa"}}));
  std::vector<int32_t> ids = tokenizer.encode(std::string(80001, 'a'), false);
  Ids expected(10000, 258);
  expected.push_back('a');
  EXPECT_EQ(ids, expected);
}

}  // namespace
}  // namespace louiskv
