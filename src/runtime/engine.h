// Engine: owns the backend, the model, its tokenizer and a decoder, and runs generations with a
// KV policy. Front ends (cli/, server/) hold one Engine; there is no global state.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "louiskv/generation.h"
#include "louiskv/kv_config.h"
#include "kv/kv_policy.h"
#include "model/decoder.h"
#include "tokenizer/tokenizer.h"

namespace louiskv {

class PrefilledPrompt;

struct EngineOptions {
  std::filesystem::path model_dir;
  std::string device = "auto";     // "auto" (cuda when a GPU is present), "cpu" or "cuda"
  // Activations and KV cache: "auto" (bf16 on cuda, f32 on cpu), "bf16" (cuda only) or "f32"
  // (on cuda, the precision mode that tracks the cpu reference).
  std::string dtype = "auto";
  int threads = 0;                 // cpu backend threads; 0: all cores
  bool random_weights = false;     // seeded random weights of config.json's shapes
  uint64_t weight_seed = 0;
  int64_t max_batch = 1;
  int64_t prefill_chunk = 256;
};

// Called with each piece of generated text as soon as it is complete.
using TextCallback = std::function<void(const std::string& text)>;

class Engine {
 public:
  explicit Engine(const EngineOptions& options);
  ~Engine();

  const ModelConfig& config() const { return model_->config(); }
  const Model& model() const { return *model_; }
  Backend& backend() { return *backend_; }
  Decoder& decoder() { return *decoder_; }
  bool has_tokenizer() const { return tokenizer_ != nullptr; }
  // Throws louiskv::Error naming the folder when the model has no tokenizer.json.
  const Tokenizer& tokenizer() const;
  KvShape kv_shape() const;
  std::unique_ptr<KvPolicy> make_policy(const KvConfig& config);

  // Throws louiskv::Error (invalid_input) when `tokens` exceeds the model's context.
  void check_context(int64_t tokens) const;

  GenerationResult generate(std::span<const int32_t> prompt, const GenerationConfig& generation,
                            KvPolicy& kv, const TextCallback& on_text = {});
  // The same generation from a prompt prefilled once (runtime/prefilled_prompt.h): the policy is
  // handed the prompt's K/V by replay instead of running the model over the prompt again.
  GenerationResult generate(const PrefilledPrompt& prompt, const GenerationConfig& generation,
                            KvPolicy& kv, const TextCallback& on_text = {});
  // Runs the prefill of `prompt` once, to be replayed into several policies.
  PrefilledPrompt prefill(std::span<const int32_t> prompt);

  SequenceId new_sequence_id() { return next_sequence_id_++; }

 private:
  // Stores the prompt in the policy under the sequence id and writes the next-token logits.
  using PromptFill = std::function<void(SequenceId id, std::vector<float>& logits)>;
  GenerationResult generate_after(std::span<const int32_t> prompt, const PromptFill& fill,
                                  const GenerationConfig& generation, KvPolicy& kv,
                                  const TextCallback& on_text);

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<Decoder> decoder_;
  std::filesystem::path model_dir_;
  SequenceId next_sequence_id_ = 0;
};

// The backend `device` names ("auto", "cpu", "cuda") with the activation dtype `dtype` names
// ("auto", "bf16", "f32"); throws louiskv::Error when unavailable or not supported there.
std::unique_ptr<Backend> make_backend(const std::string& device, int threads, const std::string& dtype = "auto");

}  // namespace louiskv
