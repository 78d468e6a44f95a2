#include "kv/decode_window.h"

#include <algorithm>

#include "kv/kv_views.h"

namespace louiskv {

DecodeWindow::DecodeWindow(Backend& backend, int64_t kv_heads, int64_t capacity, int64_t head_dim)
    : kv_heads_(kv_heads), capacity_(capacity), head_dim_(head_dim) {
  LOUISKV_CHECK(kv_heads > 0 && capacity > 0 && head_dim > 0, "decode window sizes");
  DType dtype = backend.kv_dtype();
  size_t bytes = size_t(kv_heads * capacity * head_dim) * dtype_size(dtype);
  keys_ = backend.allocate(bytes);
  values_ = backend.allocate(bytes);
  keys_view_ = keys_.view(dtype, {kv_heads, capacity, head_dim});
  values_view_ = values_.view(dtype, {kv_heads, capacity, head_dim});
}

int64_t DecodeWindow::open_length() const {
  return !segments_.empty() && !segments_.back().closed ? segments_.back().length : 0;
}

void DecodeWindow::append(Backend& backend, TensorView k, TensorView v) {
  LOUISKV_CHECK(!full(), "decode window: appending to a full window");
  int64_t slot = next_index_ % capacity_;
  backend.write_kv(keys_view_, k, slot);
  backend.write_kv(values_view_, v, slot);
  if (segments_.empty() || segments_.back().closed) {
    segments_.push_back({next_index_, 0, false});
  }
  ++segments_.back().length;
  ++next_index_;
  ++occupancy_;
}

void DecodeWindow::seed(Backend& backend, TensorView keys, TensorView values, int64_t first, int64_t count) {
  LOUISKV_CHECK(occupancy_ == 0 && count >= 0 && count <= capacity_, "decode window: seeding a non-empty window");
  if (count == 0) return;
  std::vector<KvCopy> copies;
  for (int64_t head = 0; head < kv_heads_; ++head) {
    copies.push_back({head_rows(keys, head, first, count).data, head_rows(values, head, first, count).data,
                      this->keys(head, 0, count).data, this->values(head, 0, count).data, count});
  }
  backend.gather_kv(copies, head_dim_ * int64_t(dtype_size(backend.kv_dtype())));
  segments_.push_back({next_index_, count, true});
  next_index_ += count;
  occupancy_ = count;
}

void DecodeWindow::close_open_segment() {
  if (!segments_.empty()) segments_.back().closed = true;
}

void DecodeWindow::close_before_newest() {
  if (segments_.empty() || segments_.back().closed || segments_.back().length < 2) return;
  WindowSegment& open = segments_.back();
  --open.length;
  open.closed = true;
  segments_.push_back({next_index_ - 1, 1, false});
}

WindowSegment DecodeWindow::pop_oldest() {
  LOUISKV_CHECK(!segments_.empty(), "decode window: popping from an empty window");
  WindowSegment oldest = segments_.front();
  oldest.closed = true;
  segments_.pop_front();
  occupancy_ -= oldest.length;
  return oldest;
}

std::vector<SlotRange> DecodeWindow::ring_ranges(int64_t first, int64_t length) const {
  std::vector<SlotRange> ranges;
  if (length <= 0) return ranges;
  int64_t slot = first % capacity_;
  int64_t head_part = std::min(length, capacity_ - slot);
  ranges.push_back({slot, head_part});
  if (head_part < length) ranges.push_back({0, length - head_part});
  return ranges;
}

TensorView DecodeWindow::keys(int64_t head, int64_t slot_first, int64_t count) const {
  return head_rows(keys_view_, head, slot_first, count);
}

TensorView DecodeWindow::values(int64_t head, int64_t slot_first, int64_t count) const {
  return head_rows(values_view_, head, slot_first, count);
}

void DecodeWindow::add_spans(AttendedSpans& spans, int64_t head) const {
  if (occupancy_ == 0) return;
  for (const SlotRange& range : ring_ranges(segments_.front().first, occupancy_)) {
    spans.add(keys(head, range.first, range.length).data,
              values(head, range.first, range.length).data, int32_t(range.length));
  }
}

}  // namespace louiskv
