#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <limits>
#include <optional>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/json_field.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/token_decoder.h"
#include "tokenizer/utf8.h"

namespace louiskv {

using namespace tokenization;

namespace {

enum class TokenKind : uint8_t { absent, model, added, special };

nlohmann::json read_json(const std::filesystem::path& file) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(file, error)) {
    throw_error(ErrorKind::io, file.string() +
                                   ": no such file (give a tokenizer.json or the model folder "
                                   "that holds one)");
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) throw_error(ErrorKind::io, file.string() + ": cannot be opened");
  std::string content;
  std::array<char, 1 << 16> buffer;
  while (in.read(buffer.data(), buffer.size()) || in.gcount() > 0) {
    content.append(buffer.data(), size_t(in.gcount()));
  }
  if (in.bad()) throw_error(ErrorKind::io, file.string() + ": cannot be read");
  try {
    return nlohmann::json::parse(content);
  } catch (const nlohmann::json::parse_error& parse_error) {
    throw_error(ErrorKind::invalid_input,
                file.string() + ": malformed JSON: " + std::string(parse_error.what()));
  }
}

std::vector<AddedToken> added_tokens_from_json(const std::optional<JsonField>& spec) {
  std::vector<AddedToken> tokens;
  if (!spec) return tokens;
  spec->expect_array();
  for (size_t i = 0; i < spec->value().size(); ++i) {
    JsonField entry = spec->element(i).expect_object();
    AddedToken token;
    JsonField id = entry["id"];
    int64_t value = id.as_integer();
    if (value < 0 || value > std::numeric_limits<int32_t>::max()) {
      id.fail(ErrorKind::invalid_input, "is " + std::to_string(value) + ", not a token id");
    }
    token.id = static_cast<int32_t>(value);
    token.content = entry["content"].as_string();
    token.special = entry.bool_or("special", false);
    token.single_word = entry.bool_or("single_word", false);
    token.lstrip = entry.bool_or("lstrip", false);
    token.rstrip = entry.bool_or("rstrip", false);
    // Hugging Face's default: special tokens are matched in the raw text, others normalized.
    token.normalized = entry.bool_or("normalized", !token.special);
    tokens.push_back(std::move(token));
  }
  return tokens;
}

}  // namespace

struct Tokenizer::Impl {
  Impl(Normalizer normalizer_in, PreTokenizer pre_tokenizer_in, BpeModel model_in,
       PostProcessor post_processor_in, std::vector<AddedToken> added_in)
      : normalizer(std::move(normalizer_in)),
        pre_tokenizer(std::move(pre_tokenizer_in)),
        model(std::move(model_in)),
        post_processor(std::move(post_processor_in)),
        added_tokens(std::move(added_in)),
        raw_matcher(patterns(false)),
        normalized_matcher(patterns(true)) {}

  // The strings to find for the added tokens matched in raw (or in normalized) text.
  std::vector<std::pair<std::string, const AddedToken*>> patterns(bool normalized) const {
    std::vector<std::pair<std::string, const AddedToken*>> result;
    for (const AddedToken& token : added_tokens) {
      if (token.normalized != normalized) continue;
      bool normalize = normalized && !normalizer.is_identity();
      result.emplace_back(normalize ? normalizer.apply(token.content) : token.content, &token);
    }
    return result;
  }

  void encode_words(std::string_view text, std::vector<int32_t>& ids) const {
    std::vector<std::string> words;
    pre_tokenizer.split(text, words);
    for (const std::string& word : words) model.tokenize(word, ids);
  }

  void encode_plain(std::string_view text, std::vector<int32_t>& ids) const {
    std::string normalized_storage;
    std::string_view normalized = text;
    if (!normalizer.is_identity()) {
      normalized_storage = normalizer.apply(text);
      normalized = normalized_storage;
    }
    if (normalized_matcher.empty()) {
      if (!normalized.empty()) encode_words(normalized, ids);
      return;
    }
    std::vector<TextSegment> segments;
    normalized_matcher.split(normalized, segments);
    for (const TextSegment& segment : segments) {
      if (segment.token_id >= 0) {
        ids.push_back(segment.token_id);
      } else {
        encode_words(segment.text, ids);
      }
    }
  }

