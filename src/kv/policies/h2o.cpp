// H2O (DESIGN.md section 6): keep the heavy hitters (the tokens with the largest attention
// accumulated over the decode steps, summed over the query heads of the KV head's group) and the
// window_tokens most recent tokens; evict the rest for good, one token per step once full.
//
// The interface gives a policy no prompt queries, so the prompt's tokens have no accumulated
// attention when the first step must cut them down to the budget: that one time, the step's own
// queries score them (exact softmax over the held tokens), and the step's observed attention is
// not added again. Until that first eviction the layer keeps the prompt's dense cache; then it
// compacts into budget slots per KV head, [kv_heads, budget, head_dim], and each new token
// takes the slot of the token it evicts.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kv/kv_views.h"
#include "kv/policies/policies.h"
#include "kv/policy_base.h"

namespace louiskv {
namespace {

class H2oPolicy final : public PolicyBase {
 public:
  H2oPolicy(const KvConfig& config, const KvShape& shape, Backend& backend)
      : PolicyBase("h2o", config, shape, backend) {
    require(config.window_tokens >= 1, "window_tokens", "must be at least 1 (the current token)");
    require(config.budget >= config.window_tokens, "budget",
            "of " + std::to_string(config.budget) + " tokens is below window_tokens (" +
                std::to_string(config.window_tokens) + "), the recent tokens H2O always keeps");
  }

  bool wants_attention_lse() const override { return true; }
  void observe_attention(std::span<const SequenceId> batch, int layer, TensorView q,
                         TensorView lse) override;

 private:
  struct HeadSlots {
    std::vector<int64_t> position;  // token held by each slot, -1 when free
    std::vector<float> score;       // its accumulated attention
    int64_t held = 0;
  };
  struct H2oLayer : LayerState {
    Buffer keys, values;              // own storage once compacted
    TensorView key_slots, value_slots;  // [kv_heads, slots, head_dim]
    DenseCache prompt;                // the storage until the first eviction
    bool compacted = false;
    int64_t tokens = 0;               // tokens appended so far (the next position)
    bool observed = false;            // some step's attention has been accumulated
    bool skip_next_observation = false;
    std::vector<HeadSlots> heads;
    int64_t slots() const { return key_slots.dim(1); }
  };

  std::unique_ptr<LayerState> finish_prefill(Sequence&, int, DenseCache& prompt) override {
    auto state = std::make_unique<H2oLayer>();
    state->prompt = std::move(prompt);
    state->key_slots = state->prompt.keys();
    state->value_slots = state->prompt.values();
    state->tokens = state->prompt.length();
    state->heads.resize(size_t(shape().kv_heads));
    for (HeadSlots& head : state->heads) {
      head.position.assign(size_t(state->slots()), -1);
      head.score.assign(size_t(state->slots()), 0.0f);
      for (int64_t t = 0; t < state->tokens; ++t) head.position[size_t(t)] = t;
      head.held = state->tokens;
    }
    return state;
  }

  // The slot of the held token with the lowest accumulated attention outside the recent window
  // (ties: the oldest), or -1.
  int64_t eviction_candidate(const H2oLayer& layer, const HeadSlots& head, int64_t newest) const {
    int64_t first_recent = newest - config().window_tokens + 1;
    int64_t best = -1;
    for (int64_t slot = 0; slot < layer.slots(); ++slot) {
      int64_t position = head.position[size_t(slot)];
      if (position < 0 || position >= first_recent) continue;
      if (best < 0 || head.score[size_t(slot)] < head.score[size_t(best)] ||
          (head.score[size_t(slot)] == head.score[size_t(best)] &&
           position < head.position[size_t(best)])) {
        best = slot;
      }
    }
    return best;
  }

  void evict(Sequence& sequence, HeadSlots& head, int64_t slot) {
    head.position[size_t(slot)] = -1;
    head.score[size_t(slot)] = 0.0f;
    --head.held;
    ++sequence.stats.tokens_dropped;
  }

