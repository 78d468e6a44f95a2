// PolicyBase: what every KV policy shares. It owns the sequences and, per layer, the prefill
// staging (a DenseCache that prefill attention reads), keeps the layers of
// KvConfig::dense_layers dense for good, checks inputs and capacities, and counts the stats of
// DESIGN.md section 8. A policy supplies what happens to an offloaded layer: how it is stored once
// its prompt is complete, how a decoded token is appended, and what each KV head attends to.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "kv/dense_cache.h"
#include "kv/kv_policy.h"

namespace louiskv {

using PolicyClock = std::chrono::steady_clock;
inline double milliseconds_since(PolicyClock::time_point start) {
  return std::chrono::duration<double, std::milli>(PolicyClock::now() - start).count();
}

class PolicyBase : public KvPolicy {
 public:
  std::string_view name() const override { return name_; }
  void add_sequence(SequenceId id, int64_t capacity) override;
  void remove_sequence(SequenceId id) override;
  void prefill_append(SequenceId id, int layer, TensorView k, TensorView v,
                      int64_t first_position) override;
  DenseKv prefill_view(SequenceId id, int layer) override;
  void prefill_done(SequenceId id, int layer) override;
  void decode_append(std::span<const SequenceId> batch, int layer, TensorView k,
                     TensorView v) override;
  const AttendedSpans& select(std::span<const SequenceId> batch, int layer,
                              TensorView q) override;
  KvStats stats(SequenceId id) const override;

 protected:
  // What a policy keeps of one offloaded layer of one sequence after its prefill.
  struct LayerState {
    virtual ~LayerState() = default;
  };
  struct LayerEntry {
    bool dense = false;      // a layer of dense_layers: full attention, never offloaded
    bool prefilled = false;  // prefill_done was called
    int64_t tokens = 0;      // prompt plus generated tokens so far
    DenseCache cache;        // the prefill staging; the whole cache of a dense layer
    std::unique_ptr<LayerState> state;
  };
  struct Sequence {
    SequenceId id = 0;
    int64_t capacity = 0;
    KvStats stats;
    std::vector<LayerEntry> layers;
  };

  PolicyBase(std::string name, const KvConfig& config, const KvShape& shape, Backend& backend);

  // The prompt of an offloaded layer is complete in `prompt` (positions [0, prompt.length())):
  // build this layer's state. The policy may take `prompt` (std::move) or let it be freed.
  virtual std::unique_ptr<LayerState> finish_prefill(Sequence& sequence, int layer,
                                                     DenseCache& prompt) = 0;
  // One decoded token of an offloaded layer, k, v [1, kv_heads, head_dim].
  virtual void append_token(Sequence& sequence, int layer, LayerState& state, TensorView k,
                            TensorView v) = 0;
  // Adds the spans of every KV head of one sequence (one row each, closed with end_row()).
  // `query` is the sequence's q as fp32 [heads, head_dim], empty when reads_queries() is false.
  virtual void select_rows(Sequence& sequence, int layer, LayerState& state,
                           std::span<const float> query, AttendedSpans& spans) = 0;
  // Whether select_rows needs the queries (reading them may cost a device -> host copy).
  virtual bool reads_queries() const { return true; }
  // Adds the rows of every sequence of a decode step for one offloaded layer, sequence by
  // sequence (rows b * kv_heads .. b * kv_heads + kv_heads - 1 for sequences[b]); q [B, Hq, D] is
  // the decoder's. The default reads q to the host and calls select_rows per sequence; a policy
  // that scores on the device overrides it to do the whole batch in a few launches.
  virtual void select_layer(std::span<Sequence* const> sequences, int layer, TensorView q,
                            AttendedSpans& spans);

  const KvConfig& config() const { return config_; }
  const KvShape& shape() const { return shape_; }
  Backend& backend() const { return backend_; }
  int64_t group_size() const { return shape_.heads / shape_.kv_heads; }
  // The attention scale the decoder uses (1/sqrt(head_dim), Llama and Qwen alike).
  float attention_scale() const;
  bool is_dense_layer(int layer) const { return dense_layer_[size_t(layer)]; }
  Sequence& sequence(SequenceId id);
  const Sequence& sequence(SequenceId id) const;
  LayerEntry& layer_entry(Sequence& sequence, int layer);
  // Reads q [B, Hq, D] as fp32 into a buffer that stays valid until the next call.
  std::span<const float> read_queries(TensorView q);
  // Throws louiskv::Error (invalid_input) naming `field` unless `condition` holds.
  void require(bool condition, const std::string& field, const std::string& message) const;

 private:
  void check_rows(TensorView rows, int64_t tokens, const char* what) const;

  std::string name_;
  KvConfig config_;
  KvShape shape_;
  Backend& backend_;
  std::vector<bool> dense_layer_;
  std::unordered_map<SequenceId, Sequence> sequences_;
  AttendedSpans spans_;
  std::vector<Sequence*> batch_sequences_;
  std::vector<float> queries_;
  Buffer query_staging_;
};

}  // namespace louiskv
