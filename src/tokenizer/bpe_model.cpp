#include "tokenizer/bpe_model.h"

#include <limits>
#include <queue>

#include "tokenizer/utf8.h"

namespace louiskv::tokenization {
namespace {

// Enough words for the vocabulary of several long prompts; see WordCache for the policy.
constexpr size_t cache_capacity = size_t(1) << 16;
// Longer words are rare and would crowd the cache.
constexpr size_t max_cached_word_bytes = 256;

struct Symbol {
  int32_t id = 0;
  int32_t previous = -1;
  int32_t next = -1;
  bool removed = false;
};

struct Candidate {
  int32_t rank = 0;
  int32_t position = 0;  // of the left symbol
  int32_t merged_id = 0;
};

// Orders the heap so that the lowest rank, then the leftmost position, comes out first.
struct ComesLater {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.position > b.position;
  }
};

void reject_option(const JsonField& spec, std::string_view key, std::string_view why) {
  auto value = spec.optional(key);
  if (!value) return;
  const nlohmann::json& json = value->value();
  bool is_default = (json.is_boolean() && !json.get<bool>()) ||
                    (json.is_string() && json.get<std::string>().empty()) ||
                    (json.is_number() && json.get<double>() == 0.0);
  if (!is_default) value->fail(ErrorKind::unsupported, std::string(why));
}

}  // namespace

