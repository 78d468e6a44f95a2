// The `normalizer` of tokenizer.json: none, a Unicode normalization form (NFC, NFD, NFKC, NFKD,
// through ICU when louiskv is built with it), or a Sequence of those. Any other type throws
// unsupported, naming the field.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/json_field.h"

namespace louiskv::tokenization {

enum class NormalizationForm { nfc, nfd, nfkc, nfkd };

class Normalizer {
 public:
  // nullopt (the field is null or absent): text passes through unchanged.
  static Normalizer from_json(const std::optional<JsonField>& spec);

  bool is_identity() const { return forms_.empty(); }
  // `text` must be valid UTF-8.
  std::string apply(std::string_view text) const;

 private:
  void add_from_json(const JsonField& spec);

  std::vector<NormalizationForm> forms_;
};

}  // namespace louiskv::tokenization
