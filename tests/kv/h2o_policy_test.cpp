// H2O (src/kv/policies/h2o.cpp): once over budget it evicts the held token with the lowest
// accumulated attention outside the recent window, for good.
#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "kv/kv_policy.h"
#include "kv_test_backend.h"
#include "policy_driver.h"

namespace louiskv {
namespace {

using testing::host_view;

// Drives one sequence of a policy by hand: chosen K/V/q, attention through the CPU backend,
// its lse handed back to the policy as the decoder does.
class HandDriver {
 public:
  HandDriver(const KvConfig& config, const KvShape& shape)
      : backend_(make_cpu_backend(1)),
        policy_(make_kv_policy(config, shape, *backend_)),
        shape_(shape) {}

  void prefill(const std::vector<float>& keys, const std::vector<float>& values, int64_t tokens) {
    policy_->add_sequence(1, 100);
    keys_ = keys;
    values_ = values;
    for (int layer = 0; layer < shape_.layers; ++layer) {
      std::vector<float> k = keys, v = values;
      policy_->prefill_append(1, layer, host_view(k, {tokens, shape_.kv_heads, shape_.head_dim}),
                              host_view(v, {tokens, shape_.kv_heads, shape_.head_dim}), 0);
      policy_->prefill_done(1, layer);
    }
  }

  // One step with token rows k, v [kv_heads, head_dim] and queries q [heads, head_dim]; returns
  // the attended positions of every KV head (layer 0) and the attention lse [heads].
  std::vector<std::vector<int64_t>> step(std::vector<float> k, std::vector<float> v,
                                         std::vector<float> q, std::vector<float>* lse_out) {
    keys_.insert(keys_.end(), k.begin(), k.end());
    values_.insert(values_.end(), v.begin(), v.end());
    std::vector<SequenceId> batch{1};
    std::vector<std::vector<int64_t>> positions(size_t(shape_.kv_heads));
    for (int layer = 0; layer < shape_.layers; ++layer) {
      policy_->decode_append(batch, layer, host_view(k, {1, shape_.kv_heads, shape_.head_dim}),
                             host_view(v, {1, shape_.kv_heads, shape_.head_dim}));
      TensorView q_view = host_view(q, {1, shape_.heads, shape_.head_dim});
      const AttendedSpans& spans = policy_->select(batch, layer, q_view);
      if (layer == 0) {
        for (int64_t head = 0; head < shape_.kv_heads; ++head) {
          for (const testing::AttendedRow& row : testing::attended_rows(spans, int(head), shape_.head_dim)) {
            positions[size_t(head)].push_back(position_of(head, row.key));
          }
          std::sort(positions[size_t(head)].begin(), positions[size_t(head)].end());
        }
      }
      std::vector<float> out(q.size()), lse(size_t(shape_.heads));
      TensorView lse_view = host_view(lse, {1, shape_.heads});
      backend_->attention_decode(host_view(out, {1, shape_.heads, shape_.head_dim}), q_view, spans,
                                 1.0f / std::sqrt(float(shape_.head_dim)), &lse_view);
      EXPECT_TRUE(policy_->wants_attention_lse());
      policy_->observe_attention(batch, layer, q_view, lse_view);
      if (lse_out) *lse_out = lse;
    }
    return positions;
  }

  KvStats stats() const { return policy_->stats(1); }

