#include "cli/command.h"

#include <fstream>
#include <iostream>
#include <sstream>

#include "runtime/calibration.h"

namespace louiskv::cli {

std::filesystem::path default_model_dir() {
  const std::filesystem::path relative = "models/tiny-llama-14m";
  if (std::filesystem::exists(relative / "config.json")) return relative;
  return std::filesystem::path(LOUISKV_SOURCE_DIR) / relative;
}

void ModelOptions::add_to(CLI::App& command) {
  command.add_option("-m,--model", model_dir, "Hugging Face model folder (default: the bundled tiny-llama-14m)");
  command.add_option("--device", device, "auto, cpu or cuda (auto: cuda when a GPU is present)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  command.add_option("--dtype", dtype,
                     "activations and KV cache: auto, bf16 or f32 (auto: bf16 on cuda, f32 on cpu; f32 on cuda "
                     "tracks the cpu reference, bf16 is cuda only)")
      ->check(CLI::IsMember({"auto", "bf16", "f32"}));
  command.add_option("--threads", threads, "CPU threads (0: all cores)")->check(CLI::NonNegativeNumber);
  command.add_flag("--random-weights", random_weights, "seeded random weights of config.json's shapes (benchmarks)");
  command.add_option("--weight-seed", weight_seed, "seed of --random-weights");
  command.add_option("--prefill-chunk", prefill_chunk, "prompt tokens per prefill chunk")->check(CLI::PositiveNumber);
}

EngineOptions ModelOptions::engine_options(int64_t max_batch) const {
  EngineOptions options;
  options.model_dir = model_dir.empty() ? default_model_dir() : std::filesystem::path(model_dir);
  options.device = device;
  options.dtype = dtype;
  options.threads = threads;
  options.random_weights = random_weights;
  options.weight_seed = weight_seed;
  options.max_batch = max_batch;
  options.prefill_chunk = prefill_chunk;
  return options;
}

void add_kv_options(CLI::App& command, KvConfig& config) {
  command.add_option("--kv", config.policy, "KV policy: " + [] {
    std::string names;
    for (const auto& name : kv_policy_names()) names += (names.empty() ? "" : ", ") + name;
    return names;
  }())->check(CLI::IsMember(kv_policy_names()));
  command.add_option("--budget", config.budget, "tokens attended per KV head per step, sinks and window included")
      ->check(CLI::PositiveNumber);
  command.add_option("--sink-tokens", config.sink_tokens, "first tokens always attended")->check(CLI::NonNegativeNumber);
  command.add_option("--window-tokens", config.window_tokens, "newest tokens always attended")->check(CLI::NonNegativeNumber);
  command.add_option("--prompt-window-tokens", config.prompt_window_tokens,
                     "the prompt's newest tokens that start in the decode window (arkvale, clusterkv, louiskv)")
      ->check(CLI::NonNegativeNumber);
  command.add_option("--dense-layers", config.dense_layers, "layers kept at full attention (default: 0 1)");
  command.add_option("--tau", config.tau, "LouisKV: re-select when the mean query cosine drops below tau")
      ->check(CLI::Range(-1.0, 1.0));
  command.add_option("--cluster-tokens", config.cluster_tokens, "LouisKV: average prompt tokens per K-means cluster")
      ->check(CLI::PositiveNumber);
  command.add_option("--kmeans-iterations", config.kmeans_iterations, "K-means Lloyd iterations")->check(CLI::PositiveNumber);
  command.add_option("--max-segment-tokens", config.max_segment_tokens, "LouisKV: longest generated segment")
      ->check(CLI::PositiveNumber);
  command.add_option("--quest-page-tokens", config.quest_page_tokens, "Quest page size")->check(CLI::PositiveNumber);
  command.add_option("--arkvale-page-tokens", config.arkvale_page_tokens, "ArkVale page size")->check(CLI::PositiveNumber);
  command.add_option("--arkvale-digest", config.arkvale_digest, "ArkVale page digest: sphere or box")
      ->check(CLI::IsMember({"sphere", "box"}));
  command.add_option("--clusterkv-cluster-tokens", config.clusterkv_cluster_tokens, "ClusterKV tokens per cluster")
      ->check(CLI::PositiveNumber);
  command.add_option("--raas-page-tokens", config.raas_page_tokens, "RaaS page size")->check(CLI::PositiveNumber);
  command.add_option("--raas-importance-ratio", config.raas_importance_ratio,
                     "RaaS: refresh a page whose top token draws at least this share of the top token's attention")
      ->check(CLI::Range(0.0, 1.0));
  command.add_option("--kv-seed", config.seed, "seed of K-means initialisation");
}

void apply_calibrated_tau(const CLI::App& command, KvConfig& config, const EngineOptions& engine) {
  if (command.count("--tau") > 0 || engine.random_weights) return;
  if (auto tau = read_calibrated_tau(engine.model_dir)) config.tau = *tau;
}

void add_sampling_options(CLI::App& command, GenerationConfig& config) {
  command.add_option("-n,--n-predict", config.max_new_tokens, "tokens to generate")->check(CLI::NonNegativeNumber);
  command.add_option("--temp", config.sampling.temperature, "temperature (0: greedy)");
  command.add_option("--top-k", config.sampling.top_k, "keep the k most likely tokens (0: off)");
  command.add_option("--top-p", config.sampling.top_p, "nucleus sampling mass (1: off)");
  command.add_option("--min-p", config.sampling.min_p, "drop tokens below min-p times the top probability (0: off)");
  command.add_option("--repeat-penalty", config.sampling.repetition_penalty, "repetition penalty (1: off)");
  command.add_option("--repeat-last-n", config.sampling.repetition_window, "tokens the penalty looks back over (0: all)");
  command.add_option("--seed", config.sampling.seed, "sampling seed");
  command.add_option("--stop", config.stop_strings, "stop when this text is generated (repeatable)");
  command.add_flag("--ignore-eos", config.ignore_eos, "keep generating past end-of-sequence tokens");
}

std::filesystem::path default_haystack() {
  const std::filesystem::path relative = "data/haystack.txt";
  if (std::filesystem::exists(relative)) return relative;
  return std::filesystem::path(LOUISKV_SOURCE_DIR) / relative;
}

std::string read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_error(ErrorKind::io, path.string() + ": cannot open the file");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string read_prompt(const std::string& text, const std::string& file) {
  if (!text.empty() && !file.empty()) throw_error(ErrorKind::invalid_input, "give the prompt with -p or -f, not both");
  if (!file.empty()) return read_text_file(file);
  if (text.empty()) throw_error(ErrorKind::invalid_input, "no prompt: give -p TEXT or -f FILE");
  return text;
}

nlohmann::json kv_stats_json(const KvConfig& config, const KvStats& stats) {
  nlohmann::json document = {{"policy", config.policy},
          {"budget", config.budget},
          {"decode_steps", stats.decode_steps},
          {"retrieval_rate", stats.retrieval_rate()},
          {"h2d_bytes_per_token", stats.h2d_bytes_per_token()},
          {"units_loaded", stats.units_loaded},
          {"tokens_loaded", stats.tokens_loaded},
          {"h2d_bytes", stats.h2d_bytes},
          {"tokens_dropped", stats.tokens_dropped},
          {"score_ms", stats.score_ms},
          {"select_ms", stats.select_ms},
          {"transfer_ms", stats.transfer_ms},
          {"host_syncs", stats.host_syncs}};
  // tau comes from the calibration file when --tau is absent: say which one a run used.
  if (config.policy == "louiskv") document["tau"] = config.tau;
  return document;
}

void print_json(const nlohmann::json& document) {
  std::cout << document.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
}

int exit_code_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_input: return 2;
    case ErrorKind::io: return 3;
    case ErrorKind::unsupported: return 4;
    case ErrorKind::out_of_memory: return 5;
    case ErrorKind::internal: return 70;
  }
  return 70;
}

