// `louiskv eval passkey|fidelity|perplexity`: a KV policy measured on the model, with the
// measures of DESIGN.md section 8.
#include <cstdio>
#include <iostream>
#include <string>

#include "cli/command.h"
#include "runtime/evaluation.h"

namespace louiskv::cli {
namespace {

ProgressCallback progress_line(const std::string& what) {
  return [what](int64_t done, int64_t total) {
    std::fprintf(stderr, "\r[%s] %lld/%lld", what.c_str(), static_cast<long long>(done), static_cast<long long>(total));
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
}

nlohmann::json fidelity_json(const FidelityReport& report, const KvConfig& kv, bool with_full) {
  nlohmann::json document = {{"context", report.context},
                             {"steps", report.steps},
                             {"perplexity", report.perplexity},
                             {"attn_recall", report.attn_recall},
                             {"attn_recall_per_layer", report.attn_recall_per_layer},
                             {"retrieval_rate", report.kv.retrieval_rate()},
                             {"h2d_bytes_per_token", report.kv.h2d_bytes_per_token()},
                             {"kv", kv_stats_json(kv, report.kv)}};
  if (with_full) {
    document["kl_to_full"] = report.kl_to_full;
    document["top1_agreement"] = report.top1_agreement;
    document["perplexity_full"] = report.perplexity_full;
  }
  return document;
}

// The runs of --policies, --budgets and --taus: every policy at every budget (and louiskv at
// every tau), except `full`, which ignores the budget and runs once. Without any of them, the
// one run of --kv, --budget and --tau.
std::vector<KvConfig> comparison_runs(const KvConfig& kv, const std::vector<std::string>& policies,
                                      const std::vector<int64_t>& budgets, const std::vector<double>& taus) {
  std::vector<KvConfig> runs;
  for (const std::string& policy : policies.empty() ? std::vector<std::string>{kv.policy} : policies) {
    for (int64_t budget : budgets.empty() ? std::vector<int64_t>{kv.budget} : budgets) {
      const bool sweeps_tau = policy == "louiskv" && !taus.empty();
      for (double tau : sweeps_tau ? taus : std::vector<double>{kv.tau}) {
        KvConfig config = kv;
        config.policy = policy;
        config.budget = budget;
        config.tau = tau;
        runs.push_back(config);
      }
      if (policy == "full") break;
    }
  }
  return runs;
}

nlohmann::json passkey_json(const PasskeyReport& report, const KvConfig& kv) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& item : report.items) {
    rows.push_back({{"context_tokens", item.context_tokens},
                    {"key", item.key},
                    {"answer", item.answer},
                    {"correct", item.correct},
                    {"retrieval_rate", item.kv.retrieval_rate()},
                    {"h2d_bytes_per_token", item.kv.h2d_bytes_per_token()}});
  }
  return {{"task", "passkey"},
          {"accuracy", report.accuracy},
          {"retrieval_rate", report.kv.retrieval_rate()},
          {"h2d_bytes_per_token", report.kv.h2d_bytes_per_token()},
          {"kv", kv_stats_json(kv, report.kv)},
          {"items", rows}};
}

// "louiskv at budget 256, tau 0.55": what a printed line measured.
std::string run_label(const KvConfig& kv) {
  std::string label = kv.policy + " at budget " + std::to_string(kv.budget);
  if (kv.policy == "louiskv") {
    char tau[32];
    std::snprintf(tau, sizeof tau, ", tau %.4g", kv.tau);
    label += tau;
  }
  return label;
}

void print_passkey(const PasskeyReport& report, const KvConfig& kv, bool with_items) {
  if (with_items) {
    for (const auto& item : report.items) {
      std::printf("%6lld tokens  key %s  answer %-12s %s\n", static_cast<long long>(item.context_tokens), item.key.c_str(),
                  nlohmann::json(item.answer).dump().c_str(), item.correct ? "correct" : "WRONG");
    }
  }
  std::printf("%s: accuracy %.3f, retrieval_rate %.3f, h2d_bytes_per_token %.0f\n", run_label(kv).c_str(),
              report.accuracy, report.kv.retrieval_rate(),
              report.kv.h2d_bytes_per_token());
}

void print_fidelity(const FidelityReport& report, const KvConfig& kv, bool with_full) {
  std::printf("%s, context %lld, %lld steps:\n", run_label(kv).c_str(),
              static_cast<long long>(report.context), static_cast<long long>(report.steps));
  if (with_full) {
    std::printf("  kl_to_full %.5f  top1_agreement %.4f  perplexity %.3f (full %.3f)\n", report.kl_to_full,
                report.top1_agreement, report.perplexity, report.perplexity_full);
  } else {
    std::printf("  perplexity %.3f\n", report.perplexity);
  }
  std::printf("  attn_recall %.4f  retrieval_rate %.4f  h2d_bytes_per_token %.0f\n  attn_recall per layer:", report.attn_recall,
              report.kv.retrieval_rate(), report.kv.h2d_bytes_per_token());
  for (double value : report.attn_recall_per_layer) std::printf(" %.4f", value);
  std::printf("\n");
}

}  // namespace

