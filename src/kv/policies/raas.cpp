// RaaS (DESIGN.md section 6, docs/raas.md; Hu et al., 2025, "Efficient Long-Decoding Inference
// with Reasoning-Aware Attention Sparsity"). A long decode makes "milestone" tokens that are
// attended for a while and then no longer, and its prompt holds "phoenix" tokens that come back
// after long silences. So RaaS keeps the prompt, and of the generated tokens those attended
// lately: each KV head's tokens are cut into pages of raas_page_tokens, and each page carries a
// timestamp, the newest step at which a token was written into it or at which the step's
// queries ranked it important (page_importance.h). When the held tokens would exceed the
// budget, the page with the oldest timestamp (ties: the lower position) is dropped for good.
// Generated pages go first; a prompt page goes only when no generated page is left to drop,
// which happens when the budget is below the prompt plus one page.
//
// The pages are ranked by the queries of select(), before the step's attention: the rule
// compares probabilities of one softmax, so it needs no lse, and it reads exactly the tokens the
// step attends. A step's ranking counts from the next eviction on, as in the paper, where the
// timestamps of step t decide what step t + 1 evicts.
//
// A prompt of at least the budget: the interface gives a policy no prompt queries, so the first
// decode step, which must cut the prompt down, ranks its pages with its own queries first.
//
// Storage: until the first eviction, the prompt's dense cache (the prefill staging) takes the
// generated tokens too, so that a budget of at least the context attends exactly what the full
// cache does, in the same order. From the first eviction on, each KV head keeps its pages in
// slots of raas_page_tokens rows, [kv_heads, slots * page_tokens, head_dim], slots enough for
// the budget: the O(budget) memory that RaaS is after.
#include <algorithm>
#include <cmath>

#include "kv/kv_views.h"
#include "kv/page_importance.h"
#include "kv/policies/policies.h"
#include "kv/policy_base.h"

namespace louiskv {
namespace {

class RaasPolicy final : public PolicyBase {
 public:
  RaasPolicy(const KvConfig& config, const KvShape& shape, Backend& backend)
      : PolicyBase("raas", config, shape, backend) {
    require(config.raas_page_tokens >= 1, "raas_page_tokens", "must be at least 1");
    require(config.budget >= config.raas_page_tokens, "budget",
            "of " + std::to_string(config.budget) + " tokens is below one page (raas_page_tokens " +
                std::to_string(config.raas_page_tokens) +
                "), and the page of the current token is always held");
    require(config.raas_importance_ratio > 0.0 && config.raas_importance_ratio <= 1.0,
            "raas_importance_ratio",
            "must be in (0, 1], got " + std::to_string(config.raas_importance_ratio));
  }

 private:
  struct Page {
    int64_t first_position = 0;
    int64_t length = 0;
    int64_t timestamp = 0;  // position of the current token at its last write or refresh
    int64_t row = 0;        // storage row of its first token
    bool prompt = false;
  };
  struct HeadPages {
    std::vector<Page> pages;         // in position order
    std::vector<int64_t> free_rows;  // first rows of the free slots, once compacted
    int64_t held = 0;                // tokens
  };
  struct RaasLayer : LayerState {
    DenseCache dense;                   // the storage until the first eviction
    Buffer keys, values;                // the slots, once compacted
    TensorView key_rows, value_rows;    // [kv_heads, storage rows, head_dim]: dense or slots
    bool compacted = false;
    bool ranked = false;                // some step's queries have ranked the pages
    int64_t tokens = 0;                 // tokens appended so far (the next position)
    std::vector<HeadPages> heads;
    int64_t storage_rows() const { return compacted ? key_rows.dim(1) : dense.length(); }
  };

  int64_t page_tokens() const { return config().raas_page_tokens; }

  // Whether the next token goes into the newest page: a generated page with room. A prompt
  // page takes no generated token, so that "prompt page" stays a property of whole pages.
  bool newest_page_has_room(const HeadPages& head) const {
    return !head.pages.empty() && !head.pages.back().prompt &&
           head.pages.back().length < page_tokens();
  }

