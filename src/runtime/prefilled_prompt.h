// PrefilledPrompt: the model's prefill of one prompt, run once and replayed into any number of KV
// policies. Prefill is full causal attention over the prompt whatever the policy (a policy's
// prefill_view returns everything appended so far), so the per-layer K/V that a policy is handed
// and the prompt's last logits do not depend on the policy. An evaluation that compares policies
// on one prompt can therefore run the model over the prompt once: replay hands each layer's K/V
// to a policy in the chunks the decoder produced, then calls prefill_done, layer after layer as
// Decoder::prefill does, and the decode that follows is the same to the bit.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/buffer.h"
#include "kv/kv_policy.h"
#include "model/decoder.h"
#include "model/model.h"

namespace louiskv {

class PrefilledPrompt {
 public:
  // Runs `tokens` through `decoder` (a decoder of `model`) with full attention and keeps every
  // layer's K/V [tokens, kv_heads, head_dim] (activation dtype, post-RoPE, in `backend` memory)
  // and the logits of the last position.
  static PrefilledPrompt capture(const Model& model, Decoder& decoder, Backend& backend,
                                 std::span<const int32_t> tokens);

  std::span<const int32_t> tokens() const { return tokens_; }
  // f32 [vocab]: the next-token logits after the prompt.
  std::span<const float> last_logits() const { return last_logits_; }

  // Stores the prompt in `policy` under `id` (added beforehand with room for the prompt), as
  // Decoder::prefill would have.
  void replay(KvPolicy& policy, SequenceId id) const;

 private:
  struct Chunk {
    int64_t first = 0;
    int64_t length = 0;
  };
  class Recorder;

  TensorView layer_keys(int layer) const;    // [tokens, kv_heads, head_dim]
  TensorView layer_values(int layer) const;  // [tokens, kv_heads, head_dim]

  KvShape shape_;
  std::vector<int32_t> tokens_;
  std::vector<float> last_logits_;
  std::vector<Chunk> chunks_;          // as the decoder appended them; every layer is cut alike
  std::vector<Buffer> keys_, values_;  // per layer
  DType dtype_ = DType::f32;
};

}  // namespace louiskv