  void check_id(int32_t id) const {
    if (id < 0 || size_t(id) >= token_kinds.size() || token_kinds[size_t(id)] == TokenKind::absent) {
      throw_error(ErrorKind::invalid_input,
                  "token id " + std::to_string(id) + " is not in the vocabulary of " + file +
                      " (" + std::to_string(token_kinds.size()) + " ids)");
    }
  }

  std::string file;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  BpeModel model;
  PostProcessor post_processor;
  std::vector<AddedToken> added_tokens;  // the matchers point into it: never resized
  AddedTokenMatcher raw_matcher;
  AddedTokenMatcher normalized_matcher;
  std::unordered_map<std::string, int32_t, TransparentStringHash, std::equal_to<>> added_ids;
  std::vector<std::string> token_bytes;  // by id: what the token decodes to
  std::vector<TokenKind> token_kinds;    // by id
};

Tokenizer Tokenizer::load(const std::filesystem::path& path) {
  std::error_code error;
  std::filesystem::path file =
      std::filesystem::is_directory(path, error) ? path / "tokenizer.json" : path;
  nlohmann::json document = read_json(file);
  auto file_name = std::make_shared<const std::string>(file.string());
  JsonField root(document, file_name, "");
  root.expect_object();

  // The model is read first: a file that is not a BPE tokenizer at all is best reported as such.
  BpeModel model = BpeModel::from_json(root["model"]);
  auto impl = std::make_unique<Impl>(
      Normalizer::from_json(root.optional("normalizer")),
      PreTokenizer::from_json(root.optional("pre_tokenizer")), std::move(model),
      PostProcessor::from_json(root.optional("post_processor")),
      added_tokens_from_json(root.optional("added_tokens")));
  impl->file = *file_name;
  TokenDecoder decoder = TokenDecoder::from_json(root.optional("decoder"));

  int32_t largest_id = -1;
  for (const auto& [token, id] : impl->model.vocabulary()) largest_id = std::max(largest_id, id);
  for (const AddedToken& token : impl->added_tokens) largest_id = std::max(largest_id, token.id);
  impl->token_bytes.resize(size_t(largest_id + 1));
  impl->token_kinds.resize(size_t(largest_id + 1), TokenKind::absent);
  for (const auto& [token, id] : impl->model.vocabulary()) {
    impl->token_bytes[size_t(id)] = decoder.token_bytes(token);
    impl->token_kinds[size_t(id)] = TokenKind::model;
  }
  // Added tokens take precedence over the model's entry for the same id, as in Hugging Face.
  for (const AddedToken& token : impl->added_tokens) {
    impl->token_bytes[size_t(token.id)] = decoder.token_bytes(token.content);
    impl->token_kinds[size_t(token.id)] = token.special ? TokenKind::special : TokenKind::added;
    impl->added_ids.try_emplace(token.content, token.id);
  }
  return Tokenizer(std::move(impl));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  if (std::optional<size_t> invalid = find_invalid_utf8(text)) {
    throw_error(ErrorKind::invalid_input, "text to encode is not valid UTF-8 (byte " +
                                              std::to_string(*invalid) + " of " +
                                              std::to_string(text.size()) + ")");
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<TextSegment> segments;
  impl_->raw_matcher.split(text, segments);
  for (const TextSegment& segment : segments) {
    if (segment.token_id >= 0) {
      ids.push_back(segment.token_id);
    } else {
      impl_->encode_plain(segment.text, ids);
    }
  }
  if (add_special) ids = impl_->post_processor.apply(std::move(ids));
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string text;
  for (int32_t id : ids) {
    impl_->check_id(id);
    if (skip_special && impl_->token_kinds[size_t(id)] == TokenKind::special) continue;
    text += impl_->token_bytes[size_t(id)];
  }
  return text;
}

std::string Tokenizer::token_bytes(int32_t id) const {
  impl_->check_id(id);
  return impl_->token_bytes[size_t(id)];
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->token_kinds.size()); }

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->token_kinds.size() &&
         impl_->token_kinds[size_t(id)] == TokenKind::special;
}

int32_t Tokenizer::token_id(std::string_view token_content) const {
  auto added = impl_->added_ids.find(token_content);
  if (added != impl_->added_ids.end()) return added->second;
  return impl_->model.token_id(token_content);
}

}  // namespace louiskv
