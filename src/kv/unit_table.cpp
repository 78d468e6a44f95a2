#include "kv/unit_table.h"

#include <algorithm>
#include <utility>

namespace louiskv {

UnitTable::UnitTable(Backend& backend, int64_t kv_heads, int64_t head_dim, Needs needs, int64_t capacity,
                     int64_t choice_capacity)
    : kv_heads_(kv_heads), head_dim_(head_dim), choice_capacity_(choice_capacity), needs_(needs) {
  LOUISKV_CHECK(kv_heads > 0 && head_dim > 0 && capacity >= 0 && choice_capacity >= 0, "unit table sizes");
  allocate(backend, std::max<int64_t>(capacity, 1));
  size_t choices = size_t(kv_heads * std::max<int64_t>(choice_capacity, 1));
  chosen_ = backend.allocate_host(choices * sizeof(int32_t));
  chosen_scores_ = backend.allocate_host(choices * sizeof(float));
  chosen_count_ = backend.allocate_host(size_t(kv_heads * 2) * sizeof(int32_t));
}

void UnitTable::allocate(Backend& backend, int64_t capacity) {
  capacity_ = capacity;
  size_t per_unit = size_t(kv_heads_ * capacity);
  size_t wide = per_unit * size_t(head_dim_) * sizeof(float);
  keys_ = needs_.keys ? backend.allocate(wide) : Buffer();
  lower_ = needs_.box ? backend.allocate(wide) : Buffer();
  upper_ = needs_.box ? backend.allocate(wide) : Buffer();
  radii_ = needs_.radius ? backend.allocate(per_unit * sizeof(float)) : Buffer();
  lengths_ = backend.allocate(per_unit * sizeof(int32_t));
  scores_ = backend.allocate(per_unit * sizeof(float));
}

void UnitTable::reserve(Backend& backend, int64_t units, int64_t used) {
  if (units <= capacity_) return;
  LOUISKV_CHECK(used >= 0 && used <= capacity_, "unit table: more units in use than it holds");
  UnitTable old;
  old.kv_heads_ = kv_heads_;
  old.head_dim_ = head_dim_;
  old.capacity_ = capacity_;
  old.needs_ = needs_;
  old.keys_ = std::move(keys_);
  old.lower_ = std::move(lower_);
  old.upper_ = std::move(upper_);
  old.radii_ = std::move(radii_);
  old.lengths_ = std::move(lengths_);
  old.scores_ = std::move(scores_);
  allocate(backend, std::max(units, 2 * capacity_));
  if (used == 0) return;
  auto copy_rows = [&](const Buffer& to, const Buffer& from, DType dtype, int64_t width) {
    if (!from.data()) return;
    for (int64_t head = 0; head < kv_heads_; ++head) {
      size_t element = dtype_size(dtype);
      TensorView destination(static_cast<char*>(to.data()) + size_t(head * capacity_ * width) * element, dtype,
                             to.device(), {used * width});
      TensorView source(static_cast<char*>(from.data()) + size_t(head * old.capacity_ * width) * element, dtype,
                        from.device(), {used * width});
      backend.copy(destination, source);
    }
  };
  copy_rows(keys_, old.keys_, DType::f32, head_dim_);
  copy_rows(lower_, old.lower_, DType::f32, head_dim_);
  copy_rows(upper_, old.upper_, DType::f32, head_dim_);
  copy_rows(radii_, old.radii_, DType::f32, 1);
  copy_rows(lengths_, old.lengths_, DType::i32, 1);
  // The old buffers go when `old` does; freeing device memory waits for the copies that read it.
}

float* UnitTable::float_entry(const Buffer& buffer, int64_t head, int64_t index, int64_t width) const {
  if (!buffer.data()) return nullptr;
  return static_cast<float*>(buffer.data()) + (head * capacity_ + index) * width;
}

TensorView UnitTable::keys(int64_t head, int64_t first, int64_t count) const {
  LOUISKV_CHECK(keys_.data() && head >= 0 && head < kv_heads_ && first >= 0 && first + count <= capacity_,
                "unit table: key rows out of range");
  return TensorView(float_entry(keys_, head, first, head_dim_), DType::f32, keys_.device(), {count, head_dim_});
}

TensorView UnitTable::lengths(int64_t head, int64_t first, int64_t count) const {
  LOUISKV_CHECK(head >= 0 && head < kv_heads_ && first >= 0 && first + count <= capacity_,
                "unit table: length rows out of range");
  return TensorView(static_cast<int32_t*>(lengths_.data()) + head * capacity_ + first, DType::i32,
                    lengths_.device(), {count});
}

UnitRow UnitTable::row(int32_t query_row, int64_t head, int64_t units, int64_t budget) const {
  LOUISKV_CHECK(units <= capacity_, "unit table: a row of more units than it holds");
  UnitRow row;
  row.query_row = query_row;
  row.kv_head = int32_t(head);
  row.units = int32_t(units);
  row.keys = float_entry(keys_, head, 0, head_dim_);
  row.lower = float_entry(lower_, head, 0, head_dim_);
  row.upper = float_entry(upper_, head, 0, head_dim_);
  row.radii = float_entry(radii_, head, 0, 1);
  row.lengths = static_cast<const int32_t*>(lengths_.data()) + head * capacity_;
  row.scores = float_entry(scores_, head, 0, 1);
  // Each chosen unit holds at least one token, so a choice never has more than `budget` units.
  LOUISKV_CHECK(budget >= 0 && std::min(units, budget) <= choice_capacity_, "unit table: choice beyond its room");
  row.budget = int32_t(budget);
  row.chosen = static_cast<int32_t*>(chosen_.data()) + head * choice_capacity_;
  row.chosen_scores = static_cast<float*>(chosen_scores_.data()) + head * choice_capacity_;
  row.chosen_count = static_cast<int32_t*>(chosen_count_.data()) + head * 2;
  return row;
}

UnitSummaryJob UnitTable::summary_job(int64_t head, int64_t unit, const void* keys, int64_t length) const {
  LOUISKV_CHECK(unit >= 0 && unit < capacity_, "unit table: summary of a unit beyond its capacity");
  UnitSummaryJob job;
  job.keys = keys;
  job.length = int32_t(length);
  job.mean = float_entry(keys_, head, unit, head_dim_);
  job.lower = float_entry(lower_, head, unit, head_dim_);
  job.upper = float_entry(upper_, head, unit, head_dim_);
  job.radius = float_entry(radii_, head, unit, 1);
  job.length_out = static_cast<int32_t*>(lengths_.data()) + head * capacity_ + unit;
  return job;
}

const int32_t* UnitTable::chosen(int64_t head) const {
  return static_cast<const int32_t*>(chosen_.data()) + head * choice_capacity_;
}
const float* UnitTable::chosen_scores(int64_t head) const {
  return static_cast<const float*>(chosen_scores_.data()) + head * choice_capacity_;
}
const int32_t* UnitTable::chosen_count(int64_t head) const {
  return static_cast<const int32_t*>(chosen_count_.data()) + head * 2;
}

}  // namespace louiskv
