#include "kv/policies/full_cache.h"

namespace louiskv {

FullCachePolicy::FullCachePolicy(const KvShape& shape, Backend& backend) : shape_(shape), backend_(backend) {}

void FullCachePolicy::add_sequence(SequenceId id, int64_t capacity) {
  LOUISKV_CHECK(!sequences_.contains(id), "sequence added twice");
  Sequence sequence;
  sequence.capacity = capacity;
  const size_t bytes = size_t(shape_.kv_heads * capacity * shape_.head_dim) * dtype_size(backend_.kv_dtype());
  for (int64_t layer = 0; layer < shape_.layers; ++layer) {
    sequence.layers.push_back({backend_.allocate(bytes), backend_.allocate(bytes), 0});
  }
  sequences_.emplace(id, std::move(sequence));
}

void FullCachePolicy::remove_sequence(SequenceId id) { sequences_.erase(id); }

FullCachePolicy::Sequence& FullCachePolicy::sequence(SequenceId id) {
  auto found = sequences_.find(id);
  LOUISKV_CHECK(found != sequences_.end(), "unknown sequence " + std::to_string(id));
  return found->second;
}

TensorView FullCachePolicy::keys_view(const Sequence& sequence, int layer) const {
  return sequence.layers[layer].keys.view(backend_.kv_dtype(), {shape_.kv_heads, sequence.capacity, shape_.head_dim});
}

TensorView FullCachePolicy::values_view(const Sequence& sequence, int layer) const {
  return sequence.layers[layer].values.view(backend_.kv_dtype(), {shape_.kv_heads, sequence.capacity, shape_.head_dim});
}

void FullCachePolicy::prefill_append(SequenceId id, int layer, TensorView k, TensorView v, int64_t first_position) {
  Sequence& seq = sequence(id);
  LayerCache& cache = seq.layers[layer];
  LOUISKV_CHECK(first_position == cache.length, "prefill chunks must arrive in order");
  if (first_position + k.dim(0) > seq.capacity) {
    throw_error(ErrorKind::invalid_input, "sequence of " + std::to_string(first_position + k.dim(0)) +
                                              " tokens exceeds its reserved capacity of " + std::to_string(seq.capacity));
  }
  backend_.write_kv(keys_view(seq, layer), k, first_position);
  backend_.write_kv(values_view(seq, layer), v, first_position);
  cache.length = first_position + k.dim(0);
}

DenseKv FullCachePolicy::prefill_view(SequenceId id, int layer) {
  Sequence& seq = sequence(id);
  return {keys_view(seq, layer), values_view(seq, layer), seq.layers[layer].length};
}

void FullCachePolicy::prefill_done(SequenceId /*id*/, int /*layer*/) {}

void FullCachePolicy::decode_append(std::span<const SequenceId> batch, int layer, TensorView k, TensorView v) {
  for (size_t b = 0; b < batch.size(); ++b) {
    Sequence& seq = sequence(batch[b]);
    LayerCache& cache = seq.layers[layer];
    if (cache.length + 1 > seq.capacity) {
      throw_error(ErrorKind::invalid_input, "sequence exceeds its reserved capacity of " + std::to_string(seq.capacity) + " tokens");
    }
    backend_.write_kv(keys_view(seq, layer), k.rows(int64_t(b), 1), cache.length);
    backend_.write_kv(values_view(seq, layer), v.rows(int64_t(b), 1), cache.length);
    cache.length += 1;
    if (layer == 0) seq.stats.decode_steps += 1;
  }
}

const AttendedSpans& FullCachePolicy::select(std::span<const SequenceId> batch, int layer, TensorView /*q*/) {
  spans_.clear();
  const size_t row_bytes = size_t(shape_.head_dim) * dtype_size(backend_.kv_dtype());
  for (SequenceId id : batch) {
    Sequence& seq = sequence(id);
    const LayerCache& cache = seq.layers[layer];
    for (int64_t h = 0; h < shape_.kv_heads; ++h) {
      const size_t offset = size_t(h * seq.capacity) * row_bytes;
      spans_.add(static_cast<const char*>(cache.keys.data()) + offset, static_cast<const char*>(cache.values.data()) + offset,
                 int32_t(cache.length));
      spans_.end_row();
      seq.stats.attended_tokens += cache.length;
    }
  }
  return spans_;
}

KvStats FullCachePolicy::stats(SequenceId id) const {
  auto found = sequences_.find(id);
  return found == sequences_.end() ? KvStats{} : found->second.stats;
}

}  // namespace louiskv
