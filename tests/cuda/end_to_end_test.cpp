// The bundled tiny-llama on the GPU, end to end, in both precisions of the CUDA backend: the 20
// reference pass-key prompts give the full-attention answers with `full` and with `louiskv` at
// budget 256, and teacher-forced decoding of held-out essay text agrees with the CPU backend's next
// token at least 99% of the time in the f32 mode (and as often as bf16 rounding allows in bf16).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cuda/parity_harness.h"
#include "runtime/engine.h"
#include "runtime/evaluation.h"
#include "support/test_support.h"

namespace louiskv {
namespace {

EngineOptions options_for(const std::string& device, const std::string& dtype = "auto") {
  EngineOptions options;
  options.model_dir = testing::bundled_model_dir();
  options.device = device;
  options.dtype = dtype;
  options.threads = 0;
  return options;
}

// The GPU's two modes: the fast path and the precision mode.
const char* const gpu_dtypes[] = {"bf16", "f32"};

KvConfig louiskv_config() {
  KvConfig config;
  config.policy = "louiskv";
  config.budget = 256;
  return config;
}

TEST(CudaEndToEnd, PasskeyPromptsGiveTheFullAttentionAnswers) {
  LOUISKV_REQUIRE_CUDA();
  LOUISKV_REQUIRE_SHARED();
  for (const char* dtype : gpu_dtypes) {
    SCOPED_TRACE(dtype);
    Engine engine(options_for("cuda", dtype));
    ASSERT_EQ(dtype_name(engine.backend().activation_dtype()), dtype);
    for (const KvConfig& config : {KvConfig{}, louiskv_config()}) {
      SCOPED_TRACE(config.policy);
      auto policy = engine.make_policy(config);
      int index = 0, correct = 0;
      KvStats total;
      for (const auto& item : testing::tiny_llama_reference()["passkey"]) {
        SCOPED_TRACE("pass-key prompt " + std::to_string(index++) + " of " +
                     std::to_string(item["context_tokens"].get<int>()) + " tokens");
        const std::string expected = item["full_attention_answer"];
        const auto prompt = engine.tokenizer().encode(item["prompt"].get<std::string>(), true);
        GenerationConfig generation;
        generation.max_new_tokens = 6;
        generation.sampling.temperature = 0.0f;
        GenerationResult result = engine.generate(prompt, generation, *policy);
        EXPECT_EQ(result.text.substr(0, expected.size()), expected);
        correct += result.text.substr(0, expected.size()) == expected;
        total.decode_steps += result.kv.decode_steps;
        total.selections += result.kv.selections;
        total.h2d_bytes += result.kv.h2d_bytes;
        total.host_syncs += result.kv.host_syncs;
        total.offloaded_layers = result.kv.offloaded_layers;
      }
      std::printf("[e2e] %-4s %-8s passkey %d/%d, retrieval_rate %.3f, h2d_bytes_per_token %.0f, host_syncs %lld\n",
                  dtype, config.policy.c_str(), correct, index, total.retrieval_rate(), total.h2d_bytes_per_token(),
                  (long long)total.host_syncs);
    }
  }
}

// The logits after `context` tokens and at each of the next `steps` - 1 teacher-forced steps.
std::vector<std::vector<float>> teacher_forced_logits(Engine& engine, const KvConfig& config,
                                                      std::span<const int32_t> tokens, int64_t context, int64_t steps) {
  auto policy = engine.make_policy(config);
  const SequenceId id = engine.new_sequence_id();
  const int64_t vocab = engine.config().vocab_size;
  policy->add_sequence(id, context + steps);
  std::vector<float> logits(static_cast<size_t>(vocab));
  engine.decoder().prefill(id, tokens.first(size_t(context)), *policy, context - 1,
                           [&](int64_t, const float* row, int64_t rows) {
                             std::copy(row + (rows - 1) * vocab, row + rows * vocab, logits.begin());
                           });
  std::vector<std::vector<float>> all;
  for (int64_t step = 0; step < steps; ++step) {
    all.push_back(logits);
    if (step + 1 == steps) break;
    const SequenceId batch[1] = {id};
    const int32_t next[1] = {tokens[size_t(context + step)]};
    const int64_t position[1] = {context + step};
    engine.decoder().decode(batch, next, position, *policy, logits.data());
  }
  policy->remove_sequence(id);
  return all;
}

int64_t argmax(const std::vector<float>& row) { return std::max_element(row.begin(), row.end()) - row.begin(); }

TEST(CudaEndToEnd, TeacherForcedTop1AgreesWithTheCpu) {
  LOUISKV_REQUIRE_CUDA();
  LOUISKV_REQUIRE_SHARED();
  Engine cpu(options_for("cpu"));
  std::vector<std::unique_ptr<Engine>> gpus;
  for (const char* dtype : gpu_dtypes) gpus.push_back(std::make_unique<Engine>(options_for("cuda", dtype)));
  // Held-out text: the last 10% of the essays. Four windows of it, each a prompt of `context`
  // tokens followed by `steps` teacher-forced steps, 2048 steps in all.
  const std::string text = load_evaluation_text(*testing::shared_dir() / "data" / "pg_essays.json", 0.9);
  const std::vector<int32_t> tokens = cpu.tokenizer().encode(text.substr(0, 120000), true);
  const int64_t context = 2048, steps = 512, windows = 4;
  ASSERT_GE(int64_t(tokens.size()), windows * (context + steps));
  for (const KvConfig& config : {KvConfig{}, louiskv_config()}) {
    SCOPED_TRACE(config.policy);
    std::vector<int64_t> agree(gpus.size(), 0), near_ties(gpus.size(), 0);
    int64_t total = 0;
    for (int64_t window = 0; window < windows; ++window) {
      std::span<const int32_t> slice(tokens.data() + window * (context + steps), size_t(context + steps));
      auto on_cpu = teacher_forced_logits(cpu, config, slice, context, steps);
      for (size_t mode = 0; mode < gpus.size(); ++mode) {
        auto on_gpu = teacher_forced_logits(*gpus[mode], config, slice, context, steps);
        int64_t window_agree = 0;
        for (int64_t step = 0; step < steps; ++step) {
          const std::vector<float>& reference = on_cpu[size_t(step)];
          const int64_t expected = argmax(reference), got = argmax(on_gpu[size_t(step)]);
          window_agree += expected == got;
          // How close the CPU's own call was: its logit gap between its choice and the GPU's.
          if (expected != got && reference[size_t(expected)] - reference[size_t(got)] < 0.05f) ++near_ties[mode];
        }
        agree[mode] += window_agree;
        std::printf("[e2e] %-4s %-8s window %lld: top1_agreement %.4f\n", gpu_dtypes[mode], config.policy.c_str(),
                    (long long)window, double(window_agree) / double(steps));
      }
      total += steps;
    }
    for (size_t mode = 0; mode < gpus.size(); ++mode) {
      const std::string dtype = gpu_dtypes[mode];
      SCOPED_TRACE(dtype);
      const double top1_agreement = double(agree[mode]) / double(total);
      std::printf("[e2e] %-4s %-8s top1_agreement gpu vs cpu %.4f over %lld steps (%lld disagreements, %lld of them "
                  "where the CPU's top two logits are within 0.05)\n",
                  dtype.c_str(), config.policy.c_str(), top1_agreement, (long long)total,
                  (long long)(total - agree[mode]), (long long)near_ties[mode]);
      if (dtype == "f32") {
        // The precision mode computes what the CPU computes, up to the order of fp32 sums; under
        // louiskv both then cluster the same keys and select the same units.
        EXPECT_GE(top1_agreement, 0.99);
      } else if (config.policy == "full") {
        // bf16 rounds every activation: the CPU itself with its activations and KV rounded to bf16
        // after each op agrees with its f32 self at 0.978 on these windows, so bf16 on the GPU is
        // held to what that rounding allows, not to 0.99.
        EXPECT_GE(top1_agreement, 0.97);
      } else {
        // Under louiskv bf16 and f32 keys may also cluster into other units and select others.
        EXPECT_GE(top1_agreement, 0.9);
      }
    }
  }
}

}  // namespace
}  // namespace louiskv
