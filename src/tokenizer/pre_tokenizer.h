// The `pre_tokenizer` of tokenizer.json: cuts plain text into the words the BPE model merges
// within. Supported: Split (a regex or literal pattern, any behavior, invert), ByteLevel
// (add_prefix_space, use_regex with GPT-2's pattern, then the byte-level alphabet), and a
// Sequence of those. Steps run in order over every piece, as in Hugging Face.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/json_field.h"

namespace louiskv::tokenization {

class PreTokenizerStep {
 public:
  virtual ~PreTokenizerStep() = default;
  // Rewrites `pieces` (non-empty strings) into the pieces that follow this step.
  virtual void apply(std::vector<std::string>& pieces) const = 0;
};

class PreTokenizer {
 public:
  // nullopt (the field is null or absent): the whole text is one word.
  static PreTokenizer from_json(const std::optional<JsonField>& spec);

  // Appends the words of `text` (valid UTF-8, not empty) to `words`.
  void split(std::string_view text, std::vector<std::string>& words) const;

 private:
  void add_from_json(const JsonField& spec);

  std::vector<std::unique_ptr<const PreTokenizerStep>> steps_;
};

}  // namespace louiskv::tokenization
