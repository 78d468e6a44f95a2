#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_set>

#include "common/error.h"

namespace louiskv {

void validate(const SamplingConfig& config) {
  auto fail = [](const std::string& message) { throw_error(ErrorKind::invalid_input, message); };
  if (!(config.temperature >= 0.0f)) fail("temperature must be >= 0, got " + std::to_string(config.temperature));
  if (config.top_k < 0) fail("top-k must be >= 0, got " + std::to_string(config.top_k));
  if (!(config.top_p > 0.0f && config.top_p <= 1.0f)) fail("top-p must be in (0, 1], got " + std::to_string(config.top_p));
  if (!(config.min_p >= 0.0f && config.min_p < 1.0f)) fail("min-p must be in [0, 1), got " + std::to_string(config.min_p));
  if (!(config.repetition_penalty > 0.0f)) fail("repetition penalty must be > 0, got " + std::to_string(config.repetition_penalty));
  if (config.repetition_window < 0) fail("repetition window must be >= 0");
}

Sampler::Sampler(const SamplingConfig& config) : config_(config), generator_(config.seed) { validate(config); }

int32_t Sampler::sample(std::span<const float> logits, std::span<const int32_t> history) {
  const int32_t vocab = int32_t(logits.size());
  candidates_.resize(logits.size());
  for (int32_t i = 0; i < vocab; ++i) candidates_[size_t(i)] = {logits[size_t(i)], i};

  if (config_.repetition_penalty != 1.0f && !history.empty()) {
    size_t first = config_.repetition_window > 0 && history.size() > size_t(config_.repetition_window)
                       ? history.size() - size_t(config_.repetition_window)
                       : 0;
    std::unordered_set<int32_t> seen(history.begin() + ptrdiff_t(first), history.end());
    for (int32_t id : seen) {
      if (id < 0 || id >= vocab) continue;
      float& logit = candidates_[size_t(id)].first;
      logit = logit > 0.0f ? logit / config_.repetition_penalty : logit * config_.repetition_penalty;
    }
  }

  if (config_.temperature <= 0.0f) {
    // Ties go to the lowest id, as torch.argmax does.
    auto best = std::max_element(candidates_.begin(), candidates_.end(),
                                 [](const auto& a, const auto& b) { return a.first < b.first; });
    return best->second;
  }

  for (auto& candidate : candidates_) candidate.first /= config_.temperature;
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t kept = candidates_.size();
  if (config_.top_k > 0 && size_t(config_.top_k) < kept) {
    kept = size_t(config_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + ptrdiff_t(kept), candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  candidates_.resize(kept);

  const float maximum = candidates_.front().first;
  double total = 0.0;
  for (auto& candidate : candidates_) {
    candidate.first = std::exp(candidate.first - maximum);
    total += candidate.first;
  }
  for (auto& candidate : candidates_) candidate.first = float(candidate.first / total);

  if (config_.top_p < 1.0f) {
    double cumulative = 0.0;
    size_t cut = candidates_.size();
    for (size_t i = 0; i < candidates_.size(); ++i) {
      cumulative += candidates_[i].first;
      if (cumulative >= config_.top_p) {
        cut = i + 1;
        break;
      }
    }
    candidates_.resize(cut);
  }
  if (config_.min_p > 0.0f) {
    const float floor = config_.min_p * candidates_.front().first;
    size_t cut = 1;
    while (cut < candidates_.size() && candidates_[cut].first >= floor) ++cut;
    candidates_.resize(cut);
  }

  double mass = 0.0;
  for (const auto& candidate : candidates_) mass += candidate.first;
  std::uniform_real_distribution<double> uniform(0.0, mass);
  double draw = uniform(generator_);
  for (const auto& candidate : candidates_) {
    draw -= candidate.first;
    if (draw <= 0.0) return candidate.second;
  }
  return candidates_.back().second;
}

}  // namespace louiskv
