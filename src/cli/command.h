// Shared pieces of the `louiskv` subcommands: the options every command takes, the registry
// through which each command file adds itself, and JSON printing.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "louiskv/generation.h"
#include "louiskv/kv_config.h"
#include "runtime/engine.h"

namespace louiskv::cli {

// Options of the model and the machine (-m, --device, --dtype, --threads, --random-weights).
struct ModelOptions {
  std::string model_dir;
  std::string device = "auto";
  std::string dtype = "auto";
  int threads = 0;
  bool random_weights = false;
  uint64_t weight_seed = 0;
  int64_t prefill_chunk = 256;

  void add_to(CLI::App& command);
  EngineOptions engine_options(int64_t max_batch = 1) const;
};

// The bundled model: ./models/tiny-llama-14m when run from the repository, else the copy in the
// source tree louiskv was built from.
std::filesystem::path default_model_dir();

void add_kv_options(CLI::App& command, KvConfig& config);
// When --tau was not given on `command`, takes tau from the model's calibration file, if any.
void apply_calibrated_tau(const CLI::App& command, KvConfig& config, const EngineOptions& engine);
void add_sampling_options(CLI::App& command, GenerationConfig& config);

// Reads the prompt from -p TEXT or -f FILE (exactly one); errors name the file.
std::string read_prompt(const std::string& text, const std::string& file);
std::string read_text_file(const std::filesystem::path& path);
// data/haystack.txt: public-domain text shipped with the repository (held-out War and Peace), so
// that a fresh clone can build pass-key prompts for the demo and for calibration.
std::filesystem::path default_haystack();

// The policy, its budget and its counters, with the names of DESIGN.md section 8.
nlohmann::json kv_stats_json(const KvConfig& config, const KvStats& stats);

// Prints JSON on one line; invalid UTF-8 in generated text is replaced, never fatal.
void print_json(const nlohmann::json& document);

// A subcommand declares its options on `app` (the louiskv app) and returns the function that runs
// it once the command line is parsed. One file per command.
using CommandRunner = std::function<int()>;
CommandRunner add_run_command(CLI::App& app);
CommandRunner add_logits_command(CLI::App& app);
CommandRunner add_tokenize_command(CLI::App& app);
CommandRunner add_detokenize_command(CLI::App& app);
CommandRunner add_inspect_command(CLI::App& app);
CommandRunner add_eval_command(CLI::App& app);
CommandRunner add_calibrate_command(CLI::App& app);
CommandRunner add_demo_command(CLI::App& app);

// Builds the whole CLI and runs it on argv; returns the exit code. Used by main and the CLI tests.
int run_cli(int argc, const char* const* argv);

// Exit codes by error kind (docs/cli.md).
int exit_code_for(ErrorKind kind);

}  // namespace louiskv::cli
