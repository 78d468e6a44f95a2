// The `decoder` of tokenizer.json, reduced to what it does to one token, since the decoders
// louiskv supports work token by token: ByteLevel (alphabet characters back to bytes; a token
// with a character outside the alphabet, such as an added token holding a plain space, is kept
// as written, as Hugging Face does), a Sequence of ByteLevel, or none (tokens as written).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "tokenizer/json_field.h"

namespace louiskv::tokenization {

class TokenDecoder {
 public:
  static TokenDecoder from_json(const std::optional<JsonField>& spec);

  std::string token_bytes(std::string_view token) const;

 private:
  void add_from_json(const JsonField& spec);

  bool byte_level_ = false;
};

}  // namespace louiskv::tokenization
