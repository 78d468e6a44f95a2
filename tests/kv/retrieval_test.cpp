// Retrieval finds what matters: a prompt with a "needle" (a few keys along the query's
// direction) in the middle of random keys. With a budget far below the context, every policy
// that scores the prompt attends the needle on the first decode step; StreamingLLM, which only
// keeps the ends, does not (the test can tell the two apart).
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

constexpr int64_t head_dim = 16, prompt = 203, needle_first = 100, needle_length = 4;

bool attends_needle(const std::string& name, int64_t heads, int64_t kv_heads) {
  KvShape shape{1, heads, kv_heads, head_dim};
  KvConfig config;
  config.policy = name;
  config.dense_layers = {};
  config.sink_tokens = 4;
  config.window_tokens = 8;
  config.budget = 4 + 8 + 12;
  config.cluster_tokens = config.clusterkv_cluster_tokens = 4;
  config.quest_page_tokens = config.arkvale_page_tokens = 4;
  testing::TransferCountingBackend backend;
  auto policy = make_kv_policy(config, shape, backend);
  PolicyDriver driver(*policy, shape, 4);
  // The needle: channel 0 large, the rest as drawn (scaled down).
  driver.set_shape_key([](int64_t position, int64_t, float* key) {
    if (position < needle_first || position >= needle_first + needle_length) return;
    for (int64_t i = 1; i < head_dim; ++i) key[i] *= 0.1f;
    key[0] = 6.0f;
  });
  driver.add(1, prompt + 1);
  driver.prefill(1, prompt, 64);
  bool found = true;
  std::vector<SequenceId> batch{1};
  driver.step(
      batch,
      [&](int layer, const AttendedSpans& spans) {
        for (int64_t head = 0; head < kv_heads; ++head) {
          std::vector<int64_t> positions = driver.attended_positions(1, layer, head, spans, int(head));
          EXPECT_LE(int64_t(positions.size()), config.budget);
          for (int64_t p = needle_first; p < needle_first + needle_length; ++p) {
            found = found && std::binary_search(positions.begin(), positions.end(), p);
          }
        }
      },
      [&](int, std::vector<float>& queries) {  // every query head looks along channel 0
        for (size_t i = 0; i < queries.size(); i += head_dim) queries[i] = 3.0f;
      });
  return found;
}

TEST(Retrieval, ScoringPoliciesAttendTheNeedle) {
  for (const char* name : {"h2o", "quest", "arkvale", "clusterkv", "louiskv"}) {
    EXPECT_TRUE(attends_needle(name, 4, 4)) << name;
    EXPECT_TRUE(attends_needle(name, 8, 2)) << name << ", GQA group of 4";
  }
}

TEST(Retrieval, StreamingDropsTheNeedle) { EXPECT_FALSE(attends_needle("streaming", 4, 4)); }

}  // namespace
}  // namespace louiskv
