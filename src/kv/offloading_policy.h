// OffloadingPolicy: the retrieval policies that keep the KV in the host pool and attend a working
// set on the device (ArkVale, ClusterKV, LouisKV; DESIGN.md sections 3, 5 and 6). Per offloaded
// layer of a sequence:
//
//   sinks        the first sink_tokens prompt tokens, on the device, always attended
//   host pool    every other token, in unit order (prompt units, then generated units)
//   window       the newest generated tokens (DecodeWindow), always attended; its oldest segment
//                moves to the host pool, as new units, when the window is full
//   working set  slots for the selected units, filled by delta loads
//
// A step attends sinks + window + the selected units, never more than `budget` tokens per KV
// head: a selection fills budget - sinks - window. When a layer keeps its last selection (LouisKV
// between boundaries) and the window grows into the budget, the lowest-scored selected units are
// dropped (no scoring, no copy).
//
// A policy chooses how tokens become units (pages, k-means clusters, segments), how units are
// scored, and when to re-select.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kv/decode_window.h"
#include "kv/host_pool.h"
#include "kv/kmeans.h"
#include "kv/policy_base.h"
#include "kv/unit.h"
#include "kv/working_set.h"

namespace louiskv {

class OffloadingPolicy : public PolicyBase {
 protected:
  // The units of one KV head and their summaries, indexed alike.
  struct HeadUnits {
    std::vector<Unit> units;
    std::vector<int64_t> lengths;
    std::vector<float> mean_keys;     // [units, head_dim]
    std::vector<float> lower, upper;  // [units, head_dim], when the policy scores boxes
    std::vector<float> radii;         // [units], around the mean key, when it scores spheres
    std::vector<int32_t> selected;    // attended units, all resident in the working set
    std::vector<float> selected_scores;
    int64_t selected_tokens = 0;
  };
  struct OffloadedLayer : LayerState {
    DenseCache sinks;
    HostPool pool;
    WorkingSet working_set;
    DecodeWindow window;
    std::vector<HeadUnits> heads;
    bool has_selection = false;
    std::vector<float> previous_query;  // [heads, head_dim], for a trigger
  };
  // How a run of tokens [count] of one head becomes units: the token at order[i] goes to row i,
  // and the rows form units of `lengths`, in order.
  struct Partition {
    UnitKind kind = UnitKind::page;
    std::vector<int32_t> order;
    std::vector<int64_t> lengths;
  };
  struct Summaries {
    bool box = false;
    bool sphere = false;
  };

  OffloadingPolicy(std::string name, const KvConfig& config, const KvShape& shape,
                   Backend& backend);

  // Prompt tokens after the sinks, keys fp32 [count, head_dim].
  virtual Partition partition_prompt(int layer, int64_t head, std::span<const float> keys,
                                     int64_t count) = 0;
  // A segment of generated tokens leaving the window.
  virtual Partition partition_generated(int layer, int64_t head, std::span<const float> keys,
                                        int64_t count) = 0;
  // The open window segment closes at this length.
  virtual int64_t segment_close_length() const = 0;
  virtual Summaries summaries() const { return {}; }
  // scores[u] of every unit of `units` for the group's queries [group, head_dim].
  virtual void score_units(const HeadUnits& units, std::span<const float> queries,
                           std::span<float> scores) = 0;
  // Called on every decode step with the sequence's queries [heads, head_dim]; returns whether
  // to re-select (the first step re-selects whatever it returns).
  virtual bool should_reselect(OffloadedLayer& /*layer*/, std::span<const float> /*query*/) {
    return true;
  }
  // Whether a segment leaving the window stays attended (copied device to device into the
  // working set) while the budget has room, for policies that may keep a selection for many
  // steps and would otherwise lose the most recent context until they re-select.
  virtual bool keeps_leaving_segments() const { return false; }

  // Helpers for partitions.
  static Partition contiguous_runs(UnitKind kind, int64_t count, int64_t run_length);
  static Partition clusters_of(const KmeansResult& result, int64_t count);

 private:
  std::unique_ptr<LayerState> finish_prefill(Sequence& sequence, int layer,
                                             DenseCache& prompt) override;
  void append_token(Sequence& sequence, int layer, LayerState& state, TensorView k,
                    TensorView v) override;
  void select_rows(Sequence& sequence, int layer, LayerState& state,
                   std::span<const float> query, AttendedSpans& spans) override;

  // Turns pool rows [first, first + count) of one head into units; returns the first new id.
  int32_t add_units(OffloadedLayer& layer_state, int layer, int64_t head, int64_t first,
                    int64_t count, bool prompt);
  void offload_oldest_segment(OffloadedLayer& layer_state, int layer);
  void reselect(Sequence& sequence, OffloadedLayer& layer_state, std::span<const float> query);
  void trim_to_budget(OffloadedLayer& layer_state);

  std::vector<float> keys_, scores_;
};

}  // namespace louiskv
