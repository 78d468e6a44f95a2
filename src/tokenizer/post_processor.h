// The `post_processor` of tokenizer.json, applied when special tokens are asked for:
// TemplateProcessing (its `single` template, e.g. BOS then $A), ByteLevel (changes no ids),
// a Sequence of those, or none.
#pragma once

#include <cstdint>
#include <optional>
#include <variant>
#include <vector>

#include "tokenizer/json_field.h"

namespace louiskv::tokenization {

class PostProcessor {
 public:
  // nullopt (the field is null or absent): ids pass through unchanged.
  static PostProcessor from_json(const std::optional<JsonField>& spec);

  // Returns the ids the template makes of `ids` (the encoded text).
  std::vector<int32_t> apply(std::vector<int32_t> ids) const;

 private:
  struct SequencePlaceholder {};  // $A: the encoded text
  using TemplatePiece = std::variant<std::vector<int32_t>, SequencePlaceholder>;
  using Template = std::vector<TemplatePiece>;

  void add_from_json(const JsonField& spec);
  static Template template_from_json(const JsonField& spec);

  std::vector<Template> templates_;  // applied in order
};

}  // namespace louiskv::tokenization
