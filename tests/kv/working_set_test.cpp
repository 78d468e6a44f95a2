// The KV memory model (src/kv/host_pool.h, working_set.h): delta loads copy only units that are
// not resident, into slots freed by units that left, and the bytes counted match the bytes that
// crossed host -> device.
#include "kv/working_set.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kv/host_pool.h"
#include "kv/kv_views.h"
#include "kv_test_backend.h"

namespace louiskv {
namespace {

using testing::TransferCountingBackend;

constexpr int64_t kv_heads = 2, head_dim = 4;

// Fills every row of the pool with a value that names it: key = 1000 * head + row (+ channel
// / 10), value = its negation.
void fill_pool(HostPool& pool, int64_t tokens) {
  int64_t first = pool.reserve(tokens);
  for (int64_t head = 0; head < kv_heads; ++head) {
    auto* keys = pool.keys(head, first, tokens).as<float>();
    auto* values = pool.values(head, first, tokens).as<float>();
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t i = 0; i < head_dim; ++i) {
        keys[t * head_dim + i] = float(1000 * head + first + t) + float(i) / 10;
        values[t * head_dim + i] = -keys[t * head_dim + i];
      }
    }
  }
}

// Units of the given lengths laid one after the other in the pool.
std::vector<Unit> lay_units(std::vector<int64_t> lengths) {
  std::vector<Unit> units;
  int64_t first = 0;
  for (int64_t length : lengths) {
    units.push_back({UnitKind::cluster, first, length});
    first += length;
  }
  return units;
}

// Checks that every resident unit's slots hold exactly its rows of the pool.
void expect_slots_hold_units(const WorkingSet& set, const HostPool& pool,
                             const std::vector<Unit>& units) {
  for (int64_t head = 0; head < kv_heads; ++head) {
    for (int32_t unit : set.resident_units(head)) {
      int64_t offset = 0;
      for (const SlotRange& range : set.placement(head, unit)) {
        const float* slot_keys = set.keys(head, range.first, range.length).as<float>();
        const float* slot_values = set.values(head, range.first, range.length).as<float>();
        const float* pool_keys =
            pool.keys(head, units[unit].host_first + offset, range.length).as<float>();
        for (int64_t i = 0; i < range.length * head_dim; ++i) {
          ASSERT_EQ(slot_keys[i], pool_keys[i]) << "head " << head << " unit " << unit;
          ASSERT_EQ(slot_values[i], -pool_keys[i]);
        }
        offset += range.length;
      }
      EXPECT_EQ(offset, units[unit].length);
    }
  }
}

// A random selection of units, in random order, whose lengths add up to at most `room`.
struct Selection {
  std::vector<int32_t> units;
  int64_t tokens = 0;
};
Selection random_selection(std::mt19937& generator, const std::vector<int64_t>& lengths, int64_t room) {
  std::vector<int32_t> order(lengths.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), generator);
  Selection selection;
  for (int32_t unit : order) {
    if (selection.tokens + lengths[unit] <= room) {
      selection.units.push_back(unit);
      selection.tokens += lengths[unit];
    }
  }
  return selection;
}

std::vector<int64_t> random_lengths(std::mt19937& generator, int count, int64_t longest) {
  std::uniform_int_distribution<int64_t> length(1, longest);
  std::vector<int64_t> lengths;
  for (int u = 0; u < count; ++u) lengths.push_back(length(generator));
  return lengths;
}

TEST(WorkingSet, DeltaLoadMovesOnlyUnitsThatAreNotResident) {
  TransferCountingBackend backend;
  HostPool pool(backend, kv_heads, 64, head_dim);
  std::vector<Unit> units = lay_units({5, 7, 3, 9, 4});
  fill_pool(pool, 28);
  WorkingSet set(backend, kv_heads, 20, head_dim);
  const int64_t row_bytes = head_dim * int64_t(sizeof(float));

  LoadPlan plan;
  std::vector<int32_t> first{0, 1, 2};
  for (int64_t head = 0; head < kv_heads; ++head) set.plan_selection(head, first, units, plan);
  backend.reset_counts();
  int64_t bytes = set.execute(backend, plan, pool);
  EXPECT_EQ(plan.units, 3 * kv_heads);
  EXPECT_EQ(plan.tokens, 15 * kv_heads);
  EXPECT_EQ(bytes, 2 * 15 * kv_heads * row_bytes);  // K and V
  EXPECT_EQ(backend.counts.host_to_device_bytes, bytes);
  expect_slots_hold_units(set, pool, units);

  // Unit 0 leaves, unit 3 arrives: only unit 3 moves, into the slots unit 0 freed and beyond.
  plan.clear();
  std::vector<int32_t> second{1, 2, 3};
  for (int64_t head = 0; head < kv_heads; ++head) set.plan_selection(head, second, units, plan);
  backend.reset_counts();
  bytes = set.execute(backend, plan, pool);
  EXPECT_EQ(plan.units, kv_heads);
  EXPECT_EQ(plan.tokens, 9 * kv_heads);
  EXPECT_EQ(bytes, 2 * 9 * kv_heads * row_bytes);
  EXPECT_EQ(backend.counts.host_to_device_bytes, bytes);
  EXPECT_FALSE(set.is_resident(0, 0));
  expect_slots_hold_units(set, pool, units);

  // The same selection again moves nothing.
  plan.clear();
  for (int64_t head = 0; head < kv_heads; ++head) set.plan_selection(head, second, units, plan);
  backend.reset_counts();
  EXPECT_EQ(set.execute(backend, plan, pool), 0);
  EXPECT_EQ(plan.units, 0);
  EXPECT_EQ(backend.counts.host_to_device_bytes, 0);
}

