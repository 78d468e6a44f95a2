#include "tokenizer/post_processor.h"

#include <limits>

namespace louiskv::tokenization {

PostProcessor PostProcessor::from_json(const std::optional<JsonField>& spec) {
  PostProcessor processor;
  if (spec) processor.add_from_json(*spec);
  return processor;
}

void PostProcessor::add_from_json(const JsonField& spec) {
  JsonField type_field = spec["type"];
  std::string type = type_field.as_string();
  if (type == "Sequence") {
    JsonField members = spec["processors"].expect_array();
    for (size_t i = 0; i < members.value().size(); ++i) add_from_json(members.element(i));
  } else if (type == "TemplateProcessing") {
    templates_.push_back(template_from_json(spec));
  } else if (type != "ByteLevel") {  // ByteLevel only trims offsets, which louiskv does not keep
    type_field.fail(ErrorKind::unsupported,
                    "is '" + type + "', a post-processor louiskv does not support (supported: "
                    "TemplateProcessing, ByteLevel, Sequence)");
  }
}

PostProcessor::Template PostProcessor::template_from_json(const JsonField& spec) {
  JsonField single = spec["single"].expect_array();
  std::optional<JsonField> special_tokens = spec.optional("special_tokens");
  Template result;
  for (size_t i = 0; i < single.value().size(); ++i) {
    JsonField piece = single.element(i).expect_object();
    if (auto special = piece.optional("SpecialToken")) {
      std::string name = (*special)["id"].as_string();
      if (!special_tokens || !special_tokens->value().contains(name)) {
        (*special)["id"].fail(ErrorKind::invalid_input,
                              "names '" + name + "', which is not in " + spec.path() +
                                  ".special_tokens");
      }
      JsonField ids = special_tokens->entry(name, special_tokens->value().at(name))["ids"];
      ids.expect_array();
      std::vector<int32_t> piece_ids;
      for (size_t k = 0; k < ids.value().size(); ++k) {
        JsonField id = ids.element(k);
        int64_t value = id.as_integer();
        if (value < 0 || value > std::numeric_limits<int32_t>::max()) {
          id.fail(ErrorKind::invalid_input, "is " + std::to_string(value) + ", not a token id");
        }
        piece_ids.push_back(static_cast<int32_t>(value));
      }
      result.emplace_back(std::move(piece_ids));
    } else if (auto sequence = piece.optional("Sequence")) {
      JsonField id = (*sequence)["id"];
      if (id.as_string() != "A") {
        id.fail(ErrorKind::invalid_input,
                "is '" + id.as_string() + "'; a single-sequence template can only hold $A");
      }
      result.emplace_back(SequencePlaceholder{});
    } else {
      piece.fail(ErrorKind::invalid_input, "must hold a \"SpecialToken\" or a \"Sequence\"");
    }
  }
  return result;
}

std::vector<int32_t> PostProcessor::apply(std::vector<int32_t> ids) const {
  for (const Template& pieces : templates_) {
    std::vector<int32_t> result;
    result.reserve(ids.size() + 4);
    for (const TemplatePiece& piece : pieces) {
      if (const auto* special = std::get_if<std::vector<int32_t>>(&piece)) {
        result.insert(result.end(), special->begin(), special->end());
      } else {
        result.insert(result.end(), ids.begin(), ids.end());
      }
    }
    ids = std::move(result);
  }
  return ids;
}

}  // namespace louiskv::tokenization
