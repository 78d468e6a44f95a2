#include "kv/working_set.h"

#include <algorithm>
#include <string>

#include "kv/kv_views.h"

namespace louiskv {

WorkingSet::WorkingSet(Backend& backend, int64_t kv_heads, int64_t slots, int64_t head_dim)
    : kv_heads_(kv_heads), slots_(slots), head_dim_(head_dim), heads_(size_t(kv_heads)) {
  LOUISKV_CHECK(kv_heads > 0 && slots >= 0 && head_dim > 0, "working set sizes");
  for (HeadSlots& head : heads_) {
    if (slots > 0) head.free.push_back({0, slots});
  }
  if (slots == 0) return;
  DType dtype = backend.kv_dtype();
  size_t bytes = size_t(kv_heads * slots * head_dim) * dtype_size(dtype);
  keys_ = backend.allocate(bytes);
  values_ = backend.allocate(bytes);
  keys_view_ = keys_.view(dtype, {kv_heads, slots, head_dim});
  values_view_ = values_.view(dtype, {kv_heads, slots, head_dim});
}

int64_t WorkingSet::free_slots(int64_t head) const {
  int64_t total = 0;
  for (const SlotRange& range : heads_[head].free) total += range.length;
  return total;
}

bool WorkingSet::is_resident(int64_t head, int32_t unit) const {
  const auto& placement = heads_[head].placement;
  return unit >= 0 && size_t(unit) < placement.size() && !placement[unit].empty();
}

std::span<const SlotRange> WorkingSet::placement(int64_t head, int32_t unit) const {
  if (!is_resident(head, unit)) return {};
  return heads_[head].placement[unit];
}

std::span<const SlotRange> WorkingSet::place(int64_t head, int32_t unit, int64_t length) {
  HeadSlots& slots = heads_[head];
  LOUISKV_CHECK(unit >= 0 && length > 0, "working set: placing an empty unit");
  LOUISKV_CHECK(!is_resident(head, unit), "working set: unit already resident");
  if (free_slots(head) < length) {
    throw_error(ErrorKind::internal,
                "internal error (a bug in louiskv): working set of " + std::to_string(slots_) +
                    " slots has " + std::to_string(free_slots(head)) + " free for a unit of " +
                    std::to_string(length) + " tokens; the selection exceeds the budget");
  }
  if (slots.placement.size() <= size_t(unit)) slots.placement.resize(size_t(unit) + 1);
  std::vector<SlotRange>& pieces = slots.placement[unit];
  int64_t left = length;
  // First fit from the lowest slot; a unit takes whole free ranges until the last piece.
  while (left > 0) {
    SlotRange& range = slots.free.front();
    int64_t take = std::min(left, range.length);
    pieces.push_back({range.first, take});
    range.first += take;
    range.length -= take;
    left -= take;
    if (range.length == 0) slots.free.erase(slots.free.begin());
  }
  slots.resident.push_back(unit);
  return pieces;
}

void WorkingSet::free_range(HeadSlots& slots, SlotRange range) {
  auto after = std::lower_bound(slots.free.begin(), slots.free.end(), range.first,
                                [](const SlotRange& r, int64_t first) { return r.first < first; });
  after = slots.free.insert(after, range);
  // Merge with the following and the preceding ranges when they touch.
  auto next = after + 1;
  if (next != slots.free.end() && after->first + after->length == next->first) {
    after->length += next->length;
    slots.free.erase(next);
  }
  if (after != slots.free.begin()) {
    auto previous = after - 1;
    if (previous->first + previous->length == after->first) {
      previous->length += after->length;
      slots.free.erase(after);
    }
  }
}

void WorkingSet::release(int64_t head, int32_t unit) {
  if (!is_resident(head, unit)) return;
  HeadSlots& slots = heads_[head];
  for (const SlotRange& range : slots.placement[unit]) free_range(slots, range);
  slots.placement[unit].clear();
  slots.resident.erase(std::find(slots.resident.begin(), slots.resident.end(), unit));
}

void WorkingSet::plan_selection(int64_t head, std::span<const int32_t> selected,
                                std::span<const Unit> units, LoadPlan& plan) {
  std::vector<bool> wanted(units.size(), false);
  for (int32_t unit : selected) {
    LOUISKV_CHECK(unit >= 0 && size_t(unit) < units.size(), "selected unit out of range");
    wanted[unit] = true;
  }
  std::vector<int32_t> leaving;
  for (int32_t unit : heads_[head].resident) {
    if (!wanted[unit]) leaving.push_back(unit);
  }
  for (int32_t unit : leaving) release(head, unit);
  for (int32_t unit : selected) {
    if (is_resident(head, unit)) continue;
    const Unit& description = units[unit];
    int64_t offset = 0;
    for (const SlotRange& range : place(head, unit, description.length)) {
      plan.copies.push_back({head, description.host_first + offset, range.first, range.length});
      offset += range.length;
    }
    ++plan.units;
    plan.tokens += description.length;
  }
}

int64_t WorkingSet::execute(Backend& backend, const LoadPlan& plan, const HostPool& pool) {
  int64_t bytes = 0;
  for (const SlotCopy& copy : plan.copies) {
    backend.copy(keys(copy.head, copy.slot_first, copy.length),
                 pool.keys(copy.head, copy.source_first, copy.length));
    backend.copy(values(copy.head, copy.slot_first, copy.length),
                 pool.values(copy.head, copy.source_first, copy.length));
    bytes += 2 * copy.length * int64_t(pool.row_bytes());
  }
  return bytes;
}

TensorView WorkingSet::keys(int64_t head, int64_t first, int64_t count) const {
  return head_rows(keys_view_, head, first, count);
}

TensorView WorkingSet::values(int64_t head, int64_t first, int64_t count) const {
  return head_rows(values_view_, head, first, count);
}

void WorkingSet::add_spans(AttendedSpans& spans, int64_t head, int32_t unit) const {
  for (const SlotRange& range : placement(head, unit)) {
    spans.add(keys(head, range.first, range.length).data,
              values(head, range.first, range.length).data, int32_t(range.length));
  }
}

}  // namespace louiskv
