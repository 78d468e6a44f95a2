// TokenStreamDecoder holds back a character split across tokens until its last byte arrives.
// With the byte tokenizer (id = byte) every multi-byte character is split, byte by byte.

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/test_support.h"
#include "tokenizer/utf8.h"
#include "tokenizer_test_helpers.h"

namespace louiskv {
namespace {

using testing::byte_ids;
using testing::byte_level_tokenizer_json;
using testing::TokenizerFile;
using Ids = std::vector<int32_t>;

TEST(TokenStreamDecoder, EmitsACharacterOnlyWhenComplete) {
  TokenizerFile file("stream-bytes");
  Tokenizer tokenizer = file.load(byte_level_tokenizer_json());
  TokenStreamDecoder stream(tokenizer);
  const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600, four bytes
  Ids ids = byte_ids(emoji);
  EXPECT_EQ(stream.push(ids[0]), "");
  EXPECT_EQ(stream.push(ids[1]), "");
  EXPECT_EQ(stream.push(ids[2]), "");
  EXPECT_EQ(stream.push(ids[3]), emoji);
  EXPECT_EQ(stream.push('a'), "a");
  const std::string cjk = "\xE4\xBD\xA0";  // 你
  EXPECT_EQ(stream.push(static_cast<unsigned char>(cjk[0])), "");
  EXPECT_EQ(stream.push(static_cast<unsigned char>(cjk[1])), "");
  EXPECT_EQ(stream.push(static_cast<unsigned char>(cjk[2])), cjk);
  EXPECT_EQ(stream.finish(), "");
}

TEST(TokenStreamDecoder, FinishReturnsAnUnfinishedCharacterAsIs) {
  TokenizerFile file("stream-unfinished");
  Tokenizer tokenizer = file.load(byte_level_tokenizer_json());
  TokenStreamDecoder stream(tokenizer);
  EXPECT_EQ(stream.push('x'), "x");
  EXPECT_EQ(stream.push(0xF0), "");
  EXPECT_EQ(stream.push(0x9F), "");
  EXPECT_EQ(stream.finish(), "\xF0\x9F");
  EXPECT_EQ(stream.finish(), "");
}

TEST(TokenStreamDecoder, BytesThatCanNeverBeValidAreNotHeldBack) {
  TokenizerFile file("stream-invalid");
  Tokenizer tokenizer = file.load(byte_level_tokenizer_json());
  TokenStreamDecoder stream(tokenizer);
  EXPECT_EQ(stream.push(0x80), "\x80") << "a stray continuation byte";
  EXPECT_EQ(stream.push(0xFF), "\xFF") << "never part of UTF-8";
  EXPECT_EQ(stream.push(0xE0), "");
  EXPECT_EQ(stream.push(0x80), "\xE0\x80") << "E0 80 is an overlong form: it cannot be finished";
  EXPECT_EQ(stream.push(0xC3), "");
  EXPECT_EQ(stream.push('a'), "\xC3" "a") << "an ASCII byte ends a broken sequence";
}

TEST(TokenStreamDecoder, SkipsSpecialTokensUnlessAskedNotTo) {
  TokenizerFile file("stream-special");
  nlohmann::json json = byte_level_tokenizer_json();
  json["added_tokens"] =
      nlohmann::json::array({{{"id", 300}, {"content", "<|eot|>"}, {"special", true}}});
  Tokenizer tokenizer = file.load(json);
  TokenStreamDecoder skipping(tokenizer);
  EXPECT_EQ(skipping.push('a'), "a");
  EXPECT_EQ(skipping.push(300), "");
  TokenStreamDecoder keeping(tokenizer, false);
  EXPECT_EQ(keeping.push(300), "<|eot|>");
}

// On the bundled model's real tokens: every push is valid UTF-8, and the pushes with finish
// give exactly what decode gives for the whole sequence.
TEST(TokenStreamDecoder, PiecesAddUpToTheWholeDecode) {
  LOUISKV_REQUIRE_SHARED();
  Tokenizer tokenizer = Tokenizer::load(testing::bundled_model_dir());
  for (const auto& entry : testing::tiny_llama_reference()["tokenizer"]) {
    auto ids = entry["ids_with_special"].get<Ids>();
    TokenStreamDecoder stream(tokenizer);
    std::string streamed;
    for (int32_t id : ids) {
      std::string piece = stream.push(id);
      EXPECT_FALSE(tokenization::find_invalid_utf8(piece).has_value())
          << "broken character streamed for token " << id << " of " << entry["text"];
      streamed += piece;
    }
    streamed += stream.finish();
    EXPECT_EQ(streamed, tokenizer.decode(ids, true)) << entry["text"];
  }
}

}  // namespace
}  // namespace louiskv
