#include "runtime/evaluation.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/prefilled_prompt.h"
#include "runtime/recall_probe.h"

namespace louiskv {
namespace {

nlohmann::json read_json(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw_error(ErrorKind::io, file.string() + ": cannot open the file");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& error) {
    throw_error(ErrorKind::invalid_input, file.string() + ": not valid JSON (" + error.what() + ")");
  }
}

std::string first_number(const std::string& text) {
  size_t start = 0;
  while (start < text.size() && !std::isdigit(static_cast<unsigned char>(text[start]))) ++start;
  size_t end = start;
  while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
  return text.substr(start, end - start);
}

void add_stats(KvStats& total, const KvStats& one) {
  total.decode_steps += one.decode_steps;
  total.offloaded_layers = std::max(total.offloaded_layers, one.offloaded_layers);
  total.selections += one.selections;
  total.units_loaded += one.units_loaded;
  total.tokens_loaded += one.tokens_loaded;
  total.h2d_bytes += one.h2d_bytes;
  total.tokens_dropped += one.tokens_dropped;
  total.attended_tokens += one.attended_tokens;
  total.score_ms += one.score_ms;
  total.select_ms += one.select_ms;
  total.transfer_ms += one.transfer_ms;
  total.host_syncs += one.host_syncs;
}

// log-softmax of a row of logits, in double.
std::vector<double> log_probabilities(const std::vector<float>& logits) {
  const double maximum = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float logit : logits) sum += std::exp(double(logit) - maximum);
  const double log_sum = maximum + std::log(sum);
  std::vector<double> result(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) result[i] = double(logits[i]) - log_sum;
  return result;
}

}  // namespace

std::vector<PasskeyItem> load_passkey_items(const std::filesystem::path& file) {
  nlohmann::json document = read_json(file);
  if (document.is_object() && document.contains("passkey")) document = document["passkey"];
  if (!document.is_array()) {
    throw_error(ErrorKind::invalid_input,
                file.string() + ": expected a JSON array of {\"prompt\", \"key\"} objects or an object with a \"passkey\" array");
  }
  std::vector<PasskeyItem> items;
  for (size_t i = 0; i < document.size(); ++i) {
    const auto& entry = document[i];
    if (!entry.is_object() || !entry.contains("prompt") || !entry["prompt"].is_string() || !entry.contains("key")) {
      throw_error(ErrorKind::invalid_input, file.string() + ": item " + std::to_string(i) + " needs a string \"prompt\" and a \"key\"");
    }
    PasskeyItem item;
    item.prompt = entry["prompt"];
    item.key = entry["key"].is_string() ? entry["key"].get<std::string>() : entry["key"].dump();
    if (entry.contains("full_attention_answer")) item.full_attention_answer = entry["full_attention_answer"].get<std::string>();
    items.push_back(std::move(item));
  }
  return items;
}

PasskeyReport evaluate_passkey(Engine& engine, const KvConfig& kv, const std::vector<PasskeyItem>& items,
                               int64_t answer_tokens, const ProgressCallback& progress) {
  return evaluate_passkey(engine, std::vector<KvConfig>{kv}, items, answer_tokens, progress).front();
}

