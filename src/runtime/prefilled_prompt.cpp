#include "runtime/prefilled_prompt.h"

#include <algorithm>

namespace louiskv {

// The policy the captured prefill runs with: a full cache gives the prefill its attention, and
// every chunk of K/V the decoder appends is also copied into the prompt's per-layer buffers.
class PrefilledPrompt::Recorder final : public KvPolicy {
 public:
  Recorder(PrefilledPrompt& prompt, Backend& backend)
      : prompt_(prompt), backend_(backend), full_(make_kv_policy(full_config(), prompt.shape_, backend)) {}

  std::string_view name() const override { return "prefill recorder"; }
  void add_sequence(SequenceId id, int64_t capacity) override { full_->add_sequence(id, capacity); }
  void remove_sequence(SequenceId id) override { full_->remove_sequence(id); }

  void prefill_append(SequenceId id, int layer, TensorView k, TensorView v, int64_t first_position) override {
    full_->prefill_append(id, layer, k, v, first_position);
    const int64_t rows = k.dim(0);
    if (prompt_.keys_.size() == size_t(layer)) {  // the layer's first chunk
      const KvShape& shape = prompt_.shape_;
      const size_t bytes = size_t(int64_t(prompt_.tokens_.size()) * shape.kv_heads * shape.head_dim) * dtype_size(k.dtype);
      prompt_.keys_.push_back(backend_.allocate(bytes));
      prompt_.values_.push_back(backend_.allocate(bytes));
      prompt_.dtype_ = k.dtype;
    }
    LOUISKV_CHECK(prompt_.keys_.size() == size_t(layer) + 1 && k.dtype == prompt_.dtype_, "prefill layers must arrive in order");
    if (layer == 0) {
      prompt_.chunks_.push_back({first_position, rows});
    } else {
      // Replay hands every layer the chunks of layer 0.
      const bool known = std::any_of(prompt_.chunks_.begin(), prompt_.chunks_.end(), [&](const Chunk& chunk) {
        return chunk.first == first_position && chunk.length == rows;
      });
      LOUISKV_CHECK(known, "prefill chunks differ between layers");
    }
    backend_.copy(prompt_.layer_keys(layer).rows(first_position, rows), k);
    backend_.copy(prompt_.layer_values(layer).rows(first_position, rows), v);
  }
  DenseKv prefill_view(SequenceId id, int layer) override { return full_->prefill_view(id, layer); }
  void prefill_done(SequenceId id, int layer) override { full_->prefill_done(id, layer); }

  void decode_append(std::span<const SequenceId>, int, TensorView, TensorView) override {
    LOUISKV_CHECK(false, "the prefill recorder does not decode");
  }
  const AttendedSpans& select(std::span<const SequenceId>, int, TensorView) override {
    throw_error(ErrorKind::internal, "the prefill recorder does not decode");
  }
  KvStats stats(SequenceId id) const override { return full_->stats(id); }

 private:
  static KvConfig full_config() {
    KvConfig config;
    config.policy = "full";
    return config;
  }

  PrefilledPrompt& prompt_;
  Backend& backend_;
  std::unique_ptr<KvPolicy> full_;
};

TensorView PrefilledPrompt::layer_keys(int layer) const {
  return keys_[size_t(layer)].view(dtype_, {int64_t(tokens_.size()), shape_.kv_heads, shape_.head_dim});
}

TensorView PrefilledPrompt::layer_values(int layer) const {
  return values_[size_t(layer)].view(dtype_, {int64_t(tokens_.size()), shape_.kv_heads, shape_.head_dim});
}

PrefilledPrompt PrefilledPrompt::capture(const Model& model, Decoder& decoder, Backend& backend,
                                         std::span<const int32_t> tokens) {
  if (tokens.empty()) throw_error(ErrorKind::invalid_input, "the prompt is empty");
  const ModelConfig& c = model.config();
  PrefilledPrompt prompt;
  prompt.shape_ = {c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim};
  prompt.tokens_.assign(tokens.begin(), tokens.end());
  prompt.last_logits_.resize(size_t(c.vocab_size));
  Recorder recorder(prompt, backend);
  const SequenceId id = 0;  // the recorder's own sequence
  const int64_t last = int64_t(tokens.size()) - 1;
  recorder.add_sequence(id, int64_t(tokens.size()));
  decoder.prefill(id, tokens, recorder, last, [&](int64_t first, const float* logits, int64_t rows) {
    LOUISKV_CHECK(first == last && rows == 1, "the prefill hands back only the last position's logits");
    std::copy_n(logits, c.vocab_size, prompt.last_logits_.begin());
  });
  LOUISKV_CHECK(prompt.keys_.size() == size_t(c.num_layers), "the prefill skipped a layer");
  return prompt;
}

void PrefilledPrompt::replay(KvPolicy& policy, SequenceId id) const {
  for (int layer = 0; layer < int(shape_.layers); ++layer) {
    for (const Chunk& chunk : chunks_) {
      policy.prefill_append(id, layer, layer_keys(layer).rows(chunk.first, chunk.length),
                            layer_values(layer).rows(chunk.first, chunk.length), chunk.first);
    }
    policy.prefill_done(id, layer);
  }
}

}  // namespace louiskv