  void append_token(Sequence& sequence, int, LayerState& state, TensorView k,
                    TensorView v) override {
    auto& layer = static_cast<H2oLayer&>(state);
    int64_t position = layer.tokens++;
    if (!layer.compacted) {  // the prompt cache has room up to the sequence's capacity
      layer.prompt.append(backend(), k, v);
      for (HeadSlots& head : layer.heads) {
        head.position[size_t(position)] = position;
        ++head.held;
      }
      return;
    }
    for (int64_t h = 0; h < shape().kv_heads; ++h) {
      HeadSlots& head = layer.heads[size_t(h)];
      if (head.held == layer.slots()) {
        int64_t victim = eviction_candidate(layer, head, position);
        LOUISKV_CHECK(victim >= 0, "h2o: no token outside the recent window to evict");
        evict(sequence, head, victim);
      }
      auto free_slot = std::find(head.position.begin(), head.position.end(), int64_t(-1));
      int64_t slot = free_slot - head.position.begin();
      copy_converting(backend(), head_rows(layer.key_slots, h, slot, 1), token_head(k, h));
      copy_converting(backend(), head_rows(layer.value_slots, h, slot, 1), token_head(v, h));
      head.position[size_t(slot)] = position;
      head.score[size_t(slot)] = 0.0f;
      ++head.held;
    }
  }

  // Adds, for each held token of `head`, its attention probability under the queries of the
  // group: sum over the group's heads g of exp(scale * q_g.k - lse_g).
  void accumulate(H2oLayer& layer, int64_t h, std::span<const float> group_queries,
                  std::span<const float> group_lse) {
    const int64_t dim = shape().head_dim, group = group_size();
    HeadSlots& head = layer.heads[size_t(h)];
    read_as_f32(backend(), head_rows(layer.key_slots, h, 0, layer.slots()), keys_, staging_);
    float scale = attention_scale();
    for (int64_t slot = 0; slot < layer.slots(); ++slot) {
      if (head.position[size_t(slot)] < 0) continue;
      const float* key = &keys_[size_t(slot * dim)];
      float probability = 0.0f;
      for (int64_t g = 0; g < group; ++g) {
        float dot = 0.0f;
        for (int64_t i = 0; i < dim; ++i) dot += group_queries[size_t(g * dim + i)] * key[i];
        probability += std::exp(scale * dot - group_lse[size_t(g)]);
      }
      head.score[size_t(slot)] += probability;
    }
  }

  // log(sum over held tokens of exp(scale * q.k)) for each query head of the group.
  std::vector<float> held_lse(H2oLayer& layer, int64_t h, std::span<const float> group_queries) {
    const int64_t dim = shape().head_dim, group = group_size();
    const HeadSlots& head = layer.heads[size_t(h)];
    read_as_f32(backend(), head_rows(layer.key_slots, h, 0, layer.slots()), keys_, staging_);
    std::vector<float> lse(static_cast<size_t>(group));
    for (int64_t g = 0; g < group; ++g) {
      std::vector<float> logits;
      for (int64_t slot = 0; slot < layer.slots(); ++slot) {
        if (head.position[size_t(slot)] < 0) continue;
        float dot = 0.0f;
        for (int64_t i = 0; i < dim; ++i) {
          dot += group_queries[size_t(g * dim + i)] * keys_[size_t(slot * dim + i)];
        }
        logits.push_back(attention_scale() * dot);
      }
      float largest = *std::max_element(logits.begin(), logits.end());
      double total = 0.0;
      for (float logit : logits) total += std::exp(double(logit - largest));
      lse[size_t(g)] = largest + float(std::log(total));
    }
    return lse;
  }

