// Post-processors add special tokens only when asked to (add_special), as transformers'
// add_special_tokens does; ByteLevel changes no ids.

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tokenizer_test_helpers.h"

namespace louiskv {
namespace {

using testing::byte_level_tokenizer_json;
using testing::TokenizerFile;
using Ids = std::vector<int32_t>;

nlohmann::json special_token(int32_t id, const std::string& content) {
  return {{"id", id},         {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},  {"normalized", false}, {"special", true}};
}

nlohmann::json special_token_entry(const std::string& name, int32_t id) {
  return {{"id", name}, {"ids", nlohmann::json::array({id})},
          {"tokens", nlohmann::json::array({name})}};
}

// <s> ... </s>, written as Llama-3 writes its BOS template, plus an EOS piece.
nlohmann::json bos_eos_template() {
  return {{"type", "TemplateProcessing"},
          {"single",
           {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
            {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
            {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
          {"pair", nlohmann::json::array()},
          {"special_tokens",
           {{"<s>", special_token_entry("<s>", 300)}, {"</s>", special_token_entry("</s>", 301)}}}};
}

nlohmann::json json_with(const nlohmann::json& post_processor) {
  nlohmann::json json = byte_level_tokenizer_json();
  json["added_tokens"] = {special_token(300, "<s>"), special_token(301, "</s>")};
  json["post_processor"] = post_processor;
  return json;
}

TEST(PostProcessor, TemplateWrapsTheTextOnlyWithSpecialTokens) {
  TokenizerFile file("post-template");
  Tokenizer tokenizer = file.load(json_with(bos_eos_template()));
  EXPECT_EQ(tokenizer.encode("hi", true), (Ids{300, 'h', 'i', 301}));
  EXPECT_EQ(tokenizer.encode("hi", false), (Ids{'h', 'i'}));
  EXPECT_EQ(tokenizer.encode("", true), (Ids{300, 301}));
  EXPECT_EQ(tokenizer.decode(tokenizer.encode("hi", true), true), "hi");
  EXPECT_EQ(tokenizer.decode(tokenizer.encode("hi", true), false), "<s>hi</s>");
}

TEST(PostProcessor, SequenceOfByteLevelAndTemplate) {
  TokenizerFile file("post-sequence");
  nlohmann::json sequence = {
      {"type", "Sequence"},
      {"processors",
       {{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false},
         {"use_regex", true}},
        bos_eos_template()}}};
  Tokenizer tokenizer = file.load(json_with(sequence));
  EXPECT_EQ(tokenizer.encode("hi", true), (Ids{300, 'h', 'i', 301}));
}

TEST(PostProcessor, ByteLevelAloneChangesNothing) {
  TokenizerFile file("post-byte-level");
  Tokenizer tokenizer = file.load(json_with(
      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false},
       {"use_regex", false}}));
  EXPECT_EQ(tokenizer.encode("hi", true), (Ids{'h', 'i'}));
}

TEST(PostProcessor, TemplateNamingAnUnknownSpecialTokenIsRejected) {
  TokenizerFile file("post-unknown-special");
  nlohmann::json processor = bos_eos_template();
  processor["special_tokens"].erase("</s>");
  testing::expect_error([&] { file.load(json_with(processor)); }, ErrorKind::invalid_input,
                        {"tokenizer.json", "post_processor.single[2].SpecialToken.id", "</s>"});
}

TEST(PostProcessor, UnsupportedTypeIsNamed) {
  TokenizerFile file("post-unsupported");
  testing::expect_error(
      [&] { file.load(json_with({{"type", "RobertaProcessing"}})); }, ErrorKind::unsupported,
      {"tokenizer.json", "post_processor.type", "RobertaProcessing"});
}

}  // namespace
}  // namespace louiskv
