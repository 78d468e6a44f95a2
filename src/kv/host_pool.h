// HostPool: the KV of one layer of one sequence in host memory (pinned when CUDA is used),
// DESIGN.md section 3. K and V are [kv_heads, capacity, head_dim]: each KV head's tokens are
// [tokens, head_dim] rows in *unit order*, written there by the device (reorder_kv lays a
// clustered prompt out cluster by cluster) so that every unit (cluster, segment, page) is one
// contiguous run and one copy. All heads hold the same number of tokens (every head sees every
// token); only the order within a head differs. The CPU never reads or moves it.
#pragma once

#include <cstdint>

#include "backend/backend.h"

namespace louiskv {

class HostPool {
 public:
  HostPool() = default;
  HostPool(Backend& backend, int64_t kv_heads, int64_t capacity, int64_t head_dim);

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t kv_heads() const { return kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  DType dtype() const { return dtype_; }

  // Makes room for `count` more tokens in every head and returns where they start.
  int64_t reserve(int64_t count);
  // Rows [first, first + count) of one head: [count, head_dim] host views.
  TensorView keys(int64_t head, int64_t first, int64_t count) const;
  TensorView values(int64_t head, int64_t first, int64_t count) const;

  // The whole pool, [kv_heads, capacity, head_dim] each: what reorder_kv writes a clustered
  // prompt into, unit by unit.
  TensorView all_keys() const { return keys_view_; }
  TensorView all_values() const { return values_view_; }

  size_t bytes() const { return keys_.bytes() + values_.bytes(); }
  size_t row_bytes() const { return size_t(head_dim_) * dtype_size(dtype_); }

 private:
  Buffer keys_, values_;
  TensorView keys_view_, values_view_;
  int64_t kv_heads_ = 0, capacity_ = 0, head_dim_ = 0, length_ = 0;
  DType dtype_ = DType::f32;
};

}  // namespace louiskv
