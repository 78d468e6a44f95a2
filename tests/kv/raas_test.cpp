// RaaS (src/kv/policies/raas.cpp, src/kv/page_importance.cpp): pages carry the timestamp of
// their last write or of the last step that ranked them important; over the budget the oldest
// page goes for good, generated pages before prompt pages.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "kv/kv_policy.h"
#include "kv/page_importance.h"
#include "kv_test_backend.h"
#include "model/decoder.h"
#include "model/model.h"
#include "policy_driver.h"
#include "support/test_support.h"

namespace louiskv {
namespace {

using testing::host_view;
using testing::PolicyDriver;

// ---------------------------------------------------------------------------------------------
// The importance rule

TEST(PageImportance, MarksExactlyThePagesWithinTheRatioOfTheStrongestToken) {
  // Pages of 2, 3, 1 and 2 tokens; two query heads; scale 1 and ratio e^-1: a page is important
  // for a head when its best score is at least the head's best minus 1.
  const std::vector<int64_t> lengths{2, 3, 1, 2};
  const std::vector<float> scores{
      0, 5, /**/ 3.9f, 1, 0, /**/ 4.1f, /**/ -2, 0,  // head 0: best 5, pages 0 and 2 qualify
      0, 0, /**/ 0, 0, 0, /**/ 0, /**/ 10, 0,        // head 1: best 10, page 3 alone
  };
  EXPECT_EQ(important_pages(scores, 2, lengths, 1.0f, std::exp(-1.0)),
            (std::vector<bool>{true, false, true, true}));
  // Ratio 1: only the page of each head's strongest token. A tiny ratio: every page.
  EXPECT_EQ(important_pages(scores, 2, lengths, 1.0f, 1.0),
            (std::vector<bool>{true, false, false, true}));
  EXPECT_EQ(important_pages(scores, 2, lengths, 1.0f, 1e-9),
            (std::vector<bool>{true, true, true, true}));
  // The scale turns scores into logits: with scale 1/2 the margin doubles (page 1 is 1.1 below).
  EXPECT_EQ(important_pages(scores, 2, lengths, 0.5f, std::exp(-1.0)),
            (std::vector<bool>{true, true, true, true}));
}

TEST(PageImportance, RejectsScoresOfTheWrongShape) {
  const std::vector<int64_t> lengths{2, 2};
  const std::vector<float> scores(6, 0.0f);
  EXPECT_THROW(important_pages(scores, 2, lengths, 1.0f, 0.5), Error);
  EXPECT_THROW(important_pages(std::vector<float>(8, 0.0f), 2, lengths, 1.0f, 0.0), Error);
}

// ---------------------------------------------------------------------------------------------
// The policy, driven by hand: one layer, chosen keys and queries; each token's value rows hold
// its position, so the attended positions are read from the spans' values.

KvConfig raas_config(int64_t budget, int64_t page_tokens, double ratio) {
  KvConfig config;
  config.policy = "raas";
  config.budget = budget;
  config.raas_page_tokens = page_tokens;
  config.raas_importance_ratio = ratio;
  config.dense_layers = {};
  return config;
}

class HandDriver {
 public:
  HandDriver(const KvConfig& config, const KvShape& shape)
      : backend_(make_cpu_backend(1)), policy_(make_kv_policy(config, shape, *backend_)), shape_(shape) {}

  // keys [tokens, kv_heads, head_dim]
  void prefill(std::vector<float> keys) {
    const int64_t row = shape_.kv_heads * shape_.head_dim, tokens = int64_t(keys.size()) / row;
    policy_->add_sequence(1, 200);
    std::vector<float> values(keys.size());
    for (int64_t t = 0; t < tokens; ++t) std::fill_n(values.begin() + t * row, row, float(t));
    next_ = tokens;
    policy_->prefill_append(1, 0, host_view(keys, {tokens, shape_.kv_heads, shape_.head_dim}),
                            host_view(values, {tokens, shape_.kv_heads, shape_.head_dim}), 0);
    policy_->prefill_done(1, 0);
  }

