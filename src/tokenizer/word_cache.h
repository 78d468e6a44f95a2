// The BPE model's memory of words it has already merged (word -> ids). Text repeats its words, so
// most words of a long prompt are found here. Sharded, each shard behind its own mutex, so that
// threads encoding at once rarely wait on each other; each shard is emptied when it fills up,
// which bounds memory without bookkeeping on every hit.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace louiskv::tokenization {

class WordCache {
 public:
  explicit WordCache(size_t capacity);

  // Appends the cached ids of `word` to `ids`; false when the word is not cached.
  bool find(std::string_view word, std::vector<int32_t>& ids) const;
  void insert(std::string_view word, std::span<const int32_t> ids);

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> entries;
  };
  static constexpr size_t shard_count = 16;

  Shard& shard_for(std::string_view word) const;

  mutable std::array<Shard, shard_count> shards_;
  size_t shard_capacity_;
};

}  // namespace louiskv::tokenization
