// Decoding end to end on the GPU with seeded random weights of a real model's shapes: batches of
// sequences whose prompts are `--context` tokens, decoded greedily under `full` (every token on
// the device) and `louiskv` (the KV in pinned host memory, a working set of `--budget` tokens per
// KV head on the device). Prints tok_per_s, h2d_bytes_per_token, retrieval_rate and the host's
// waits per token (DESIGN.md section 8), and "summary |" lines for scripts/device-check.
//
//   bench_decode_end_to_end [--config FILE] [--context 32768] [--steps 64] [--batches 1,8]
//                           [--budget 2048] [--policies full,louiskv] [--tau 0.7]
//                           [--profile-steps 0]
//
// --profile-steps N decodes N more untimed steps per batch between cudaProfilerStart and
// cudaProfilerStop, so that a profiler started with its collection off (Nsight Compute's
// `--profile-from-start off`) sees exactly N decode steps and nothing of prefill.
//
// --config defaults to $LOUISKV_SHARED_DIR/configs/llama-3.2-1b.json; without it the benchmark
// says so and measures nothing. Prefill (and LouisKV's k-means) is timed too, for the record.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_profiler_api.h>
#include <nlohmann/json.hpp>

#include "backend/cuda/cuda_backend.h"
#include "io/model_config.h"
#include "kv/kv_policy.h"
#include "model/decoder.h"
#include "model/model.h"

namespace {

using namespace louiskv;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> values;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) values.push_back(std::stoll(item));
  return values;
}

std::vector<std::string> parse_names(const std::string& text) {
  std::vector<std::string> names;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) names.push_back(item);
  return names;
}

struct Options {
  std::filesystem::path config;
  int64_t context = 32768, steps = 64, budget = 2048, profile_steps = 0;
  double tau = 0.7;
  std::vector<int64_t> batches{1, 8};
  std::vector<std::string> policies{"full", "louiskv"};
};

struct Measure {
  double tok_per_s = 0, h2d_bytes_per_token = 0, retrieval_rate = 0, host_syncs_per_token = 0;
  double step_ms = 0, score_ms = 0, select_ms = 0, transfer_ms = 0;  // per step, summed over the batch
};

// Greedy decoding of `steps` tokens for the first `batch` sequences (after 2 untimed steps).
Measure decode(Decoder& decoder, KvPolicy& policy, const ModelConfig& config, std::vector<int64_t>& positions,
               std::vector<int32_t>& next_tokens, int64_t batch, int64_t steps, int64_t profile_steps) {
  std::vector<SequenceId> ids;
  for (int64_t b = 0; b < batch; ++b) ids.push_back(b);
  std::vector<float> logits(size_t(batch * config.vocab_size));
  auto step = [&] {
    std::vector<int64_t> at(positions.begin(), positions.begin() + batch);
    std::vector<int32_t> tokens(next_tokens.begin(), next_tokens.begin() + batch);
    decoder.decode(ids, tokens, at, policy, logits.data());
    for (int64_t b = 0; b < batch; ++b) {
      const float* row = logits.data() + b * config.vocab_size;
      next_tokens[size_t(b)] = int32_t(std::max_element(row, row + config.vocab_size) - row);
      ++positions[size_t(b)];
    }
  };
  for (int i = 0; i < 2; ++i) step();
  if (profile_steps > 0) {
    // Profiler calls only bracket the collection; without a profiler they do nothing.
    (void)cudaProfilerStart();
    for (int64_t i = 0; i < profile_steps; ++i) step();
    (void)cudaProfilerStop();
  }
  std::vector<KvStats> before;
  for (SequenceId id : ids) before.push_back(policy.stats(id));
  auto start = Clock::now();
  for (int64_t i = 0; i < steps; ++i) step();
  const double seconds = seconds_since(start);
  Measure measure;
  measure.tok_per_s = double(batch * steps) / seconds;
  double h2d = 0, syncs = 0, selections = 0, opportunities = 0;
  measure.step_ms = seconds * 1e3 / double(steps);
  for (size_t b = 0; b < ids.size(); ++b) {
    KvStats after = policy.stats(ids[b]);
    measure.score_ms += (after.score_ms - before[b].score_ms) / double(steps);
    measure.select_ms += (after.select_ms - before[b].select_ms) / double(steps);
    measure.transfer_ms += (after.transfer_ms - before[b].transfer_ms) / double(steps);
    h2d += double(after.h2d_bytes - before[b].h2d_bytes);
    syncs += double(after.host_syncs - before[b].host_syncs);
    selections += double(after.selections - before[b].selections);
    opportunities += double((after.decode_steps - before[b].decode_steps) * after.offloaded_layers);
  }
  measure.h2d_bytes_per_token = h2d / double(batch * steps);
  measure.host_syncs_per_token = syncs / double(batch * steps);
  measure.retrieval_rate = opportunities > 0 ? selections / opportunities : 0;
  return measure;
}