  // One step with the new token's key rows [kv_heads, head_dim] and the queries
  // [heads, head_dim]; returns the attended positions of each KV head.
  std::vector<std::vector<int64_t>> step(std::vector<float> key, std::vector<float> queries) {
    std::vector<float> value(key.size(), float(next_++));
    std::vector<SequenceId> batch{1};
    policy_->decode_append(batch, 0, host_view(key, {1, shape_.kv_heads, shape_.head_dim}),
                           host_view(value, {1, shape_.kv_heads, shape_.head_dim}));
    const AttendedSpans& spans =
        policy_->select(batch, 0, host_view(queries, {1, shape_.heads, shape_.head_dim}));
    std::vector<std::vector<int64_t>> positions(size_t(shape_.kv_heads));
    for (int64_t head = 0; head < shape_.kv_heads; ++head) {
      for (const testing::AttendedRow& row : testing::attended_rows(spans, int(head), shape_.head_dim)) {
        positions[size_t(head)].push_back(int64_t(row.value[0]));
      }
      std::sort(positions[size_t(head)].begin(), positions[size_t(head)].end());
    }
    return positions;
  }

  KvStats stats() const { return policy_->stats(1); }

 private:
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<KvPolicy> policy_;
  KvShape shape_;
  int64_t next_ = 0;
};

using Positions = std::vector<int64_t>;

// head_dim 4 (scale 1/2), pages of 2, ratio 1/2: a page is important when its best q.k is within
// 2 ln 2 = 1.386 of the best. The query looks along channel 0; the prompt's token 0 scores 20.
const std::vector<float> along_query{1, 0, 0, 0};
std::vector<float> key_scoring(float score) { return {score, 0, 0, 0}; }
const std::vector<float> ordinary_key{0, 1, 0, 0};  // scores 0: never important

TEST(RaasPolicy, EvictsTheOldestPageFirst) {
  HandDriver driver(raas_config(8, 2, 0.5), {1, 1, 1, 4});
  driver.prefill({20, 0, 0, 0, /**/ 0, 0, 0, 0});
  for (int64_t position = 2; position < 8; ++position) {
    std::vector<float> key = ordinary_key;
    Positions expected(size_t(position + 1));
    std::iota(expected.begin(), expected.end(), 0);
    EXPECT_EQ(driver.step(key, along_query)[0], expected) << "position " << position;
  }
  // Token 8 opens a page with 8 tokens held: the oldest generated page, [2, 3], goes.
  EXPECT_EQ(driver.step(ordinary_key, along_query)[0], (Positions{0, 1, 4, 5, 6, 7, 8}));
  EXPECT_EQ(driver.step(ordinary_key, along_query)[0], (Positions{0, 1, 4, 5, 6, 7, 8, 9}));
  // Token 10: the next oldest, [4, 5].
  EXPECT_EQ(driver.step(ordinary_key, along_query)[0], (Positions{0, 1, 6, 7, 8, 9, 10}));
  EXPECT_EQ(driver.stats().tokens_dropped, 4);
}

TEST(RaasPolicy, RefreshesExactlyThePagesRankedImportant) {
  // Page [2, 3] scores 18.8 (within 1.386 of 20: important every step), page [4, 5] 18.5 (just
  // outside: never), page [6, 7] 0. When token 8 needs room, [2, 3] carries the timestamp of
  // step 7 and [4, 5] still that of its last write (5): [4, 5] goes, though [2, 3] is older.
  HandDriver driver(raas_config(8, 2, 0.5), {1, 1, 1, 4});
  driver.prefill({20, 0, 0, 0, /**/ 0, 0, 0, 0});
  for (float score : {18.8f, 0.0f, 18.5f, 0.0f, 0.0f, 0.0f}) driver.step(key_scoring(score), along_query);
  EXPECT_EQ(driver.step(ordinary_key, along_query)[0], (Positions{0, 1, 2, 3, 6, 7, 8}));
}

TEST(RaasPolicy, APageStopsBeingRefreshedWhenTheQueriesLeaveIt) {
  // Page [2, 3] is important while the query looks along channel 0; from token 5 on the query
  // looks along channel 2, where only the prompt's token 0 scores, so [2, 3] ages like the rest.
  HandDriver driver(raas_config(8, 2, 0.5), {1, 1, 1, 4});
  driver.prefill({20, 0, 20, 0, /**/ 0, 0, 0, 0});
  const std::vector<float> elsewhere{0, 0, 1, 0};
  driver.step(key_scoring(20), along_query);  // 2
  driver.step(ordinary_key, along_query);     // 3
  driver.step(ordinary_key, along_query);     // 4: [2, 3] refreshed for the last time
  driver.step(ordinary_key, elsewhere);       // 5
  driver.step(ordinary_key, elsewhere);       // 6
  driver.step(ordinary_key, elsewhere);       // 7
  // Token 8: [2, 3] (4) is older than [4, 5] (5) and [6, 7] (7).
  EXPECT_EQ(driver.step(ordinary_key, elsewhere)[0], (Positions{0, 1, 4, 5, 6, 7, 8}));
}

TEST(RaasPolicy, AnyQueryHeadOfTheGroupMakesAPageImportant) {
  // Two query heads share the KV head: head 0 looks along channel 0, head 1 along channel 2.
  // Page [2, 3] scores 19 for head 1 only; that is enough.
  HandDriver driver(raas_config(8, 2, 0.5), {1, 2, 1, 4});
  driver.prefill({20, 0, 20, 0, /**/ 0, 0, 0, 0});
  const std::vector<float> queries{1, 0, 0, 0, /**/ 0, 0, 1, 0};
  driver.step({0, 0, 19, 0}, queries);
  for (int i = 0; i < 5; ++i) driver.step(ordinary_key, queries);
  EXPECT_EQ(driver.step(ordinary_key, queries)[0], (Positions{0, 1, 2, 3, 6, 7, 8}));
}

TEST(RaasPolicy, FirstStepCutsALongPromptWithItsOwnQueries) {
  // A prompt of 8 tokens against a budget of 6. Tokens 0 and 4 score 20: the first step ranks
  // their pages important, and the oldest of the others, [2, 3] then [6, 7], go.
  HandDriver driver(raas_config(6, 2, 0.5), {1, 1, 1, 4});
  std::vector<float> prompt;
  for (float score : {20.0f, 0.0f, 0.0f, 0.0f, 20.0f, 0.0f, 0.0f, 0.0f}) {
    std::vector<float> key = key_scoring(score);
    prompt.insert(prompt.end(), key.begin(), key.end());
  }
  driver.prefill(prompt);
  EXPECT_EQ(driver.step(ordinary_key, along_query)[0], (Positions{0, 1, 4, 5, 8}));
  EXPECT_EQ(driver.stats().tokens_dropped, 4);
  // Token 9 fills its page; token 10 opens one, and the generated page [8, 9] goes before any
  // prompt page.
  EXPECT_EQ(driver.step(ordinary_key, along_query)[0], (Positions{0, 1, 4, 5, 8, 9}));
  EXPECT_EQ(driver.step(ordinary_key, along_query)[0], (Positions{0, 1, 4, 5, 10}));
}

// ---------------------------------------------------------------------------------------------
// Against a plain model of RaaS on random tokens, GQA groups of 2, prompts below and above the
// budget, pages that do not divide the prompt.

struct ModelPage {
  int64_t first, length, timestamp;
  bool prompt;
};

class RaasModel {
 public:
  RaasModel(int64_t kv_heads, int64_t budget, int64_t page_tokens)
      : heads_(size_t(kv_heads)), budget_(budget), page_tokens_(page_tokens) {}

