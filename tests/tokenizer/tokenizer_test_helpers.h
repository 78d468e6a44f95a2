// Small tokenizer.json files built inside tests, whose expected ids follow by hand: the
// vocabulary starts with the 256 byte tokens at ids 0..255 (id = byte value), so text without
// merges encodes to its own bytes, and each merge adds one token.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "support/test_support.h"
#include "tokenizer/tokenizer.h"

namespace louiskv::testing {

// GPT-2's byte-to-character map, written out here independently of the library's own table:
// printable bytes keep their code point, the other 68 take U+0100 onwards in byte order.
inline std::string alphabet_character(unsigned char byte) {
  char32_t code_point = byte;
  bool printable = (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
  if (!printable) {
    char32_t spare = 0x100;
    for (unsigned other = 0; other < byte; ++other) {
      bool other_printable =
          (other >= 0x21 && other <= 0x7E) || (other >= 0xA1 && other <= 0xAC) || other >= 0xAE;
      if (!other_printable) ++spare;
    }
    code_point = spare;
  }
  std::string out;
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else {
    out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
  return out;
}

// A string of raw bytes written in the byte-level alphabet ("a b" -> "aĠb").
inline std::string in_alphabet(std::string_view bytes) {
  std::string out;
  for (char byte : bytes) out += alphabet_character(static_cast<unsigned char>(byte));
  return out;
}

inline std::vector<int32_t> byte_ids(std::string_view text) {
  std::vector<int32_t> ids;
  for (char byte : text) ids.push_back(static_cast<unsigned char>(byte));
  return ids;
}

// A GPT-2 style tokenizer.json: ByteLevel pre-tokenizer with GPT-2's regex, no normalizer, no
// post-processor, ByteLevel decoder. `merges` are given as raw text ("t", "h") and become
// tokens 256, 257, ... in order.
inline nlohmann::json byte_level_tokenizer_json(
    const std::vector<std::pair<std::string, std::string>>& merges = {}) {
  nlohmann::json vocab = nlohmann::json::object();
  for (int byte = 0; byte < 256; ++byte) vocab[alphabet_character(static_cast<unsigned char>(byte))] = byte;
  nlohmann::json merge_list = nlohmann::json::array();
  int32_t next_id = 256;
  for (const auto& [left, right] : merges) {
    merge_list.push_back({in_alphabet(left), in_alphabet(right)});
    std::string merged = in_alphabet(left + right);
    if (!vocab.contains(merged)) vocab[merged] = next_id++;
  }
  return {
      {"version", "1.0"},
      {"added_tokens", nlohmann::json::array()},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
        {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true},
                   {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr},
        {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", merge_list}}},
  };
}

// Writes `json` (or raw text) as tokenizer.json in a fresh folder and loads it.
class TokenizerFile {
 public:
  explicit TokenizerFile(const std::string& name) : folder_(name) {}

  std::filesystem::path write(const std::string& text) const {
    auto path = folder_.path() / "tokenizer.json";
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  Tokenizer load(const nlohmann::json& json) const { return Tokenizer::load(write(json.dump())); }
  const std::filesystem::path& folder() const { return folder_.path(); }

 private:
  TempDir folder_;
};

// Runs `action`, which must throw louiskv::Error of `kind` with every one of `fragments` in
// its message.
template <typename Action>
void expect_error(Action&& action, ErrorKind kind, const std::vector<std::string>& fragments) {
  try {
    action();
    ADD_FAILURE() << "expected a louiskv::Error of kind " << error_kind_name(kind);
  } catch (const Error& error) {
    EXPECT_EQ(error_kind_name(error.kind()), error_kind_name(kind)) << error.what();
    for (const std::string& fragment : fragments) {
      EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos)
          << "message lacks '" << fragment << "': " << error.what();
    }
  }
}

}  // namespace louiskv::testing
