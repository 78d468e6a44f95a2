// HostPool: the KV of one layer of one sequence in host memory (pinned when CUDA is used),
// DESIGN.md section 3. K and V are [kv_heads, capacity, head_dim]: each KV head's tokens are
// [tokens, head_dim] rows in *unit order*, re-laid after clustering so that every unit (cluster,
// segment, page) is one contiguous run and one copy. All heads hold the same number of tokens
// (every head sees every token); only the order within a head differs.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

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

  // Keys of rows [first, first + count) of one head as fp32 [count, head_dim].
  void read_keys(int64_t head, int64_t first, int64_t count, std::vector<float>& out) const;

  // Re-lays rows [first, first + order.size()) of one head so that the row that was at
  // first + order[i] ends up at first + i. The pool is host memory, so this runs on the CPU and
  // moves nothing to or from the device.
  void permute(int64_t head, int64_t first, std::span<const int32_t> order);

  size_t bytes() const { return keys_.bytes() + values_.bytes(); }
  size_t row_bytes() const { return size_t(head_dim_) * dtype_size(dtype_); }

 private:
  Buffer keys_, values_;
  TensorView keys_view_, values_view_;
  int64_t kv_heads_ = 0, capacity_ = 0, head_dim_ = 0, length_ = 0;
  DType dtype_ = DType::f32;
};

}  // namespace louiskv
