// AttendedSpans: what each (sequence, KV head) attends to in one decode step, in CSR form.
// A KV policy builds it (kv/ decides); sparse decode attention reads it (backend/ computes).
//
//   indptr  [batch * kv_heads + 1]  spans of row r = sequence b, KV head h (r = b * kv_heads + h)
//                                   are spans[indptr[r] .. indptr[r + 1])
//   spans   [indptr.back()]         each: `length` consecutive K rows at `keys` and V rows at
//                                   `values`, [length, head_dim] in the backend's KV dtype, on the
//                                   backend's device (or host memory it can read)
#pragma once

#include <cstdint>
#include <vector>

namespace louiskv {

struct AttendSpan {
  const void* keys = nullptr;
  const void* values = nullptr;
  int32_t length = 0;
};

struct AttendedSpans {
  std::vector<AttendSpan> spans;
  std::vector<int32_t> indptr{0};

  void clear() {
    spans.clear();
    indptr.assign(1, 0);
  }
  // The spans added since the last end_row() form the row that end_row() closes.
  void add(const void* keys, const void* values, int32_t length) {
    if (length > 0) spans.push_back({keys, values, length});
  }
  void end_row() { indptr.push_back(int32_t(spans.size())); }
  int rows() const { return int(indptr.size()) - 1; }
  int64_t tokens_in_row(int row) const {
    int64_t total = 0;
    for (int32_t i = indptr[row]; i < indptr[row + 1]; ++i) total += spans[i].length;
    return total;
  }
};

}  // namespace louiskv
