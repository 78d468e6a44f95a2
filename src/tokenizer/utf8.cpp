#include "tokenizer/utf8.h"

namespace louiskv::tokenization {
namespace {

// What a lead byte promises: the sequence length and the range its second byte must fall in
// (narrower than 80..BF after E0, ED, F0 and F4, which is how overlong forms, surrogates and
// code points past U+10FFFF are excluded). Length 0: the byte cannot start a sequence.
struct LeadByte {
  size_t length = 0;
  unsigned char second_min = 0x80;
  unsigned char second_max = 0xBF;
};

LeadByte describe_lead(unsigned char lead) {
  if (lead < 0x80) return {1, 0, 0};
  if (lead < 0xC2) return {};  // continuation bytes, and C0/C1 (always overlong)
  if (lead < 0xE0) return {2};
  if (lead == 0xE0) return {3, 0xA0, 0xBF};
  if (lead == 0xED) return {3, 0x80, 0x9F};
  if (lead < 0xF0) return {3};
  if (lead == 0xF0) return {4, 0x90, 0xBF};
  if (lead < 0xF4) return {4};
  if (lead == 0xF4) return {4, 0x80, 0x8F};
  return {};
}

bool is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

// How many bytes from `offset` form a prefix of a well-formed sequence (at most its length).
size_t well_formed_bytes(std::string_view text, size_t offset, const LeadByte& lead) {
  size_t count = 1;
  while (count < lead.length && offset + count < text.size()) {
    auto byte = static_cast<unsigned char>(text[offset + count]);
    bool fits = count == 1 ? byte >= lead.second_min && byte <= lead.second_max
                           : is_continuation(byte);
    if (!fits) break;
    ++count;
  }
  return count;
}

}  // namespace

std::optional<size_t> find_invalid_utf8(std::string_view text) {
  size_t offset = 0;
  while (offset < text.size()) {
    auto lead = static_cast<unsigned char>(text[offset]);
    if (lead < 0x80) {
      ++offset;
      continue;
    }
    LeadByte description = describe_lead(lead);
    if (description.length == 0) return offset;
    if (well_formed_bytes(text, offset, description) != description.length) return offset;
    offset += description.length;
  }
  return std::nullopt;
}

size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  return 4;
}

char32_t next_code_point(std::string_view text, size_t& offset) {
  auto lead = static_cast<unsigned char>(text[offset]);
  size_t length = utf8_sequence_length(lead);
  if (offset + length > text.size()) length = text.size() - offset;
  char32_t code_point = length == 1 ? lead : lead & (0x7Fu >> length);
  for (size_t i = 1; i < length; ++i) {
    code_point = (code_point << 6) | (static_cast<unsigned char>(text[offset + i]) & 0x3Fu);
  }
  offset += length;
  return code_point;
}

void append_utf8(std::string& out, char32_t code_point) {
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

bool is_unicode_whitespace(char32_t code_point) {
  if (code_point >= 0x09 && code_point <= 0x0D) return true;
  if (code_point >= 0x2000 && code_point <= 0x200A) return true;
  switch (code_point) {
    case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F:
    case 0x205F: case 0x3000:
      return true;
    default:
      return false;
  }
}

size_t finished_utf8_prefix(std::string_view bytes) {
  // An unfinished character can only begin in the last three bytes.
  size_t earliest = bytes.size() > 3 ? bytes.size() - 3 : 0;
  for (size_t start = bytes.size(); start > earliest;) {
    --start;
    auto byte = static_cast<unsigned char>(bytes[start]);
    if (is_continuation(byte)) continue;
    LeadByte lead = describe_lead(byte);
    if (lead.length <= 1) return bytes.size();
    size_t available = bytes.size() - start;
    bool unfinished = available < lead.length &&
                      well_formed_bytes(bytes, start, lead) == available;
    return unfinished ? start : bytes.size();
  }
  return bytes.size();
}

}  // namespace louiskv::tokenization
