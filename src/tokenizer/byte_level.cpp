#include "tokenizer/byte_level.h"

#include <array>
#include <cstdint>

#include "tokenizer/utf8.h"

namespace louiskv::tokenization {
namespace {

constexpr bool keeps_own_code_point(unsigned byte) {
  return (byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
}

constexpr std::array<char32_t, 256> make_byte_to_code_point() {
  std::array<char32_t, 256> table{};
  char32_t next_spare = 0x100;
  for (unsigned byte = 0; byte < 256; ++byte) {
    table[byte] = keeps_own_code_point(byte) ? char32_t(byte) : next_spare++;
  }
  return table;
}

constexpr std::array<char32_t, 256> byte_to_code_point = make_byte_to_code_point();

// Every character of the alphabet lies below U+0144 (256 bytes, 68 of them moved past U+00FF).
constexpr size_t code_point_limit = 0x144;

constexpr std::array<int16_t, code_point_limit> make_code_point_to_byte() {
  std::array<int16_t, code_point_limit> table{};
  for (auto& entry : table) entry = -1;
  for (unsigned byte = 0; byte < 256; ++byte) {
    table[byte_to_code_point[byte]] = static_cast<int16_t>(byte);
  }
  return table;
}

constexpr std::array<int16_t, code_point_limit> code_point_to_byte = make_code_point_to_byte();

static_assert(byte_to_code_point[' '] == 0x120, "a space must map to U+0120");
static_assert(byte_to_code_point['\n'] == 0x10A, "a newline must map to U+010A");
static_assert(byte_to_code_point[0xAD] == 0x143, "the last moved byte must map to U+0143");

}  // namespace

void append_byte_level(std::string_view bytes, std::string& out) {
  for (char byte : bytes) append_utf8(out, byte_to_code_point[static_cast<unsigned char>(byte)]);
}

int byte_level_byte(char32_t code_point) {
  return code_point < code_point_limit ? code_point_to_byte[code_point] : -1;
}

std::optional<std::string> byte_level_decode(std::string_view token) {
  std::string bytes;
  bytes.reserve(token.size());
  size_t offset = 0;
  while (offset < token.size()) {
    int byte = byte_level_byte(next_code_point(token, offset));
    if (byte < 0) return std::nullopt;
    bytes.push_back(static_cast<char>(byte));
  }
  return bytes;
}

}  // namespace louiskv::tokenization
