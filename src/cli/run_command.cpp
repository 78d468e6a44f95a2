// `louiskv run`: generate text from a prompt, streaming it to stdout.
#include <cstdio>
#include <iostream>

#include "cli/command.h"

namespace louiskv::cli {

CommandRunner add_run_command(CLI::App& app) {
  struct Options {
    ModelOptions model;
    KvConfig kv;
    GenerationConfig generation;
    std::string prompt, prompt_file;
    bool json = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* command = app.add_subcommand("run", "generate text from a prompt");
  options->model.add_to(*command);
  add_kv_options(*command, options->kv);
  add_sampling_options(*command, options->generation);
  command->add_option("-p,--prompt", options->prompt, "prompt text");
  command->add_option("-f,--file", options->prompt_file, "read the prompt from a file");
  command->add_flag("--json", options->json, "print one JSON object instead of streaming text");

  return [options, command]() {
    const std::string prompt_text = read_prompt(options->prompt, options->prompt_file);
    apply_calibrated_tau(*command, options->kv, options->model.engine_options());
    Engine engine(options->model.engine_options());
    std::vector<int32_t> prompt = engine.tokenizer().encode(prompt_text, true);
    auto policy = engine.make_policy(options->kv);
    TextCallback stream;
    if (!options->json) {
      stream = [](const std::string& text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
      };
    }
    GenerationResult result = engine.generate(prompt, options->generation, *policy, stream);
    if (options->json) {
      print_json({{"prompt_tokens", result.stats.prompt_tokens},
                  {"ids", result.ids},
                  {"text", result.text},
                  {"stop_reason", result.stop_reason},
                  {"stats",
                   {{"ttft_ms", result.stats.ttft_ms},
                    {"tok_per_s", result.stats.tok_per_s},
                    {"prefill_tok_per_s", result.stats.prefill_tok_per_s},
                    {"generated_tokens", result.stats.generated_tokens}}},
                  {"kv", kv_stats_json(options->kv, result.kv)}});
    } else {
      std::cout << std::endl;
      std::fprintf(stderr, "\n[%lld prompt tokens, %lld generated, ttft %.1f ms, %.1f tok/s, stop: %s]\n",
                   static_cast<long long>(result.stats.prompt_tokens), static_cast<long long>(result.stats.generated_tokens),
                   result.stats.ttft_ms, result.stats.tok_per_s, result.stop_reason.c_str());
    }
    return 0;
  };
}

}  // namespace louiskv::cli
