// With a budget of at least the context, every policy's spans give the full cache's attention
// output through the CPU backend's attention_decode, on the same synthetic K/V/q. Policies that
// attend tokens in position order (streaming, h2o, quest) match bit for bit; the offloading
// ones attend the same tokens in unit order, so the softmax sums round differently (1e-5).
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kv/kv_policy.h"
#include "kv_test_backend.h"
#include "policy_driver.h"

namespace louiskv {
namespace {

using testing::PolicyDriver;

struct Case {
  std::string policy;
  int64_t heads, kv_heads, head_dim;
  bool same_order;
};

void PrintTo(const Case& c, std::ostream* out) {
  *out << c.policy << " heads " << c.heads << " kv_heads " << c.kv_heads << " head_dim "
       << c.head_dim;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return info.param.policy + "_group" + std::to_string(info.param.heads / info.param.kv_heads) +
         "_dim" + std::to_string(info.param.head_dim);
}

class MatchesFullCache : public ::testing::TestWithParam<Case> {};

// The attention outputs [batch, heads, head_dim] of every step and layer of one policy.
std::vector<std::vector<float>> run_attention(const KvConfig& config, const KvShape& shape,
                                              const std::vector<int64_t>& prompts, int steps) {
  std::unique_ptr<Backend> backend = make_cpu_backend(1);
  auto policy = make_kv_policy(config, shape, *backend);
  PolicyDriver driver(*policy, shape, 21);
  std::vector<SequenceId> batch;
  for (size_t b = 0; b < prompts.size(); ++b) {
    batch.push_back(SequenceId(b + 1));
    driver.add(batch.back(), prompts[b] + steps);
    driver.prefill(batch.back(), prompts[b], 13);
  }
  const int64_t count = int64_t(batch.size());
  const float scale = 1.0f / std::sqrt(float(shape.head_dim));
  std::vector<std::vector<float>> outputs;
  for (int step = 0; step < steps; ++step) {
    driver.step(batch, [&](int layer, const AttendedSpans& spans) {
      std::vector<float> out(size_t(count * shape.heads * shape.head_dim));
      std::vector<float> lse(size_t(count * shape.heads));
      TensorView q = testing::host_view(driver.last_queries(), {count, shape.heads, shape.head_dim});
      TensorView lse_view = testing::host_view(lse, {count, shape.heads});
      backend->attention_decode(testing::host_view(out, {count, shape.heads, shape.head_dim}), q,
                                spans, scale, &lse_view);
      if (policy->wants_attention_lse()) policy->observe_attention(batch, layer, q, lse_view);
      outputs.push_back(std::move(out));
    });
  }
  return outputs;
}

TEST_P(MatchesFullCache, AttentionOutputOfEveryStepAndLayer) {
  const Case& c = GetParam();
  KvShape shape{3, c.heads, c.kv_heads, c.head_dim};
  const std::vector<int64_t> prompts{53, 20};
  const int steps = 25;
  KvConfig full;
  full.policy = "full";
  KvConfig config;
  config.policy = c.policy;
  config.budget = prompts[0] + steps;
  config.sink_tokens = 4;
  config.window_tokens = 8;
  config.dense_layers = {1};
  config.cluster_tokens = config.clusterkv_cluster_tokens = 5;
  config.max_segment_tokens = 3;
  config.quest_page_tokens = 16;
  config.arkvale_page_tokens = 7;
  std::vector<std::vector<float>> expected = run_attention(full, shape, prompts, steps);
  std::vector<std::vector<float>> actual = run_attention(config, shape, prompts, steps);
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t call = 0; call < expected.size(); ++call) {
    for (size_t i = 0; i < expected[call].size(); ++i) {
      if (c.same_order) {
        ASSERT_EQ(actual[call][i], expected[call][i]) << "step " << call / 3 << " layer "
                                                      << call % 3 << " element " << i;
      } else {
        ASSERT_NEAR(actual[call][i], expected[call][i], 1e-5f * (1 + std::abs(expected[call][i])))
            << "step " << call / 3 << " layer " << call % 3 << " element " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Policies, MatchesFullCache,
    ::testing::Values(Case{"streaming", 4, 4, 16, true}, Case{"streaming", 8, 1, 16, true},
                      Case{"h2o", 4, 4, 16, true}, Case{"h2o", 8, 2, 16, true},
                      Case{"quest", 4, 4, 16, true}, Case{"quest", 8, 2, 64, true},
                      Case{"arkvale", 4, 4, 16, false}, Case{"arkvale", 8, 1, 64, false},
                      Case{"clusterkv", 4, 4, 16, false}, Case{"clusterkv", 8, 2, 16, false},
                      Case{"louiskv", 4, 4, 16, false}, Case{"louiskv", 8, 1, 64, false}),
    case_name);

}  // namespace
}  // namespace louiskv
