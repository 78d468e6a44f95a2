// Sampler: turns one row of logits into a token id. Order of the transforms, as llama.cpp users
// expect: repetition penalty, temperature, top-k, softmax, top-p, min-p, then a draw from the
// renormalised distribution with the sampler's own seeded generator. Temperature 0 is greedy.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace louiskv {

struct SamplingConfig {
  float temperature = 0.8f;          // 0: greedy (argmax)
  int32_t top_k = 40;                // 0: off
  float top_p = 0.95f;               // 1: off
  float min_p = 0.05f;               // 0: off; drops tokens below min_p * p(most likely)
  float repetition_penalty = 1.0f;   // 1: off; CTRL-style division/multiplication of seen logits
  int32_t repetition_window = 64;    // tokens of history the penalty looks at; 0: all
  uint64_t seed = 0;
};

// Checks ranges; throws louiskv::Error (invalid_input) naming the flag-level field.
void validate(const SamplingConfig& config);

class Sampler {
 public:
  explicit Sampler(const SamplingConfig& config);
  // history: the tokens so far (prompt and generated), for the repetition penalty.
  int32_t sample(std::span<const float> logits, std::span<const int32_t> history);

 private:
  SamplingConfig config_;
  std::mt19937_64 generator_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

}  // namespace louiskv
