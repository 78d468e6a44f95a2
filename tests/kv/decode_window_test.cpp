// The decode window (src/kv/decode_window.h): segments open, close at boundaries, leave oldest
// first, and the ring's spans hold the newest tokens across the wrap.
#include "kv/decode_window.h"

#include <vector>

#include <gtest/gtest.h>

#include "kv_test_backend.h"
#include "policy_driver.h"

namespace louiskv {
namespace {

using testing::host_view;

// Appends token `value` (every channel of K = value, of V = -value) to a one-head window.
void append(Backend& backend, DecodeWindow& window, float value) {
  std::vector<float> k(2, value), v(2, -value);
  window.append(backend, host_view(k, {1, 1, 2}), host_view(v, {1, 1, 2}));
}

std::vector<float> window_keys(const DecodeWindow& window) {
  AttendedSpans spans;
  window.add_spans(spans, 0);
  spans.end_row();
  std::vector<float> keys;
  for (const testing::AttendedRow& row : testing::attended_rows(spans, 0, 2)) {
    EXPECT_EQ(row.value[0], -row.key[0]);
    keys.push_back(row.key[0]);
  }
  return keys;
}

TEST(DecodeWindow, SegmentsCloseAtBoundariesAndLeaveOldestFirst) {
  testing::TransferCountingBackend backend;
  DecodeWindow window(backend, 1, 5, 2);
  append(backend, window, 0);
  append(backend, window, 1);
  append(backend, window, 2);
  window.close_before_newest();  // boundary between tokens 1 and 2
  ASSERT_EQ(window.segments().size(), 2u);
  EXPECT_EQ(window.segments()[0].length, 2);
  EXPECT_TRUE(window.segments()[0].closed);
  EXPECT_EQ(window.open_length(), 1);
  append(backend, window, 3);
  append(backend, window, 4);
  EXPECT_TRUE(window.full());
  WindowSegment oldest = window.pop_oldest();
  EXPECT_EQ(oldest.first, 0);
  EXPECT_EQ(oldest.length, 2);
  EXPECT_EQ(window.occupancy(), 3);
  append(backend, window, 5);  // wraps into slot 0
  append(backend, window, 6);  // slot 1
  EXPECT_EQ(window_keys(window), (std::vector<float>{2, 3, 4, 5, 6}));
  EXPECT_EQ(window.ring_ranges(2, 5).size(), 2u);
  // Popping the open segment closes it.
  WindowSegment rest = window.pop_oldest();
  EXPECT_EQ(rest.length, 5);
  EXPECT_EQ(window.occupancy(), 0);
  EXPECT_TRUE(window_keys(window).empty());
}

TEST(DecodeWindow, BoundaryWithALoneNewestTokenChangesNothing) {
  testing::TransferCountingBackend backend;
  DecodeWindow window(backend, 1, 4, 2);
  append(backend, window, 0);
  window.close_before_newest();
  ASSERT_EQ(window.segments().size(), 1u);
  EXPECT_FALSE(window.segments()[0].closed);
  window.close_open_segment();
  append(backend, window, 1);
  window.close_before_newest();
  EXPECT_EQ(window.segments().size(), 2u);
  EXPECT_EQ(window.open_length(), 1);
}

}  // namespace
}  // namespace louiskv
