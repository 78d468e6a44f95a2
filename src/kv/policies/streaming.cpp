// StreamingLLM (DESIGN.md section 6): attend the first sink_tokens tokens and the most recent
// ones, and drop everything in between for good. Held to the same budget as the others, its
// recent window is budget - sinks tokens (window_tokens is the retrieval policies' knob).
// Per offloaded layer the device keeps the sinks and a ring of budget - sinks recent tokens,
// [kv_heads, ring, head_dim], where token i of the stream sits in slot i % ring.
#include <algorithm>

#include "kv/kv_views.h"
#include "kv/policies/policies.h"
#include "kv/policy_base.h"

namespace louiskv {
namespace {

class StreamingPolicy final : public PolicyBase {
 public:
  StreamingPolicy(const KvConfig& config, const KvShape& shape, Backend& backend)
      : PolicyBase("streaming", config, shape, backend) {
    require(config.budget > config.sink_tokens, "budget",
            "of " + std::to_string(config.budget) +
                " tokens leaves no room for recent tokens after " +
                std::to_string(config.sink_tokens) + " sink_tokens");
  }

 private:
  struct StreamingLayer : LayerState {
    DenseCache sinks;
    Buffer keys, values;
    TensorView key_ring, value_ring;  // [kv_heads, ring, head_dim]
    int64_t ring = 0;
    int64_t next = 0;   // stream index of the next token
    int64_t count = 0;  // recent tokens held, <= ring
  };

  std::unique_ptr<LayerState> finish_prefill(Sequence& sequence, int, DenseCache& prompt) override {
    const int64_t kv_heads = shape().kv_heads, dim = shape().head_dim;
    auto state = std::make_unique<StreamingLayer>();
    int64_t sinks = std::min(config().sink_tokens, prompt.length());
    state->sinks = DenseCache(backend(), kv_heads, sinks, dim);
    state->sinks.append_from(backend(), prompt, 0, sinks);

    state->ring = std::max<int64_t>(std::min(config().budget - sinks, sequence.capacity - sinks), 1);
    DType dtype = backend().kv_dtype();
    size_t bytes = size_t(kv_heads * state->ring * dim) * dtype_size(dtype);
    state->keys = backend().allocate(bytes);
    state->values = backend().allocate(bytes);
    state->key_ring = state->keys.view(dtype, {kv_heads, state->ring, dim});
    state->value_ring = state->values.view(dtype, {kv_heads, state->ring, dim});

    // The prompt's newest tokens start the ring (slots [0, kept)); those before them are dropped.
    int64_t kept = std::min(prompt.length() - sinks, state->ring);
    int64_t first_kept = prompt.length() - kept;
    for (int64_t head = 0; head < kv_heads && kept > 0; ++head) {
      backend().copy(head_rows(state->key_ring, head, 0, kept),
                     head_rows(prompt.keys(), head, first_kept, kept));
      backend().copy(head_rows(state->value_ring, head, 0, kept),
                     head_rows(prompt.values(), head, first_kept, kept));
    }
    state->next = state->count = kept;
    sequence.stats.tokens_dropped += (first_kept - sinks) * kv_heads;
    return state;
  }

  void append_token(Sequence& sequence, int, LayerState& state, TensorView k,
                    TensorView v) override {
    auto& layer = static_cast<StreamingLayer&>(state);
    int64_t slot = layer.next % layer.ring;
    backend().write_kv(layer.key_ring, k, slot);
    backend().write_kv(layer.value_ring, v, slot);
    ++layer.next;
    if (layer.count == layer.ring) {
      // The oldest recent token was overwritten, in every KV head.
      sequence.stats.tokens_dropped += shape().kv_heads;
    } else {
      ++layer.count;
    }
  }

  void select_rows(Sequence&, int, LayerState& state, std::span<const float>,
                   AttendedSpans& spans) override {
    auto& layer = static_cast<StreamingLayer&>(state);
    int64_t oldest_slot = (layer.next - layer.count) % layer.ring;
    int64_t first_part = std::min(layer.count, layer.ring - oldest_slot);
    for (int64_t head = 0; head < shape().kv_heads; ++head) {
      layer.sinks.add_span(spans, head, 0, layer.sinks.length());
      add_ring_span(spans, layer, head, oldest_slot, first_part);
      add_ring_span(spans, layer, head, 0, layer.count - first_part);
      spans.end_row();
    }
  }

  static void add_ring_span(AttendedSpans& spans, const StreamingLayer& layer, int64_t head,
                            int64_t first, int64_t count) {
    if (count <= 0) return;
    spans.add(head_rows(layer.key_ring, head, first, count).data,
              head_rows(layer.value_ring, head, first, count).data, int32_t(count));
  }

  bool reads_queries() const override { return false; }
};

}  // namespace

std::unique_ptr<KvPolicy> make_streaming_policy(const KvConfig& config, const KvShape& shape,
                                                Backend& backend) {
  return std::make_unique<StreamingPolicy>(config, shape, backend);
}

}  // namespace louiskv
