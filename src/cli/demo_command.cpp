// `louiskv demo`: the main job. Long-context pass-key retrieval on the bundled model with every
// KV policy at one budget, plus a teacher-forced fidelity run, in one table.
#include <chrono>
#include <cstdio>

#include "cli/command.h"
#include "runtime/evaluation.h"
#include "runtime/passkey_prompts.h"

namespace louiskv::cli {

CommandRunner add_demo_command(CLI::App& app) {
  struct Options {
    ModelOptions model;
    KvConfig kv;
    std::vector<std::string> policies;
    std::string haystack;
    std::vector<int64_t> lengths{1024, 2048};
    int per_length = 3;
    int64_t fidelity_context = 2048, fidelity_steps = 64;
    uint64_t seed = 1;
    bool json = false;
  };
  auto options = std::make_shared<Options>();
  options->kv.budget = 256;
  CLI::App* command = app.add_subcommand("demo", "pass-key retrieval with every KV policy at one budget, in one table");
  options->model.add_to(*command);
  add_kv_options(*command, options->kv);
  command->add_option("--policies", options->policies, "policies to compare (default: all)");
  command->add_option("--haystack", options->haystack, "long text to hide the pass keys in (default: data/haystack.txt)");
  command->add_option("--lengths", options->lengths, "prompt lengths in tokens")->check(CLI::PositiveNumber);
  command->add_option("--prompts-per-length", options->per_length, "prompts of each length")->check(CLI::PositiveNumber);
  command->add_option("--fidelity-context", options->fidelity_context, "context of the fidelity run")->check(CLI::PositiveNumber);
  command->add_option("--fidelity-steps", options->fidelity_steps, "teacher-forced steps of the fidelity run")
      ->check(CLI::PositiveNumber);
  command->add_option("--prompt-seed", options->seed, "seed of the keys and needle depths");
  command->add_flag("--json", options->json, "print one JSON object");

  return [options, command]() {
    const EngineOptions engine_options = options->model.engine_options();
    apply_calibrated_tau(*command, options->kv, engine_options);
    Engine engine(engine_options);
    const std::string haystack = read_text_file(options->haystack.empty() ? default_haystack() : std::filesystem::path(options->haystack));
    const auto items = make_passkey_prompts(engine.tokenizer(), haystack, options->lengths, options->per_length, options->seed);
    const auto fidelity_tokens = engine.tokenizer().encode(haystack, true);
    std::vector<std::string> policies = options->policies.empty() ? kv_policy_names() : options->policies;

    nlohmann::json rows = nlohmann::json::array();
    if (!options->json) {
      std::printf("pass-key retrieval, %zu prompts of %s tokens; fidelity over %lld steps after %lld tokens; budget %lld\n",
                  items.size(), [&] {
                    std::string text;
                    for (auto length : options->lengths) text += (text.empty() ? "" : "/") + std::to_string(length);
                    return text;
                  }().c_str(),
                  static_cast<long long>(options->fidelity_steps), static_cast<long long>(options->fidelity_context),
                  static_cast<long long>(options->kv.budget));
    }
    for (const auto& policy : policies) {
      KvConfig kv = options->kv;
      kv.policy = policy;
      const auto start = std::chrono::steady_clock::now();
      auto progress = [&](const char* what) {
        return [policy, what](int64_t done, int64_t total) {
          std::fprintf(stderr, "\r[demo] %-10s %s %lld/%lld   ", policy.c_str(), what, static_cast<long long>(done),
                       static_cast<long long>(total));
          std::fflush(stderr);
        };
      };
      PasskeyReport passkey = evaluate_passkey(engine, kv, items, 8, progress("passkey"));
      FidelityReport fidelity = evaluate_teacher_forced(engine, kv, fidelity_tokens, options->fidelity_context,
                                                        options->fidelity_steps, true, progress("fidelity"));
      std::fprintf(stderr, "\r%60s\r", "");
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      KvStats decode = passkey.kv;
      rows.push_back({{"policy", policy},
                      {"accuracy", passkey.accuracy},
                      {"top1_agreement", fidelity.top1_agreement},
                      {"kl_to_full", fidelity.kl_to_full},
                      {"attn_recall", fidelity.attn_recall},
                      {"retrieval_rate", fidelity.kv.retrieval_rate()},
                      {"h2d_bytes_per_token", fidelity.kv.h2d_bytes_per_token()},
                      {"passkey_retrieval_rate", decode.retrieval_rate()},
                      {"seconds", seconds}});
      if (!options->json) {
        if (rows.size() == 1) {
          std::printf("%-10s %9s %15s %12s %15s %20s\n", "policy", "accuracy", "top1_agreement", "attn_recall", "retrieval_rate",
                      "h2d_bytes_per_token");
        }
        std::printf("%-10s %9.3f %15.4f %12.4f %15.4f %20.0f\n", policy.c_str(), passkey.accuracy, fidelity.top1_agreement,
                    fidelity.attn_recall, fidelity.kv.retrieval_rate(), fidelity.kv.h2d_bytes_per_token());
        std::fflush(stdout);
      }
    }
    if (options->json) {
      print_json({{"budget", options->kv.budget}, {"prompts", items.size()}, {"policies", rows}});
    }
    return 0;
  };
}

}  // namespace louiskv::cli
