#include "kv/policy_base.h"

#include <cmath>

#include "kv/kv_views.h"

namespace louiskv {

PolicyBase::PolicyBase(std::string name, const KvConfig& config, const KvShape& shape,
                       Backend& backend)
    : name_(std::move(name)), config_(config), shape_(shape), backend_(backend) {
  require(shape.layers > 0 && shape.heads > 0 && shape.kv_heads > 0 && shape.head_dim > 0,
          "shape", "layers, heads, kv_heads and head_dim must be positive");
  require(shape.heads % shape.kv_heads == 0, "shape",
          "heads (" + std::to_string(shape.heads) + ") must be a multiple of kv_heads (" +
              std::to_string(shape.kv_heads) + ")");
  require(config.budget > 0, "budget", "must be positive, got " + std::to_string(config.budget));
  require(config.sink_tokens >= 0, "sink_tokens", "must not be negative");
  require(config.window_tokens >= 0, "window_tokens", "must not be negative");
  dense_layer_.assign(size_t(shape.layers), false);
  for (int layer : config.dense_layers) {
    require(layer >= 0 && layer < shape.layers, "dense_layers",
            "layer " + std::to_string(layer) + " does not exist (the model has " +
                std::to_string(shape.layers) + " layers)");
    dense_layer_[size_t(layer)] = true;
  }
}

void PolicyBase::require(bool condition, const std::string& field,
                         const std::string& message) const {
  if (!condition) {
    throw_error(ErrorKind::invalid_input, "kv policy '" + name_ + "': " + field + " " + message);
  }
}

float PolicyBase::attention_scale() const { return 1.0f / std::sqrt(float(shape_.head_dim)); }

void PolicyBase::add_sequence(SequenceId id, int64_t capacity) {
  require(capacity > 0, "capacity", "of sequence " + std::to_string(id) + " must be positive");
  require(!sequences_.contains(id), "sequence", std::to_string(id) + " was already added");
  Sequence& sequence = sequences_[id];
  sequence.id = id;
  sequence.capacity = capacity;
  sequence.layers.resize(size_t(shape_.layers));
  for (int layer = 0; layer < shape_.layers; ++layer) {
    sequence.layers[size_t(layer)].dense = is_dense_layer(layer);
    if (!is_dense_layer(layer)) ++sequence.stats.offloaded_layers;
  }
}

void PolicyBase::remove_sequence(SequenceId id) { sequences_.erase(id); }

PolicyBase::Sequence& PolicyBase::sequence(SequenceId id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) {
    throw_error(ErrorKind::invalid_input,
                "kv policy '" + name_ + "': unknown sequence " + std::to_string(id));
  }
  return it->second;
}

const PolicyBase::Sequence& PolicyBase::sequence(SequenceId id) const {
  return const_cast<PolicyBase*>(this)->sequence(id);
}

PolicyBase::LayerEntry& PolicyBase::layer_entry(Sequence& sequence, int layer) {
  LOUISKV_CHECK(layer >= 0 && layer < shape_.layers, "layer index out of range");
  return sequence.layers[size_t(layer)];
}

void PolicyBase::check_rows(TensorView rows, int64_t tokens, const char* what) const {
  LOUISKV_CHECK(rows.rank == 3 && (tokens < 0 || rows.dim(0) == tokens) &&
                    rows.dim(1) == shape_.kv_heads && rows.dim(2) == shape_.head_dim,
                std::string(what) + " must be [tokens, kv_heads, head_dim]: got " +
                    rows.describe());
}

void PolicyBase::prefill_append(SequenceId id, int layer, TensorView k, TensorView v,
                                int64_t first_position) {
  Sequence& seq = sequence(id);
  LayerEntry& entry = layer_entry(seq, layer);
  check_rows(k, -1, "prefill keys");
  check_rows(v, k.dim(0), "prefill values");
  LOUISKV_CHECK(!entry.prefilled, "prefill_append after prefill_done");
  LOUISKV_CHECK(first_position == entry.tokens, "prefill chunks must arrive in order");
  if (entry.cache.capacity() == 0) {
    entry.cache = DenseCache(backend_, shape_.kv_heads, seq.capacity, shape_.head_dim);
  }
  entry.cache.append(backend_, k, v);
  entry.tokens = entry.cache.length();
}