int run_cli(int argc, const char* const* argv) {
  CLI::App app{"louiskv: long-context LLM inference with KV retrieval"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "louiskv 0.1.0");
  std::vector<std::pair<CLI::App*, CommandRunner>> commands;
  auto add = [&](CommandRunner runner) { commands.emplace_back(app.get_subcommands({}).back(), std::move(runner)); };
  add(add_run_command(app));
  add(add_logits_command(app));
  add(add_tokenize_command(app));
  add(add_detokenize_command(app));
  add(add_inspect_command(app));
  add(add_eval_command(app));
  add(add_calibrate_command(app));
  add(add_demo_command(app));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    int code = app.exit(error);
    return code == 0 ? 0 : 2;
  }
  try {
    for (auto& [command, runner] : commands) {
      if (command->parsed()) return runner();
    }
    return 2;
  } catch (const Error& error) {
    std::cerr << "louiskv: error: " << error.what() << std::endl;
    return exit_code_for(error.kind());
  } catch (const std::bad_alloc&) {
    std::cerr << "louiskv: error: out of memory" << std::endl;
    return exit_code_for(ErrorKind::out_of_memory);
  } catch (const std::exception& error) {
    std::cerr << "louiskv: internal error (a bug in louiskv): " << error.what() << std::endl;
    return exit_code_for(ErrorKind::internal);
  }
}

}  // namespace louiskv::cli
