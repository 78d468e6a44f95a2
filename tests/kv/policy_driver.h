// PolicyDriver: drives a KvPolicy the way the decoder does (prefill layer by layer in chunks,
// then per decode step and layer: decode_append, select), with synthetic random K/V/q in f32
// host memory, and remembers every K/V row so that tests can check what the spans point at.
#pragma once

#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <span>
#include <vector>

#include <gtest/gtest.h>

#include "kv/kv_policy.h"

namespace louiskv::testing {

inline TensorView host_view(std::vector<float>& data, std::initializer_list<int64_t> dims) {
  return TensorView(data.data(), DType::f32, Device::cpu, dims);
}

// One attended token: its K and V rows.
struct AttendedRow {
  std::vector<float> key, value;
};

inline std::vector<AttendedRow> attended_rows(const AttendedSpans& spans, int row, int64_t dim) {
  std::vector<AttendedRow> rows;
  for (int32_t s = spans.indptr[row]; s < spans.indptr[row + 1]; ++s) {
    const auto* keys = static_cast<const float*>(spans.spans[s].keys);
    const auto* values = static_cast<const float*>(spans.spans[s].values);
    for (int32_t t = 0; t < spans.spans[s].length; ++t) {
      rows.push_back({std::vector<float>(keys + t * dim, keys + (t + 1) * dim),
                      std::vector<float>(values + t * dim, values + (t + 1) * dim)});
    }
  }
  return rows;
}

class PolicyDriver {
 public:
  // Called after each select with the layer and the spans of the step's batch.
  using Inspect = std::function<void(int layer, const AttendedSpans& spans)>;
  // Fills the queries [batch, heads, head_dim] of a step for one layer.
  using MakeQueries = std::function<void(int layer, std::vector<float>& queries)>;

  // Rewrites the key row [head_dim] of one head at one position before it reaches the policy.
  using ShapeKey = std::function<void(int64_t position, int64_t head, float* key)>;

  PolicyDriver(KvPolicy& policy, const KvShape& shape, uint32_t seed)
      : policy_(policy), shape_(shape), generator_(seed) {}

  void set_shape_key(ShapeKey shape_key) { shape_key_ = std::move(shape_key); }

  const KvShape& shape() const { return shape_; }
  std::mt19937& generator() { return generator_; }

  void add(SequenceId id, int64_t capacity) {
    policy_.add_sequence(id, capacity);
    history_[id].assign(size_t(shape_.layers * shape_.kv_heads), {});
  }

  // Prefill of `tokens` prompt tokens, in chunks of `chunk`, one layer after the other.
  void prefill(SequenceId id, int64_t tokens, int64_t chunk) {
    for (int layer = 0; layer < shape_.layers; ++layer) {
      for (int64_t first = 0; first < tokens; first += chunk) {
        int64_t count = std::min(chunk, tokens - first);
        std::vector<float> k = random(count * shape_.kv_heads * shape_.head_dim);
        std::vector<float> v = random(count * shape_.kv_heads * shape_.head_dim);
        apply_shape_key(k, first, count);
        remember(id, layer, k, v, count);
        policy_.prefill_append(id, layer, host_view(k, {count, shape_.kv_heads, shape_.head_dim}),
                               host_view(v, {count, shape_.kv_heads, shape_.head_dim}), first);
        DenseKv view = policy_.prefill_view(id, layer);
        EXPECT_EQ(view.length, first + count);
      }
      policy_.prefill_done(id, layer);
    }
  }

  // One decode step over `batch`; random queries unless `make_queries` is given. Returns the
  // spans of the last layer (valid until the next call on the policy).
  void step(std::span<const SequenceId> batch, const Inspect& inspect,
            const MakeQueries& make_queries = nullptr) {
    int64_t count = int64_t(batch.size());
    for (int layer = 0; layer < shape_.layers; ++layer) {
      std::vector<float> k = random(count * shape_.kv_heads * shape_.head_dim);
      std::vector<float> v = random(count * shape_.kv_heads * shape_.head_dim);
      for (int64_t b = 0; b < count; ++b) {
        std::vector<float> one(k.begin() + b * shape_.kv_heads * shape_.head_dim,
                               k.begin() + (b + 1) * shape_.kv_heads * shape_.head_dim);
        apply_shape_key(one, tokens(batch[b], layer), 1);
        std::copy(one.begin(), one.end(), k.begin() + b * shape_.kv_heads * shape_.head_dim);
        size_t size = size_t(shape_.kv_heads * shape_.head_dim);
        std::vector<float> key(k.begin() + b * int64_t(size), k.begin() + (b + 1) * int64_t(size));
        std::vector<float> value(v.begin() + b * int64_t(size), v.begin() + (b + 1) * int64_t(size));
        remember(batch[b], layer, key, value, 1);
      }
      policy_.decode_append(batch, layer, host_view(k, {count, shape_.kv_heads, shape_.head_dim}),
                            host_view(v, {count, shape_.kv_heads, shape_.head_dim}));
      last_queries_.assign(size_t(count * shape_.heads * shape_.head_dim), 0.0f);
      if (make_queries) {
        make_queries(layer, last_queries_);
      } else {
        last_queries_ = random(count * shape_.heads * shape_.head_dim);
      }
      const AttendedSpans& spans = policy_.select(
          batch, layer, host_view(last_queries_, {count, shape_.heads, shape_.head_dim}));
      EXPECT_EQ(spans.rows(), count * shape_.kv_heads);
      if (inspect) inspect(layer, spans);
    }
  }