std::vector<PasskeyReport> evaluate_passkey(Engine& engine, const std::vector<KvConfig>& configs,
                                            const std::vector<PasskeyItem>& items, int64_t answer_tokens,
                                            const ProgressCallback& progress) {
  std::vector<PasskeyReport> reports(configs.size());
  std::vector<std::unique_ptr<KvPolicy>> policies;
  for (const KvConfig& config : configs) policies.push_back(engine.make_policy(config));
  std::vector<int64_t> correct(configs.size(), 0);
  GenerationConfig generation;
  generation.max_new_tokens = answer_tokens;
  generation.sampling.temperature = 0.0f;
  for (size_t i = 0; i < items.size(); ++i) {
    const auto prompt = engine.tokenizer().encode(items[i].prompt, true);
    // One policy runs its own prefill; several share one (and hold its K/V meanwhile).
    std::optional<PrefilledPrompt> prefilled;
    if (configs.size() > 1) prefilled.emplace(engine.prefill(prompt));
    for (size_t c = 0; c < configs.size(); ++c) {
      GenerationResult result = prefilled ? engine.generate(*prefilled, generation, *policies[c])
                                          : engine.generate(prompt, generation, *policies[c]);
      PasskeyOutcome outcome;
      outcome.context_tokens = int64_t(prompt.size());
      outcome.key = items[i].key;
      outcome.answer = result.text;
      outcome.correct = first_number(result.text) == items[i].key;
      outcome.kv = result.kv;
      correct[c] += outcome.correct;
      add_stats(reports[c].kv, result.kv);
      reports[c].items.push_back(std::move(outcome));
    }
    if (progress) progress(int64_t(i + 1), int64_t(items.size()));
  }
  for (size_t c = 0; c < configs.size(); ++c) {
    reports[c].accuracy = items.empty() ? 0.0 : double(correct[c]) / double(items.size());
  }
  return reports;
}

std::string load_evaluation_text(const std::filesystem::path& file, double from_fraction) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw_error(ErrorKind::io, file.string() + ": cannot open the file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  if (file.extension() == ".json") {
    nlohmann::json document = nlohmann::json::parse(text, nullptr, false);
    if (document.is_discarded() || !document.is_object() || !document.contains("text") || !document["text"].is_string()) {
      throw_error(ErrorKind::invalid_input, file.string() + ": expected a JSON object with a string field \"text\"");
    }
    text = document["text"];
  }
  if (!(from_fraction >= 0.0 && from_fraction < 1.0)) {
    throw_error(ErrorKind::invalid_input, "--text-from must be in [0, 1), got " + std::to_string(from_fraction));
  }
  size_t start = size_t(double(text.size()) * from_fraction);
  // Start on a character boundary (skip UTF-8 continuation bytes) and at a word.
  while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) ++start;
  return text.substr(start);
}

FidelityReport evaluate_teacher_forced(Engine& engine, const KvConfig& kv, const std::vector<int32_t>& tokens,
                                       int64_t context, int64_t steps, bool compare_with_full,
                                       const ProgressCallback& progress) {
  return evaluate_teacher_forced(engine, std::vector<KvConfig>{kv}, tokens, context, steps, compare_with_full, progress)
      .front();
}

