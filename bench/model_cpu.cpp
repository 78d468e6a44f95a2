// CPU benchmark of the bundled model: prefill of an 8K-token prompt and decode at 1K and 8K
// contexts, each against a ceiling measured in the same run (OpenBLAS sgemm FLOP rate, threaded
// memory copy bandwidth).
//
//   model_cpu [--model DIR] [--threads N] [--prefill 8192] [--decode-steps 32]
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cli/command.h"
#include "runtime/engine.h"

using namespace louiskv;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Bytes read plus bytes written per second by a threaded copy of buffers far larger than the caches.
double measure_copy_bandwidth() {
  const size_t count = size_t(1) << 26;  // 256 MiB of floats per buffer
  std::vector<float> source(count, 1.0f), destination(count, 0.0f);
  double best = 0;
  for (int repeat = 0; repeat < 5; ++repeat) {
    auto start = Clock::now();
#pragma omp parallel for schedule(static)
    for (int64_t chunk = 0; chunk < 64; ++chunk) {
      const size_t size = count / 64;
      std::memcpy(destination.data() + size_t(chunk) * size, source.data() + size_t(chunk) * size, size * sizeof(float));
    }
    best = std::max(best, 2.0 * double(count * sizeof(float)) / seconds_since(start));
  }
  return best;
}

double measure_sgemm_rate() {
  const int n = 2048;
  std::vector<float> a(size_t(n) * n), b(size_t(n) * n), c(size_t(n) * n);
  std::mt19937 generator(1);
  std::uniform_real_distribution<float> uniform(-1, 1);
  for (auto& x : a) x = uniform(generator);
  for (auto& x : b) x = uniform(generator);
  double best = 0;
  for (int repeat = 0; repeat < 4; ++repeat) {
    auto start = Clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    best = std::max(best, 2.0 * double(n) * n * n / seconds_since(start));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir = cli::default_model_dir().string();
  int threads = 0;
  int64_t prefill_tokens = 8192, decode_steps = 32;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--model") model_dir = argv[i + 1];
    else if (flag == "--threads") threads = std::stoi(argv[i + 1]);
    else if (flag == "--prefill") prefill_tokens = std::stoll(argv[i + 1]);
    else if (flag == "--decode-steps") decode_steps = std::stoll(argv[i + 1]);
  }
  if (threads > 0) omp_set_num_threads(threads);

  const double bandwidth = measure_copy_bandwidth();
  const double flop_rate = measure_sgemm_rate();

  EngineOptions options;
  options.model_dir = model_dir;
  options.device = "cpu";
  options.threads = threads;
  Engine engine(options);
  const ModelConfig& c = engine.config();
  std::mt19937 generator(7);
  std::uniform_int_distribution<int32_t> token(3, int32_t(c.vocab_size - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(prefill_tokens));
  for (auto& id : prompt) id = token(generator);

  // Matmul FLOPs per token: 2 per weight of the layers (the LM head only at the last position).
  const double layer_parameters = double(model_weight_bytes(c, DType::f32) / 4) - double(c.vocab_size * c.hidden_size) -
                                  double(c.hidden_size);
  auto attention_flops = [&](double tokens) {  // causal: each query sees its prefix; QK and PV
    return 4.0 * c.num_layers * c.num_heads * c.head_dim * tokens * (tokens + 1) / 2.0;
  };

  std::printf("%-28s %12s %14s %s\n", "case", "tokens/s", "achieved", "share of ceiling");
  {
    auto policy = engine.make_policy(KvConfig{});
    policy->add_sequence(0, prefill_tokens);
    auto start = Clock::now();
    engine.decoder().prefill(0, prompt, *policy, prefill_tokens - 1, [](int64_t, const float*, int64_t) {});
    const double elapsed = seconds_since(start);
    const double flops = 2.0 * layer_parameters * double(prefill_tokens) + attention_flops(double(prefill_tokens));
    std::printf("%-28s %12.1f %10.1f GF/s %6.1f%% of sgemm %.1f GF/s\n",
                ("prefill " + std::to_string(prefill_tokens)).c_str(), double(prefill_tokens) / elapsed, flops / elapsed / 1e9,
                100.0 * flops / elapsed / flop_rate, flop_rate / 1e9);
  }
  for (int64_t context : {int64_t(1024), int64_t(8192)}) {
    auto policy = engine.make_policy(KvConfig{});
    policy->add_sequence(0, context + decode_steps);
    std::vector<int32_t> context_prompt(prompt.begin(), prompt.begin() + std::min<int64_t>(context, prefill_tokens));
    context_prompt.resize(static_cast<size_t>(context), 5);
    std::vector<float> logits(static_cast<size_t>(c.vocab_size));
    engine.decoder().prefill(0, context_prompt, *policy, context - 1, [](int64_t, const float*, int64_t) {});
    const SequenceId batch[1] = {0};
    auto start = Clock::now();
    for (int64_t step = 0; step < decode_steps; ++step) {
      const int32_t next[1] = {token(generator)};
      const int64_t position[1] = {context + step};
      engine.decoder().decode(batch, next, position, *policy, logits.data());
    }
    const double elapsed = seconds_since(start);
    // Each step reads every weight once (file dtype) and the whole f32 KV cache once.
    const double kv_bytes = 2.0 * c.num_layers * c.num_kv_heads * c.head_dim * 4.0 * double(context + decode_steps / 2);
    const double bytes = double(engine.model().weight_bytes()) + kv_bytes;
    const double per_second = double(decode_steps) / elapsed;
    std::printf("%-28s %12.1f %10.2f GB/s %6.1f%% of copy %.1f GB/s\n",
                ("decode at " + std::to_string(context)).c_str(), per_second, bytes * per_second / 1e9,
                100.0 * bytes * per_second / bandwidth, bandwidth / 1e9);
  }
  return 0;
}
