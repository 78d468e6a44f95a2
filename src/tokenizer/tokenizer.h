// Tokenizer: Hugging Face tokenizer.json byte-level BPE (GPT-2, Llama-3 and Qwen2 styles).
// Encoding: added/special tokens matched in the text first, then the pre-tokenizer (Split regex
// + ByteLevel, or ByteLevel with GPT-2's regex), then a merge-rank BPE with a per-word cache,
// then the post-processor (TemplateProcessing BOS, or none). Decoding maps ids back to bytes.
// Safe to use from several threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace louiskv {

class Tokenizer {
 public:
  // Reads DIR/tokenizer.json (or a path to the file itself). Throws louiskv::Error naming the
  // file and field for a missing or malformed file or an unsupported model/pre-tokenizer type.
  static Tokenizer load(const std::filesystem::path& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // add_special: apply the post-processor (e.g. prepend BOS), as transformers'
  // add_special_tokens=True does. Special tokens written in the text are matched either way.
  // `text` must be valid UTF-8 (invalid_input otherwise, naming the first bad byte).
  std::vector<int32_t> encode(std::string_view text, bool add_special = true) const;
  // skip_special: drop special tokens from the text, as skip_special_tokens=True does.
  // The bytes are returned as the tokens hold them: ids that end inside a character give
  // unfinished UTF-8 (TokenStreamDecoder holds such bytes back). An id outside the vocabulary
  // throws invalid_input.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The raw bytes of one token (special tokens: their content).
  std::string token_bytes(int32_t id) const;

  int32_t vocab_size() const;
  bool is_special(int32_t id) const;
  int32_t token_id(std::string_view token_content) const;  // -1 when absent

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of ids into text, holding back the bytes of a UTF-8 character split across
// tokens until it is complete, so that streamed output never shows broken characters.
class TokenStreamDecoder {
 public:
  explicit TokenStreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);
  // The text that became complete with this id (possibly empty).
  std::string push(int32_t id);
  // Whatever is still held back (invalid or unfinished UTF-8 at the end), as is.
  std::string finish();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace louiskv
