#include "tokenizer/word_cache.h"

namespace louiskv::tokenization {

WordCache::WordCache(size_t capacity)
    : shard_capacity_(capacity / shard_count > 0 ? capacity / shard_count : 1) {}

WordCache::Shard& WordCache::shard_for(std::string_view word) const {
  // The map hashes the word again with the same function and picks its bucket from the low
  // bits, so the shard is picked from the top bits, to keep the two choices independent.
  static_assert(shard_count == 16, "the shard index takes the top 4 bits of the hash");
  size_t hash = StringHash{}(word);
  return shards_[hash >> (sizeof(size_t) * 8 - 4)];
}

bool WordCache::find(std::string_view word, std::vector<int32_t>& ids) const {
  Shard& shard = shard_for(word);
  std::lock_guard lock(shard.mutex);
  auto found = shard.entries.find(word);
  if (found == shard.entries.end()) return false;
  ids.insert(ids.end(), found->second.begin(), found->second.end());
  return true;
}

void WordCache::insert(std::string_view word, std::span<const int32_t> ids) {
  Shard& shard = shard_for(word);
  std::lock_guard lock(shard.mutex);
  if (shard.entries.size() >= shard_capacity_) shard.entries.clear();
  shard.entries.try_emplace(std::string(word), ids.begin(), ids.end());
}

}  // namespace louiskv::tokenization