 private:
  int64_t position_of(int64_t head, const std::vector<float>& key) const {
    int64_t row = shape_.kv_heads * shape_.head_dim;
    for (int64_t t = 0; t * row < int64_t(keys_.size()); ++t) {
      if (std::equal(key.begin(), key.end(), keys_.begin() + t * row + head * shape_.head_dim)) {
        return t;
      }
    }
    ADD_FAILURE() << "attended key not in the sequence";
    return -1;
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<KvPolicy> policy_;
  KvShape shape_;
  std::vector<float> keys_, values_;
};

KvConfig h2o_config(int64_t budget, int64_t window) {
  KvConfig config;
  config.policy = "h2o";
  config.budget = budget;
  config.window_tokens = window;
  config.dense_layers = {};
  return config;
}

TEST(H2oPolicy, EvictsTheLowestAccumulatedScore) {
  // One head, head_dim 4, scale 1/2. The query looks along channel 0; the prompt's token 1
  // points the other way, so it gathers the least attention.
  HandDriver driver(h2o_config(4, 2), {1, 1, 1, 4});
  driver.prefill({2, 0, 0, 0, -2, 0, 0, 0, 1, 0, 0, 0}, {1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}, 3);
  std::vector<float> q{1, 0, 0, 0};
  // Step 1: 4 tokens, within the budget: all attended.
  EXPECT_EQ(driver.step({0, 1, 0, 0}, {4, 4, 4, 4}, q, nullptr)[0],
            (std::vector<int64_t>{0, 1, 2, 3}));
  // Step 2: 5 tokens; positions 3 and 4 are recent; token 1 has the lowest score.
  EXPECT_EQ(driver.step({0, 0, 1, 0}, {5, 5, 5, 5}, q, nullptr)[0],
            (std::vector<int64_t>{0, 2, 3, 4}));
  // Step 3: token 3 (logit 0 twice) has gathered less than token 2 (logit 1/2 twice).
  EXPECT_EQ(driver.step({0, 0, 0, 1}, {6, 6, 6, 6}, q, nullptr)[0],
            (std::vector<int64_t>{0, 2, 4, 5}));
  EXPECT_EQ(driver.stats().tokens_dropped, 2);
}

// Against a plain model of H2O: held positions, accumulated probabilities summed over the
// group's heads; when over budget, evict the lowest outside the window. The prompt is cut at
// the first step by that step's own attention over everything held.
TEST(H2oPolicy, FollowsTheAccumulatedAttentionOnRandomTokens) {
  const int64_t heads = 4, kv_heads = 2, dim = 8, group = heads / kv_heads, budget = 12, window = 3;
  const int64_t prompt = 15;
  HandDriver driver(h2o_config(budget, window), {1, heads, kv_heads, dim});
  std::mt19937 generator(17);
  std::normal_distribution<float> normal;
  auto random = [&](int64_t n) {
    std::vector<float> values(static_cast<size_t>(n));
    for (float& value : values) value = normal(generator);
    return values;
  };
  std::vector<float> keys = random(prompt * kv_heads * dim);
  driver.prefill(keys, random(prompt * kv_heads * dim), prompt);
  const float scale = 1.0f / std::sqrt(float(dim));

  std::vector<std::map<int64_t, double>> held(static_cast<size_t>(kv_heads));  // position -> score
  for (auto& head : held) {
    for (int64_t t = 0; t < prompt; ++t) head[t] = 0.0;
  }
  auto probabilities = [&](int64_t head, const std::vector<float>& q) {
    std::map<int64_t, double> result;
    for (int64_t g = 0; g < group; ++g) {
      const float* query = &q[size_t((head * group + g) * dim)];
      std::map<int64_t, double> logits;
      double largest = -INFINITY, total = 0;
      for (auto& [position, score] : held[size_t(head)]) {
        double dot = 0;
        for (int64_t i = 0; i < dim; ++i) {
          dot += query[i] * keys[size_t((position * kv_heads + head) * dim + i)];
        }
        logits[position] = scale * dot;
        largest = std::max(largest, logits[position]);
      }
      for (auto& [position, logit] : logits) total += std::exp(logit - largest);
      for (auto& [position, logit] : logits) result[position] += std::exp(logit - largest) / total;
    }
    return result;
  };
  auto evict_lowest = [&](int64_t head, int64_t newest) {
    auto& scores = held[size_t(head)];
    int64_t victim = -1;
    for (auto& [position, score] : scores) {
      if (position > newest - window && position <= newest) continue;
      if (victim < 0 || score < scores[victim]) victim = position;
    }
    scores.erase(victim);
  };

  bool first_cut_done = false;
  for (int64_t step = 0; step < 30; ++step) {
    int64_t newest = prompt + step;
    std::vector<float> k = random(kv_heads * dim), q = random(heads * dim);
    keys.insert(keys.end(), k.begin(), k.end());
    bool cut_now = false;
    for (int64_t head = 0; head < kv_heads; ++head) {
      if (first_cut_done && int64_t(held[size_t(head)].size()) == budget) evict_lowest(head, newest);
      held[size_t(head)][newest] = 0.0;
      if (!first_cut_done && int64_t(held[size_t(head)].size()) > budget) {
        cut_now = true;
        for (auto& [position, p] : probabilities(head, q)) held[size_t(head)][position] += p;
        while (int64_t(held[size_t(head)].size()) > budget) evict_lowest(head, newest);
      }
    }
    std::vector<std::vector<int64_t>> attended = driver.step(k, random(kv_heads * dim), q, nullptr);
    for (int64_t head = 0; head < kv_heads; ++head) {
      std::vector<int64_t> expected;
      for (auto& [position, score] : held[size_t(head)]) expected.push_back(position);
      ASSERT_EQ(attended[size_t(head)], expected) << "step " << step << " head " << head;
      if (!cut_now) {
        for (auto& [position, p] : probabilities(head, q)) held[size_t(head)][position] += p;
      }
    }
    first_cut_done = first_cut_done || cut_now;
  }
  EXPECT_TRUE(first_cut_done);
}

}  // namespace
}  // namespace louiskv
