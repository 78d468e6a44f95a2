// The evaluations of `louiskv eval` and `louiskv demo`: pass-key retrieval (greedy answers),
// teacher-forced fidelity against the full cache, and perplexity, each under a KV policy.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "louiskv/kv_config.h"
#include "louiskv/stats.h"
#include "runtime/engine.h"

namespace louiskv {

// Called with (items done, items in all) during long runs.
using ProgressCallback = std::function<void(int64_t done, int64_t total)>;

struct PasskeyItem {
  std::string prompt;
  std::string key;
  std::optional<std::string> full_attention_answer;  // when the file records it
};

// FILE is a JSON array of {"prompt", "key"} objects, or an object holding one under "passkey".
std::vector<PasskeyItem> load_passkey_items(const std::filesystem::path& file);

struct PasskeyOutcome {
  int64_t context_tokens = 0;
  std::string key;
  std::string answer;
  bool correct = false;  // the first number of the answer is the key
  KvStats kv;
};

struct PasskeyReport {
  std::vector<PasskeyOutcome> items;
  double accuracy = 0;
  KvStats kv;  // summed over items
};

PasskeyReport evaluate_passkey(Engine& engine, const KvConfig& kv, const std::vector<PasskeyItem>& items,
                               int64_t answer_tokens = 8, const ProgressCallback& progress = {});
// Several policies on the same items, one report per config in order. Each prompt's prefill runs
// once and is replayed into every policy (PrefilledPrompt), which gives the same answers as a
// prefill per policy.
std::vector<PasskeyReport> evaluate_passkey(Engine& engine, const std::vector<KvConfig>& configs,
                                            const std::vector<PasskeyItem>& items, int64_t answer_tokens = 8,
                                            const ProgressCallback& progress = {});

// Text of a file: plain text, or the "text" field of a JSON object; `from_fraction` skips that
// share of its characters (0.9: the last 10%, the held-out part of the bundled model's data).
std::string load_evaluation_text(const std::filesystem::path& file, double from_fraction);

struct FidelityReport {
  int64_t context = 0;
  int64_t steps = 0;
  double kl_to_full = 0;        // mean over steps of KL(full || policy) of the next-token distributions
  double top1_agreement = 0;    // share of steps whose argmax agrees with the full cache's
  double attn_recall = 0;       // mean over steps, layers and heads
  std::vector<double> attn_recall_per_layer;
  double perplexity = 0;        // of the true continuation under the policy
  double perplexity_full = 0;   // under the full cache (when compared)
  KvStats kv;
};

// Teacher-forced decoding of `steps` tokens after the first `context` tokens of `tokens`, with the
// policy and (when `compare_with_full`) with the full cache, both fed the same tokens.
FidelityReport evaluate_teacher_forced(Engine& engine, const KvConfig& kv, const std::vector<int32_t>& tokens,
                                       int64_t context, int64_t steps, bool compare_with_full,
                                       const ProgressCallback& progress = {});
// Several policies on the same text, one report per config in order. The prefill of the context
// runs once and is replayed into every policy, and the full cache's run (teacher-forced, so the
// same for every policy) is decoded once.
std::vector<FidelityReport> evaluate_teacher_forced(Engine& engine, const std::vector<KvConfig>& configs,
                                                    const std::vector<int32_t>& tokens, int64_t context, int64_t steps,
                                                    bool compare_with_full, const ProgressCallback& progress = {});

// `prompt` followed by the full cache's own greedy continuation of `tokens` ids, generated with
// end-of-sequence ids ignored so that the continuation has exactly that length. Teacher-forcing
// a policy on it (evaluate_teacher_forced with context = prompt size, steps = tokens) measures
// the policy on the long output the model itself writes, the long-decode setting of RaaS.
std::vector<int32_t> with_greedy_continuation(Engine& engine, const std::vector<int32_t>& prompt, int64_t tokens);

}  // namespace louiskv