  std::unique_ptr<LayerState> finish_prefill(Sequence&, int, DenseCache& prompt) override {
    auto state = std::make_unique<RaasLayer>();
    state->dense = std::move(prompt);
    state->key_rows = state->dense.keys();
    state->value_rows = state->dense.values();
    state->tokens = state->dense.length();
    state->heads.resize(size_t(shape().kv_heads));
    for (HeadPages& head : state->heads) {
      for (int64_t first = 0; first < state->tokens; first += page_tokens()) {
        const int64_t length = std::min(page_tokens(), state->tokens - first);
        // A prompt token's time is its position, so a page's is that of its newest token.
        head.pages.push_back({first, length, first + length - 1, first, true});
      }
      head.held = state->tokens;
    }
    return state;
  }

  // The page to drop: the oldest timestamp among the generated pages (ties: the lower
  // position), else among the prompt pages; never the newest page when `keep_newest`. -1 if none.
  static int64_t eviction_candidate(const HeadPages& head, bool keep_newest) {
    const int64_t candidates = int64_t(head.pages.size()) - (keep_newest ? 1 : 0);
    int64_t best = -1;
    for (bool prompt : {false, true}) {
      for (int64_t p = 0; p < candidates; ++p) {
        const Page& page = head.pages[size_t(p)];
        if (page.prompt != prompt) continue;
        if (best < 0 || page.timestamp < head.pages[size_t(best)].timestamp) best = p;
      }
      if (best >= 0) return best;
    }
    return -1;
  }

  // Drops pages, oldest first, until the head holds at most `limit` tokens; true if any went.
  bool evict_to(Sequence& sequence, RaasLayer& layer, HeadPages& head, int64_t limit,
                bool keep_newest) {
    bool evicted = false;
    while (head.held > limit) {
      const int64_t victim = eviction_candidate(head, keep_newest);
      LOUISKV_CHECK(victim >= 0, "raas: over budget with no page to evict");
      const Page& page = head.pages[size_t(victim)];
      head.held -= page.length;
      sequence.stats.tokens_dropped += page.length;
      if (layer.compacted) head.free_rows.push_back(page.row);
      head.pages.erase(head.pages.begin() + victim);
      evicted = true;
    }
    return evicted;
  }

  // After the first eviction: move every held page into slots of its own and free the dense
  // cache. A head holds at most budget tokens in pages that are full but for two (the last
  // prompt page and the newest page), so budget / page_tokens + 2 slots always suffice.
  void compact(RaasLayer& layer) {
    const int64_t kv_heads = shape().kv_heads, dim = shape().head_dim;
    const int64_t slots = config().budget / page_tokens() + 2, rows = slots * page_tokens();
    const DType dtype = backend().kv_dtype();
    const size_t bytes = size_t(kv_heads * rows * dim) * dtype_size(dtype);
    layer.keys = backend().allocate(bytes);
    layer.values = backend().allocate(bytes);
    TensorView keys = layer.keys.view(dtype, {kv_heads, rows, dim});
    TensorView values = layer.values.view(dtype, {kv_heads, rows, dim});
    for (int64_t h = 0; h < kv_heads; ++h) {
      HeadPages& head = layer.heads[size_t(h)];
      LOUISKV_CHECK(int64_t(head.pages.size()) <= slots, "raas: more pages than slots");
      int64_t slot = 0;
      for (Page& page : head.pages) {
        const int64_t row = slot++ * page_tokens();
        backend().copy(head_rows(keys, h, row, page.length),
                       head_rows(layer.key_rows, h, page.row, page.length));
        backend().copy(head_rows(values, h, row, page.length),
                       head_rows(layer.value_rows, h, page.row, page.length));
        page.row = row;
      }
      head.free_rows.clear();
      for (int64_t free = slots - 1; free >= slot; --free) head.free_rows.push_back(free * page_tokens());
    }
    layer.key_rows = keys;
    layer.value_rows = values;
    layer.dense = DenseCache();
    layer.compacted = true;
  }