  // First eviction: cut every head down to the budget and move the kept tokens into budget
  // slots of their own.
  void compact(Sequence& sequence, H2oLayer& layer, std::span<const float> query) {
    const int64_t kv_heads = shape().kv_heads, dim = shape().head_dim, group = group_size();
    const int64_t budget = config().budget;
    auto start = PolicyClock::now();
    if (!layer.observed) {
      for (int64_t h = 0; h < kv_heads; ++h) {
        auto group_queries = query.subspan(size_t(h * group * dim), size_t(group * dim));
        std::vector<float> lse = held_lse(layer, h, group_queries);
        accumulate(layer, h, group_queries, lse);
      }
      layer.skip_next_observation = true;
    }
    sequence.stats.score_ms += milliseconds_since(start);

    DType dtype = backend().kv_dtype();
    size_t bytes = size_t(kv_heads * budget * dim) * dtype_size(dtype);
    layer.keys = backend().allocate(bytes);
    layer.values = backend().allocate(bytes);
    TensorView keys = layer.keys.view(dtype, {kv_heads, budget, dim});
    TensorView values = layer.values.view(dtype, {kv_heads, budget, dim});
    for (int64_t h = 0; h < kv_heads; ++h) {
      HeadSlots& head = layer.heads[size_t(h)];
      while (head.held > budget) {
        evict(sequence, head, eviction_candidate(layer, head, layer.tokens - 1));
      }
      HeadSlots compacted;
      compacted.position.assign(size_t(budget), -1);
      compacted.score.assign(size_t(budget), 0.0f);
      int64_t next = 0;
      for (int64_t slot = 0; slot < layer.slots();) {  // runs of held slots, one copy each
        if (head.position[size_t(slot)] < 0) {
          ++slot;
          continue;
        }
        int64_t end = slot;
        while (end < layer.slots() && head.position[size_t(end)] >= 0) {
          compacted.position[size_t(next + end - slot)] = head.position[size_t(end)];
          compacted.score[size_t(next + end - slot)] = head.score[size_t(end)];
          ++end;
        }
        backend().copy(head_rows(keys, h, next, end - slot),
                       head_rows(layer.key_slots, h, slot, end - slot));
        backend().copy(head_rows(values, h, next, end - slot),
                       head_rows(layer.value_slots, h, slot, end - slot));
        next += end - slot;
        slot = end;
      }
      compacted.held = next;
      head = std::move(compacted);
    }
    layer.key_slots = keys;
    layer.value_slots = values;
    layer.prompt = DenseCache();
    layer.compacted = true;
  }

  void select_rows(Sequence& sequence, int, LayerState& state, std::span<const float> query,
                   AttendedSpans& spans) override {
    auto& layer = static_cast<H2oLayer&>(state);
    if (!layer.compacted && layer.tokens > config().budget) compact(sequence, layer, query);
    for (int64_t h = 0; h < shape().kv_heads; ++h) {
      const HeadSlots& head = layer.heads[size_t(h)];
      for (int64_t slot = 0; slot < layer.slots();) {
        if (head.position[size_t(slot)] < 0) {
          ++slot;
          continue;
        }
        int64_t end = slot;
        while (end < layer.slots() && head.position[size_t(end)] >= 0) ++end;
        spans.add(head_rows(layer.key_slots, h, slot, end - slot).data,
                  head_rows(layer.value_slots, h, slot, end - slot).data, int32_t(end - slot));
        slot = end;
      }
      spans.end_row();
    }
  }

  std::vector<float> keys_, queries_, lse_;
  Buffer staging_, lse_staging_;
};

void H2oPolicy::observe_attention(std::span<const SequenceId> batch, int layer, TensorView q,
                                  TensorView lse) {
  if (is_dense_layer(layer)) return;
  LOUISKV_CHECK(lse.numel() == int64_t(batch.size()) * shape().heads,
                "attention lse must be [batch, heads]: got " + lse.describe());
  std::span<const float> queries = read_queries(q);
  read_as_f32(backend(), lse, lse_, lse_staging_);
  const int64_t heads = shape().heads, dim = shape().head_dim, group = group_size();
  for (size_t b = 0; b < batch.size(); ++b) {
    Sequence& seq = sequence(batch[b]);
    auto& state = static_cast<H2oLayer&>(*layer_entry(seq, layer).state);
    state.observed = true;
    if (std::exchange(state.skip_next_observation, false)) continue;
    auto start = PolicyClock::now();
    for (int64_t h = 0; h < shape().kv_heads; ++h) {
      accumulate(state, h, queries.subspan(size_t((int64_t(b) * heads + h * group) * dim),
                                           size_t(group * dim)),
                 std::span<const float>(lse_).subspan(size_t(int64_t(b) * heads + h * group),
                                                     size_t(group)));
    }
    seq.stats.score_ms += milliseconds_since(start);
  }
}

}  // namespace

std::unique_ptr<KvPolicy> make_h2o_policy(const KvConfig& config, const KvShape& shape,
                                          Backend& backend) {
  return std::make_unique<H2oPolicy>(config, shape, backend);
}

}  // namespace louiskv