TEST(WorkingSet, UnitsSplitOverFreedRangesAndStayCorrect) {
  testing::TransferCountingBackend backend;
  std::mt19937 generator(5);
  const std::vector<int64_t> lengths = random_lengths(generator, 40, 12);
  std::vector<Unit> units = lay_units(lengths);
  HostPool pool(backend, kv_heads, std::accumulate(lengths.begin(), lengths.end(), int64_t(0)),
                head_dim);
  fill_pool(pool, pool.capacity());
  const int64_t slots = 37;
  WorkingSet set(backend, kv_heads, slots, head_dim);
  for (int round = 0; round < 200; ++round) {
    const auto [selected, used] = random_selection(generator, lengths, slots);
    LoadPlan plan;
    for (int64_t head = 0; head < kv_heads; ++head) {
      set.plan_selection(head, selected, units, plan);
      EXPECT_EQ(set.free_slots(head), slots - used);
      EXPECT_EQ(set.resident_units(head).size(), selected.size());
    }
    set.execute(backend, plan, pool);
    expect_slots_hold_units(set, pool, units);
  }
}

TEST(WorkingSet, SpansAreTheOccupiedRunsOfSlots) {
  testing::TransferCountingBackend backend;
  std::vector<Unit> units = lay_units({3, 3, 3});
  HostPool pool(backend, kv_heads, 9, head_dim);
  fill_pool(pool, 9);
  WorkingSet set(backend, kv_heads, 7, head_dim);
  LoadPlan plan;
  set.plan_selection(0, std::vector<int32_t>{0, 1}, units, plan);
  set.plan_selection(0, std::vector<int32_t>{1, 2}, units, plan);  // 2 takes the slots of 0
  set.execute(backend, plan, pool);
  AttendedSpans spans;
  // Slots 0-2 hold unit 2 and 3-5 unit 1: one run of 6, slot 6 free.
  EXPECT_EQ(set.add_spans(spans, 0), 6);
  spans.end_row();
  ASSERT_EQ(spans.spans.size(), 1u);
  EXPECT_EQ(spans.spans[0].length, 6);
  EXPECT_EQ(static_cast<const float*>(spans.spans[0].keys)[0], 6.0f);  // row 6 of head 0: unit 2
  EXPECT_EQ(static_cast<const float*>(spans.spans[0].values)[3 * head_dim], -3.0f);  // then unit 1
  // Unit 2 leaves: slots 3-5 remain, one span that starts at slot 3.
  plan.clear();
  set.plan_selection(0, std::vector<int32_t>{1}, units, plan);
  spans.clear();
  EXPECT_EQ(set.add_spans(spans, 0), 3);
  ASSERT_EQ(spans.spans.size(), 1u);
  EXPECT_EQ(static_cast<const float*>(spans.spans[0].keys)[0], 3.0f);
}

// Random selections against a shadow of which pool rows should be attended: the spans cover
// exactly the resident units' rows, once each, as at most one span per occupied run.
TEST(WorkingSet, SpansCoverEveryResidentRowOnce) {
  testing::TransferCountingBackend backend;
  std::mt19937 generator(11);
  const std::vector<int64_t> lengths = random_lengths(generator, 60, 9);
  std::vector<Unit> units = lay_units(lengths);
  const int64_t tokens = std::accumulate(lengths.begin(), lengths.end(), int64_t(0));
  HostPool pool(backend, kv_heads, tokens, head_dim);
  fill_pool(pool, tokens);
  const int64_t slots = 50;
  WorkingSet set(backend, kv_heads, slots, head_dim);
  for (int round = 0; round < 100; ++round) {
    // Some rounds leave slots free, so that the occupied slots are several runs.
    const auto [selected, used] = random_selection(generator, lengths, slots - int64_t(generator() % 8));
    LoadPlan plan;
    for (int64_t head = 0; head < kv_heads; ++head) set.plan_selection(head, selected, units, plan);
    set.execute(backend, plan, pool);
    for (int64_t head = 0; head < kv_heads; ++head) {
      std::vector<int64_t> expected_rows, attended_rows;
      for (int32_t unit : selected) {
        for (int64_t t = 0; t < lengths[unit]; ++t) expected_rows.push_back(units[unit].host_first + t);
      }
      AttendedSpans spans;
      ASSERT_EQ(set.add_spans(spans, head), used);
      EXPECT_LE(int64_t(spans.spans.size()), int64_t(selected.size()));
      for (const AttendSpan& span : spans.spans) {
        const auto* keys = static_cast<const float*>(span.keys);
        for (int32_t t = 0; t < span.length; ++t) {
          attended_rows.push_back(int64_t(keys[t * head_dim]) - 1000 * head);
          ASSERT_EQ(static_cast<const float*>(span.values)[t * head_dim], -keys[t * head_dim]);
        }
      }
      std::sort(expected_rows.begin(), expected_rows.end());
      std::sort(attended_rows.begin(), attended_rows.end());
      ASSERT_EQ(attended_rows, expected_rows) << "round " << round << " head " << head;
    }
  }
}