std::vector<FidelityReport> evaluate_teacher_forced(Engine& engine, const std::vector<KvConfig>& configs,
                                                    const std::vector<int32_t>& tokens, int64_t context, int64_t steps,
                                                    bool compare_with_full, const ProgressCallback& progress) {
  if (context < 1) throw_error(ErrorKind::invalid_input, "--context must be at least 1");
  if (steps < 1) throw_error(ErrorKind::invalid_input, "--steps must be at least 1");
  if (int64_t(tokens.size()) < context + steps) {
    throw_error(ErrorKind::invalid_input, "the text has " + std::to_string(tokens.size()) + " tokens; --context " +
                                              std::to_string(context) + " plus --steps " + std::to_string(steps) + " need " +
                                              std::to_string(context + steps));
  }
  engine.check_context(context + steps);
  const int64_t vocab = engine.config().vocab_size;
  const PrefilledPrompt prompt = engine.prefill(std::span<const int32_t>(tokens.data(), size_t(context)));
  const int64_t runs = int64_t(configs.size()) + (compare_with_full ? 1 : 0);
  int64_t runs_done = 0;
  auto step_done = [&](int64_t step) {
    if (progress) progress(runs_done * steps + step + 1, runs * steps);
  };

  // Teacher-forced decoding of one policy: calls `on_logits(step, logits)` with the logits that
  // predict tokens[context + step].
  auto decode = [&](KvPolicy& policy, const std::function<void(int64_t, const std::vector<float>&)>& on_logits) {
    const SequenceId id = engine.new_sequence_id();
    policy.add_sequence(id, context + steps);
    prompt.replay(policy, id);
    std::vector<float> logits(prompt.last_logits().begin(), prompt.last_logits().end());
    for (int64_t step = 0; step < steps; ++step) {
      on_logits(step, logits);
      step_done(step);
      if (step + 1 == steps) break;
      const SequenceId batch[1] = {id};
      const int32_t next[1] = {tokens[size_t(context + step)]};
      const int64_t position[1] = {context + step};
      engine.decoder().decode(batch, next, position, policy, logits.data());
    }
    ++runs_done;
    return id;
  };

  auto argmax = [](const std::vector<float>& row) { return std::max_element(row.begin(), row.end()) - row.begin(); };
  std::vector<std::vector<double>> full_log_p;  // [steps][vocab]
  std::vector<int64_t> full_top1;               // [steps]
  if (compare_with_full) {
    KvConfig full_config;
    full_config.policy = "full";
    auto full = engine.make_policy(full_config);
    const SequenceId id = decode(*full, [&](int64_t, const std::vector<float>& logits) {
      full_log_p.push_back(log_probabilities(logits));
      full_top1.push_back(argmax(logits));
    });
    full->remove_sequence(id);
  }

  std::vector<FidelityReport> reports;
  for (const KvConfig& config : configs) {
    FidelityReport report;
    report.context = context;
    report.steps = steps;
    RecallProbe policy(engine.make_policy(config), engine.kv_shape(), engine.backend());
    double kl_sum = 0, nll_sum = 0, full_nll_sum = 0;
    int64_t agreements = 0;
    const SequenceId id = decode(policy, [&](int64_t step, const std::vector<float>& logits) {
      const int32_t truth = tokens[size_t(context + step)];
      const auto log_p = log_probabilities(logits);
      nll_sum -= log_p[size_t(truth)];
      if (!compare_with_full) return;
      const auto& log_q = full_log_p[size_t(step)];
      full_nll_sum -= log_q[size_t(truth)];
      double kl = 0;
      for (int64_t i = 0; i < vocab; ++i) kl += std::exp(log_q[size_t(i)]) * (log_q[size_t(i)] - log_p[size_t(i)]);
      kl_sum += std::max(0.0, kl);
      agreements += argmax(logits) == full_top1[size_t(step)];
    });
    report.perplexity = std::exp(nll_sum / double(steps));
    if (compare_with_full) {
      report.kl_to_full = kl_sum / double(steps);
      report.top1_agreement = double(agreements) / double(steps);
      report.perplexity_full = std::exp(full_nll_sum / double(steps));
    }
    report.attn_recall_per_layer = policy.recall_per_layer();
    report.attn_recall = policy.recall();
    report.kv = policy.stats(id);
    policy.remove_sequence(id);
    reports.push_back(std::move(report));
  }
  return reports;
}

std::vector<int32_t> with_greedy_continuation(Engine& engine, const std::vector<int32_t>& prompt, int64_t tokens) {
  if (tokens < 1) throw_error(ErrorKind::invalid_input, "--generate must be at least 1");
  if (prompt.empty()) throw_error(ErrorKind::invalid_input, "the prompt is empty");
  engine.check_context(int64_t(prompt.size()) + tokens);
  KvConfig full;
  full.policy = "full";
  auto policy = engine.make_policy(full);
  GenerationConfig generation;
  generation.max_new_tokens = tokens;
  generation.sampling.temperature = 0.0f;
  generation.ignore_eos = true;
  const GenerationResult result = engine.generate(prompt, generation, *policy);
  if (int64_t(result.ids.size()) != tokens) {
    throw_error(ErrorKind::internal, "greedy generation stopped (" + result.stop_reason + ") after " +
                                         std::to_string(result.ids.size()) + " of " + std::to_string(tokens) + " tokens");
  }
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), result.ids.begin(), result.ids.end());
  return all;
}

}  // namespace louiskv
