// The `model` of tokenizer.json when its type is BPE: a vocabulary of strings and a ranked list
// of merges. A word (one pre-token, already in the byte-level alphabet) starts as one symbol per
// character; the adjacent pair with the lowest merge rank (leftmost on ties) is merged until no
// pair has a rank. Pairs wait in a min-heap over a linked list of symbols, so a word of n
// characters costs O(n log n). Results are cached per word.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/json_field.h"
#include "tokenizer/word_cache.h"

namespace louiskv::tokenization {

struct TransparentStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};
using Vocabulary = std::unordered_map<std::string, int32_t, TransparentStringHash, std::equal_to<>>;

class BpeModel {
 public:
  // `spec` is tokenizer.json's "model". Throws unsupported for another model type or a BPE
  // option louiskv does not implement, invalid_input for a malformed vocabulary or merge.
  static BpeModel from_json(const JsonField& spec);

  // Appends the ids of `word` (valid UTF-8, in the model's alphabet) to `ids`. Characters that
  // are not in the vocabulary become unk_token when the model has one and are dropped otherwise,
  // as Hugging Face does.
  void tokenize(std::string_view word, std::vector<int32_t>& ids) const;

  const Vocabulary& vocabulary() const { return vocabulary_; }
  int32_t token_id(std::string_view token) const;  // -1 when absent

 private:
  struct Merge {
    int32_t rank = 0;
    int32_t merged_id = 0;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
  }

  void merge_word(std::string_view word, std::vector<int32_t>& ids) const;
  int32_t character_id(std::string_view character, char32_t code_point) const;

  Vocabulary vocabulary_;
  std::unordered_map<uint64_t, Merge> merges_;
  // Ids of one-character tokens below U+0180 (the whole byte-level alphabet), -1 when absent,
  // so that the common case skips hashing.
  std::array<int32_t, 0x180> small_character_ids_{};
  bool ignore_merges_ = false;
  int32_t unknown_id_ = -1;
  bool fuse_unknown_ = false;
  std::unique_ptr<WordCache> cache_;
};

}  // namespace louiskv::tokenization
