// ModelConfig: what louiskv needs from a Hugging Face config.json (and generation_config.json),
// with the architecture variants as data: Qwen2's q/k/v biases, Qwen3's per-head q/k RMSNorm,
// tied embeddings, and both rope styles (rope_theta + rope_scaling, or rope_parameters).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/dtype.h"

namespace louiskv {

enum class Architecture { llama, qwen2, qwen3 };

std::string_view architecture_name(Architecture arch);  // the HF class name, e.g. "LlamaForCausalLM"

enum class RopeType { standard, llama3 };  // "default" and "llama3" in HF configs

struct RopeConfig {
  RopeType type = RopeType::standard;
  double theta = 10000.0;
  // llama3 only
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  Architecture architecture = Architecture::llama;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // from config.json, or hidden_size / num_heads when absent
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  RopeConfig rope;
  bool qkv_bias = false;      // Qwen2 always; Llama when attention_bias is true
  bool output_bias = false;   // Llama attention_bias also biases o_proj
  bool mlp_bias = false;      // Llama mlp_bias
  bool qk_norm = false;       // Qwen3: RMSNorm over each head of q and k before RoPE
  bool tie_word_embeddings = false;
  int bos_token_id = -1;                // -1: none
  std::vector<int> eos_token_ids;       // from config.json, extended by generation_config.json
  DType dtype = DType::bf16;            // torch_dtype / dtype, informational
};

// Parses a config.json document. `source` names the file in error messages. Throws
// louiskv::Error (invalid_input, naming the field) for missing or malformed fields, and
// (unsupported) for an unknown architecture or rope type.
ModelConfig parse_model_config(const nlohmann::json& document, const std::string& source);

// Reads DIR/config.json and, when present, DIR/generation_config.json (its eos_token_id is
// added to the config's stop ids). A path to a file is read as the config.json itself.
ModelConfig load_model_config(const std::filesystem::path& model_dir);

// The inverse RoPE frequencies [head_dim / 2], computed in fp32 as transformers does, with the
// llama3 frequency scaling applied when the config asks for it.
std::vector<float> rope_inverse_frequencies(const ModelConfig& config);

}  // namespace louiskv
