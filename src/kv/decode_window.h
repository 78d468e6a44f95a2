// DecodeWindow: the newest generated tokens of one layer of one sequence, always attended
// (DESIGN.md sections 3 and 5). K and V live on the device in a ring of `capacity` token slots,
// [kv_heads, capacity, head_dim], so that the newest token is written once by write_kv and never
// moves while it stays in the window. The window is cut into temporal segments: the newest one
// is open, the others closed; when the window is full, the oldest segment leaves (to the host
// pool, as a retrievable unit) to make room.
//
// Tokens are numbered by the order they entered the window (`index`); the ring slot of a token
// is index % capacity. Segment boundaries are the same for every KV head.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "backend/attended_spans.h"
#include "backend/backend.h"
#include "kv/working_set.h"

namespace louiskv {

struct WindowSegment {
  int64_t first = 0;   // index of its first token
  int64_t length = 0;
  bool closed = false;
};

class DecodeWindow {
 public:
  DecodeWindow() = default;
  DecodeWindow(Backend& backend, int64_t kv_heads, int64_t capacity, int64_t head_dim);

  int64_t capacity() const { return capacity_; }
  int64_t occupancy() const { return occupancy_; }
  bool full() const { return occupancy_ == capacity_; }
  const std::deque<WindowSegment>& segments() const { return segments_; }
  // Length of the open segment (0 when every segment is closed).
  int64_t open_length() const;

  // Writes one token's k, v [1, kv_heads, head_dim] into the ring; it joins the open segment or
  // opens one. The window must not be full.
  void append(Backend& backend, TensorView k, TensorView v);
  // Copies rows [first, first + count) of K/V [kv_heads, capacity', head_dim] (kv dtype) into an
  // empty window as one closed segment, in one gather. count must fit the window.
  void seed(Backend& backend, TensorView keys, TensorView values, int64_t first, int64_t count);
  void close_open_segment();
  // A boundary between the newest token and the one before: the open segment closes without the
  // newest token, which opens the next segment. Nothing happens when the newest token is alone.
  void close_before_newest();
  // Removes the oldest segment (closing it first if it is the open one) and returns it; the
  // caller must have copied its tokens out, since the ring slots are reused.
  WindowSegment pop_oldest();

  // The ring slots of tokens [first, first + length): one or two ranges (the ring wraps).
  std::vector<SlotRange> ring_ranges(int64_t first, int64_t length) const;
  TensorView keys(int64_t head, int64_t slot_first, int64_t count) const;
  TensorView values(int64_t head, int64_t slot_first, int64_t count) const;
  // Every token in the window, as one or two spans.
  void add_spans(AttendedSpans& spans, int64_t head) const;

  size_t bytes() const { return keys_.bytes() + values_.bytes(); }

 private:
  Buffer keys_, values_;
  TensorView keys_view_, values_view_;
  int64_t kv_heads_ = 0, capacity_ = 0, head_dim_ = 0;
  int64_t next_index_ = 0, occupancy_ = 0;
  std::deque<WindowSegment> segments_;
};

}  // namespace louiskv
