// Quest (DESIGN.md section 6): all KV stays on the device, cut into pages of quest_page_tokens;
// each page keeps the per-channel minimum and maximum of its keys, and every step attends the
// pages with the highest upper bound sum_i max(q_i * min_i, q_i * max_i) of q.k, plus the page
// of the newest token, which is always attended. Nothing is offloaded, so nothing is copied. The
// boxes live on the device and are scored there, batched over the sequences of a step.
#include <algorithm>
#include <limits>

#include "kv/kv_views.h"
#include "kv/policies/policies.h"
#include "kv/policy_base.h"
#include "kv/unit_table.h"

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
  struct QuestLayer : LayerState {
    DenseCache cache;  // every token, [kv_heads, capacity, head_dim]
    UnitTable table;   // one box per page, on the device
  };

  int64_t page_tokens() const { return config().quest_page_tokens; }

  // Summary jobs that (re)compute the boxes of pages [first_page, last_page] of every head from
  // the cache, which is on the device.
  void queue_boxes(const QuestLayer& layer, int64_t first_page, int64_t last_page) {
    const int64_t length = layer.cache.length();
    for (int64_t head = 0; head < shape().kv_heads; ++head) {
      for (int64_t page = first_page; page <= last_page; ++page) {
        int64_t first = page * page_tokens(), count = std::min(page_tokens(), length - first);
        jobs_.push_back(layer.table.summary_job(head, page, head_rows(layer.cache.keys(), head, first, count).data,
                                                count));
      }
    }
  }

  std::unique_ptr<LayerState> finish_prefill(Sequence& sequence, int, DenseCache& prompt) override {
    auto state = std::make_unique<QuestLayer>();
    state->cache = std::move(prompt);
    // The pages a sequence can ever have: no growth.
    const int64_t pages = (sequence.capacity + page_tokens() - 1) / page_tokens();
    state->table = UnitTable(backend(), shape().kv_heads, shape().head_dim, {.box = true}, pages, config().budget);
    const int64_t length = state->cache.length();
    if (length > 0) {
      jobs_.clear();
      queue_boxes(*state, 0, (length - 1) / page_tokens());
      backend().summarize_units(jobs_, shape().head_dim);
    }
    return state;
  }

  void append_token(Sequence&, int, LayerState& state, TensorView k, TensorView v) override {
    auto& layer = static_cast<QuestLayer&>(state);
    layer.cache.append(backend(), k, v);
    // The newest page's box is recomputed over its tokens (at most a page of them).
    jobs_.clear();
    int64_t newest = (layer.cache.length() - 1) / page_tokens();
    queue_boxes(layer, newest, newest);
    backend().summarize_units(jobs_, shape().head_dim);
  }

  void select_layer(std::span<Sequence* const> sequences, int layer, TensorView q, AttendedSpans& spans) override {
    const int64_t kv_heads = shape().kv_heads;
    auto start = PolicyClock::now();
    rows_.clear();
    for (size_t b = 0; b < sequences.size(); ++b) {
      const auto& state = static_cast<const QuestLayer&>(*layer_entry(*sequences[b], layer).state);
      const int64_t length = state.cache.length();
      const int64_t newest_page = (length - 1) / page_tokens();
      const int64_t newest_length = length - newest_page * page_tokens();
      // Every page but the newest competes for what the newest leaves of the budget.
      for (int64_t head = 0; head < kv_heads; ++head) {
        rows_.push_back(state.table.row(int32_t(b), head, newest_page, config().budget - newest_length));
      }
    }
    backend().score_units(q, rows_, {.bound = UnitBound::box, .reduction = GroupReduction::max,
                                     .group = int32_t(group_size())},
                          std::numeric_limits<float>::infinity());
    backend().budget_fill(rows_, std::numeric_limits<float>::infinity());
    // Spans are built on the host from the device's choice: the one wait of this layer.
    backend().synchronize();
    const double score_ms = milliseconds_since(start) / double(sequences.size());

    for (size_t b = 0; b < sequences.size(); ++b) {
      Sequence& sequence = *sequences[b];
      const auto& state = static_cast<const QuestLayer&>(*layer_entry(sequence, layer).state);
      ++sequence.stats.selections;
      ++sequence.stats.host_syncs;
      sequence.stats.score_ms += score_ms;
      start = PolicyClock::now();
      const int64_t length = state.cache.length();
      const int64_t newest_page = (length - 1) / page_tokens();
      for (int64_t head = 0; head < kv_heads; ++head) {
        const int32_t* count = state.table.chosen_count(head);
        LOUISKV_CHECK(count[0] >= 0, "budget fill gave no choice for a row");
        chosen_.assign(state.table.chosen(head), state.table.chosen(head) + count[0]);
        chosen_.push_back(int32_t(newest_page));
        std::sort(chosen_.begin(), chosen_.end());
        // Adjacent pages are one span.
        for (size_t i = 0; i < chosen_.size();) {
          size_t j = i + 1;
          while (j < chosen_.size() && chosen_[j] == chosen_[j - 1] + 1) ++j;
          int64_t first = chosen_[i] * page_tokens();
          int64_t last = std::min(int64_t(chosen_[j - 1] + 1) * page_tokens(), length);
          state.cache.add_span(spans, head, first, last - first);
          i = j;
        }
        spans.end_row();
      }
      sequence.stats.select_ms += milliseconds_since(start);
    }
  }

  void select_rows(Sequence& sequence, int layer, LayerState&, std::span<const float>, AttendedSpans&) override {
    throw_error(ErrorKind::internal, "internal error (a bug in louiskv): quest select_rows called for sequence " +
                                         std::to_string(sequence.id) + ", layer " + std::to_string(layer));
  }

  std::vector<UnitRow> rows_;
  std::vector<UnitSummaryJob> jobs_;
  std::vector<int32_t> chosen_;
};

}  // namespace

std::unique_ptr<KvPolicy> make_quest_policy(const KvConfig& config, const KvShape& shape,
                                            Backend& backend) {
  return std::make_unique<QuestPolicy>(config, shape, backend);
}

}  // namespace louiskv
