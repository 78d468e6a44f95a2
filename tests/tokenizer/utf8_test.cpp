// UTF-8 validation and the stream decoder's notion of an unfinished character, on the edge
// cases of RFC 3629 (overlong forms, surrogates, code points past U+10FFFF).

#include <string>

#include <gtest/gtest.h>

#include "tokenizer/utf8.h"

namespace louiskv::tokenization {
namespace {

TEST(Utf8, ValidTextHasNoInvalidByte) {
  for (std::string text : {"", "ascii", "\xC3\xA9", "\xE4\xBD\xA0", "\xF0\x9F\x98\x80",
                           "\xF4\x8F\xBF\xBF", "\xED\x9F\xBF"}) {
    EXPECT_FALSE(find_invalid_utf8(text).has_value()) << text;
  }
}

TEST(Utf8, IllFormedSequencesAreFoundAtTheirFirstByte) {
  EXPECT_EQ(find_invalid_utf8("ab\x80"), 2u);              // stray continuation
  EXPECT_EQ(find_invalid_utf8("a\xC0\xAF"), 1u);           // overlong '/'
  EXPECT_EQ(find_invalid_utf8("\xE0\x80\xAF"), 0u);        // overlong, three bytes
  EXPECT_EQ(find_invalid_utf8("x\xED\xA0\x80"), 1u);       // surrogate U+D800
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u);    // U+110000
  EXPECT_EQ(find_invalid_utf8("\xF5\x80\x80\x80"), 0u);
  EXPECT_EQ(find_invalid_utf8("ok\xE4\xBD"), 2u);          // truncated at the end
  EXPECT_EQ(find_invalid_utf8("\xC3\x28"), 0u);
}

TEST(Utf8, FinishedPrefixStopsBeforeAnUnfinishedCharacter) {
  EXPECT_EQ(finished_utf8_prefix("abc"), 3u);
  EXPECT_EQ(finished_utf8_prefix("ab\xF0\x9F\x98"), 2u);
  EXPECT_EQ(finished_utf8_prefix("ab\xF0\x9F\x98\x80"), 6u);
  EXPECT_EQ(finished_utf8_prefix("\xE4"), 0u);
  EXPECT_EQ(finished_utf8_prefix("\xE4\xBD"), 0u);
  EXPECT_EQ(finished_utf8_prefix("\xE0\x80"), 2u) << "overlong: never finished, passed on";
  EXPECT_EQ(finished_utf8_prefix("\xED\xA0"), 2u) << "surrogate";
  EXPECT_EQ(finished_utf8_prefix("\x80\x80"), 2u);
  EXPECT_EQ(finished_utf8_prefix("\xC3" "a"), 2u);
}

TEST(Utf8, CodePointsRoundTrip) {
  for (char32_t code_point : {U'\0', U'a', U'\u00E9', U'\u4F60', U'\U0001F600', U'\U0010FFFF'}) {
    std::string text;
    append_utf8(text, code_point);
    size_t offset = 0;
    EXPECT_EQ(next_code_point(text, offset), code_point);
    EXPECT_EQ(offset, text.size());
  }
}

TEST(Utf8, WhitespaceIsUnicodeWhiteSpace) {
  for (char32_t code_point : {U' ', U'\t', U'\n', U'\r', U'\u0085', U'\u00A0', U'\u2003', U'\u3000'}) {
    EXPECT_TRUE(is_unicode_whitespace(code_point)) << uint32_t(code_point);
  }
  for (char32_t code_point : {U'a', U'\u200B', U'\u180E', U'_'}) {
    EXPECT_FALSE(is_unicode_whitespace(code_point)) << uint32_t(code_point);
  }
}

}  // namespace
}  // namespace louiskv::tokenization
