// UTF-8 helpers for the tokenizer: validation, code point iteration, and the prefix of a byte
// stream that can be shown without cutting a character in two.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace louiskv::tokenization {

// The offset of the first byte that does not begin a well-formed UTF-8 sequence (overlong forms,
// surrogates and code points past U+10FFFF are ill-formed), or nullopt when all of `text` is valid.
std::optional<size_t> find_invalid_utf8(std::string_view text);

// The number of bytes of the character that starts with `lead` (1 for a stray byte, so that
// loops over unchecked text always advance).
size_t utf8_sequence_length(unsigned char lead);

// Decodes the character at `offset` of valid UTF-8 text and moves `offset` past it.
char32_t next_code_point(std::string_view text, size_t& offset);

void append_utf8(std::string& out, char32_t code_point);

// Unicode White_Space, the set Rust's char::is_whitespace uses (and thus Hugging Face's
// lstrip/rstrip of added tokens).
bool is_unicode_whitespace(char32_t code_point);

// The length of the longest prefix of `bytes` that ends outside a character still being
// written: everything except a trailing, so far well-formed, but unfinished multi-byte sequence.
// Bytes that can never become valid UTF-8 count as finished (they are passed on as they are).
size_t finished_utf8_prefix(std::string_view bytes);

}  // namespace louiskv::tokenization
