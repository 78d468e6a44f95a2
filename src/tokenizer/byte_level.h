// GPT-2's byte-level alphabet: a reversible map from the 256 byte values to printable
// characters, so that a BPE vocabulary of strings can hold any byte sequence. Bytes that are
// printable Latin-1 keep their own code point; the others (controls, space, DEL, NBSP, soft
// hyphen) are given U+0100 onwards in byte order, so that a space becomes 'Ġ' (U+0120) and a
// newline 'Ċ' (U+010A).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace louiskv::tokenization {

// Appends the alphabet's character for each byte of `bytes`.
void append_byte_level(std::string_view bytes, std::string& out);

// The byte a character of the alphabet stands for, or -1 for a character outside it.
int byte_level_byte(char32_t code_point);

// The bytes that `token` (a string of alphabet characters) stands for; nullopt when one of its
// characters is outside the alphabet.
std::optional<std::string> byte_level_decode(std::string_view token);

}  // namespace louiskv::tokenization
