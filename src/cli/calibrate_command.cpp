// `louiskv calibrate`: picks LouisKV's tau for a model from validation text and writes it beside
// the model, where `run` and `eval` find it.
#include <cstdio>

#include "cli/command.h"
#include "runtime/calibration.h"

namespace louiskv::cli {

CommandRunner add_calibrate_command(CLI::App& app) {
  struct Options {
    ModelOptions model;
    KvConfig kv;
    std::string text_file, output;
    double text_from = 0.0;
    int64_t context = 2048, steps = 128;
    int iterations = 6;
    std::optional<double> target_rate, target_top1;
    bool json = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* command = app.add_subcommand("calibrate", "pick LouisKV's tau for a model from validation text");
  options->model.add_to(*command);
  add_kv_options(*command, options->kv);
  command->add_option("-f,--file", options->text_file, "validation text (plain, or JSON with a \"text\" field)")->required();
  command->add_option("--text-from", options->text_from, "skip this share of the text (0.9: its last 10%)");
  command->add_option("--context", options->context, "context tokens before the measured steps")->check(CLI::PositiveNumber);
  command->add_option("--steps", options->steps, "decode steps measured per probe")->check(CLI::PositiveNumber);
  command->add_option("--iterations", options->iterations, "bisection steps on tau")->check(CLI::PositiveNumber);
  auto* rate = command->add_option("--target-retrieval-rate", options->target_rate, "highest tau with retrieval_rate <= this")
                   ->check(CLI::Range(0.0, 1.0));
  auto* top1 = command->add_option("--target-top1", options->target_top1, "lowest tau with top1_agreement >= this")
                   ->check(CLI::Range(0.0, 1.0));
  rate->excludes(top1);
  command->add_option("-o,--output", options->output, "where to write (default: MODEL/louiskv-calibration.json)");
  command->add_flag("--json", options->json, "print one JSON object");

  return [options]() {
    if (!options->target_rate && !options->target_top1) options->target_rate = 0.25;
    EngineOptions engine_options = options->model.engine_options();
    Engine engine(engine_options);
    const auto tokens = engine.tokenizer().encode(load_evaluation_text(options->text_file, options->text_from), true);
    CalibrationTarget target{options->target_rate, options->target_top1};
    CalibrationResult result = calibrate_tau(engine, options->kv, tokens, options->context, options->steps, target,
                                             options->iterations, [](int64_t done, int64_t total) {
                                               std::fprintf(stderr, "\r[calibrate] probe %lld/%lld", static_cast<long long>(done),
                                                            static_cast<long long>(total));
                                               if (done == total) std::fprintf(stderr, "\n");
                                             });
    const std::filesystem::path file =
        options->output.empty() ? calibration_file(engine_options.model_dir) : std::filesystem::path(options->output);
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
