// `louiskv inspect`: what a model folder holds and what running it takes, without running it.
#include <cstdio>
#include <map>

#include "cli/command.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "model/model.h"

namespace louiskv::cli {

CommandRunner add_inspect_command(CLI::App& app) {
  struct Options {
    std::string model_dir;
    bool json = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* command = app.add_subcommand("inspect", "architecture, sizes, dtypes and memory needed");
  command->add_option("-m,--model", options->model_dir, "model folder (default: the bundled tiny-llama-14m)");
  command->add_flag("--json", options->json, "print one JSON object");
  return [options]() {
    const std::filesystem::path dir = options->model_dir.empty() ? default_model_dir() : std::filesystem::path(options->model_dir);
    const ModelConfig c = load_model_config(dir);
    std::map<std::string, int64_t> dtype_counts;
    size_t file_bytes = 0;
    int64_t tensors = 0;
    bool has_weights = std::filesystem::exists(dir / "model.safetensors") ||
                       std::filesystem::exists(dir / "model.safetensors.index.json");
    if (has_weights) {
      WeightFiles files(dir);
      for (const auto& name : files.names()) {
        dtype_counts[std::string(dtype_name(files.get(name).dtype))] += 1;
        ++tensors;
      }
      file_bytes = files.total_bytes();
    }
    const size_t parameters = model_weight_bytes(c, DType::f32) / 4;
    const int64_t kv_values_per_token = 2 * c.num_layers * c.num_kv_heads * c.head_dim;
    nlohmann::json dtypes = dtype_counts;
    nlohmann::json document = {
        {"architecture", std::string(architecture_name(c.architecture))},
        {"layers", c.num_layers},
        {"hidden_size", c.hidden_size},
        {"intermediate_size", c.intermediate_size},
        {"heads", c.num_heads},
        {"kv_heads", c.num_kv_heads},
        {"head_dim", c.head_dim},
        {"vocab_size", c.vocab_size},
        {"context", c.max_position_embeddings},
        {"rope", {{"type", c.rope.type == RopeType::llama3 ? "llama3" : "default"}, {"theta", c.rope.theta}}},
        {"qkv_bias", c.qkv_bias},
        {"qk_norm", c.qk_norm},
        {"tied_embeddings", c.tie_word_embeddings},
        {"parameters", parameters},
        {"tensors", tensors},
        {"tensor_dtypes", dtypes},
        {"weight_file_bytes", file_bytes},
        {"weight_bytes_bf16", parameters * 2},
        {"kv_bytes_per_token_bf16", kv_values_per_token * 2},
        {"kv_bytes_per_token_f32", kv_values_per_token * 4},
        {"kv_bytes_full_context_bf16", kv_values_per_token * 2 * c.max_position_embeddings},
    };
    if (options->json) {
      print_json(document);
      return 0;
    }
    std::printf("%s: %s\n", dir.string().c_str(), std::string(architecture_name(c.architecture)).c_str());
    std::printf("  layers %lld, hidden %lld, MLP %lld, heads %lld (KV %lld), head_dim %lld, vocab %lld, context %lld\n",
                static_cast<long long>(c.num_layers), static_cast<long long>(c.hidden_size),
                static_cast<long long>(c.intermediate_size), static_cast<long long>(c.num_heads),
                static_cast<long long>(c.num_kv_heads), static_cast<long long>(c.head_dim),
                static_cast<long long>(c.vocab_size), static_cast<long long>(c.max_position_embeddings));
    std::printf("  rope %s theta %g%s%s%s\n", c.rope.type == RopeType::llama3 ? "llama3" : "default", c.rope.theta,
                c.qkv_bias ? ", q/k/v bias" : "", c.qk_norm ? ", q/k norm" : "", c.tie_word_embeddings ? ", tied embeddings" : "");
    std::printf("  %.2f M parameters; %lld tensors", double(parameters) / 1e6, static_cast<long long>(tensors));
    for (const auto& [name, count] : dtype_counts) std::printf(", %lld %s", static_cast<long long>(count), name.c_str());
    std::printf("; %.1f MiB of weight files\n", double(file_bytes) / 1048576.0);
    std::printf("  KV cache: %lld bytes/token in bf16 (%lld in f32); %.1f MiB at the full context in bf16\n",
                static_cast<long long>(kv_values_per_token * 2), static_cast<long long>(kv_values_per_token * 4),
                double(kv_values_per_token * 2 * c.max_position_embeddings) / 1048576.0);
    return 0;
  };
}

}  // namespace louiskv::cli