  void prefill(int64_t tokens) {
    for (auto& pages : heads_) {
      for (int64_t first = 0; first < tokens; first += page_tokens_) {
        int64_t length = std::min(page_tokens_, tokens - first);
        pages.push_back({first, length, first + length - 1, true});
      }
    }
  }
  void append(int64_t position) {
    for (auto& pages : heads_) {
      bool room = !pages.empty() && !pages.back().prompt && pages.back().length < page_tokens_;
      if (ranked_) {
        while (held(pages) + 1 > budget_) evict(pages, room);
      }
      if (!room) pages.push_back({position, 0, position, false});
      ++pages.back().length;
      pages.back().timestamp = position;
    }
  }
  // `important(head, page)` says whether the step's queries rank a page important.
  template <typename Important>
  void select(int64_t position, const Important& important) {
    for (size_t head = 0; head < heads_.size(); ++head) {
      for (ModelPage& page : heads_[head]) {
        if (important(int64_t(head), page)) page.timestamp = position;
      }
    }
    ranked_ = true;
    for (auto& pages : heads_) {
      while (held(pages) > budget_) evict(pages, true);
    }
  }
  Positions positions(int64_t head) const {
    Positions result;
    for (const ModelPage& page : heads_[size_t(head)]) {
      for (int64_t t = 0; t < page.length; ++t) result.push_back(page.first + t);
    }
    return result;
  }

