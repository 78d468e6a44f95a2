// `louiskv calibrate`: picks LouisKV's tau for a model from validation data (a text, or pass-key
// prompts made from a haystack) and writes it beside the model, where `run` and `eval` find it.
#include <cstdio>

#include "cli/command.h"
#include "runtime/calibration.h"
#include "runtime/passkey_prompts.h"

namespace louiskv::cli {
namespace {

void print_progress(int64_t done, int64_t total) {
  std::fprintf(stderr, "\r[calibrate] %lld/%lld", static_cast<long long>(done), static_cast<long long>(total));
  if (done == total) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

}  // namespace

CommandRunner add_calibrate_command(CLI::App& app) {
  struct Options {
    ModelOptions model;
    KvConfig kv;
    std::string text_file, output, haystack;
    double text_from = 0.0;
    int64_t context = 2048, steps = 128;
    int iterations = 6;
    std::optional<double> target_rate, target_top1;
    bool passkey = false;
    std::vector<int64_t> lengths{1024, 2048};
    int per_length = 4;
    uint64_t prompt_seed = 2;
    std::vector<double> taus;
    bool json = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* command = app.add_subcommand("calibrate", "pick LouisKV's tau for a model from validation data");
  options->model.add_to(*command);
  add_kv_options(*command, options->kv);
  auto* file_option = command->add_option("-f,--file", options->text_file, "validation text (plain, or JSON with a \"text\" field)");
  command->add_option("--text-from", options->text_from, "skip this share of the text (0.9: its last 10%)");
  command->add_option("--context", options->context, "context tokens before the measured steps")->check(CLI::PositiveNumber);
  command->add_option("--steps", options->steps, "decode steps measured per probe")->check(CLI::PositiveNumber);
  command->add_option("--iterations", options->iterations, "bisection steps on tau")->check(CLI::PositiveNumber);
  auto* passkey = command->add_flag("--passkey", options->passkey,
                                    "calibrate on validation pass-key prompts made from --haystack instead of a text");
  command->add_option("--haystack", options->haystack, "with --passkey: text to hide the keys in (default: data/haystack.txt)");
  command->add_option("--lengths", options->lengths, "with --passkey: prompt lengths in tokens")->check(CLI::PositiveNumber);
  command->add_option("--prompts-per-length", options->per_length, "with --passkey: prompts of each length")
      ->check(CLI::PositiveNumber);
  command->add_option("--prompt-seed", options->prompt_seed, "with --passkey: seed of the keys and needle depths");
  command->add_option("--taus", options->taus, "with --passkey: the taus probed (default 0.30, 0.325, ..., 0.80)")
      ->check(CLI::Range(-1.0, 1.0));
  file_option->excludes(passkey);
  auto* rate = command->add_option("--target-retrieval-rate", options->target_rate, "highest tau with retrieval_rate <= this")
                   ->check(CLI::Range(0.0, 1.0));
  auto* top1 = command->add_option("--target-top1", options->target_top1, "text only: lowest tau with top1_agreement >= this")
                   ->check(CLI::Range(0.0, 1.0));
  rate->excludes(top1);
  top1->excludes(passkey);
  command->add_option("-o,--output", options->output, "where to write (default: MODEL/louiskv-calibration.json)");
  command->add_flag("--json", options->json, "print one JSON object");

  return [options]() {
    if (options->text_file.empty() && !options->passkey) {
      throw_error(ErrorKind::invalid_input, "calibrate needs validation data: -f TEXT_FILE, or --passkey");
    }
    if (!options->target_rate && !options->target_top1) options->target_rate = 0.25;
    EngineOptions engine_options = options->model.engine_options();
    Engine engine(engine_options);
    const std::filesystem::path file =
        options->output.empty() ? calibration_file(engine_options.model_dir) : std::filesystem::path(options->output);

    if (options->passkey) {
      const std::string haystack =
          read_text_file(options->haystack.empty() ? default_haystack() : std::filesystem::path(options->haystack));
      const auto items =
          make_passkey_prompts(engine.tokenizer(), haystack, options->lengths, options->per_length, options->prompt_seed);
      std::vector<double> taus = options->taus;
      if (taus.empty()) {
        for (int step = 0; step <= 20; ++step) taus.push_back(0.30 + 0.025 * step);
      }
      PasskeyCalibrationResult result =
          calibrate_tau_on_passkey(engine, options->kv, items, *options->target_rate, taus, print_progress);
      write_calibration(file, result, *options->target_rate);
      if (options->json) {
        print_json({{"tau", result.tau},
                    {"retrieval_rate", result.report.kv.retrieval_rate()},
                    {"accuracy", result.report.accuracy},
                    {"accuracy_full", result.full.accuracy},
                    {"file", file.string()}});
      } else {
        std::printf("full cache: accuracy %.3f on %zu prompts\n", result.full.accuracy, items.size());
        for (const auto& probe : result.probes) {
          std::printf("tau %.4f: retrieval_rate %.4f, accuracy %.3f\n", probe.tau, probe.report.kv.retrieval_rate(),
                      probe.report.accuracy);
        }
        std::printf("tau = %.4f written to %s\n", result.tau, file.string().c_str());
      }
      return 0;
    }

    const auto tokens = engine.tokenizer().encode(load_evaluation_text(options->text_file, options->text_from), true);
    CalibrationTarget target{options->target_rate, options->target_top1};
    CalibrationResult result = calibrate_tau(engine, options->kv, tokens, options->context, options->steps, target,
                                             options->iterations, print_progress);
    write_calibration(file, result, target);
    if (options->json) {
      print_json({{"tau", result.tau},
                  {"retrieval_rate", result.report.kv.retrieval_rate()},
                  {"top1_agreement", result.report.top1_agreement},
                  {"file", file.string()}});
    } else {
      for (const auto& probe : result.probes) {
        std::printf("tau %.4f: retrieval_rate %.4f, top1_agreement %.4f\n", probe.tau, probe.report.kv.retrieval_rate(),
                    probe.report.top1_agreement);
      }
      std::printf("tau = %.4f written to %s\n", result.tau, file.string().c_str());
    }
    return 0;
  };
}

}  // namespace louiskv::cli
