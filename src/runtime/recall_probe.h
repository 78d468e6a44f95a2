// RecallProbe: a KvPolicy that wraps another and measures attn_recall (DESIGN.md section 8): at
// every decode step and layer, the share of the full attention probability mass that falls on
// the tokens the wrapped policy attends to. A shadow full cache, fed the same keys and values,
// gives the full attention; the mass on the attended set is exp(lse_attended - lse_full).
// It changes nothing about what the wrapped policy computes.
#pragma once

#include <memory>
#include <vector>

#include "kv/kv_policy.h"

namespace louiskv {

class RecallProbe final : public KvPolicy {
 public:
  RecallProbe(std::unique_ptr<KvPolicy> inner, const KvShape& shape, Backend& backend);

  std::string_view name() const override { return inner_->name(); }
  void add_sequence(SequenceId id, int64_t capacity) override;
  void remove_sequence(SequenceId id) override;
  void prefill_append(SequenceId id, int layer, TensorView k, TensorView v, int64_t first_position) override;
  DenseKv prefill_view(SequenceId id, int layer) override { return inner_->prefill_view(id, layer); }
  void prefill_done(SequenceId id, int layer) override;
  void decode_append(std::span<const SequenceId> batch, int layer, TensorView k, TensorView v) override;
  const AttendedSpans& select(std::span<const SequenceId> batch, int layer, TensorView q) override;
  bool wants_attention_lse() const override { return inner_->wants_attention_lse(); }
  void observe_attention(std::span<const SequenceId> batch, int layer, TensorView q, TensorView lse) override {
    inner_->observe_attention(batch, layer, q, lse);
  }
  KvStats stats(SequenceId id) const override { return inner_->stats(id); }

  // Mean attn_recall of each layer over the steps seen so far, and over all layers.
  std::vector<double> recall_per_layer() const;
  double recall() const;

 private:
  void attention_lse(const AttendedSpans& spans, TensorView q, std::vector<float>& host_lse);

  std::unique_ptr<KvPolicy> inner_;
  std::unique_ptr<KvPolicy> shadow_;
  KvShape shape_;
  Backend& backend_;
  Buffer output_, lse_;
  std::vector<float> attended_lse_, full_lse_;
  std::vector<double> recall_sum_;
  std::vector<int64_t> recall_count_;
};

}  // namespace louiskv
