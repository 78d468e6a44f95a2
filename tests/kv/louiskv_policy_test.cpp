// LouisKV's trigger (src/kv/policies/louiskv.cpp): a layer re-selects exactly when the mean over
// query heads of cos(q_t, q_{t-1}) falls below tau; otherwise it keeps its selection with no
// scoring and no copy. tau = 0 never re-selects after the first step; tau = 1 always does,
// unless the queries repeat exactly.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "kv/kv_policy.h"
#include "kv_test_backend.h"
#include "policy_driver.h"

namespace louiskv {
namespace {

using testing::PolicyDriver;

constexpr int64_t layers = 2, heads = 4, kv_heads = 2, head_dim = 8;

KvConfig trigger_config(double tau) {
  KvConfig config;
  config.policy = "louiskv";
  config.tau = tau;
  config.budget = 24;
  config.sink_tokens = 2;
  config.window_tokens = 6;
  config.cluster_tokens = 4;
  config.max_segment_tokens = 3;
  config.dense_layers = {};
  return config;
}

// Every head of every sequence points at angle `angle` in the plane of channels 0 and 1, with
// a different length per head (length does not change a cosine).
PolicyDriver::MakeQueries queries_at_angle(double angle) {
  return [angle](int, std::vector<float>& queries) {
    for (size_t row = 0; row * head_dim < queries.size(); ++row) {
      float length = 1.0f + float(row % 3);
      queries[row * head_dim + 0] = length * float(std::cos(angle));
      queries[row * head_dim + 1] = length * float(std::sin(angle));
    }
  };
}

struct TriggerRun {
  testing::TransferCountingBackend backend;
  std::unique_ptr<KvPolicy> policy;
  std::unique_ptr<PolicyDriver> driver;
  std::vector<SequenceId> batch{1};

  explicit TriggerRun(double tau) {
    policy = make_kv_policy(trigger_config(tau), {layers, heads, kv_heads, head_dim}, backend);
    driver = std::make_unique<PolicyDriver>(*policy, KvShape{layers, heads, kv_heads, head_dim}, 9);
    driver->add(1, 400);
    driver->prefill(1, 41, 41);
  }
  void step(const PolicyDriver::MakeQueries& queries) { driver->step(batch, nullptr, queries); }
  KvStats stats() const { return policy->stats(1); }
};

TEST(LouisKvTrigger, FiresExactlyWhenTheCosineCrossesTau) {
  const double tau = 0.7;
  TriggerRun run(tau);
  double angle = 0.0;
  run.step(queries_at_angle(angle));
  ASSERT_EQ(run.stats().selections, layers) << "the first step selects in every layer";
  // Turns whose cosine sits just below or just above tau, and exact repeats.
  const std::vector<double> cosines{0.69, 0.71, 0.71, 0.5, 1.0, 0.699, 0.701, -1.0, 0.9};
  for (double cosine : cosines) {
    KvStats before = run.stats();
    angle += std::acos(cosine);
    run.step(queries_at_angle(angle));
    KvStats after = run.stats();
    bool fires = cosine < tau;
    EXPECT_EQ(after.selections - before.selections, fires ? layers : 0) << "cosine " << cosine;
    if (!fires) {  // kept selection: nothing scored, nothing copied
      EXPECT_EQ(after.score_ms, before.score_ms) << "cosine " << cosine;
      EXPECT_EQ(after.units_loaded, before.units_loaded);
      EXPECT_EQ(after.h2d_bytes, before.h2d_bytes);
    }
  }
}

TEST(LouisKvTrigger, TauZeroNeverReselects) {
  TriggerRun run(0.0);
  double angle = 0.0;
  for (int step = 0; step < 20; ++step) {
    run.step(queries_at_angle(angle));
    angle += 3.14159265358979;  // each query the opposite of the one before: cosine -1
  }
  EXPECT_EQ(run.stats().selections, layers);
  EXPECT_EQ(run.stats().retrieval_rate(), 1.0 / 20);
}

TEST(LouisKvTrigger, TauOneAlwaysReselectsUnlessQueriesRepeat) {
  TriggerRun changing(1.0);
  for (int step = 0; step < 15; ++step) changing.step(nullptr);  // random queries
  EXPECT_EQ(changing.stats().selections, 15 * layers);

  TriggerRun repeating(1.0);
  for (int step = 0; step < 15; ++step) repeating.step(queries_at_angle(0.3));
  EXPECT_EQ(repeating.stats().selections, layers);
}

TEST(LouisKvPolicy, CountedBytesAreTheBytesThatCrossedToTheDevice) {
  TriggerRun run(0.8);
  for (int step = 0; step < 40; ++step) run.step(nullptr);
  KvStats stats = run.stats();
  EXPECT_GT(stats.h2d_bytes, 0);
  EXPECT_EQ(stats.h2d_bytes, run.backend.counts.host_to_device_bytes);
  EXPECT_EQ(stats.h2d_bytes, stats.tokens_loaded * 2 * head_dim * int64_t(sizeof(float)));
  EXPECT_EQ(stats.decode_steps, 40);
  EXPECT_EQ(stats.offloaded_layers, layers);
}

TEST(LouisKvPolicy, ConfigErrorsNameTheField) {
  testing::TransferCountingBackend backend;
  KvShape shape{layers, heads, kv_heads, head_dim};
  auto expect_error = [&](KvConfig config, const std::string& text) {
    try {
      make_kv_policy(config, shape, backend);
      ADD_FAILURE() << "expected an error mentioning " << text;
    } catch (const Error& error) {
      EXPECT_EQ(error.kind(), ErrorKind::invalid_input);
      EXPECT_NE(std::string(error.what()).find(text), std::string::npos) << error.what();
    }
  };
  KvConfig config = trigger_config(0.7);
  config.budget = 7;
  expect_error(config, "budget of 7 tokens is below sink_tokens + window_tokens (8)");
  config = trigger_config(0.7);
  config.dense_layers = {2};
  expect_error(config, "dense_layers layer 2 does not exist (the model has 2 layers)");
  config = trigger_config(0.7);
  config.window_tokens = 0;
  expect_error(config, "window_tokens must be at least 1");
  config = trigger_config(0.7);
  config.policy = "arkvale";
  config.arkvale_digest = "cube";
  expect_error(config, "arkvale_digest must be \"sphere\" or \"box\", got \"cube\"");
  config = trigger_config(0.7);
  config.policy = "quest";
  config.budget = 8;
  config.quest_page_tokens = 16;
  expect_error(config, "below one page");
  KvShape odd{layers, 6, 4, head_dim};
  try {
    make_kv_policy(trigger_config(0.7), odd, backend);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("heads (6) must be a multiple of kv_heads (4)"),
              std::string::npos);
  }
}

TEST(LouisKvPolicy, SequenceBeyondItsCapacityNamesIt) {
  testing::TransferCountingBackend backend;
  KvShape shape{layers, heads, kv_heads, head_dim};
  auto policy = make_kv_policy(trigger_config(0.7), shape, backend);
  PolicyDriver driver(*policy, shape, 1);
  driver.add(3, 12);
  driver.prefill(3, 10, 10);
  std::vector<SequenceId> batch{3};
  driver.step(batch, nullptr);
  driver.step(batch, nullptr);
  try {
    driver.step(batch, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::invalid_input);
    EXPECT_NE(std::string(error.what()).find("sequence 3: token 13 exceeds its capacity of 12"),
              std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace louiskv
