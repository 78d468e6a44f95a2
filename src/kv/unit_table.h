// UnitTable: what the kernels read about the units of one layer of one sequence, per KV head
// (DESIGN.md section 3): the score key (mean key, k-means centroid or sphere centre), the key box,
// the bounding radius, the length and the last scores, all in the backend's memory (device memory
// for cuda); and the choice budget_fill leaves for the host, in host memory the device writes.
// Units are numbered per head as in the policy's host unit list.
//
//   keys, lower, upper  f32 [kv_heads, capacity, head_dim]
//   radii, scores       f32 [kv_heads, capacity]
//   lengths             i32 [kv_heads, capacity]
//   chosen, chosen_scores  [kv_heads, choice_capacity] (host memory)
//   chosen_count        i32 [kv_heads, 2]               (host memory)
#pragma once

#include <cstdint>

#include "backend/backend.h"

namespace louiskv {

class UnitTable {
 public:
  // Which summaries the policy scores units by.
  struct Needs {
    bool keys = false;    // mean keys: dot scores, sphere centres
    bool box = false;     // lower and upper
    bool radius = false;  // sphere radii
  };

  UnitTable() = default;
  UnitTable(Backend& backend, int64_t kv_heads, int64_t head_dim, Needs needs, int64_t capacity,
            int64_t choice_capacity);

  int64_t capacity() const { return capacity_; }
  int64_t choice_capacity() const { return choice_capacity_; }
  const Needs& needs() const { return needs_; }

  // Room for at least `units` units per head, keeping units [0, used) of each head. Growth
  // reallocates (doubling), so it is rare; the copies are queued on the backend.
  void reserve(Backend& backend, int64_t units, int64_t used);

  // [count, head_dim] f32 and [count] i32 views of units [first, first + count) of one head.
  TensorView keys(int64_t head, int64_t first, int64_t count) const;
  TensorView lengths(int64_t head, int64_t first, int64_t count) const;

  // A row of score_units / budget_fill over units [0, units) of `head`, whose queries are row
  // `query_row` of q, choosing within `budget` tokens.
  UnitRow row(int32_t query_row, int64_t head, int64_t units, int64_t budget) const;
  // Where summarize_units puts the summaries of unit `unit` of `head`.
  UnitSummaryJob summary_job(int64_t head, int64_t unit, const void* keys, int64_t length) const;

  // The choice of budget_fill for `head`, readable once the backend has finished it.
  const int32_t* chosen(int64_t head) const;
  const float* chosen_scores(int64_t head) const;
  const int32_t* chosen_count(int64_t head) const;

 private:
  void allocate(Backend& backend, int64_t capacity);
  float* float_entry(const Buffer& buffer, int64_t head, int64_t index, int64_t width) const;

  int64_t kv_heads_ = 0, head_dim_ = 0, capacity_ = 0, choice_capacity_ = 0;
  Needs needs_;
  Buffer keys_, lower_, upper_, radii_, lengths_, scores_;  // backend memory
  Buffer chosen_, chosen_scores_, chosen_count_;            // host memory
};

}  // namespace louiskv
