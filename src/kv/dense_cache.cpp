#include "kv/dense_cache.h"

#include <string>

#include "kv/kv_views.h"

namespace louiskv {

DenseCache::DenseCache(Backend& backend, int64_t kv_heads, int64_t capacity, int64_t head_dim)
    : kv_heads_(kv_heads), capacity_(capacity), head_dim_(head_dim) {
  LOUISKV_CHECK(kv_heads > 0 && capacity >= 0 && head_dim > 0, "dense cache sizes");
  DType dtype = backend.kv_dtype();
  size_t bytes = size_t(kv_heads * capacity * head_dim) * dtype_size(dtype);
  if (bytes == 0) return;
  keys_ = backend.allocate(bytes);
  values_ = backend.allocate(bytes);
  keys_view_ = keys_.view(dtype, {kv_heads, capacity, head_dim});
  values_view_ = values_.view(dtype, {kv_heads, capacity, head_dim});
}

void DenseCache::append(Backend& backend, TensorView k, TensorView v) {
  LOUISKV_CHECK(k.rank == 3 && k.dim(1) == kv_heads_ && k.dim(2) == head_dim_,
                "appended keys must be [tokens, kv_heads, head_dim]: got " + k.describe());
  LOUISKV_CHECK(v.rank == 3 && v.dim(0) == k.dim(0) && v.dim(1) == kv_heads_ &&
                    v.dim(2) == head_dim_,
                "appended values must match the keys: got " + v.describe());
  int64_t tokens = k.dim(0);
  if (length_ + tokens > capacity_) {
    throw_error(ErrorKind::invalid_input,
                "sequence of " + std::to_string(length_ + tokens) +
                    " tokens exceeds the capacity of " + std::to_string(capacity_) +
                    " tokens given when it was added (prompt plus generated tokens)");
  }
  if (tokens == 0) return;
  backend.write_kv(keys_view_, k, length_);
  backend.write_kv(values_view_, v, length_);
  length_ += tokens;
}

void DenseCache::append_from(Backend& backend, const DenseCache& source, int64_t first,
                             int64_t count) {
  LOUISKV_CHECK(source.kv_heads_ == kv_heads_ && source.head_dim_ == head_dim_,
                "dense cache shapes differ");
  LOUISKV_CHECK(first >= 0 && first + count <= source.length_, "source tokens out of range");
  LOUISKV_CHECK(length_ + count <= capacity_, "dense cache capacity exceeded");
  if (count == 0) return;
  for (int64_t head = 0; head < kv_heads_; ++head) {
    backend.copy(head_rows(keys_view_, head, length_, count),
                 head_rows(source.keys_view_, head, first, count));
    backend.copy(head_rows(values_view_, head, length_, count),
                 head_rows(source.values_view_, head, first, count));
  }
  length_ += count;
}

void DenseCache::add_span(AttendedSpans& spans, int64_t head, int64_t first, int64_t count) const {
  if (count <= 0) return;
  LOUISKV_CHECK(first >= 0 && first + count <= length_, "span beyond the cached tokens");
  spans.add(head_rows(keys_view_, head, first, count).data,
            head_rows(values_view_, head, first, count).data, int32_t(count));
}

}  // namespace louiskv
