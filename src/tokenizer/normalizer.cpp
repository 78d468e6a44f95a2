#include "tokenizer/normalizer.h"

#include <algorithm>

#ifdef LOUISKV_HAVE_ICU
#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#endif

namespace louiskv::tokenization {
namespace {

std::optional<NormalizationForm> form_named(const std::string& type) {
  if (type == "NFC") return NormalizationForm::nfc;
  if (type == "NFD") return NormalizationForm::nfd;
  if (type == "NFKC") return NormalizationForm::nfkc;
  if (type == "NFKD") return NormalizationForm::nfkd;
  return std::nullopt;
}

bool is_ascii(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char byte) { return static_cast<unsigned char>(byte) < 0x80; });
}

#ifdef LOUISKV_HAVE_ICU
const icu::Normalizer2* icu_normalizer(NormalizationForm form, UErrorCode& status) {
  switch (form) {
    case NormalizationForm::nfc: return icu::Normalizer2::getNFCInstance(status);
    case NormalizationForm::nfd: return icu::Normalizer2::getNFDInstance(status);
    case NormalizationForm::nfkc: return icu::Normalizer2::getNFKCInstance(status);
    case NormalizationForm::nfkd: return icu::Normalizer2::getNFKDInstance(status);
  }
  return nullptr;
}

std::string normalize(std::string_view text, NormalizationForm form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* normalizer = icu_normalizer(form, status);
  std::string out;
  if (U_SUCCESS(status) && normalizer != nullptr) {
    icu::StringByteSink<std::string> sink(&out, static_cast<int32_t>(text.size()));
    normalizer->normalizeUTF8(0, icu::StringPiece(text.data(), static_cast<int32_t>(text.size())),
                              sink, nullptr, status);
  }
  if (U_FAILURE(status)) {
    throw_error(ErrorKind::internal,
                std::string("Unicode normalization failed in ICU: ") + u_errorName(status));
  }
  return out;
}
#endif

}  // namespace

Normalizer Normalizer::from_json(const std::optional<JsonField>& spec) {
  Normalizer normalizer;
  if (spec) normalizer.add_from_json(*spec);
  return normalizer;
}

void Normalizer::add_from_json(const JsonField& spec) {
  JsonField type_field = spec["type"];
  std::string type = type_field.as_string();
  if (type == "Sequence") {
    JsonField members = spec["normalizers"].expect_array();
    for (size_t i = 0; i < members.value().size(); ++i) add_from_json(members.element(i));
    return;
  }
  std::optional<NormalizationForm> form = form_named(type);
  if (!form) {
    type_field.fail(ErrorKind::unsupported,
                    "is '" + type + "', a normalizer louiskv does not support (supported: NFC, "
                    "NFD, NFKC, NFKD, Sequence)");
  }
#ifndef LOUISKV_HAVE_ICU
  type_field.fail(ErrorKind::unsupported,
                  "is '" + type + "', which needs ICU, and louiskv was built without ICU");
#endif
  forms_.push_back(*form);
}

std::string Normalizer::apply(std::string_view text) const {
  std::string current(text);
  // ASCII is left unchanged by all four forms, and most prompts are ASCII.
  if (is_ascii(text)) return current;
#ifdef LOUISKV_HAVE_ICU
  for (NormalizationForm form : forms_) current = normalize(current, form);
#endif
  return current;
}

}  // namespace louiskv::tokenization
