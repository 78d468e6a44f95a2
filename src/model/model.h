// Model: a config plus its weights bound per layer, ready for the Backend. Variants are data:
// optional views (empty when the architecture has no such tensor) for Qwen2's q/k/v biases,
// Qwen3's per-head q/k norms, and a tied lm_head that is the embedding table.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "io/model_config.h"

namespace louiskv {

class WeightFiles;

struct LayerWeights {
  TensorView attention_norm;                  // [hidden]
  TensorView q_proj, k_proj, v_proj;          // [heads * head_dim, hidden], [kv_heads * head_dim, hidden] x2
  TensorView q_bias, k_bias, v_bias;          // [out] or empty
  TensorView q_norm, k_norm;                  // [head_dim] (Qwen3) or empty
  TensorView o_proj;                          // [hidden, heads * head_dim]
  TensorView o_bias;                          // [hidden] or empty
  TensorView mlp_norm;                        // [hidden]
  TensorView gate_proj, up_proj;              // [intermediate, hidden]
  TensorView down_proj;                       // [hidden, intermediate]
  TensorView gate_bias, up_bias, down_bias;   // or empty (mlp_bias)
};

struct ModelWeights {
  TensorView embed_tokens;  // [vocab, hidden]
  TensorView final_norm;    // [hidden]
  TensorView lm_head;       // [vocab, hidden]; the embedding table when tied
  std::vector<LayerWeights> layers;
};

class Model {
 public:
  // Reads config.json (+ generation_config.json) and the safetensors of `model_dir`, checking
  // every tensor's name, dtype and shape against the config.
  static std::unique_ptr<Model> load(const std::filesystem::path& model_dir, Backend& backend);
  // Seeded random bf16 weights of the config's shapes (for benchmarks of models we do not ship).
  static std::unique_ptr<Model> random(const ModelConfig& config, Backend& backend, uint64_t seed);

  ~Model();
  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  TensorView inverse_frequencies() const { return inverse_frequencies_view_; }  // f32 [head_dim/2] on the backend
  size_t weight_bytes() const { return weight_bytes_; }
  DType weight_dtype() const { return weight_dtype_; }

 private:
  Model() = default;
  void prepare_rope(Backend& backend);

  ModelConfig config_;
  std::unique_ptr<WeightFiles> files_;
  std::vector<Buffer> storage_;
  std::vector<std::vector<uint16_t>> host_storage_;
  ModelWeights weights_;
  Buffer inverse_frequencies_;
  TensorView inverse_frequencies_view_;
  size_t weight_bytes_ = 0;
  DType weight_dtype_ = DType::bf16;
};

// Bytes of weights a config implies at a dtype (for `inspect` and memory planning).
size_t model_weight_bytes(const ModelConfig& config, DType dtype);

}  // namespace louiskv