 private:
  static int64_t held(const std::vector<ModelPage>& pages) {
    int64_t total = 0;
    for (const ModelPage& page : pages) total += page.length;
    return total;
  }
  static void evict(std::vector<ModelPage>& pages, bool keep_newest) {
    size_t end = pages.size() - (keep_newest ? 1 : 0);
    for (bool prompt : {false, true}) {
      size_t victim = end;
      for (size_t p = 0; p < end; ++p) {
        if (pages[p].prompt == prompt && (victim == end || pages[p].timestamp < pages[victim].timestamp)) victim = p;
      }
      if (victim != end) {
        pages.erase(pages.begin() + long(victim));
        return;
      }
    }
    FAIL() << "the model found nothing to evict";
  }

  std::vector<std::vector<ModelPage>> heads_;
  int64_t budget_, page_tokens_;
  bool ranked_ = false;
};

TEST(RaasPolicy, FollowsAPlainModelOnRandomTokens) {
  const int64_t heads = 4, kv_heads = 2, dim = 8, group = heads / kv_heads, page = 3;
  const double ratio = 0.3;
  const float scale = 1.0f / std::sqrt(float(dim));
  for (int64_t prompt : {10, 20}) {
    for (int64_t budget : {14, 17}) {
      SCOPED_TRACE("prompt " + std::to_string(prompt) + " budget " + std::to_string(budget));
      HandDriver driver(raas_config(budget, page, ratio), {1, heads, kv_heads, dim});
      std::mt19937 generator(uint32_t(prompt * 100 + budget));
      std::normal_distribution<float> normal;
      auto random = [&](int64_t n) {
        std::vector<float> values(static_cast<size_t>(n));
        for (float& value : values) value = normal(generator);
        return values;
      };
      std::vector<float> keys = random(prompt * kv_heads * dim);  // [tokens, kv_heads, dim]
      driver.prefill(keys);
      RaasModel model(kv_heads, budget, page);
      model.prefill(prompt);
      int64_t refreshed = 0;
      for (int64_t step = 0; step < 40; ++step) {
        const int64_t position = prompt + step;
        std::vector<float> key = random(kv_heads * dim), q = random(heads * dim);
        keys.insert(keys.end(), key.begin(), key.end());
        model.append(position);
        auto score = [&](int64_t head, int64_t g, int64_t t) {
          double dot = 0;
          for (int64_t i = 0; i < dim; ++i) {
            dot += double(q[size_t((head * group + g) * dim + i)]) * keys[size_t((t * kv_heads + head) * dim + i)];
          }
          return scale * dot;
        };
        model.select(position, [&](int64_t head, const ModelPage& candidate) {
          for (int64_t g = 0; g < group; ++g) {
            double best = -INFINITY, page_best = -INFINITY;
            for (int64_t t : model.positions(head)) best = std::max(best, score(head, g, t));
            for (int64_t t = 0; t < candidate.length; ++t) {
              page_best = std::max(page_best, score(head, g, candidate.first + t));
            }
            if (std::exp(page_best - best) >= ratio) {
              ++refreshed;
              return true;
            }
          }
          return false;
        });
        std::vector<Positions> attended = driver.step(key, q);
        for (int64_t head = 0; head < kv_heads; ++head) {
          ASSERT_EQ(attended[size_t(head)], model.positions(head)) << "step " << step << " head " << head;
        }
      }
      EXPECT_GT(refreshed, 0);
      EXPECT_GT(driver.stats().tokens_dropped, 0);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Properties through the decoder's calling sequence (PolicyDriver): batches, several layers.

TEST(RaasPolicy, NeverAttendsMoreThanTheBudgetAndCountsWhatItDrops) {
  KvShape shape{2, 8, 2, 8};
  for (int64_t prompt : {0, 5, 40}) {
    for (int64_t budget : {4, 5, 7, 29, 33}) {
      SCOPED_TRACE("prompt " + std::to_string(prompt) + " budget " + std::to_string(budget));
      KvConfig config = raas_config(budget, 4, 0.2);
      testing::TransferCountingBackend backend;
      auto policy = make_kv_policy(config, shape, backend);
      PolicyDriver driver(*policy, shape, uint32_t(budget + prompt));
      std::vector<SequenceId> batch{1};
      driver.add(1, prompt + 60);
      driver.prefill(1, prompt, 16);
      int64_t held = 0;
      for (int step = 0; step < 60; ++step) {
        held = 0;
        driver.step(batch, [&](int layer, const AttendedSpans& spans) {
          for (int64_t head = 0; head < shape.kv_heads; ++head) {
            Positions positions = driver.attended_positions(1, layer, head, spans, int(head));
            ASSERT_LE(int64_t(positions.size()), budget) << "step " << step;
            EXPECT_TRUE(std::adjacent_find(positions.begin(), positions.end()) == positions.end());
            EXPECT_EQ(positions.back(), driver.tokens(1, layer) - 1) << "the current token";
            held += int64_t(positions.size());
          }
        });
      }
      // Every token appended is either held or counted as dropped, in each layer and KV head.
      const int64_t appended = (prompt + 60) * shape.layers * shape.kv_heads;
      EXPECT_EQ(policy->stats(1).tokens_dropped, appended - held);
    }
  }
}

TEST(RaasPolicy, KeepsEveryPromptPageWhileTheBudgetAllows) {
  // The prompt is kept as long as the budget holds it and one generated page: budget >= prompt
  // + page_tokens. One token less, and a prompt page must give way when a page fills up.
  KvShape shape{2, 4, 2, 8};
  const int64_t prompt = 23, page = 4;
  for (int64_t budget : {prompt + page, prompt + page + 9, prompt + page - 1}) {
    SCOPED_TRACE("budget " + std::to_string(budget));
    const bool allows = budget >= prompt + page;
    testing::TransferCountingBackend backend;
    auto policy = make_kv_policy(raas_config(budget, page, 0.2), shape, backend);
    PolicyDriver driver(*policy, shape, uint32_t(budget));
    std::vector<SequenceId> batch{1};
    driver.add(1, prompt + 80);
    driver.prefill(1, prompt, 10);
    bool prompt_page_dropped = false;
    for (int step = 0; step < 80; ++step) {
      driver.step(batch, [&](int layer, const AttendedSpans& spans) {
        for (int64_t head = 0; head < shape.kv_heads; ++head) {
          Positions positions = driver.attended_positions(1, layer, head, spans, int(head));
          int64_t prompt_held = std::count_if(positions.begin(), positions.end(),
                                              [&](int64_t p) { return p < prompt; });
          if (allows) {
            ASSERT_EQ(prompt_held, prompt) << "step " << step << " layer " << layer;
          }
          prompt_page_dropped = prompt_page_dropped || prompt_held < prompt;
        }
      });
    }
    EXPECT_GT(policy->stats(1).tokens_dropped, 0);
    EXPECT_EQ(prompt_page_dropped, !allows);
  }
}

// With a budget of at least the context, RaaS never evicts and attends the dense cache in
// position order, as the full cache does: the attention output is the same, bit for bit.
std::vector<std::vector<float>> attention_outputs(const KvConfig& config, const KvShape& shape,
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
  std::vector<std::vector<float>> outputs;
  for (int step = 0; step < steps; ++step) {
    driver.step(batch, [&](int, const AttendedSpans& spans) {
      std::vector<float> out(size_t(count * shape.heads * shape.head_dim));
      backend->attention_decode(host_view(out, {count, shape.heads, shape.head_dim}),
                                host_view(driver.last_queries(), {count, shape.heads, shape.head_dim}), spans,
                                1.0f / std::sqrt(float(shape.head_dim)), nullptr);
      outputs.push_back(std::move(out));
    });
  }
  return outputs;
}

TEST(RaasPolicy, BudgetOfTheContextGivesTheFullCacheAttention) {
  for (KvShape shape : {KvShape{3, 4, 4, 16}, KvShape{3, 8, 2, 64}}) {
    SCOPED_TRACE("heads " + std::to_string(shape.heads) + " kv_heads " + std::to_string(shape.kv_heads));
    const std::vector<int64_t> prompts{53, 20};
    const int steps = 25;
    KvConfig full;
    full.policy = "full";
    KvConfig config = raas_config(prompts[0] + steps, 16, 0.1);
    config.dense_layers = {1};
    std::vector<std::vector<float>> expected = attention_outputs(full, shape, prompts, steps);
    std::vector<std::vector<float>> actual = attention_outputs(config, shape, prompts, steps);
    ASSERT_EQ(actual.size(), expected.size());
    for (size_t call = 0; call < expected.size(); ++call) {
      ASSERT_EQ(actual[call], expected[call]) << "step " << call / 3 << " layer " << call % 3;
    }
  }
}

TEST(RaasPolicy, RejectsABudgetBelowOnePageAndABadRatio) {
  std::unique_ptr<Backend> backend = make_cpu_backend(1);
  auto message_of = [&](const KvConfig& config) {
    try {
      make_kv_policy(config, {2, 4, 2, 8}, *backend);
    } catch (const Error& error) {
      return std::string(error.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message_of(raas_config(15, 16, 0.1)).find("below one page (raas_page_tokens 16)"),
            std::string::npos);
  EXPECT_NE(message_of(raas_config(64, 16, 0.0)).find("raas_importance_ratio must be in (0, 1]"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Inside the real decoder: the bundled tiny-llama-14m (8 layers, 6 query heads over 2 KV heads),
// teacher-forced on the same random tokens.

class RaasInTheDecoder : public ::testing::Test {
 protected:
  static constexpr int64_t prompt_tokens = 300, decode_steps = 32;

  static void SetUpTestSuite() {
    backend_ = make_cpu_backend(1).release();
    model_ = Model::load(testing::bundled_model_dir(), *backend_).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete backend_;
  }

  struct Run {
    std::vector<std::vector<float>> logits;
    KvStats stats;
  };
  Run run(const KvConfig& config) {
    const ModelConfig& c = model_->config();
    auto policy = make_kv_policy(config, {c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim}, *backend_);
    Decoder decoder(*model_, *backend_, 1, 64);
    std::mt19937 generator(5);
    std::uniform_int_distribution<int32_t> id(3, int32_t(c.vocab_size) - 1);
    std::vector<int32_t> prompt(static_cast<size_t>(prompt_tokens));
    for (int32_t& token : prompt) token = id(generator);
    policy->add_sequence(0, prompt_tokens + decode_steps);
    decoder.prefill(0, prompt, *policy, prompt_tokens, [](int64_t, const float*, int64_t) {});
    Run result;
    std::vector<SequenceId> batch{0};
    for (int64_t step = 0; step < decode_steps; ++step) {
      std::vector<float> logits(size_t(c.vocab_size));
      std::vector<int32_t> token{id(generator)};
      std::vector<int64_t> position{prompt_tokens + step};
      decoder.decode(batch, token, position, *policy, logits.data());
      result.logits.push_back(std::move(logits));
    }
    result.stats = policy->stats(0);
    return result;
  }

  static inline Backend* backend_ = nullptr;
  static inline Model* model_ = nullptr;
};

TEST_F(RaasInTheDecoder, BudgetOfTheContextGivesTheFullCacheLogits) {
  KvConfig full;
  full.policy = "full";
  Run expected = run(full);
  Run actual = run(raas_config(prompt_tokens + decode_steps, 16, 0.1));
  ASSERT_EQ(actual.logits.size(), expected.logits.size());
  for (size_t step = 0; step < expected.logits.size(); ++step) {
    ASSERT_EQ(actual.logits[step], expected.logits[step]) << "step " << step;
  }
  EXPECT_EQ(actual.stats.tokens_dropped, 0);
}

TEST_F(RaasInTheDecoder, SmallBudgetsRunWithinTheirBudget) {
  // 64: the prompt is cut at the first step; 320: the prompt and one page fit.
  for (int64_t budget : {64, 320}) {
    SCOPED_TRACE("budget " + std::to_string(budget));
    KvConfig config = raas_config(budget, 16, 0.1);
    config.dense_layers = {0, 1};
    Run result = run(config);
    const KvStats& stats = result.stats;
    EXPECT_EQ(stats.decode_steps, decode_steps);
    EXPECT_EQ(stats.offloaded_layers, 6);  // the first two layers are dense
    const int64_t dense_most = 2 * 2 * (prompt_tokens + decode_steps);
    EXPECT_LE(stats.attended_tokens, decode_steps * (6 * 2 * budget + dense_most));
    EXPECT_GT(stats.tokens_dropped, 0);
    std::printf("  raas budget %lld: tokens_dropped %lld score_ms %.2f\n", (long long)budget,
                (long long)stats.tokens_dropped, stats.score_ms);
  }
}

}  // namespace
}  // namespace louiskv
