// Quest (DESIGN.md section 6): all KV stays on the device, cut into pages of quest_page_tokens;
// each page keeps the per-channel minimum and maximum of its keys, and every step attends the
// pages with the highest upper bound sum_i max(q_i * min_i, q_i * max_i) of q.k, plus the page
// of the newest token, which is always attended. Nothing is offloaded, so nothing is copied.
#include <algorithm>

#include "kv/budget_fill.h"
#include "kv/kv_views.h"
#include "kv/policies/policies.h"
#include "kv/policy_base.h"
#include "kv/unit_scoring.h"
#include "kv/unit_summary.h"

namespace louiskv {
namespace {

class QuestPolicy final : public PolicyBase {
 public:
  QuestPolicy(const KvConfig& config, const KvShape& shape, Backend& backend)
      : PolicyBase("quest", config, shape, backend) {
    require(config.quest_page_tokens >= 1, "quest_page_tokens", "must be at least 1");
    require(config.budget >= config.quest_page_tokens, "budget",
            "of " + std::to_string(config.budget) + " tokens is below one page (quest_page_tokens " +
                std::to_string(config.quest_page_tokens) + "), and the newest page is always attended");
  }

 private:
  struct PageBoxes {
    std::vector<float> lower, upper;  // [pages, head_dim]
  };
  struct QuestLayer : LayerState {
    DenseCache cache;  // every token, [kv_heads, capacity, head_dim]
    std::vector<PageBoxes> heads;
  };

  int64_t page_tokens() const { return config().quest_page_tokens; }

  // Widens the box of the page of `position` with `key` [head_dim], opening the page if needed.
  void add_to_box(PageBoxes& boxes, int64_t position, const float* key) const {
    const int64_t dim = shape().head_dim;
    if (position % page_tokens() == 0) {
      boxes.lower.insert(boxes.lower.end(), key, key + dim);
      boxes.upper.insert(boxes.upper.end(), key, key + dim);
      return;
    }
    float* lower = boxes.lower.data() + boxes.lower.size() - size_t(dim);
    float* upper = boxes.upper.data() + boxes.upper.size() - size_t(dim);
    for (int64_t i = 0; i < dim; ++i) {
      lower[i] = std::min(lower[i], key[i]);
      upper[i] = std::max(upper[i], key[i]);
    }
  }

  std::unique_ptr<LayerState> finish_prefill(Sequence&, int, DenseCache& prompt) override {
    auto state = std::make_unique<QuestLayer>();
    state->cache = std::move(prompt);
    state->heads.resize(size_t(shape().kv_heads));
    const int64_t dim = shape().head_dim, length = state->cache.length();
    for (int64_t head = 0; head < shape().kv_heads && length > 0; ++head) {
      read_as_f32(backend(), head_rows(state->cache.keys(), head, 0, length), keys_, staging_);
      for (int64_t t = 0; t < length; ++t) add_to_box(state->heads[size_t(head)], t, &keys_[t * dim]);
    }
    return state;
  }

  void append_token(Sequence&, int, LayerState& state, TensorView k, TensorView v) override {
    auto& layer = static_cast<QuestLayer&>(state);
    int64_t position = layer.cache.length();
    layer.cache.append(backend(), k, v);
    read_as_f32(backend(), k, keys_, staging_);  // [1, kv_heads, head_dim]
    for (int64_t head = 0; head < shape().kv_heads; ++head) {
      add_to_box(layer.heads[size_t(head)], position, &keys_[head * shape().head_dim]);
    }
  }

  void select_rows(Sequence& sequence, int, LayerState& state, std::span<const float> query,
                   AttendedSpans& spans) override {
    auto& layer = static_cast<QuestLayer&>(state);
    KvStats& stats = sequence.stats;
    ++stats.selections;
    const int64_t length = layer.cache.length(), group = group_size(), dim = shape().head_dim;
    const int64_t pages = (length + page_tokens() - 1) / page_tokens();
    const int64_t newest_page = pages - 1;
    const int64_t newest_length = length - newest_page * page_tokens();
    // Every page but the newest competes for what the newest leaves of the budget.
    std::vector<int64_t> lengths(size_t(newest_page), page_tokens());
    for (int64_t head = 0; head < shape().kv_heads; ++head) {
      auto start = PolicyClock::now();
      const PageBoxes& boxes = layer.heads[size_t(head)];
      per_head_.resize(size_t(group * newest_page));
      scores_.resize(size_t(newest_page));
      box_upper_bounds(query.subspan(size_t(head * group * dim), size_t(group * dim)), group,
                       boxes.lower, boxes.upper, newest_page, dim, per_head_);
      reduce_over_group(per_head_, group, newest_page, GroupReduction::max, 1.0f, scores_);
      stats.score_ms += milliseconds_since(start);

      start = PolicyClock::now();
      BudgetFill fill = budget_fill(scores_, lengths, config().budget, newest_length);
      std::vector<int32_t> chosen = std::move(fill.units);
      chosen.push_back(int32_t(newest_page));
      std::sort(chosen.begin(), chosen.end());
      // Adjacent pages are one span.
      for (size_t i = 0; i < chosen.size();) {
        size_t j = i + 1;
        while (j < chosen.size() && chosen[j] == chosen[j - 1] + 1) ++j;
        int64_t first = chosen[i] * page_tokens();
        int64_t last = std::min(int64_t(chosen[j - 1] + 1) * page_tokens(), length);
        layer.cache.add_span(spans, head, first, last - first);
        i = j;
      }
      spans.end_row();
      stats.select_ms += milliseconds_since(start);
    }
  }

  std::vector<float> keys_, per_head_, scores_;
  Buffer staging_;
};

}  // namespace

std::unique_ptr<KvPolicy> make_quest_policy(const KvConfig& config, const KvShape& shape,
                                            Backend& backend) {
  return std::make_unique<QuestPolicy>(config, shape, backend);
}

}  // namespace louiskv
