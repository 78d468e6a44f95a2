#include "tokenizer/token_decoder.h"

#include "tokenizer/byte_level.h"

namespace louiskv::tokenization {

TokenDecoder TokenDecoder::from_json(const std::optional<JsonField>& spec) {
  TokenDecoder decoder;
  if (spec) decoder.add_from_json(*spec);
  return decoder;
}

void TokenDecoder::add_from_json(const JsonField& spec) {
  JsonField type_field = spec["type"];
  std::string type = type_field.as_string();
  if (type == "Sequence") {
    JsonField members = spec["decoders"].expect_array();
    for (size_t i = 0; i < members.value().size(); ++i) add_from_json(members.element(i));
  } else if (type == "ByteLevel") {
    byte_level_ = true;
  } else {
    type_field.fail(ErrorKind::unsupported,
                    "is '" + type + "', a decoder louiskv does not support (supported: "
                    "ByteLevel, Sequence)");
  }
}

std::string TokenDecoder::token_bytes(std::string_view token) const {
  if (byte_level_) {
    if (std::optional<std::string> bytes = byte_level_decode(token)) return std::move(*bytes);
  }
  return std::string(token);
}

}  // namespace louiskv::tokenization