DenseKv PolicyBase::prefill_view(SequenceId id, int layer) {
  LayerEntry& entry = layer_entry(sequence(id), layer);
  LOUISKV_CHECK(entry.dense || !entry.prefilled, "prefill_view of an offloaded layer after prefill_done");
  return entry.cache.view();
}

void PolicyBase::prefill_done(SequenceId id, int layer) {
  Sequence& seq = sequence(id);
  LayerEntry& entry = layer_entry(seq, layer);
  LOUISKV_CHECK(!entry.prefilled, "prefill_done called twice for one layer");
  entry.prefilled = true;
  if (entry.cache.capacity() == 0) {  // an empty prompt: the layer still needs its cache
    entry.cache = DenseCache(backend_, shape_.kv_heads, seq.capacity, shape_.head_dim);
  }
  if (entry.dense) return;
  entry.state = finish_prefill(seq, layer, entry.cache);
  entry.cache = DenseCache();  // freed unless the policy took it
}

void PolicyBase::decode_append(std::span<const SequenceId> batch, int layer, TensorView k,
                               TensorView v) {
  check_rows(k, int64_t(batch.size()), "decode keys");
  check_rows(v, int64_t(batch.size()), "decode values");
  for (size_t b = 0; b < batch.size(); ++b) {
    Sequence& seq = sequence(batch[b]);
    LayerEntry& entry = layer_entry(seq, layer);
    if (!entry.prefilled) prefill_done(seq.id, layer);
    if (entry.tokens + 1 > seq.capacity) {
      throw_error(ErrorKind::invalid_input,
                  "sequence " + std::to_string(seq.id) + ": token " +
                      std::to_string(entry.tokens + 1) + " exceeds its capacity of " +
                      std::to_string(seq.capacity) + " tokens");
    }
    if (layer == 0) ++seq.stats.decode_steps;
    TensorView key = token_rows(k, int64_t(b)), value = token_rows(v, int64_t(b));
    if (entry.dense) {
      entry.cache.append(backend_, key, value);
    } else {
      append_token(seq, layer, *entry.state, key, value);
    }
    ++entry.tokens;
  }
}

std::span<const float> PolicyBase::read_queries(TensorView q) {
  read_as_f32(backend_, q, queries_, query_staging_);
  return queries_;
}

void PolicyBase::select_layer(std::span<Sequence* const> sequences, int layer, TensorView q,
                              AttendedSpans& spans) {
  std::span<const float> queries;
  if (reads_queries()) queries = read_queries(q);
  const size_t query_size = size_t(shape_.heads * shape_.head_dim);
  for (size_t b = 0; b < sequences.size(); ++b) {
    Sequence& seq = *sequences[b];
    std::span<const float> query = queries.empty() ? queries : queries.subspan(b * query_size, query_size);
    select_rows(seq, layer, *layer_entry(seq, layer).state, query, spans);
  }
}

const AttendedSpans& PolicyBase::select(std::span<const SequenceId> batch, int layer,
                                        TensorView q) {
  LOUISKV_CHECK(q.rank == 3 && q.dim(0) == int64_t(batch.size()) && q.dim(1) == shape_.heads &&
                    q.dim(2) == shape_.head_dim,
                "queries must be [batch, heads, head_dim]: got " + q.describe());
  spans_.clear();
  batch_sequences_.clear();
  for (SequenceId id : batch) {
    Sequence& seq = sequence(id);
    LOUISKV_CHECK(layer_entry(seq, layer).prefilled, "select before the layer's first decode_append");
    batch_sequences_.push_back(&seq);
  }
  if (is_dense_layer(layer)) {
    for (Sequence* seq : batch_sequences_) {
      LayerEntry& entry = layer_entry(*seq, layer);
      for (int64_t head = 0; head < shape_.kv_heads; ++head) {
        entry.cache.add_span(spans_, head, 0, entry.cache.length());
        spans_.end_row();
      }
    }
  } else {
    select_layer(batch_sequences_, layer, q, spans_);
  }
  LOUISKV_CHECK(spans_.rows() == int(batch.size() * size_t(shape_.kv_heads)), "one row per KV head");
  for (size_t b = 0; b < batch_sequences_.size(); ++b) {
    for (int64_t head = 0; head < shape_.kv_heads; ++head) {
      batch_sequences_[b]->stats.attended_tokens += spans_.tokens_in_row(int(int64_t(b) * shape_.kv_heads + head));
    }
  }
  return spans_;
}

KvStats PolicyBase::stats(SequenceId id) const { return sequence(id).stats; }

}  // namespace louiskv
