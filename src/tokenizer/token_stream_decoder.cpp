#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace louiskv {

TokenStreamDecoder::TokenStreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(&tokenizer), skip_special_(skip_special) {}

std::string TokenStreamDecoder::push(int32_t id) {
  std::string bytes = tokenizer_->token_bytes(id);
  if (skip_special_ && tokenizer_->is_special(id)) return {};
  pending_ += bytes;
  size_t finished = tokenization::finished_utf8_prefix(pending_);
  std::string text = pending_.substr(0, finished);
  pending_.erase(0, finished);
  return text;
}

std::string TokenStreamDecoder::finish() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace louiskv
