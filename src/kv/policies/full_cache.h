// `full`: every token of every layer stays attended; the reference all other policies are
// measured against. K and V live in one dense [kv_heads, capacity, head_dim] array per
// (sequence, layer) in the backend's memory.
#pragma once

#include <map>
#include <vector>

#include "kv/kv_policy.h"

namespace louiskv {

class FullCachePolicy final : public KvPolicy {
 public:
  FullCachePolicy(const KvShape& shape, Backend& backend);

  std::string_view name() const override { return "full"; }
  void add_sequence(SequenceId id, int64_t capacity) override;
  void remove_sequence(SequenceId id) override;
  void prefill_append(SequenceId id, int layer, TensorView k, TensorView v, int64_t first_position) override;
  DenseKv prefill_view(SequenceId id, int layer) override;
  void prefill_done(SequenceId id, int layer) override;
  void decode_append(std::span<const SequenceId> batch, int layer, TensorView k, TensorView v) override;
  const AttendedSpans& select(std::span<const SequenceId> batch, int layer, TensorView q) override;
  KvStats stats(SequenceId id) const override;

 private:
  struct LayerCache {
    Buffer keys;    // [kv_heads, capacity, head_dim]
    Buffer values;  // [kv_heads, capacity, head_dim]
    int64_t length = 0;
  };
  struct Sequence {
    int64_t capacity = 0;
    std::vector<LayerCache> layers;
    KvStats stats;
  };

  Sequence& sequence(SequenceId id);
  TensorView keys_view(const Sequence& sequence, int layer) const;
  TensorView values_view(const Sequence& sequence, int layer) const;

  KvShape shape_;
  Backend& backend_;
  std::map<SequenceId, Sequence> sequences_;
  AttendedSpans spans_;
};

}  // namespace louiskv
