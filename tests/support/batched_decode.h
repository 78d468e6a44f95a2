// Batched decoding against one sequence at a time: the same prompts of different lengths and the
// same teacher-forced continuations, decoded once as one batch per step and once sequence by
// sequence, under every KV policy; the logits must agree. Shared by the CPU test (tests/model)
// and the GPU test (tests/cuda), which differ only in the backend and the tolerance.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kv/kv_policy.h"
#include "model/decoder.h"
#include "model/model.h"

namespace louiskv::testing {

struct BatchedDecodeCase {
  std::vector<std::vector<int32_t>> prompts;        // one per sequence, of different lengths
  std::vector<std::vector<int32_t>> continuations;  // teacher-forced tokens, one per step
};

inline BatchedDecodeCase make_batched_decode_case(int64_t vocab, std::vector<int64_t> prompt_lengths, int64_t steps) {
  std::mt19937 generator(11);
  std::uniform_int_distribution<int32_t> id(3, int32_t(vocab) - 1);
  BatchedDecodeCase c;
  for (int64_t length : prompt_lengths) {
    c.prompts.emplace_back();
    c.continuations.emplace_back();
    for (int64_t i = 0; i < length; ++i) c.prompts.back().push_back(id(generator));
    for (int64_t i = 0; i < steps; ++i) c.continuations.back().push_back(id(generator));
  }
  return c;
}

// logits[sequence][step] [vocab]: all sequences in one batch per step, or each on its own.
inline std::vector<std::vector<std::vector<float>>> decode_logits(const Model& model, Backend& backend,
                                                                   const KvConfig& config, const BatchedDecodeCase& c,
                                                                   bool batched) {
  const ModelConfig& mc = model.config();
  KvShape shape{mc.num_layers, mc.num_heads, mc.num_kv_heads, mc.head_dim};
  auto policy = make_kv_policy(config, shape, backend);
  const int64_t sequences = int64_t(c.prompts.size()), steps = int64_t(c.continuations[0].size());
  Decoder decoder(model, backend, sequences, 64);
  for (int64_t s = 0; s < sequences; ++s) {
    policy->add_sequence(s, int64_t(c.prompts[size_t(s)].size()) + steps);
    decoder.prefill(s, c.prompts[size_t(s)], *policy, int64_t(c.prompts[size_t(s)].size()),
                    [](int64_t, const float*, int64_t) {});
  }
  std::vector<std::vector<std::vector<float>>> logits(static_cast<size_t>(sequences));
  std::vector<float> row(static_cast<size_t>(sequences * mc.vocab_size));
  auto position = [&](int64_t s, int64_t step) { return int64_t(c.prompts[size_t(s)].size()) + step; };
  if (batched) {
    std::vector<SequenceId> batch;
    for (int64_t s = 0; s < sequences; ++s) batch.push_back(s);
    for (int64_t step = 0; step < steps; ++step) {
      std::vector<int32_t> tokens;
      std::vector<int64_t> positions;
      for (int64_t s = 0; s < sequences; ++s) {
        tokens.push_back(c.continuations[size_t(s)][size_t(step)]);
        positions.push_back(position(s, step));
      }
      decoder.decode(batch, tokens, positions, *policy, row.data());
      for (int64_t s = 0; s < sequences; ++s) {
        logits[size_t(s)].emplace_back(row.begin() + s * mc.vocab_size, row.begin() + (s + 1) * mc.vocab_size);
      }
    }
  } else {
    for (int64_t s = 0; s < sequences; ++s) {
      for (int64_t step = 0; step < steps; ++step) {
        const SequenceId id[1] = {s};
        const int32_t token[1] = {c.continuations[size_t(s)][size_t(step)]};
        const int64_t at[1] = {position(s, step)};
        decoder.decode(id, token, at, *policy, row.data());
        logits[size_t(s)].emplace_back(row.begin(), row.begin() + mc.vocab_size);
      }
    }
  }
  return logits;
}

// A small budget, so that the offloading policies offload, select and load during the steps.
inline KvConfig batched_decode_config(const std::string& policy) {
  KvConfig config;
  config.policy = policy;
  config.budget = 64;
  config.sink_tokens = 4;
  config.window_tokens = 16;
  config.max_segment_tokens = 8;
  return config;
}

struct LogitAgreement {
  double worst_difference = 0;  // largest |batched - alone| over every logit
  double worst_relative = 0;    // largest ||batched - alone|| / ||alone|| of a step
  double mean_relative = 0;     // its mean over (sequence, step)
  double top1_agreement = 0;    // share of (sequence, step) whose argmax agrees
};

inline LogitAgreement compare_logits(const std::vector<std::vector<std::vector<float>>>& batched,
                                     const std::vector<std::vector<std::vector<float>>>& alone) {
  LogitAgreement agreement;
  int64_t rows = 0, agree = 0;
  for (size_t s = 0; s < alone.size(); ++s) {
    for (size_t step = 0; step < alone[s].size(); ++step) {
      const auto& a = batched[s][step];
      const auto& b = alone[s][step];
      double error = 0, norm = 0;
      for (size_t i = 0; i < b.size(); ++i) {
        double difference = double(a[i]) - double(b[i]);
        agreement.worst_difference = std::max(agreement.worst_difference, std::abs(difference));
        error += difference * difference;
        norm += double(b[i]) * double(b[i]);
      }
      const double relative = std::sqrt(error / std::max(norm, 1e-30));
      agreement.worst_relative = std::max(agreement.worst_relative, relative);
      agreement.mean_relative += relative;
      agree += std::max_element(a.begin(), a.end()) - a.begin() == std::max_element(b.begin(), b.end()) - b.begin();
      ++rows;
    }
  }
  agreement.top1_agreement = rows ? double(agree) / double(rows) : 0;
  agreement.mean_relative = rows ? agreement.mean_relative / double(rows) : 0;
  return agreement;
}

inline const std::vector<std::string>& every_policy() {
  static const std::vector<std::string> names{"full", "streaming", "h2o", "quest", "arkvale", "clusterkv", "louiskv"};
  return names;
}

}  // namespace louiskv::testing
