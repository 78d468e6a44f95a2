// DenseCache: K and V of one layer of one sequence kept whole on the device,
// [kv_heads, capacity, head_dim] each, tokens [0, length) valid. It is the prefill staging of
// every layer (prefill attention reads it), the cache of dense layers and of the `full` and
// `quest` policies, and (with a small capacity) the sink tokens of the others.
#pragma once

#include <cstdint>

#include "backend/attended_spans.h"
#include "backend/backend.h"
#include "kv/kv_policy.h"

namespace louiskv {

class DenseCache {
 public:
  DenseCache() = default;
  DenseCache(Backend& backend, int64_t kv_heads, int64_t capacity, int64_t head_dim);

  // Writes k, v [T, kv_heads, head_dim] (any floating dtype) at positions [length, length + T).
  // Throws louiskv::Error (invalid_input) naming the capacity when they do not fit.
  void append(Backend& backend, TensorView k, TensorView v);
  // Copies tokens [first, first + count) of every head of `source` to the end of this cache.
  void append_from(Backend& backend, const DenseCache& source, int64_t first, int64_t count);

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  TensorView keys() const { return keys_view_; }      // [kv_heads, capacity, head_dim]
  TensorView values() const { return values_view_; }  // [kv_heads, capacity, head_dim]
  DenseKv view() const { return {keys_view_, values_view_, length_}; }

  // One span for tokens [first, first + count) of `head`.
  void add_span(AttendedSpans& spans, int64_t head, int64_t first, int64_t count) const;
  size_t bytes() const { return keys_.bytes() + values_.bytes(); }

 private:
  Buffer keys_, values_;
  TensorView keys_view_, values_view_;
  int64_t kv_heads_ = 0, capacity_ = 0, head_dim_ = 0, length_ = 0;
};

}  // namespace louiskv
