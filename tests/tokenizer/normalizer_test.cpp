// Unicode normalizers (Qwen2 tokenizers use NFC). They need ICU; a build without it must refuse
// such files as unsupported, naming the field, and these tests then check that instead.

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tokenizer_test_helpers.h"

namespace louiskv {
namespace {

using testing::byte_ids;
using testing::byte_level_tokenizer_json;
using testing::TokenizerFile;

const std::string decomposed_e_acute = "e\xCC\x81";   // e + U+0301 COMBINING ACUTE ACCENT
const std::string composed_e_acute = "\xC3\xA9";      // U+00E9
const std::string ligature_fi = "\xEF\xAC\x81";       // U+FB01, "fi" under NFKC

// Loads a tokenizer with `normalizer`; false when this build has no ICU (after checking the error).
bool load_or_expect_unsupported(const TokenizerFile& file, const nlohmann::json& normalizer,
                                std::optional<Tokenizer>& tokenizer) {
  nlohmann::json json = byte_level_tokenizer_json();
  json["normalizer"] = normalizer;
  try {
    tokenizer.emplace(file.load(json));
    return true;
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::unsupported) << error.what();
    EXPECT_NE(std::string(error.what()).find("normalizer"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("ICU"), std::string::npos) << error.what();
    return false;
  }
}

TEST(Normalizer, NfcComposesBeforeTokenization) {
  TokenizerFile file("normalizer-nfc");
  std::optional<Tokenizer> tokenizer;
  if (!load_or_expect_unsupported(file, {{"type", "NFC"}}, tokenizer)) {
    GTEST_SKIP() << "built without ICU: NFC is refused as unsupported, as checked";
  }
  EXPECT_EQ(tokenizer->encode("caf" + decomposed_e_acute, false), byte_ids("caf" + composed_e_acute));
  EXPECT_EQ(tokenizer->encode("plain ascii", false), byte_ids("plain ascii"));
  EXPECT_EQ(tokenizer->encode(ligature_fi, false), byte_ids(ligature_fi)) << "NFC keeps ligatures";
}

TEST(Normalizer, SequenceOfForms) {
  TokenizerFile file("normalizer-sequence");
  std::optional<Tokenizer> tokenizer;
  nlohmann::json sequence = {{"type", "Sequence"},
                             {"normalizers", {{{"type", "NFD"}}, {{"type", "NFKC"}}}}};
  if (!load_or_expect_unsupported(file, sequence, tokenizer)) {
    GTEST_SKIP() << "built without ICU: normalizers are refused as unsupported, as checked";
  }
  EXPECT_EQ(tokenizer->encode(ligature_fi + decomposed_e_acute, false),
            byte_ids("fi" + composed_e_acute));
}

TEST(Normalizer, WithoutNormalizerTextIsKeptAsWritten) {
  TokenizerFile file("normalizer-none");
  Tokenizer tokenizer = file.load(byte_level_tokenizer_json());
  EXPECT_EQ(tokenizer.encode(decomposed_e_acute, false), byte_ids(decomposed_e_acute));
}

TEST(Normalizer, UnsupportedTypeIsNamed) {
  TokenizerFile file("normalizer-unsupported");
  nlohmann::json json = byte_level_tokenizer_json();
  json["normalizer"] = {{"type", "Sequence"}, {"normalizers", nlohmann::json::array({{{"type", "Lowercase"}}})}};
  testing::expect_error([&] { file.load(json); }, ErrorKind::unsupported,
                        {"tokenizer.json", "normalizer.normalizers[0].type", "Lowercase"});
}

}  // namespace
}  // namespace louiskv
