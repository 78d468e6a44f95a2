// OffloadingPolicy: the retrieval policies that keep the KV in the host pool and attend a working
// set on the device (ArkVale, ClusterKV, LouisKV; DESIGN.md sections 3, 5 and 6). Per offloaded
// layer of a sequence:
//
//   sinks        the first sink_tokens prompt tokens, on the device, always attended
//   host pool    every other token, in unit order (prompt units, then generated units)
//   window       the newest generated tokens (DecodeWindow), always attended; its oldest segment
//                moves to the host pool, as new units, when the window is full
//   working set  slots for the selected units, filled by delta loads
//   unit table   each unit's summaries (score key, box, radius) and length, on the device
//
// A step attends sinks + window + the selected units, never more than `budget` tokens per KV
// head: a selection fills budget - sinks - window. When a layer keeps its last selection (LouisKV
// between boundaries) and the window grows into the budget, the lowest-scored selected units are
// dropped (no scoring, no copy).
//
// The data path runs on the backend, batched per layer over the sequences of a step: the trigger's
// cosine, unit scoring and budget fill are one launch each; the host then waits once for the
// choice (it plans slots and spans), and one gather brings every missing unit of the step from
// the pool. A prompt is clustered on the backend's side stream, overlapping the next layers.
//
// A policy chooses how tokens become units (pages, k-means clusters, segments), how units are
// scored, and when to re-select.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "kv/decode_window.h"
#include "kv/host_pool.h"
#include "kv/policy_base.h"
#include "kv/unit.h"
#include "kv/unit_table.h"
#include "kv/working_set.h"

namespace louiskv {

class KmeansRun;

class OffloadingPolicy : public PolicyBase {
 protected:
  // The units of one KV head (their summaries live in the layer's UnitTable, indexed alike).
  struct HeadUnits {
    std::vector<Unit> units;
    std::vector<int32_t> selected;  // attended units, all resident in the working set
    std::vector<float> selected_scores;
    int64_t selected_tokens = 0;
  };
  struct PendingClusters;
  struct OffloadedLayer : LayerState {
    OffloadedLayer();
    ~OffloadedLayer() override;
    DenseCache sinks;
    HostPool pool;
    WorkingSet working_set;
    DecodeWindow window;
    std::vector<HeadUnits> heads;
    UnitTable table;
    Buffer leaving_keys, leaving_values;  // [kv_heads, window, head_dim]: a segment leaving the window
    Buffer previous_query;                // [heads, head_dim] act dtype, for a trigger
    bool has_selection = false;
    std::unique_ptr<PendingClusters> pending;  // the prompt's k-means, still on the side stream
  };
  // How a run of tokens becomes units: runs of `run_tokens` in order (the last may be shorter;
  // 0: one unit of the whole run), or, when cluster_tokens > 0, k-means clusters of about that
  // many tokens each, initialised from `seed`.
  struct Grouping {
    UnitKind kind = UnitKind::page;
    int64_t run_tokens = 0;
    int64_t cluster_tokens = 0;
    uint64_t seed = 0;
  };

  OffloadingPolicy(std::string name, const KvConfig& config, const KvShape& shape,
                   Backend& backend);

  // Prompt tokens after the sinks.
  virtual Grouping prompt_grouping(int layer) const = 0;
  // A segment of generated tokens leaving the window.
  virtual Grouping generated_grouping(int layer) const = 0;
  // The open window segment closes at this length.
  virtual int64_t segment_close_length() const = 0;
  // The summaries units are scored by, and how (UnitScoring::group is filled in here).
  virtual UnitTable::Needs summaries() const = 0;
  virtual UnitScoring scoring() const = 0;
  // A trigger: a layer of a sequence re-selects only when the mean over query heads of
  // cos(q_t, q_{t-1}) falls below this (LouisKV); none: every step. The first step always selects.
  virtual std::optional<float> trigger_threshold() const { return std::nullopt; }
  // The trigger fired for this layer (a semantic boundary), just before it re-selects.
  virtual void on_boundary(OffloadedLayer& /*layer*/) {}
  // Whether a segment leaving the window stays attended (copied device to device into the
  // working set) while the budget has room, for policies that may keep a selection for many
  // steps and would otherwise lose the most recent context until they re-select.
  virtual bool keeps_leaving_segments() const { return false; }

 private:
  std::unique_ptr<LayerState> finish_prefill(Sequence& sequence, int layer,
                                             DenseCache& prompt) override;
  void append_token(Sequence& sequence, int layer, LayerState& state, TensorView k,
                    TensorView v) override;
  void select_rows(Sequence& sequence, int layer, LayerState& state,
                   std::span<const float> query, AttendedSpans& spans) override;
  void select_layer(std::span<Sequence* const> sequences, int layer, TensorView q,
                    AttendedSpans& spans) override;

  // Rows [source_first, source_first + count) of source K/V [kv_heads, capacity, head_dim] go to
  // pool rows [pool_first, ...) as units of `grouping`'s runs; returns the first new unit.
  int32_t add_run_units(OffloadedLayer& layer_state, const Grouping& grouping, TensorView keys,
                        TensorView values, int64_t source_first, int64_t pool_first, int64_t count);
  // The same as k-means clusters: queued on the side stream when `pending` is given (the units
  // appear when it completes), else run now. Returns the run.
  std::unique_ptr<KmeansRun> cluster_units(OffloadedLayer& layer_state, const Grouping& grouping,
                                           TensorView keys, TensorView values, int64_t source_first,
                                           int64_t pool_first, int64_t count, bool side_stream);
  void add_cluster_units(OffloadedLayer& layer_state, const KmeansRun& run, int64_t pool_first);
  // Finishes the prompt's clustering of a layer: waits for it when `wait`, else only if done.
  // Returns whether the host waited.
  bool complete_pending(OffloadedLayer& layer_state, bool wait);
  void offload_oldest_segment(Sequence& sequence, OffloadedLayer& layer_state, int layer);
  // Takes budget_fill's choice for one head and plans its delta load.
  void plan_head(OffloadedLayer& layer_state, int64_t head, LoadPlan& plan);
  void trim_to_budget(OffloadedLayer& layer_state);
  void add_spans(const OffloadedLayer& layer_state, AttendedSpans& spans) const;
  int64_t row_bytes() const;

  std::vector<OffloadedLayer*> layers_;
  std::vector<UnitRow> rows_;
  std::vector<KvCopy> copies_;
  std::vector<UnitSummaryJob> jobs_;
  std::vector<void*> previous_;
  std::vector<bool> fired_;
  std::vector<LoadPlan> plans_;                    // by (sequence, KV head) row of a step
  std::vector<std::vector<KvCopy>> row_copies_;     // the same rows' copies, for one gather
  std::vector<int64_t> row_bytes_moved_;
  Buffer similarity_;  // f32 [batch], host memory the trigger's cosine is written to
};

}  // namespace louiskv
