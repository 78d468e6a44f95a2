// `louiskv logits`: the model's next-token logits at every prompt position (top K of each, and
// the log-sum-exp over the vocabulary), for comparisons with other implementations.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "cli/command.h"

namespace louiskv::cli {

CommandRunner add_logits_command(CLI::App& app) {
  struct Options {
    ModelOptions model;
    std::string prompt, prompt_file;
    int top = 10;
    bool json = false;
    bool no_special = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* command = app.add_subcommand("logits", "print the top logits at every prompt position");
  options->model.add_to(*command);
  command->add_option("-p,--prompt", options->prompt, "prompt text");
  command->add_option("-f,--file", options->prompt_file, "read the prompt from a file");
  command->add_option("--top", options->top, "logits listed per position")->check(CLI::PositiveNumber);
  command->add_flag("--no-special", options->no_special, "do not add BOS/special tokens to the prompt");
  command->add_flag("--json", options->json, "print one JSON object");

  return [options]() {
    const std::string text = read_prompt(options->prompt, options->prompt_file);
    Engine engine(options->model.engine_options());
    std::vector<int32_t> ids = engine.tokenizer().encode(text, !options->no_special);
    engine.check_context(int64_t(ids.size()));
    auto policy = engine.make_policy(KvConfig{});
    const int64_t vocab = engine.config().vocab_size;
    const int top = int(std::min<int64_t>(options->top, vocab));
    nlohmann::json positions = nlohmann::json::array();
    policy->add_sequence(0, int64_t(ids.size()));
    std::vector<int32_t> order(static_cast<size_t>(vocab));
    engine.decoder().prefill(0, ids, *policy, 0, [&](int64_t first, const float* logits, int64_t rows) {
      for (int64_t r = 0; r < rows; ++r) {
        const float* row = logits + r * vocab;
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + top, order.end(),
                          [row](int32_t a, int32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
        const float maximum = row[order[0]];
        double sum = 0.0;
        for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(row[i]) - maximum);
        nlohmann::json top_ids = nlohmann::json::array(), top_logits = nlohmann::json::array();
        for (int i = 0; i < top; ++i) {
          top_ids.push_back(order[size_t(i)]);
          top_logits.push_back(row[order[size_t(i)]]);
        }
        const double logsumexp = double(maximum) + std::log(sum);
        if (options->json) {
          positions.push_back({{"pos", first + r}, {"top_ids", top_ids}, {"top_logits", top_logits}, {"logsumexp", logsumexp}});
        } else {
          std::printf("%6lld  lse %9.4f ", static_cast<long long>(first + r), logsumexp);
          for (int i = 0; i < top; ++i) std::printf(" %d:%.4f", order[size_t(i)], double(row[order[size_t(i)]]));
          std::printf("\n");
        }
      }
    });
    if (options->json) print_json({{"ids", ids}, {"positions", positions}});
    return 0;
  };
}

}  // namespace louiskv::cli
