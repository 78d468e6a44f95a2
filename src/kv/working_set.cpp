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
  const auto& resident_at = heads_[head].resident_at;
  return unit >= 0 && size_t(unit) < resident_at.size() && resident_at[size_t(unit)] >= 0;
}

std::span<const SlotRange> WorkingSet::placement(int64_t head, int32_t unit) const {
  if (!is_resident(head, unit)) return {};
  return heads_[head].ranges(unit);
}

void WorkingSet::grow_map(HeadSlots& slots, size_t units) {
  if (slots.placement.size() >= units) return;
  slots.placement.resize(units);
  slots.resident_at.resize(units, -1);
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
  grow_map(slots, size_t(unit) + 1);
  take_slots(slots, unit, length);
  return slots.ranges(unit);
}

void WorkingSet::take_slots(HeadSlots& slots, int32_t unit, int64_t length) {
  SlotRange& where = slots.placement[size_t(unit)];
  // Best fit: the smallest free range that holds the whole unit, so that units stay in one piece
  // (one copy) and large ranges stay whole for large units.
  auto best = slots.free.end();
  for (auto it = slots.free.begin(); it != slots.free.end(); ++it) {
    if (it->length >= length && (best == slots.free.end() || it->length < best->length)) best = it;
  }
  if (best != slots.free.end()) {
    where = {best->first, length};
    best->first += length;
    best->length -= length;
    if (best->length == 0) slots.free.erase(best);
  } else {
    // No range is large enough: the unit takes whole free ranges from the lowest slot until the
    // last piece.
    where = {0, -1};
    std::vector<SlotRange>& pieces = slots.split[unit];
    int64_t left = length;
    while (left > 0) {
      SlotRange& range = slots.free.front();
      int64_t take = std::min(left, range.length);
      pieces.push_back({range.first, take});
      range.first += take;
      range.length -= take;
      left -= take;
      if (range.length == 0) slots.free.erase(slots.free.begin());
    }
  }
  slots.resident_at[size_t(unit)] = int32_t(slots.resident.size());
  slots.resident.push_back(unit);
}

void WorkingSet::free_unit(HeadSlots& slots, int32_t unit) {
  const auto ranges = slots.ranges(unit);
  slots.freed.insert(slots.freed.end(), ranges.begin(), ranges.end());
  forget_resident(slots, unit);
}

void WorkingSet::forget_resident(HeadSlots& slots, int32_t unit) {
  if (slots.placement[size_t(unit)].length < 0) slots.split.erase(unit);
  slots.placement[size_t(unit)] = {};
  // Swap with the last resident unit: the list is a set, its order carries nothing.
  const int32_t at = slots.resident_at[size_t(unit)];
  const int32_t last = slots.resident.back();
  slots.resident[size_t(at)] = last;
  slots.resident_at[size_t(last)] = at;
  slots.resident.pop_back();
  slots.resident_at[size_t(unit)] = -1;
}

void WorkingSet::merge_freed(HeadSlots& slots) {
  if (slots.freed.empty()) return;
  std::sort(slots.freed.begin(), slots.freed.end(),
            [](const SlotRange& a, const SlotRange& b) { return a.first < b.first; });
  // Both lists are sorted and disjoint: one merge, joining ranges that touch.
  std::vector<SlotRange>& merged = slots.merged;
  merged.clear();
  auto append = [&merged](const SlotRange& range) {
    if (!merged.empty() && merged.back().first + merged.back().length == range.first) {
      merged.back().length += range.length;
    } else {
      merged.push_back(range);
    }
  };
  size_t i = 0, j = 0;
  while (i < slots.free.size() || j < slots.freed.size()) {
    const bool from_free =
        j == slots.freed.size() || (i < slots.free.size() && slots.free[i].first < slots.freed[j].first);
    append(from_free ? slots.free[i++] : slots.freed[j++]);
  }
  slots.free.swap(merged);  // the old list's storage is the next merge's
  slots.freed.clear();
}

void WorkingSet::release(int64_t head, int32_t unit) {
  if (!is_resident(head, unit)) return;
  HeadSlots& slots = heads_[head];
  free_unit(slots, unit);
  merge_freed(slots);
}