  std::vector<float>& last_queries() { return last_queries_; }

  // Every K (or V) row of one head so far, in position order: [tokens, head_dim].
  const std::vector<float>& keys(SequenceId id, int layer, int64_t head) const {
    return history_.at(id)[size_t(layer * shape_.kv_heads + head)].keys;
  }
  const std::vector<float>& values(SequenceId id, int layer, int64_t head) const {
    return history_.at(id)[size_t(layer * shape_.kv_heads + head)].values;
  }
  int64_t tokens(SequenceId id, int layer) const {
    return int64_t(keys(id, layer, 0).size()) / shape_.head_dim;
  }
  // Position of a key row of one head, or -1.
  int64_t position_of(SequenceId id, int layer, int64_t head, const std::vector<float>& key) const {
    const std::vector<float>& all = keys(id, layer, head);
    int64_t dim = shape_.head_dim;
    for (int64_t t = 0; t * dim < int64_t(all.size()); ++t) {
      if (std::equal(key.begin(), key.end(), all.begin() + t * dim)) return t;
    }
    return -1;
  }

  // Positions attended by row (b, head), each checked to carry its own value row; fails the
  // test on a key that is not in the sequence or a value that does not match its key.
  std::vector<int64_t> attended_positions(SequenceId id, int layer, int64_t head,
                                          const AttendedSpans& spans, int row) const {
    std::vector<int64_t> positions;
    int64_t dim = shape_.head_dim;
    for (const AttendedRow& attended : attended_rows(spans, row, dim)) {
      int64_t position = position_of(id, layer, head, attended.key);
      EXPECT_GE(position, 0) << "an attended key is not a token of the sequence";
      if (position < 0) continue;
      const std::vector<float>& values = this->values(id, layer, head);
      EXPECT_TRUE(std::equal(attended.value.begin(), attended.value.end(),
                             values.begin() + position * dim))
          << "the value attended with the key of position " << position << " is not its value";
      positions.push_back(position);
    }
    std::sort(positions.begin(), positions.end());
    return positions;
  }

 private:
  struct Rows {
    std::vector<float> keys, values;
  };
  std::vector<float> random(int64_t count) {
    std::normal_distribution<float> normal;
    std::vector<float> values(static_cast<size_t>(count));
    for (float& value : values) value = normal(generator_);
    return values;
  }
  void apply_shape_key(std::vector<float>& k, int64_t first, int64_t count) {
    if (!shape_key_) return;
    for (int64_t t = 0; t < count; ++t) {
      for (int64_t head = 0; head < shape_.kv_heads; ++head) {
        shape_key_(first + t, head, &k[size_t((t * shape_.kv_heads + head) * shape_.head_dim)]);
      }
    }
  }
  void remember(SequenceId id, int layer, const std::vector<float>& k,
                const std::vector<float>& v, int64_t tokens) {
    int64_t dim = shape_.head_dim, heads = shape_.kv_heads;
    for (int64_t head = 0; head < heads; ++head) {
      Rows& rows = history_[id][size_t(layer * heads + head)];
      for (int64_t t = 0; t < tokens; ++t) {
        auto at = (t * heads + head) * dim;
        rows.keys.insert(rows.keys.end(), k.begin() + at, k.begin() + at + dim);
        rows.values.insert(rows.values.end(), v.begin() + at, v.begin() + at + dim);
      }
    }
  }

  KvPolicy& policy_;
  KvShape shape_;
  std::mt19937 generator_;
  std::map<SequenceId, std::vector<Rows>> history_;
  std::vector<float> last_queries_;
  ShapeKey shape_key_;
};

}  // namespace louiskv::testing
