// What the KV-retrieval ops of Backend take (DESIGN.md sections 3 and 5): a policy (kv/) decides
// and fills these on the host, one entry per (sequence, KV head) row, per copy or per unit; the
// backend carries out every entry of one call in one launch on the GPU (FlashInfer's plan/run).
//
// Pointers are to memory the backend's kernels read and write: allocate() memory, or
// allocate_host() memory (the host pool, and host-readable results such as a selection). K and V
// rows are [head_dim] in the backend's kv_dtype(); summaries and scores are f32.
#pragma once

#include <cstdint>
#include <memory>

namespace louiskv {

// How a unit's summary bounds q.k over its keys (DESIGN.md section 6).
enum class UnitBound : uint8_t {
  dot,     // q . key (the mean key or k-means centroid: LouisKV, ClusterKV)
  box,     // sum_i max(q_i * lower_i, q_i * upper_i) (Quest, ArkVale's box digest)
  sphere,  // q . centre + |q| * radius (ArkVale's sphere digest)
};

// How the query heads of one KV head's group agree on one score per unit.
enum class GroupReduction : uint8_t {
  max,           // the best head decides (Quest, ArkVale: a unit any head needs is kept)
  sum,           // heads vote by raw score (ClusterKV)
  softmax_mean,  // LouisKV: softmax over units of scale * score per head, averaged over heads,
                 // so that a head with large logits does not outvote the others
};

struct UnitScoring {
  UnitBound bound = UnitBound::dot;
  GroupReduction reduction = GroupReduction::max;
  int32_t group = 1;   // query heads per KV head
  float scale = 1.0f;  // softmax_mean only
};

// One (sequence, KV head) row of score_units and budget_fill. The units of a row are indexed
// 0..units-1 alike in every array.
struct UnitRow {
  int32_t query_row = 0;  // b: the row of q [B, Hq, D] holding the sequence's queries
  int32_t kv_head = 0;    // its query heads are kv_head * group .. kv_head * group + group - 1
  int32_t units = 0;
  const float* keys = nullptr;       // [units, D] score keys (dot) or centres (sphere)
  const float* lower = nullptr;      // [units, D] (box)
  const float* upper = nullptr;      // [units, D] (box)
  const float* radii = nullptr;      // [units] (sphere)
  const int32_t* lengths = nullptr;  // [units] tokens; a unit of 0 tokens (a k-means cluster
                                     // left empty) scores -inf and is never chosen
  float* scores = nullptr;           // [units]: written by score_units, read by budget_fill
  // budget_fill: the chosen units may hold at most `budget` tokens together. It writes the
  // chosen unit ids, best score first (ties: lower id first), to chosen[0 .. n), their scores
  // to chosen_scores, and {n, tokens} to chosen_count; chosen has room for min(units, budget).
  int32_t budget = 0;
  int32_t* chosen = nullptr;
  float* chosen_scores = nullptr;
  int32_t* chosen_count = nullptr;  // [2]
  // A gate (the LouisKV trigger): when set, the row is active only if *similarity is below the
  // call's gate threshold. An inactive row is left alone by score_units, and budget_fill
  // writes chosen_count = {-1, 0} for it. Null: always active.
  const float* similarity = nullptr;
};

// One copy of gather_kv: `rows` consecutive K rows and as many V rows.
struct KvCopy {
  const void* source_keys = nullptr;
  const void* source_values = nullptr;
  void* keys = nullptr;
  void* values = nullptr;
  int64_t rows = 0;
};

// One unit of summarize_units: its `length` keys [length, D] (kv dtype, contiguous) and where its
// summaries go ([D] f32 each, or null when not wanted).
struct UnitSummaryJob {
  const void* keys = nullptr;
  int32_t length = 0;
  float* mean = nullptr;
  float* lower = nullptr;
  float* upper = nullptr;
  float* radius = nullptr;          // the largest distance of a key from the mean, rounded up
  int32_t* length_out = nullptr;    // receives `length`: the device's copy of the unit's length
};

// A point in the work queued on a backend's side stream (Backend::end_side_work). Copies share
// the point; an empty mark is always done.
struct WorkMark {
  std::shared_ptr<void> handle;
};

}  // namespace louiskv