TEST(WorkingSet, NeighbouringUnitsMoveAsOneCopy) {
  testing::TransferCountingBackend backend;
  std::vector<Unit> units = lay_units({4, 2, 5, 3, 6});
  HostPool pool(backend, kv_heads, 20, head_dim);
  fill_pool(pool, 20);
  WorkingSet set(backend, kv_heads, 16, head_dim);
  LoadPlan plan;
  // Units 2, 1 and 3 follow each other in the pool (rows 4-13): one copy per head, whatever the
  // order of the selection.
  for (int64_t head = 0; head < kv_heads; ++head) {
    set.plan_selection(head, std::vector<int32_t>{3, 1, 2}, units, plan);
  }
  ASSERT_EQ(plan.copies.size(), size_t(kv_heads));
  EXPECT_EQ(plan.copies[0].source_first, 4);
  EXPECT_EQ(plan.copies[0].length, 10);
  EXPECT_EQ(plan.units, 3 * kv_heads);
  set.execute(backend, plan, pool);
  expect_slots_hold_units(set, pool, units);
}

TEST(WorkingSet, ASelectionThatDoesNotFitThrowsAndChangesNothing) {
  testing::TransferCountingBackend backend;
  std::vector<Unit> units = lay_units({4, 4, 4});
  HostPool pool(backend, kv_heads, 12, head_dim);
  fill_pool(pool, 12);
  WorkingSet set(backend, kv_heads, 8, head_dim);
  LoadPlan plan;
  set.plan_selection(0, std::vector<int32_t>{0, 1}, units, plan);
  LoadPlan too_much;
  EXPECT_THROW(set.plan_selection(0, std::vector<int32_t>{0, 1, 2}, units, too_much), Error);
  EXPECT_TRUE(too_much.copies.empty());
  EXPECT_TRUE(set.is_resident(0, 0));
  EXPECT_TRUE(set.is_resident(0, 1));
  EXPECT_FALSE(set.is_resident(0, 2));
  EXPECT_EQ(set.free_slots(0), 0);
}

TEST(HostPool, ReorderLaysRowsAndValuesOutTogether) {
  // reorder_kv, as a clustered prompt reaches the pool: rows 2..5 of the source become pool rows
  // 1..4 in the order 5, 2, 4, 3 (head 1) and unchanged (head 0).
  testing::TransferCountingBackend backend;
  HostPool source(backend, kv_heads, 10, head_dim);
  fill_pool(source, 6);
  HostPool pool(backend, kv_heads, 10, head_dim);
  pool.reserve(5);
  std::vector<int32_t> order{0, 1, 2, 3, 3, 0, 2, 1};
  backend.reorder_kv(pool.all_keys(), pool.all_values(), 1, source.all_keys(), source.all_values(), 2,
                     TensorView(order.data(), DType::i32, Device::cpu, {kv_heads, 4}));
  std::vector<float> head_one{5, 2, 4, 3};
  for (int64_t t = 0; t < 4; ++t) {
    EXPECT_EQ(pool.keys(0, 1 + t, 1).as<float>()[0], float(2 + t));
    EXPECT_EQ(pool.keys(1, 1 + t, 1).as<float>()[0], 1000 + head_one[size_t(t)]);
    EXPECT_EQ(pool.values(1, 1 + t, 1).as<float>()[0], -(1000 + head_one[size_t(t)]));
  }
}

TEST(HostPool, OverflowNamesTheCapacity) {
  testing::TransferCountingBackend backend;
  HostPool pool(backend, kv_heads, 4, head_dim);
  pool.reserve(3);
  try {
    pool.reserve(2);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::invalid_input);
    EXPECT_NE(std::string(error.what()).find("4 tokens per head"), std::string::npos);
  }
}

}  // namespace
}  // namespace louiskv
