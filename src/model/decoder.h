// Decoder: the forward pass of a Llama/Qwen2/Qwen3 decoder over the Backend ops, with the KV
// cache delegated to a KvPolicy. Prefill runs layer by layer over the whole prompt in chunks, so
// that a policy can cluster and offload one layer's KV while the next layer computes; decode
// runs one token for each sequence of a batch.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "kv/kv_policy.h"
#include "model/model.h"

namespace louiskv {

// Receives logits f32 [rows, vocab] (host memory) of prompt positions [first_position, first_position + rows).
using LogitsSink = std::function<void(int64_t first_position, const float* logits, int64_t rows)>;

// Debug hook: called with HF-style module names ("model.layers.3.self_attn.q_proj") and the
// tensor just computed, so that a script can diff louiskv against transformers layer by layer.
using TensorHook = std::function<void(std::string_view name, int layer, TensorView tensor)>;

class Decoder {
 public:
  Decoder(const Model& model, Backend& backend, int64_t max_batch, int64_t prefill_chunk = 256);
  ~Decoder();

  // Runs the prompt (positions 0..n-1) through every layer, storing its KV in `kv` under `id`,
  // and hands the logits of positions [logits_from, n) to `sink`.
  void prefill(SequenceId id, std::span<const int32_t> tokens, KvPolicy& kv, int64_t logits_from,
               const LogitsSink& sink);

  // One decode step: token b of `tokens` sits at position positions[b] of sequence batch[b].
  // logits: host f32 [B, vocab].
  void decode(std::span<const SequenceId> batch, std::span<const int32_t> tokens,
              std::span<const int64_t> positions, KvPolicy& kv, float* logits);

  void set_tensor_hook(TensorHook hook) { hook_ = std::move(hook); }
  int64_t max_batch() const { return max_batch_; }

 private:
  struct Scratch;

  // attention sub-block shared by prefill and decode up to the attention op itself
  void project_qkv(const LayerWeights& layer, TensorView normed, TensorView q, TensorView k, TensorView v,
                   TensorView positions, int layer_index);
  void attention_output_and_mlp(const LayerWeights& layer, TensorView x, TensorView attention, int64_t rows,
                                int layer_index);
  void compute_logits(TensorView x, int64_t rows, float* host_logits);
  void emit(std::string_view name, int layer, TensorView tensor) const {
    if (hook_) hook_(name, layer, tensor);
  }

  const Model& model_;
  Backend& backend_;
  int64_t max_batch_;
  int64_t chunk_;
  std::unique_ptr<Scratch> scratch_;
  TensorHook hook_;
};

}  // namespace louiskv
