#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace louiskv::tokenization {
namespace {

bool is_continuation(char byte) { return (static_cast<unsigned char>(byte) & 0xC0) == 0x80; }

// The offset of the character that ends just before `offset`.
size_t previous_character(std::string_view text, size_t offset) {
  size_t start = offset - 1;
  while (start > 0 && is_continuation(text[start])) --start;
  return start;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(
    const std::vector<std::pair<std::string, const AddedToken*>>& patterns) {
  nodes_.emplace_back();
  for (const auto& [pattern, token] : patterns) {
    if (pattern.empty()) continue;  // an empty pattern would match everywhere
    starts_pattern_[static_cast<unsigned char>(pattern.front())] = true;
    int32_t node = 0;
    for (char character : pattern) {
      auto byte = static_cast<unsigned char>(character);
      auto& children = nodes_[node].children;
      auto child = std::find_if(children.begin(), children.end(),
                                [byte](const auto& entry) { return entry.first == byte; });
      if (child != children.end()) {
        node = child->second;
        continue;
      }
      auto next = static_cast<int32_t>(nodes_.size());
      children.emplace_back(byte, next);
      nodes_.emplace_back();
      node = next;
    }
    // With two tokens of the same content, the first listed wins, as in Hugging Face.
    if (nodes_[node].token == nullptr) nodes_[node].token = token;
    if (token->single_word && !word_character_) {
      word_character_.emplace("\\w", UnicodeRegex::Syntax::regex, "added token matcher");
    }
  }
}

std::optional<AddedTokenMatcher::Match> AddedTokenMatcher::longest_at(std::string_view text,
                                                                      size_t offset) const {
  std::optional<Match> longest;
  int32_t node = 0;
  for (size_t position = offset; position < text.size(); ++position) {
    auto byte = static_cast<unsigned char>(text[position]);
    const auto& children = nodes_[node].children;
    auto child = std::find_if(children.begin(), children.end(),
                              [byte](const auto& entry) { return entry.first == byte; });
    if (child == children.end()) break;
    node = child->second;
    if (nodes_[node].token != nullptr) longest = Match{offset, position + 1, nodes_[node].token};
  }
  return longest;
}

bool AddedTokenMatcher::is_word_character_before(std::string_view text, size_t offset) const {
  if (offset == 0) return false;
  size_t start = previous_character(text, offset);
  return word_character_->matches(text.substr(start, offset - start));
}

bool AddedTokenMatcher::is_word_character_after(std::string_view text, size_t offset) const {
  if (offset >= text.size()) return false;
  size_t length = utf8_sequence_length(static_cast<unsigned char>(text[offset]));
  return word_character_->matches(text.substr(offset, length));
}

void AddedTokenMatcher::split(std::string_view text, std::vector<TextSegment>& segments) const {
  size_t plain_start = 0;  // where the text not yet given to a segment begins
  size_t offset = 0;
  while (offset < text.size()) {
    if (!starts_pattern_[static_cast<unsigned char>(text[offset])]) {
      ++offset;
      continue;
    }
    std::optional<Match> match = longest_at(text, offset);
    if (!match) {
      ++offset;
      continue;
    }
    const AddedToken& token = *match->token;
    // A discarded match is skipped whole, as Hugging Face's matcher resumes after it.
    offset = match->end;
    if (token.single_word && (is_word_character_before(text, match->begin) ||
                              is_word_character_after(text, match->end))) {
      continue;
    }
    if (token.lstrip) {
      while (match->begin > plain_start) {
        size_t start = previous_character(text, match->begin);
        size_t cursor = start;
        if (!is_unicode_whitespace(next_code_point(text, cursor))) break;
        match->begin = start;
      }
    }
    if (token.rstrip) {
      while (match->end < text.size()) {
        size_t cursor = match->end;
        if (!is_unicode_whitespace(next_code_point(text, cursor))) break;
        match->end = cursor;
      }
    }
    if (match->begin > plain_start) {
      segments.push_back({text.substr(plain_start, match->begin - plain_start), -1});
    }
    segments.push_back({text.substr(match->begin, match->end - match->begin), token.id});
    plain_start = match->end;
    offset = match->end;
  }
  if (plain_start < text.size()) segments.push_back({text.substr(plain_start), -1});
}

}  // namespace louiskv::tokenization