BpeModel BpeModel::from_json(const JsonField& spec) {
  spec.expect_object();
  if (auto type = spec.optional("type")) {
    std::string name = type->as_string();
    if (name != "BPE") {
      type->fail(ErrorKind::unsupported,
                 "is '" + name + "', a model louiskv does not support (supported: BPE)");
    }
  }
  reject_option(spec, "dropout", "is set; louiskv encodes deterministically (no BPE dropout)");
  reject_option(spec, "continuing_subword_prefix", "is set; louiskv does not support it");
  reject_option(spec, "end_of_word_suffix", "is set; louiskv does not support it");
  reject_option(spec, "byte_fallback", "is true; louiskv does not support byte fallback yet");

  BpeModel model;
  JsonField vocabulary = spec["vocab"].expect_object();
  model.vocabulary_.reserve(vocabulary.value().size());
  for (const auto& [token, id_json] : vocabulary.value().items()) {
    bool valid = id_json.is_number_integer() && id_json.get<int64_t>() >= 0 &&
                 id_json.get<int64_t>() <= std::numeric_limits<int32_t>::max();
    if (!valid) {
      vocabulary.entry(token, id_json)
          .fail(ErrorKind::invalid_input, "must be a token id (an integer from 0 to 2^31 - 1)");
    }
    model.vocabulary_.emplace(token, static_cast<int32_t>(id_json.get<int64_t>()));
  }

  JsonField merges = spec["merges"].expect_array();
  model.merges_.reserve(merges.value().size());
  for (size_t rank = 0; rank < merges.value().size(); ++rank) {
    JsonField merge = merges.element(rank);
    std::string left;
    std::string right;
    if (merge.value().is_string()) {
      // The older form, "a b": tokens never hold a plain space in a byte-level vocabulary.
      std::string text = merge.as_string();
      size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        merge.fail(ErrorKind::invalid_input,
                   "is \"" + text + "\", not two tokens separated by one space");
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (merge.value().is_array() && merge.value().size() == 2) {
      left = merge.element(0).as_string();
      right = merge.element(1).as_string();
    } else {
      merge.fail(ErrorKind::invalid_input, "must be \"a b\" or a pair [\"a\", \"b\"]");
    }
    std::string merged = left + right;
    int32_t left_id = model.token_id(left);
    int32_t right_id = model.token_id(right);
    int32_t merged_id = model.token_id(merged);
    const std::pair<const std::string*, int32_t> parts[] = {
        {&left, left_id}, {&right, right_id}, {&merged, merged_id}};
    for (const auto& [token, id] : parts) {
      if (id < 0) {
        merge.fail(ErrorKind::invalid_input, "uses '" + *token + "', which is not in model.vocab");
      }
    }
    // A repeated pair keeps its last rank, as Hugging Face's map does.
    model.merges_[pair_key(left_id, right_id)] = Merge{static_cast<int32_t>(rank), merged_id};
  }

  model.ignore_merges_ = spec.bool_or("ignore_merges", false);
  if (auto unknown = spec.optional("unk_token")) {
    model.unknown_id_ = model.token_id(unknown->as_string());
    if (model.unknown_id_ < 0) {
      unknown->fail(ErrorKind::invalid_input,
                    "is '" + unknown->as_string() + "', which is not in model.vocab");
    }
  }
  model.fuse_unknown_ = spec.bool_or("fuse_unk", false);

  model.small_character_ids_.fill(-1);
  for (const auto& [token, id] : model.vocabulary_) {
    if (token.empty()) continue;
    size_t offset = 0;
    char32_t code_point = next_code_point(token, offset);
    if (offset == token.size() && code_point < model.small_character_ids_.size()) {
      model.small_character_ids_[code_point] = id;
    }
  }
  model.cache_ = std::make_unique<WordCache>(cache_capacity);
  return model;
}

int32_t BpeModel::token_id(std::string_view token) const {
  auto found = vocabulary_.find(token);
  return found == vocabulary_.end() ? -1 : found->second;
}

int32_t BpeModel::character_id(std::string_view character, char32_t code_point) const {
  if (code_point < small_character_ids_.size()) return small_character_ids_[code_point];
  return token_id(character);
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  // Llama-3 style: a word that is itself a token is taken whole, whatever the merges say.
  if (ignore_merges_) {
    int32_t id = token_id(word);
    if (id >= 0) {
      ids.push_back(id);
      return;
    }
  }
  bool cacheable = word.size() <= max_cached_word_bytes;
  if (cacheable && cache_->find(word, ids)) return;
  size_t first = ids.size();
  merge_word(word, ids);
  if (cacheable) cache_->insert(word, std::span<const int32_t>(ids).subspan(first));
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& ids) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  bool previous_unknown = false;
  for (size_t offset = 0; offset < word.size();) {
    size_t start = offset;
    char32_t code_point = next_code_point(word, offset);
    int32_t id = character_id(word.substr(start, offset - start), code_point);
    if (id < 0) {
      if (unknown_id_ < 0) continue;
      if (fuse_unknown_ && previous_unknown) continue;
      id = unknown_id_;
      previous_unknown = true;
    } else {
      previous_unknown = false;
    }
    auto position = static_cast<int32_t>(symbols.size());
    symbols.push_back(Symbol{id, position - 1, -1, false});
    if (position > 0) symbols[size_t(position) - 1].next = position;
  }

  std::priority_queue<Candidate, std::vector<Candidate>, ComesLater> queue;
  auto offer = [&](int32_t left) {
    int32_t right = symbols[size_t(left)].next;
    if (right < 0) return;
    auto found = merges_.find(pair_key(symbols[size_t(left)].id, symbols[size_t(right)].id));
    if (found != merges_.end()) queue.push({found->second.rank, left, found->second.merged_id});
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) offer(static_cast<int32_t>(i));

  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[size_t(top.position)];
    if (left.removed || left.next < 0) continue;
    Symbol& right = symbols[size_t(left.next)];
    // An entry is stale when either symbol has merged since it was queued.
    auto current = merges_.find(pair_key(left.id, right.id));
    if (current == merges_.end() || current->second.merged_id != top.merged_id) continue;
    left.id = top.merged_id;
    right.removed = true;
    left.next = right.next;
    if (right.next >= 0) symbols[size_t(right.next)].previous = top.position;
    if (left.previous >= 0) offer(left.previous);
    offer(top.position);
  }

  for (const Symbol& symbol : symbols) {
    if (!symbol.removed) ids.push_back(symbol.id);
  }
}

}  // namespace louiskv::tokenization