CommandRunner add_eval_command(CLI::App& app) {
  struct Options {
    ModelOptions model;
    KvConfig kv;
    std::vector<std::string> policies;
    std::vector<int64_t> budgets;
    std::vector<double> taus;
    std::string prompts_file, text_file, prompt, prompt_file;
    double text_from = 0.0;
    int64_t context = 8192, steps = 256, answer_tokens = 8, limit = 0, generate = 0, skip_tokens = 0;
    bool json = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* command = app.add_subcommand("eval", "measure a KV policy: passkey, fidelity, perplexity");
  command->require_subcommand(1);
  auto common = [&](CLI::App* sub) {
    options->model.add_to(*sub);
    add_kv_options(*sub, options->kv);
    sub->add_flag("--json", options->json, "print one JSON object");
    sub->add_option("--policies", options->policies, "compare these policies (each prompt's prefill runs once)")
        ->check(CLI::IsMember(kv_policy_names()));
    sub->add_option("--budgets", options->budgets, "compare these budgets (full runs once)")->check(CLI::PositiveNumber);
    sub->add_option("--taus", options->taus, "compare these LouisKV thresholds (louiskv runs once per tau)")
        ->check(CLI::Range(-1.0, 1.0));
  };
  CLI::App* passkey = command->add_subcommand("passkey", "greedy pass-key answers and accuracy");
  common(passkey);
  passkey->add_option("--prompts", options->prompts_file, "JSON: [{\"prompt\", \"key\"}, ...] or {\"passkey\": [...]}")
      ->required();
  passkey->add_option("--answer-tokens", options->answer_tokens, "tokens generated per answer")->check(CLI::PositiveNumber);
  passkey->add_option("--limit", options->limit, "evaluate only the first N prompts (0: all)")->check(CLI::NonNegativeNumber);
  CLI::App* fidelity = command->add_subcommand("fidelity", "teacher-forced decoding beside the full cache");
  CLI::App* perplexity = command->add_subcommand("perplexity", "perplexity of the continuation under the policy");
  for (CLI::App* sub : {fidelity, perplexity}) {
    common(sub);
    sub->add_option("-f,--file", options->text_file, "text file (plain, or JSON with a \"text\" field)");
    sub->add_option("--text-from", options->text_from, "skip this share of the text (0.9: its last 10%)");
    sub->add_option("--context", options->context, "context tokens before the measured steps")->check(CLI::PositiveNumber);
    sub->add_option("--steps", options->steps, "decode steps measured")->check(CLI::PositiveNumber);
    sub->add_option("--skip-tokens", options->skip_tokens,
                    "start this many tokens into the text (after any BOS), for further windows of one text")
        ->check(CLI::NonNegativeNumber);
    sub->add_option("-p,--prompt", options->prompt, "with --generate: the prompt text");
    sub->add_option("--prompt-file", options->prompt_file, "with --generate: a file holding the prompt");
    sub->add_option("--generate", options->generate,
                    "measure on the full cache's greedy continuation of the prompt, this many tokens")
        ->check(CLI::PositiveNumber);
  }

  return [options, passkey, fidelity, perplexity]() {
    CLI::App* parsed = passkey->parsed() ? passkey : fidelity->parsed() ? fidelity : perplexity;
    apply_calibrated_tau(*parsed, options->kv, options->model.engine_options());
    Engine engine(options->model.engine_options());
    const bool comparison = !options->policies.empty() || !options->budgets.empty() || !options->taus.empty();
    const std::vector<KvConfig> runs = comparison_runs(options->kv, options->policies, options->budgets, options->taus);
    if (passkey->parsed()) {
      auto items = load_passkey_items(options->prompts_file);
      if (options->limit > 0 && size_t(options->limit) < items.size()) items.resize(size_t(options->limit));
      auto reports = evaluate_passkey(engine, runs, items, options->answer_tokens, progress_line("passkey"));
      if (options->json && !comparison) {
        print_json(passkey_json(reports.front(), runs.front()));
      } else if (options->json) {
        nlohmann::json rows = nlohmann::json::array();
        for (size_t r = 0; r < runs.size(); ++r) rows.push_back(passkey_json(reports[r], runs[r]));
        print_json({{"task", "passkey"}, {"prompts", items.size()}, {"runs", rows}});
      } else {
        for (size_t r = 0; r < runs.size(); ++r) print_passkey(reports[r], runs[r], !comparison);
      }
      return 0;
    }
    const bool with_full = fidelity->parsed();
    std::vector<int32_t> tokens;
    int64_t context = options->context, steps = options->steps;
    if (options->generate > 0) {
      // The continuation is the full cache's own greedy output; both runs are fed prompt + it.
      if (!options->text_file.empty() || parsed->count("--context") > 0 || parsed->count("--steps") > 0 ||
          parsed->count("--skip-tokens") > 0) {
        throw_error(ErrorKind::invalid_input, "--generate takes its text from -p/--prompt-file and its steps from N: "
                                              "leave out -f, --context, --steps and --skip-tokens");
      }
      if (options->prompt.empty() == options->prompt_file.empty()) {
        throw_error(ErrorKind::invalid_input, "--generate needs the prompt from exactly one of -p TEXT and --prompt-file FILE");
      }
      const std::string prompt = options->prompt_file.empty() ? options->prompt : read_text_file(options->prompt_file);
      const auto prompt_tokens = engine.tokenizer().encode(prompt, true);
      tokens = with_greedy_continuation(engine, prompt_tokens, options->generate);
      context = int64_t(prompt_tokens.size());
      steps = options->generate;
    } else {
      if (options->text_file.empty()) {
        throw_error(ErrorKind::invalid_input, "give the text with -f FILE, or a prompt (-p/--prompt-file) with --generate N");
      }
      if (!options->prompt.empty() || !options->prompt_file.empty()) {
        throw_error(ErrorKind::invalid_input, "-p and --prompt-file go with --generate N");
      }
      tokens = engine.tokenizer().encode(load_evaluation_text(options->text_file, options->text_from), true);
      if (options->skip_tokens > 0) {
        // The tokens the post-processor puts before any text (BOS) stay in front of the window.
        const auto prefix = int64_t(engine.tokenizer().encode("", true).size());
        if (prefix + options->skip_tokens >= int64_t(tokens.size())) {
          throw_error(ErrorKind::invalid_input, "--skip-tokens " + std::to_string(options->skip_tokens) + ": " +
                                                    options->text_file + " has only " + std::to_string(tokens.size()) +
                                                    " tokens");
        }
        tokens.erase(tokens.begin() + prefix, tokens.begin() + prefix + options->skip_tokens);
      }
    }
    auto reports = evaluate_teacher_forced(engine, runs, tokens, context, steps, with_full,
                                           progress_line(with_full ? "fidelity" : "perplexity"));
    const std::string task = with_full ? "fidelity" : "perplexity";
    if (options->json && !comparison) {
      nlohmann::json document = fidelity_json(reports.front(), runs.front(), with_full);
      document["task"] = task;
      if (options->generate > 0) document["generated"] = options->generate;
      print_json(document);
    } else if (options->json) {
      nlohmann::json rows = nlohmann::json::array();
      for (size_t r = 0; r < runs.size(); ++r) {
        nlohmann::json row = fidelity_json(reports[r], runs[r], with_full);
        row["task"] = task;
        rows.push_back(row);
      }
      nlohmann::json document = {{"task", task}, {"context", context}, {"steps", steps}, {"runs", rows}};
      if (options->generate > 0) document["generated"] = options->generate;
      print_json(document);
    } else {
      for (size_t r = 0; r < runs.size(); ++r) print_fidelity(reports[r], runs[r], with_full);
    }
    return 0;
  };
}

}  // namespace louiskv::cli
