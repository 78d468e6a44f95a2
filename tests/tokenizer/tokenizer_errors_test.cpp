// Bad tokenizer files and bad input: each gives one louiskv::Error of the right kind whose
// message names the file and the field (DESIGN.md section 9).

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tokenizer_test_helpers.h"

namespace louiskv {
namespace {

using testing::byte_level_tokenizer_json;
using testing::expect_error;
using testing::TokenizerFile;

TEST(TokenizerErrors, MissingFile) {
  TokenizerFile file("errors-missing");
  auto path = file.folder() / "nowhere" / "tokenizer.json";
  expect_error([&] { Tokenizer::load(path); }, ErrorKind::io, {path.string(), "no such file"});
}

TEST(TokenizerErrors, FolderWithoutTokenizerJson) {
  TokenizerFile file("errors-empty-folder");
  expect_error([&] { Tokenizer::load(file.folder()); }, ErrorKind::io,
               {(file.folder() / "tokenizer.json").string()});
}

TEST(TokenizerErrors, MalformedJson) {
  TokenizerFile file("errors-malformed");
  auto path = file.write("{\"model\": {\"type\": \"BPE\", \"vocab\": {");
  expect_error([&] { Tokenizer::load(path); }, ErrorKind::invalid_input,
               {path.string(), "malformed JSON"});
}

TEST(TokenizerErrors, EmptyFile) {
  TokenizerFile file("errors-empty-file");
  auto path = file.write("");
  expect_error([&] { Tokenizer::load(path); }, ErrorKind::invalid_input,
               {path.string(), "malformed JSON"});
}

TEST(TokenizerErrors, UnknownModelType) {
  TokenizerFile file("errors-model-type");
  nlohmann::json json = byte_level_tokenizer_json();
  json["model"]["type"] = "WordPiece";
  expect_error([&] { file.load(json); }, ErrorKind::unsupported,
               {"tokenizer.json", "model.type", "WordPiece"});
}

TEST(TokenizerErrors, MissingVocabulary) {
  TokenizerFile file("errors-no-vocab");
  nlohmann::json json = byte_level_tokenizer_json();
  json["model"].erase("vocab");
  expect_error([&] { file.load(json); }, ErrorKind::invalid_input,
               {"tokenizer.json", "model.vocab", "missing"});
}

TEST(TokenizerErrors, MissingModel) {
  TokenizerFile file("errors-no-model");
  nlohmann::json json = byte_level_tokenizer_json();
  json.erase("model");
  expect_error([&] { file.load(json); }, ErrorKind::invalid_input, {"tokenizer.json", "'model'"});
}

TEST(TokenizerErrors, MergeOfTokensOutsideTheVocabulary) {
  TokenizerFile file("errors-merge");
  nlohmann::json json = byte_level_tokenizer_json({{"a", "b"}});
  json["model"]["merges"].push_back("ab c");  // "abc" is not in the vocabulary
  expect_error([&] { file.load(json); }, ErrorKind::invalid_input,
               {"tokenizer.json", "model.merges[1]", "'abc'"});
  json["model"]["merges"][1] = "a b c";
  expect_error([&] { file.load(json); }, ErrorKind::invalid_input,
               {"model.merges[1]", "one space"});
}

TEST(TokenizerErrors, BadVocabularyId) {
  TokenizerFile file("errors-vocab-id");
  nlohmann::json json = byte_level_tokenizer_json();
  json["model"]["vocab"]["a"] = "ninety-seven";
  expect_error([&] { file.load(json); }, ErrorKind::invalid_input,
               {"tokenizer.json", "model.vocab[\"a\"]", "token id"});
}

TEST(TokenizerErrors, UnsupportedPreTokenizerIsNamedWithItsPlace) {
  TokenizerFile file("errors-pre-tokenizer");
  nlohmann::json json = byte_level_tokenizer_json();
  json["pre_tokenizer"] = {{"type", "Sequence"},
                           {"pretokenizers", {json["pre_tokenizer"], {{"type", "Metaspace"}}}}};
  expect_error([&] { file.load(json); }, ErrorKind::unsupported,
               {"tokenizer.json", "pre_tokenizer.pretokenizers[1].type", "Metaspace"});
}

TEST(TokenizerErrors, RegexThatDoesNotCompile) {
  TokenizerFile file("errors-regex");
  nlohmann::json json = byte_level_tokenizer_json();
  json["pre_tokenizer"] = {{"type", "Split"},
                           {"pattern", {{"Regex", "(\\p{L}+"}}},
                           {"behavior", "Isolated"},
                           {"invert", false}};
  expect_error([&] { file.load(json); }, ErrorKind::invalid_input,
               {"tokenizer.json", "pre_tokenizer.pattern.Regex", "offset"});
}

TEST(TokenizerErrors, UnsupportedDecoderAndModelOptions) {
  TokenizerFile file("errors-decoder");
  nlohmann::json json = byte_level_tokenizer_json();
  json["decoder"] = {{"type", "WordPiece"}};
  expect_error([&] { file.load(json); }, ErrorKind::unsupported, {"decoder.type", "WordPiece"});
  json = byte_level_tokenizer_json();
  json["model"]["byte_fallback"] = true;
  expect_error([&] { file.load(json); }, ErrorKind::unsupported, {"model.byte_fallback"});
}

TEST(TokenizerErrors, TextThatIsNotUtf8) {
  TokenizerFile file("errors-utf8");
  Tokenizer tokenizer = file.load(byte_level_tokenizer_json());
  expect_error([&] { tokenizer.encode("ok \xC3\x28", false); }, ErrorKind::invalid_input,
               {"UTF-8", "byte 3"});
}

TEST(TokenizerErrors, IdOutsideTheVocabulary) {
  TokenizerFile file("errors-id");
  Tokenizer tokenizer = file.load(byte_level_tokenizer_json());
  std::vector<int32_t> ids = {'a', 256};
  expect_error([&] { tokenizer.decode(ids); }, ErrorKind::invalid_input,
               {"token id 256", "256 ids"});
  expect_error([&] { tokenizer.token_bytes(-1); }, ErrorKind::invalid_input, {"token id -1"});
}

}  // namespace
}  // namespace louiskv
