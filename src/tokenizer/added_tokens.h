// Added tokens (tokenizer.json `added_tokens`): strings such as "<|eot_id|>" that are found in the
// text before any pre-tokenization and map straight to their id. Matching is leftmost, then
// longest, as Hugging Face's matcher does, with its lstrip, rstrip and single_word flags.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/unicode_regex.h"

namespace louiskv::tokenization {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool single_word = false;  // only where no word character touches either end
  bool lstrip = false;       // swallows the whitespace before it
  bool rstrip = false;       // swallows the whitespace after it
  bool normalized = false;   // matched in the normalized text rather than the raw one
};

// A run of the text: either plain text (token_id < 0) or an added token.
struct TextSegment {
  std::string_view text;
  int32_t token_id = -1;
};

class AddedTokenMatcher {
 public:
  // `patterns`: (string to find, token) pairs; the string is the token's content, normalized
  // when the token is matched in normalized text.
  AddedTokenMatcher(const std::vector<std::pair<std::string, const AddedToken*>>& patterns);

  bool empty() const { return nodes_.size() <= 1; }
  // Appends `text` cut at the added tokens found in it. Plain segments are never empty.
  void split(std::string_view text, std::vector<TextSegment>& segments) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // byte, node index
    const AddedToken* token = nullptr;  // a pattern ends here
  };
  struct Match {
    size_t begin = 0;
    size_t end = 0;
    const AddedToken* token = nullptr;
  };

  // The longest pattern starting at `offset`, if any.
  std::optional<Match> longest_at(std::string_view text, size_t offset) const;
  bool is_word_character_before(std::string_view text, size_t offset) const;
  bool is_word_character_after(std::string_view text, size_t offset) const;

  std::vector<Node> nodes_;  // a byte trie; nodes_[0] is the root
  std::array<bool, 256> starts_pattern_{};
  std::optional<UnicodeRegex> word_character_;  // only when some token is single_word
};

}  // namespace louiskv::tokenization
