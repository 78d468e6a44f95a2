// WorkingSet: the device-side slots of one layer of one sequence (DESIGN.md section 3). Each KV
// head has `slots` token slots, K and V [kv_heads, slots, head_dim] on the device, and a residency
// map from unit to the slot ranges it occupies. Units differ in length and leave in any order,
// so a unit may be split over several free ranges rather than wait for a contiguous one.
//
// A new selection is a delta load, planned then run (plan/run as in FlashInfer): units that left
// the selection free their slots, and only units that are not resident are copied from the host
// pool. The plan is a list of contiguous copies, which gather_kv runs in one launch (on the GPU,
// one kernel reading the pinned pool in place), batched over every sequence of a step.
//
// Attention reads the occupied slots, not the units (it does not care about the order of keys):
// one span per maximal run of occupied slots, so a working set filled in one delta load is a few
// spans per head however many units it holds.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "backend/attended_spans.h"
#include "backend/backend.h"
#include "kv/host_pool.h"
#include "kv/unit.h"

namespace louiskv {

struct SlotRange {
  int64_t first = 0;
  int64_t length = 0;
};

// One contiguous copy host pool -> working set.
struct SlotCopy {
  int64_t head = 0;
  int64_t source_first = 0;  // host pool row
  int64_t slot_first = 0;
  int64_t length = 0;
};

struct LoadPlan {
  std::vector<SlotCopy> copies;
  int64_t units = 0;   // units that were not resident
  int64_t tokens = 0;  // their tokens

  void clear() {
    copies.clear();
    units = tokens = 0;
  }
};

class WorkingSet {
 public:
  WorkingSet() = default;
  WorkingSet(Backend& backend, int64_t kv_heads, int64_t slots, int64_t head_dim);

  int64_t slots() const { return slots_; }
  int64_t free_slots(int64_t head) const;
  bool is_resident(int64_t head, int32_t unit) const;
  std::span<const SlotRange> placement(int64_t head, int32_t unit) const;
  std::span<const int32_t> resident_units(int64_t head) const { return heads_[head].resident; }

  // Gives `unit` `length` free slots (the smallest free range that holds it; split over free
  // ranges from the lowest slot only when none does) and returns them; the caller fills them.
  // The unit must not be resident.
  std::span<const SlotRange> place(int64_t head, int32_t unit, int64_t length);
  void release(int64_t head, int32_t unit);

  // Makes the resident units of `head` exactly `selected`: releases the others and places the
  // missing ones in pool order as place() does, adding their copies to `plan`; units that follow
  // each other in the pool and in the slots share one copy. `units` is the head's unit table.
  // Different heads may be planned at the same time from several threads. A selection that does
  // not fit throws and changes nothing.
  void plan_selection(int64_t head, std::span<const int32_t> selected,
                      std::span<const Unit> units, LoadPlan& plan);
  // The copies of `plan` from `pool`, as gather_kv runs them, appended to `copies`; returns the
  // bytes they move (K and V).
  int64_t add_copies(const LoadPlan& plan, const HostPool& pool, std::vector<KvCopy>& copies) const;
  // Runs the copies of `plan` from `pool` in one gather; returns the bytes moved (K and V).
  int64_t execute(Backend& backend, const LoadPlan& plan, const HostPool& pool);

  // [count, head_dim] device views of slots [first, first + count) of one head.
  TensorView keys(int64_t head, int64_t first, int64_t count) const;
  TensorView values(int64_t head, int64_t first, int64_t count) const;
  // One span per maximal run of occupied slots of `head` (every resident unit, in slot order);
  // returns the tokens they cover.
  int64_t add_spans(AttendedSpans& spans, int64_t head) const;

  size_t bytes() const { return keys_.bytes() + values_.bytes(); }

 private:
  struct HeadSlots {
    // Where a unit sits: one range inline, 16 bytes by unit id, so that planning a step touches
    // one small flat entry per unit (a vector per unit cost a cache miss or two each, with every
    // layer's units in play); the rare unit split over several free ranges keeps its pieces in
    // `split` and length -1 inline.
    std::span<const SlotRange> ranges(int32_t unit) const {
      const SlotRange& inline_range = placement[size_t(unit)];
      if (inline_range.length > 0) return {&inline_range, 1};
      if (inline_range.length == 0) return {};
      return split.at(unit);
    }
    std::vector<SlotRange> free;       // sorted by first, never adjacent
    std::vector<SlotRange> placement;  // by unit id; length 0: not resident, -1: split
    std::map<int32_t, std::vector<SlotRange>> split;
    std::vector<int32_t> resident;     // in no particular order
    std::vector<int32_t> resident_at;  // by unit id: its index in `resident`, or -1 (same size as placement)
    // plan_selection's scratch, kept so that a step allocates nothing: `wanted[unit] == stamp`
    // marks the units of the current call.
    std::vector<uint32_t> wanted;
    uint32_t stamp = 0;
    std::vector<SlotRange> freed, merged;
    std::vector<int32_t> missing;
  };
  // Gives a unit that is not resident `length` free slots (there are enough): best fit, else
  // split from the lowest slot; records it as resident.
  void take_slots(HeadSlots& slots, int32_t unit, int64_t length);
  // Room in the residency map for units [0, units).
  void grow_map(HeadSlots& slots, size_t units);
  // Moves a resident unit's slots to `slots.freed` (merged into the free list by merge_freed)
  // and drops it from the residency map.
  void free_unit(HeadSlots& slots, int32_t unit);
  // Drops a unit from the residency map (its slots must already be accounted for).
  void forget_resident(HeadSlots& slots, int32_t unit);
  // Merges `slots.freed` into the free list, which stays sorted and never adjacent.
  void merge_freed(HeadSlots& slots);

  Buffer keys_, values_;
  TensorView keys_view_, values_view_;
  int64_t kv_heads_ = 0, slots_ = 0, head_dim_ = 0;
  std::vector<HeadSlots> heads_;
};

}  // namespace louiskv