  void append_token(Sequence& sequence, int, LayerState& state, TensorView k,
                    TensorView v) override {
    auto& layer = static_cast<RaasLayer&>(state);
    const int64_t position = layer.tokens++;
    // Room for the new token. Until some step has ranked the pages their timestamps say
    // nothing, so a first step over the budget cuts in select_rows, with its own queries.
    if (layer.ranked) {
      bool evicted = false;
      for (HeadPages& head : layer.heads) {
        evicted |= evict_to(sequence, layer, head, config().budget - 1, newest_page_has_room(head));
      }
      if (evicted && !layer.compacted) compact(layer);
    }
    if (!layer.compacted) layer.dense.append(backend(), k, v);  // row = position
    for (int64_t h = 0; h < shape().kv_heads; ++h) {
      HeadPages& head = layer.heads[size_t(h)];
      if (!newest_page_has_room(head)) {
        int64_t row = position;
        if (layer.compacted) {
          LOUISKV_CHECK(!head.free_rows.empty(), "raas: no free slot for a new page");
          row = head.free_rows.back();
          head.free_rows.pop_back();
        }
        head.pages.push_back({position, 0, position, row, false});
      }
      Page& page = head.pages.back();
      if (layer.compacted) {
        copy_converting(backend(), head_rows(layer.key_rows, h, page.row + page.length, 1),
                        token_head(k, h));
        copy_converting(backend(), head_rows(layer.value_rows, h, page.row + page.length, 1),
                        token_head(v, h));
      }
      ++page.length;
      page.timestamp = position;
      ++head.held;
    }
  }

  // Sets the timestamp of every page of head `h` that the group's queries rank important.
  void refresh_timestamps(RaasLayer& layer, int64_t h, std::span<const float> group_queries) {
    const int64_t dim = shape().head_dim, group = group_size();
    HeadPages& head = layer.heads[size_t(h)];
    read_as_f32(backend(), head_rows(layer.key_rows, h, 0, layer.storage_rows()), keys_, staging_);
    held_keys_.resize(size_t(head.held * dim));
    lengths_.clear();
    float* into = held_keys_.data();
    for (const Page& page : head.pages) {
      into = std::copy_n(keys_.begin() + page.row * dim, page.length * dim, into);
      lengths_.push_back(page.length);
    }
    scores_.resize(size_t(group * head.held));
    query_key_scores(group_queries, group, held_keys_, head.held, dim, scores_);
    const std::vector<bool> important =
        important_pages(scores_, group, lengths_, attention_scale(), config().raas_importance_ratio);
    const int64_t current = layer.tokens - 1;
    for (size_t p = 0; p < head.pages.size(); ++p) {
      if (important[p]) head.pages[p].timestamp = current;
    }
  }

  void select_rows(Sequence& sequence, int, LayerState& state, std::span<const float> query,
                   AttendedSpans& spans) override {
    auto& layer = static_cast<RaasLayer&>(state);
    const int64_t kv_heads = shape().kv_heads, group_floats = group_size() * shape().head_dim;
    const auto start = PolicyClock::now();
    for (int64_t h = 0; h < kv_heads; ++h) {
      refresh_timestamps(layer, h, query.subspan(size_t(h * group_floats), size_t(group_floats)));
    }
    layer.ranked = true;
    sequence.stats.score_ms += milliseconds_since(start);
    // Only a first step over the budget finds more than the budget held (see append_token).
    bool evicted = false;
    for (HeadPages& head : layer.heads) {
      evicted |= evict_to(sequence, layer, head, config().budget, true);
    }
    if (evicted && !layer.compacted) compact(layer);

    for (int64_t h = 0; h < kv_heads; ++h) {
      // One span per run of pages that lie one after the other in storage.
      int64_t run_row = 0, run_length = 0;
      auto flush = [&] {
        if (run_length == 0) return;
        spans.add(head_rows(layer.key_rows, h, run_row, run_length).data,
                  head_rows(layer.value_rows, h, run_row, run_length).data, int32_t(run_length));
      };
      for (const Page& page : layer.heads[size_t(h)].pages) {
        if (run_length > 0 && page.row == run_row + run_length) {
          run_length += page.length;
          continue;
        }
        flush();
        run_row = page.row;
        run_length = page.length;
      }
      flush();
      spans.end_row();
    }
  }

  std::vector<float> keys_, held_keys_, scores_;
  std::vector<int64_t> lengths_;
  Buffer staging_;
};

}  // namespace

std::unique_ptr<KvPolicy> make_raas_policy(const KvConfig& config, const KvShape& shape,
                                           Backend& backend) {
  return std::make_unique<RaasPolicy>(config, shape, backend);
}

}  // namespace louiskv