void WorkingSet::plan_selection(int64_t head, std::span<const int32_t> selected,
                                std::span<const Unit> units, LoadPlan& plan) {
  HeadSlots& slots = heads_[head];
  if (slots.wanted.size() < units.size()) slots.wanted.resize(units.size(), 0);
  if (++slots.stamp == 0) {  // the stamp wrapped: old marks could read as current
    std::fill(slots.wanted.begin(), slots.wanted.end(), 0);
    slots.stamp = 1;
  }
  const uint32_t stamp = slots.stamp;
  grow_map(slots, units.size());
  // Unit ids are scattered over tables larger than the caches once every layer's are in play:
  // asking for all of their entries up front lets the misses overlap instead of queueing one
  // behind the other in the loops below.
  for (int32_t unit : selected) {
    LOUISKV_CHECK(unit >= 0 && size_t(unit) < units.size(), "selected unit out of range");
    __builtin_prefetch(&slots.resident_at[size_t(unit)]);
    __builtin_prefetch(&slots.placement[size_t(unit)], 1);
    __builtin_prefetch(&units[size_t(unit)]);
  }
  for (int32_t unit : slots.resident) {
    __builtin_prefetch(&slots.wanted[size_t(unit)]);
    __builtin_prefetch(&slots.placement[size_t(unit)], 1);
  }
  for (int32_t unit : selected) slots.wanted[size_t(unit)] = stamp;
  // What is missing and how many slots it needs, before anything changes.
  slots.missing.clear();
  int64_t needed = 0, kept = 0;
  for (int32_t unit : selected) {
    const int64_t length = units[unit].length;
    if (is_resident(head, unit)) {
      kept += length;
      continue;
    }
    LOUISKV_CHECK(length > 0, "working set: placing an empty unit");
    slots.missing.push_back(unit);
  }
  // Units are numbered in pool order (HostPool), so sorting the ids sorts by pool row.
  std::sort(slots.missing.begin(), slots.missing.end());
  slots.missing.erase(std::unique(slots.missing.begin(), slots.missing.end()), slots.missing.end());
  for (int32_t unit : slots.missing) needed += units[unit].length;
  if (kept + needed > slots_) {
    throw_error(ErrorKind::internal,
                "internal error (a bug in louiskv): working set of " + std::to_string(slots_) + " slots has " +
                    std::to_string(slots_ - kept) + " free for a selection needing " + std::to_string(needed) +
                    " more; the selection exceeds the budget");
  }

  for (size_t i = 0; i < slots.resident.size();) {
    const int32_t unit = slots.resident[i];
    if (slots.wanted[size_t(unit)] == stamp) {
      ++i;
    } else {
      free_unit(slots, unit);  // the last resident unit moves to i
    }
  }
  merge_freed(slots);

  // Place in pool order: once the leaving units are gone a selection that changed a lot faces one
  // large free range, which best fit fills front to back, so neighbours in the pool land in
  // neighbouring slots and move as one copy; a selection that changed a little fills the holes
  // its leaving units left, whole.
  for (int32_t unit : slots.missing) {
    const Unit& description = units[unit];
    take_slots(slots, unit, description.length);
    int64_t offset = 0;
    for (const SlotRange& piece : slots.ranges(unit)) {
      const int64_t source = description.host_first + offset;
      SlotCopy* last = plan.copies.empty() ? nullptr : &plan.copies.back();
      if (last && last->head == head && last->source_first + last->length == source &&
          last->slot_first + last->length == piece.first) {
        last->length += piece.length;
      } else {
        plan.copies.push_back({head, source, piece.first, piece.length});
      }
      offset += piece.length;
    }
    ++plan.units;
    plan.tokens += description.length;
  }
}

int64_t WorkingSet::add_copies(const LoadPlan& plan, const HostPool& pool, std::vector<KvCopy>& copies) const {
  int64_t bytes = 0;
  for (const SlotCopy& copy : plan.copies) {
    copies.push_back({pool.keys(copy.head, copy.source_first, copy.length).data,
                      pool.values(copy.head, copy.source_first, copy.length).data,
                      keys(copy.head, copy.slot_first, copy.length).data,
                      values(copy.head, copy.slot_first, copy.length).data, copy.length});
    bytes += 2 * copy.length * int64_t(pool.row_bytes());
  }
  return bytes;
}

int64_t WorkingSet::execute(Backend& backend, const LoadPlan& plan, const HostPool& pool) {
  std::vector<KvCopy> copies;
  int64_t bytes = add_copies(plan, pool, copies);
  backend.gather_kv(copies, int64_t(pool.row_bytes()));
  return bytes;
}

TensorView WorkingSet::keys(int64_t head, int64_t first, int64_t count) const {
  return head_rows(keys_view_, head, first, count);
}

TensorView WorkingSet::values(int64_t head, int64_t first, int64_t count) const {
  return head_rows(values_view_, head, first, count);
}

int64_t WorkingSet::add_spans(AttendedSpans& spans, int64_t head) const {
  // The occupied runs are the gaps between free ranges (sorted, never adjacent).
  const size_t row = keys_view_.nbytes() / size_t(std::max<int64_t>(kv_heads_ * slots_, 1));
  const char* keys = static_cast<const char*>(keys_.data()) + size_t(head * slots_) * row;
  const char* values = static_cast<const char*>(values_.data()) + size_t(head * slots_) * row;
  int64_t next = 0, tokens = 0;
  auto emit = [&](int64_t first, int64_t length) {
    spans.add(keys + size_t(first) * row, values + size_t(first) * row, int32_t(length));
    tokens += length;
  };
  for (const SlotRange& range : heads_[head].free) {
    if (range.first > next) emit(next, range.first - next);
    next = range.first + range.length;
  }
  if (next < slots_) emit(next, slots_ - next);
  return tokens;
}

}  // namespace louiskv
