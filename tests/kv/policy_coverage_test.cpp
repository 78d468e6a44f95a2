// Every policy through the KvPolicy interface with synthetic K/V/q: with a budget of at least the
// context it attends exactly every token; with smaller budgets it never attends more than the
// budget, and the offloading policies always attend their sinks and window. Awkward sizes on
// purpose: prompts one token past a unit boundary, GQA groups of 1 and 4, batches of sequences
// of different lengths.
#include <numeric>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kv_test_backend.h"
#include "policy_driver.h"
#include "kv/kv_policy.h"

namespace louiskv {
namespace {

using testing::PolicyDriver;

struct Case {
  std::string policy;
  int64_t heads, kv_heads;
  double tau = 0.5;  // louiskv: random queries re-select on most steps; 0 never re-selects
};

void PrintTo(const Case& c, std::ostream* out) {
  *out << c.policy << " heads " << c.heads << " kv_heads " << c.kv_heads << " tau " << c.tau;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  std::string name =
      info.param.policy + "_group" + std::to_string(info.param.heads / info.param.kv_heads);
  return info.param.tau == 0 ? name + "_tau0" : name;
}

KvConfig small_config(const Case& c) {
  KvConfig config;
  config.policy = c.policy;
  config.tau = c.tau;
  config.sink_tokens = 4;
  config.window_tokens = 8;
  config.dense_layers = {0};
  config.cluster_tokens = 4;
  config.clusterkv_cluster_tokens = 4;
  config.kmeans_iterations = 3;
  config.max_segment_tokens = 3;
  config.quest_page_tokens = 4;
  config.arkvale_page_tokens = 4;
  config.raas_page_tokens = 4;
  return config;
}

class EveryPolicy : public ::testing::TestWithParam<Case> {};

TEST_P(EveryPolicy, BudgetAtLeastTheContextAttendsExactlyEveryToken) {
  const Case& c = GetParam();
  KvShape shape{3, c.heads, c.kv_heads, 8};
  const int64_t steps = 30;
  const std::vector<int64_t> prompts{45, 17};  // 45 = 4 sinks + 10 units of 4 + 1
  KvConfig config = small_config(c);
  config.budget = prompts[0] + steps;  // exactly the longest context at the last step
  testing::TransferCountingBackend backend;
  auto policy = make_kv_policy(config, shape, backend);
  PolicyDriver driver(*policy, shape, 7);
  std::vector<SequenceId> batch{10, 11};
  for (size_t b = 0; b < batch.size(); ++b) {
    driver.add(batch[b], prompts[b] + steps);
    driver.prefill(batch[b], prompts[b], 16);
  }
  for (int64_t step = 0; step < steps; ++step) {
    driver.step(batch, [&](int layer, const AttendedSpans& spans) {
      for (size_t b = 0; b < batch.size(); ++b) {
        int64_t tokens = driver.tokens(batch[b], layer);
        std::vector<int64_t> everything(static_cast<size_t>(tokens));
        std::iota(everything.begin(), everything.end(), 0);
        for (int64_t head = 0; head < shape.kv_heads; ++head) {
          int row = int(b * size_t(shape.kv_heads) + size_t(head));
          ASSERT_EQ(driver.attended_positions(batch[b], layer, head, spans, row), everything)
              << "step " << step << " layer " << layer << " sequence " << batch[b] << " head "
              << head;
        }
      }
    });
  }
  EXPECT_EQ(policy->stats(10).decode_steps, steps);
  EXPECT_EQ(policy->stats(10).offloaded_layers, 2);
}

TEST_P(EveryPolicy, EmptyPromptAndPromptShorterThanTheSinks) {
  const Case& c = GetParam();
  KvShape shape{2, c.heads, c.kv_heads, 8};
  KvConfig config = small_config(c);
  config.dense_layers = {};
  config.budget = 40;
  testing::TransferCountingBackend backend;
  auto policy = make_kv_policy(config, shape, backend);
  PolicyDriver driver(*policy, shape, 2);
  std::vector<SequenceId> batch{1, 2};
  driver.add(1, 40);
  driver.add(2, 40);
  driver.prefill(1, 0, 8);  // no prompt at all
  driver.prefill(2, 3, 8);  // fewer tokens than sink_tokens (4)
  for (int step = 0; step < 30; ++step) {
    driver.step(batch, [&](int layer, const AttendedSpans& spans) {
      for (size_t b = 0; b < batch.size(); ++b) {
        std::vector<int64_t> everything(static_cast<size_t>(driver.tokens(batch[b], layer)));
        std::iota(everything.begin(), everything.end(), 0);
        for (int64_t head = 0; head < shape.kv_heads; ++head) {
          int row = int(b * size_t(shape.kv_heads) + size_t(head));
          ASSERT_EQ(driver.attended_positions(batch[b], layer, head, spans, row), everything)
              << "step " << step << " sequence " << batch[b];
        }
      }
    });
  }
}

TEST_P(EveryPolicy, NeverAttendsMoreThanTheBudget) {
  const Case& c = GetParam();
  KvShape shape{2, c.heads, c.kv_heads, 8};
  KvConfig config = small_config(c);
  config.dense_layers = {};
  // sinks + window; plus one unit; a middle budget; one token past a unit boundary.
  for (int64_t budget : {12, 16, 29, 33}) {
    config.budget = budget;
    testing::TransferCountingBackend backend;
    auto policy = make_kv_policy(config, shape, backend);
    PolicyDriver driver(*policy, shape, uint32_t(budget));
    std::vector<SequenceId> batch{1};
    driver.add(1, 200);
    driver.prefill(1, 61, 20);  // 61 = 4 sinks + 14 units of 4 + 1
    for (int step = 0; step < 40; ++step) {
      driver.step(batch, [&](int layer, const AttendedSpans& spans) {
        for (int64_t head = 0; head < shape.kv_heads; ++head) {
          std::vector<int64_t> positions =
              driver.attended_positions(1, layer, head, spans, int(head));
          ASSERT_LE(int64_t(positions.size()), budget) << "budget " << budget << " step " << step;
          // No token twice.
          EXPECT_TRUE(std::adjacent_find(positions.begin(), positions.end()) == positions.end());
          // The current token is always attended.
          EXPECT_EQ(positions.back(), driver.tokens(1, layer) - 1);
        }
      });
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, EveryPolicy,
                         ::testing::Values(Case{"streaming", 4, 4}, Case{"streaming", 8, 2},
                                           Case{"h2o", 4, 4}, Case{"h2o", 8, 2},
                                           Case{"quest", 4, 4}, Case{"quest", 8, 2},
                                           Case{"arkvale", 4, 4}, Case{"arkvale", 8, 2},
                                           Case{"clusterkv", 4, 4}, Case{"clusterkv", 8, 2},
                                           Case{"raas", 4, 4}, Case{"raas", 8, 2},
                                           Case{"louiskv", 4, 4}, Case{"louiskv", 8, 2},
                                           Case{"louiskv", 8, 2, 0.0}),
                         case_name);

// The offloading policies always attend their sinks and their window: the sink tokens, and the
// newest window - segment_length + 1 tokens (a full window gives its oldest segment, at most
// one segment long, to the host pool before the new token arrives).
class OffloadingPolicy : public ::testing::TestWithParam<Case> {};

TEST_P(OffloadingPolicy, AlwaysAttendsSinksAndWindow) {
  const Case& c = GetParam();
  KvShape shape{2, c.heads, c.kv_heads, 8};
  KvConfig config = small_config(c);
  config.dense_layers = {};
  config.window_tokens = 10;
  int64_t segment = c.policy == "arkvale" ? config.arkvale_page_tokens : config.max_segment_tokens;
  int64_t always_window = config.window_tokens - segment + 1;
  for (int64_t budget : {14, 18, 40}) {
    config.budget = budget;
    testing::TransferCountingBackend backend;
    auto policy = make_kv_policy(config, shape, backend);
    PolicyDriver driver(*policy, shape, 3);
    std::vector<SequenceId> batch{5};
    driver.add(5, 200);
    driver.prefill(5, 37, 37);
    for (int step = 0; step < 50; ++step) {
      driver.step(batch, [&](int layer, const AttendedSpans& spans) {
        int64_t tokens = driver.tokens(5, layer);
        int64_t generated = tokens - 37;
        for (int64_t head = 0; head < shape.kv_heads; ++head) {
          std::vector<int64_t> positions =
              driver.attended_positions(5, layer, head, spans, int(head));
          auto attended = [&](int64_t p) {
            return std::binary_search(positions.begin(), positions.end(), p);
          };
          for (int64_t p = 0; p < config.sink_tokens; ++p) EXPECT_TRUE(attended(p)) << "sink " << p;
          for (int64_t p = tokens - std::min(generated, always_window); p < tokens; ++p) {
            EXPECT_TRUE(attended(p)) << "window token " << p << " of " << tokens;
          }
          EXPECT_LE(int64_t(positions.size()), budget);
        }
      });
    }
  }
}

// The first selection fills an empty working set front to back, so however many units it holds
// a row attends at most four spans: the sinks, the window (two where its ring wraps) and one run
// of working-set slots.
TEST_P(OffloadingPolicy, AttendsAFirstSelectionAsAFewSpans) {
  const Case& c = GetParam();
  KvShape shape{2, c.heads, c.kv_heads, 8};
  KvConfig config = small_config(c);
  config.dense_layers = {};
  config.window_tokens = 10;
  config.budget = 80;
  testing::TransferCountingBackend backend;
  auto policy = make_kv_policy(config, shape, backend);
  PolicyDriver driver(*policy, shape, 9);
  std::vector<SequenceId> batch{2};
  driver.add(2, 300);
  driver.prefill(2, 200, 64);
  driver.step(batch, [&](int layer, const AttendedSpans& spans) {
    for (int64_t head = 0; head < shape.kv_heads; ++head) {
      const int row = int(head);
      // Units hold about 4 tokens: well over four units' worth is attended.
      EXPECT_GT(driver.attended_positions(2, layer, head, spans, row).size(), 60u);
      EXPECT_LE(spans.indptr[row + 1] - spans.indptr[row], 4) << "layer " << layer << " head " << head;
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Policies, OffloadingPolicy,
                         ::testing::Values(Case{"arkvale", 8, 2}, Case{"clusterkv", 4, 4},
                                           Case{"louiskv", 8, 2}, Case{"louiskv", 4, 4, 0.0}),
                         case_name);

}  // namespace
}  // namespace louiskv