int run(const Options& options) {
  std::ifstream in(options.config);
  if (!in) {
    std::printf("bench_decode_end_to_end: %s not found, nothing measured (pass --config or set LOUISKV_SHARED_DIR)\n",
                options.config.string().c_str());
    return 0;
  }
  const ModelConfig config = parse_model_config(nlohmann::json::parse(in), options.config.string());
  auto backend = make_cuda_backend();
  std::printf("device: %s\n", backend->description().c_str());
  auto start = Clock::now();
  auto model = Model::random(config, *backend, 0);
  std::printf("model: %s shapes, random weights, %lld layers, heads %lld/%lld, head_dim %lld (%.1f s to make)\n",
              options.config.filename().string().c_str(), (long long)config.num_layers, (long long)config.num_heads,
              (long long)config.num_kv_heads, (long long)config.head_dim, seconds_since(start));
  const int64_t max_batch = *std::max_element(options.batches.begin(), options.batches.end());
  Decoder decoder(*model, *backend, max_batch, 1024);
  const KvShape shape{config.num_layers, config.num_heads, config.num_kv_heads, config.head_dim};
  std::mt19937 generator(5);
  std::uniform_int_distribution<int32_t> token(0, int32_t(config.vocab_size) - 1);

  for (const std::string& name : options.policies) {
    KvConfig kv;
    kv.policy = name;
    kv.budget = options.budget;
    kv.tau = options.tau;
    auto policy = make_kv_policy(kv, shape, *backend);
    // Room for the timed, untimed and profiled steps of every batch size.
    const int64_t capacity =
        options.context + int64_t(options.batches.size()) * (options.steps + options.profile_steps + 2) + 1;
    start = Clock::now();
    std::vector<int64_t> positions;
    std::vector<int32_t> next_tokens;
    for (int64_t b = 0; b < max_batch; ++b) {
      std::vector<int32_t> prompt(static_cast<size_t>(options.context));
      for (int32_t& id : prompt) id = token(generator);
      policy->add_sequence(b, capacity);
      decoder.prefill(b, prompt, *policy, options.context, [](int64_t, const float*, int64_t) {});
      positions.push_back(options.context);
      next_tokens.push_back(token(generator));
    }
    backend->synchronize();
    std::printf("%s: prefill of %lld x %lld tokens in %.1f s\n", name.c_str(), (long long)max_batch,
                (long long)options.context, seconds_since(start));
    // Largest batch first: its sequences are all prefilled; smaller batches take its first ones.
    std::vector<int64_t> batches = options.batches;
    std::sort(batches.rbegin(), batches.rend());
    for (int64_t batch : batches) {
      Measure m = decode(decoder, *policy, config, positions, next_tokens, batch, options.steps, options.profile_steps);
      std::printf("summary | e2e %-8s B=%-2lld context %-6lld budget %-5lld | %8.1f tok/s | h2d_bytes_per_token %10.0f | "
                  "retrieval_rate %.3f | host_syncs per token %.1f\n",
                  name.c_str(), (long long)batch, (long long)options.context,
                  (long long)(name == "full" ? 0 : options.budget), m.tok_per_s, m.h2d_bytes_per_token,
                  m.retrieval_rate, m.host_syncs_per_token);
      // Where a step's time goes on the host's clock (score: trigger, scoring and budget fill up to
      // the wait for the choice; select: slot planning; transfer: queuing the gather).
      std::printf("  step %.2f ms: score %.2f ms, select %.2f ms, transfer %.2f ms (policy %s, tau %.2f)\n", m.step_ms,
                  m.score_ms, m.select_ms, m.transfer_ms, name.c_str(), options.tau);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (!louiskv::cuda_device_available()) {
    std::printf("bench_decode_end_to_end: no CUDA device, nothing measured\n");
    return 0;
  }
  Options options;
  if (const char* shared = std::getenv("LOUISKV_SHARED_DIR")) {
    options.config = std::filesystem::path(shared) / "configs" / "llama-3.2-1b.json";
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--config") {
      options.config = value;
    } else if (flag == "--context") {
      options.context = std::stoll(value);
    } else if (flag == "--steps") {
      options.steps = std::stoll(value);
    } else if (flag == "--budget") {
      options.budget = std::stoll(value);
    } else if (flag == "--batches") {
      options.batches = parse_list(value);
    } else if (flag == "--tau") {
      options.tau = std::stod(value);
    } else if (flag == "--profile-steps") {
      options.profile_steps = std::stoll(value);
    } else if (flag == "--policies") {
      options.policies = parse_names(value);
    } else {
      std::fprintf(stderr, "bench_decode_end_to_end: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  try {
    return run(options);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "bench_decode_end_to_end: %s\n", error.what());
    return 1;
  }
}
