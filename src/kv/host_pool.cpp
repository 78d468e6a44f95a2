#include "kv/host_pool.h"

#include <string>

#include "kv/kv_views.h"

namespace louiskv {

HostPool::HostPool(Backend& backend, int64_t kv_heads, int64_t capacity, int64_t head_dim)
    : kv_heads_(kv_heads), capacity_(capacity), head_dim_(head_dim), dtype_(backend.kv_dtype()) {
  LOUISKV_CHECK(kv_heads > 0 && capacity >= 0 && head_dim > 0, "host pool sizes");
  size_t bytes = size_t(kv_heads * capacity * head_dim) * dtype_size(dtype_);
  if (bytes == 0) return;
  keys_ = backend.allocate_host(bytes);
  values_ = backend.allocate_host(bytes);
  keys_view_ = keys_.view(dtype_, {kv_heads, capacity, head_dim});
  values_view_ = values_.view(dtype_, {kv_heads, capacity, head_dim});
}

int64_t HostPool::reserve(int64_t count) {
  LOUISKV_CHECK(count >= 0, "host pool: negative reservation");
  if (length_ + count > capacity_) {
    throw_error(ErrorKind::invalid_input,
                "host KV pool of " + std::to_string(capacity_) + " tokens per head cannot take " +
                    std::to_string(length_ + count) +
                    " tokens: the sequence outgrew the capacity given when it was added");
  }
  int64_t first = length_;
  length_ += count;
  return first;
}

TensorView HostPool::keys(int64_t head, int64_t first, int64_t count) const {
  LOUISKV_CHECK(first + count <= length_, "host pool rows beyond its length");
  return head_rows(keys_view_, head, first, count);
}

TensorView HostPool::values(int64_t head, int64_t first, int64_t count) const {
  LOUISKV_CHECK(first + count <= length_, "host pool rows beyond its length");
  return head_rows(values_view_, head, first, count);
}

}  // namespace louiskv
