#include "kv/offloading_policy.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kv/budget_fill.h"
#include "kv/kv_views.h"
#include "kv/unit_summary.h"

namespace louiskv {
namespace {

// Calls copy(source_first, destination_first, count) for each overlap of two lists of ranges
// that cover the same number of tokens in the same order.
template <class Copy>
void copy_across_ranges(std::span<const SlotRange> sources, std::span<const SlotRange> destinations,
                        Copy copy) {
  size_t s = 0, d = 0;
  int64_t source_used = 0, destination_used = 0;
  while (s < sources.size() && d < destinations.size()) {
    int64_t count = std::min(sources[s].length - source_used,
                             destinations[d].length - destination_used);
    copy(sources[s].first + source_used, destinations[d].first + destination_used, count);
    source_used += count;
    destination_used += count;
    if (source_used == sources[s].length) ++s, source_used = 0;
    if (destination_used == destinations[d].length) ++d, destination_used = 0;
  }
  LOUISKV_CHECK(s == sources.size() && d == destinations.size(), "ranges of different lengths");
}

}  // namespace

OffloadingPolicy::OffloadingPolicy(std::string name, const KvConfig& config, const KvShape& shape,
                                   Backend& backend)
    : PolicyBase(std::move(name), config, shape, backend) {
  require(config.window_tokens >= 1, "window_tokens",
          "must be at least 1: the current token is attended from the window");
  require(config.budget >= config.sink_tokens + config.window_tokens, "budget",
          "of " + std::to_string(config.budget) + " tokens is below sink_tokens + window_tokens (" +
              std::to_string(config.sink_tokens + config.window_tokens) +
              "), which are always attended");
}

OffloadingPolicy::Partition OffloadingPolicy::contiguous_runs(UnitKind kind, int64_t count,
                                                              int64_t run_length) {
  Partition partition;
  partition.kind = kind;
  for (int64_t first = 0; first < count; first += run_length) {
    partition.lengths.push_back(std::min(run_length, count - first));
  }
  return partition;  // an empty order: tokens stay where they are
}

OffloadingPolicy::Partition OffloadingPolicy::clusters_of(const KmeansResult& result,
                                                          int64_t count) {
  Partition partition;
  partition.kind = UnitKind::cluster;
  partition.order.resize(size_t(count));
  std::iota(partition.order.begin(), partition.order.end(), 0);
  // Cluster by cluster; within a cluster, tokens keep their temporal order.
  std::stable_sort(partition.order.begin(), partition.order.end(),
                   [&](int32_t a, int32_t b) { return result.assignment[a] < result.assignment[b]; });
  partition.lengths = result.sizes;
  return partition;
}

int32_t OffloadingPolicy::add_units(OffloadedLayer& layer_state, int layer, int64_t head,
                                    int64_t first, int64_t count, bool prompt) {
  HeadUnits& units = layer_state.heads[size_t(head)];
  auto first_new = int32_t(units.units.size());
  if (count == 0) return first_new;
  const int64_t dim = shape().head_dim;
  layer_state.pool.read_keys(head, first, count, keys_);
  Partition partition = prompt ? partition_prompt(layer, head, keys_, count)
                               : partition_generated(layer, head, keys_, count);
  LOUISKV_CHECK(std::accumulate(partition.lengths.begin(), partition.lengths.end(), int64_t(0)) ==
                    count,
                "a partition must cover every token once");
  if (!partition.order.empty()) {
    LOUISKV_CHECK(int64_t(partition.order.size()) == count, "a partition orders every token");
    layer_state.pool.permute(head, first, partition.order);
    std::vector<float> ordered(keys_.size());
    for (int64_t i = 0; i < count; ++i) {
      std::copy_n(keys_.begin() + partition.order[i] * dim, dim, ordered.begin() + i * dim);
    }
    keys_.swap(ordered);
  }
  Summaries needs = summaries();
  int64_t offset = 0;
  for (int64_t length : partition.lengths) {
    LOUISKV_CHECK(length > 0, "a unit holds at least one token");
    auto unit_keys = std::span<const float>(keys_).subspan(size_t(offset * dim));
    units.units.push_back({partition.kind, first + offset, length});
    units.lengths.push_back(length);
    size_t at = units.mean_keys.size();
    units.mean_keys.resize(at + size_t(dim));
    auto mean = std::span(units.mean_keys).subspan(at);
    mean_key(unit_keys, length, dim, mean);
    if (needs.box) {
      units.lower.resize(at + size_t(dim));
      units.upper.resize(at + size_t(dim));
      key_box(unit_keys, length, dim, std::span(units.lower).subspan(at),
              std::span(units.upper).subspan(at));
    }
    if (needs.sphere) units.radii.push_back(bounding_radius(unit_keys, length, dim, mean));
    offset += length;
  }
  return first_new;
}

std::unique_ptr<PolicyBase::LayerState> OffloadingPolicy::finish_prefill(Sequence& sequence,
                                                                         int layer,
                                                                         DenseCache& prompt) {
  const int64_t kv_heads = shape().kv_heads, dim = shape().head_dim;
  auto state = std::make_unique<OffloadedLayer>();
  int64_t prompt_tokens = prompt.length();
  int64_t sinks = std::min(config().sink_tokens, prompt_tokens);
  state->sinks = DenseCache(backend(), kv_heads, sinks, dim);
  state->sinks.append_from(backend(), prompt, 0, sinks);

  state->pool = HostPool(backend(), kv_heads, sequence.capacity - sinks, dim);
  state->heads.resize(size_t(kv_heads));
  int64_t rest = prompt_tokens - sinks;
  if (rest > 0) {
    int64_t first = state->pool.reserve(rest);
    for (int64_t head = 0; head < kv_heads; ++head) {
      backend().copy(state->pool.keys(head, first, rest), head_rows(prompt.keys(), head, sinks, rest));
      backend().copy(state->pool.values(head, first, rest),
                     head_rows(prompt.values(), head, sinks, rest));
    }
    backend().synchronize();  // the CPU reads the pool next
    for (int64_t head = 0; head < kv_heads; ++head) add_units(*state, layer, head, first, rest, true);
  }
  // A selection never takes more than budget - sinks - 1 tokens (the current token is always in
  // the window), nor more than the pool holds.
  int64_t slots = std::clamp<int64_t>(config().budget - sinks - 1, 0, sequence.capacity - sinks);
  state->working_set = WorkingSet(backend(), kv_heads, slots, dim);
  state->window = DecodeWindow(backend(), kv_heads, config().window_tokens, dim);
  return state;
}

void OffloadingPolicy::offload_oldest_segment(OffloadedLayer& layer_state, int layer) {
  const WindowSegment segment = layer_state.window.segments().front();
  std::vector<SlotRange> ring = layer_state.window.ring_ranges(segment.first, segment.length);
  int64_t first = layer_state.pool.reserve(segment.length);
  for (int64_t head = 0; head < shape().kv_heads; ++head) {
    int64_t offset = 0;
    for (const SlotRange& range : ring) {
      backend().copy(layer_state.pool.keys(head, first + offset, range.length),
                     layer_state.window.keys(head, range.first, range.length));
      backend().copy(layer_state.pool.values(head, first + offset, range.length),
                     layer_state.window.values(head, range.first, range.length));
      offset += range.length;
    }
  }
  backend().synchronize();  // the CPU reads the pool next

  // Window occupancy once the segment has left and the token being appended has arrived.
  int64_t occupancy_after = layer_state.window.occupancy() - segment.length + 1;
  for (int64_t head = 0; head < shape().kv_heads; ++head) {
    int32_t unit = add_units(layer_state, layer, head, first, segment.length, false);
    if (!keeps_leaving_segments() || !layer_state.has_selection) continue;
    HeadUnits& units = layer_state.heads[size_t(head)];
    LOUISKV_CHECK(units.units.size() == size_t(unit) + 1 &&
                      units.units[unit].host_first == first,
                  "a segment kept attended must stay one unit in window order");
    if (layer_state.sinks.length() + occupancy_after + units.selected_tokens + segment.length >
        config().budget) {
      continue;
    }
    std::span<const SlotRange> slots = layer_state.working_set.place(head, unit, segment.length);
    copy_across_ranges(ring, slots, [&](int64_t ring_slot, int64_t slot, int64_t count) {
      backend().copy(layer_state.working_set.keys(head, slot, count),
                     layer_state.window.keys(head, ring_slot, count));
      backend().copy(layer_state.working_set.values(head, slot, count),
                     layer_state.window.values(head, ring_slot, count));
    });
    units.selected.push_back(unit);
    // The newest context is trimmed last when the window grows into the budget.
    units.selected_scores.push_back(INFINITY);
    units.selected_tokens += segment.length;
  }
  layer_state.window.pop_oldest();
}

void OffloadingPolicy::append_token(Sequence& /*sequence*/, int layer, LayerState& state,
                                    TensorView k, TensorView v) {
  auto& layer_state = static_cast<OffloadedLayer&>(state);
  while (layer_state.window.full()) offload_oldest_segment(layer_state, layer);
  layer_state.window.append(backend(), k, v);
  if (layer_state.window.open_length() >= segment_close_length()) {
    layer_state.window.close_open_segment();
  }
}

void OffloadingPolicy::reselect(Sequence& sequence, OffloadedLayer& layer_state,
                                std::span<const float> query) {
  KvStats& stats = sequence.stats;
  ++stats.selections;
  const int64_t group = group_size(), dim = shape().head_dim;
  int64_t reserved = layer_state.sinks.length() + layer_state.window.occupancy();
  LoadPlan plan;
  for (int64_t head = 0; head < shape().kv_heads; ++head) {
    HeadUnits& units = layer_state.heads[size_t(head)];
    auto start = PolicyClock::now();
    scores_.assign(units.units.size(), 0.0f);
    score_units(units, query.subspan(size_t(head * group * dim), size_t(group * dim)), scores_);
    stats.score_ms += milliseconds_since(start);

    start = PolicyClock::now();
    BudgetFill fill = budget_fill(scores_, units.lengths, config().budget, reserved);
    units.selected = std::move(fill.units);
    units.selected_scores.clear();
    for (int32_t unit : units.selected) units.selected_scores.push_back(scores_[unit]);
    units.selected_tokens = fill.tokens;
    layer_state.working_set.plan_selection(head, units.selected, units.units, plan);
    stats.select_ms += milliseconds_since(start);
  }
  auto start = PolicyClock::now();
  stats.h2d_bytes += layer_state.working_set.execute(backend(), plan, layer_state.pool);
  stats.transfer_ms += milliseconds_since(start);
  stats.units_loaded += plan.units;
  stats.tokens_loaded += plan.tokens;
  layer_state.has_selection = true;
}

void OffloadingPolicy::trim_to_budget(OffloadedLayer& layer_state) {
  int64_t reserved = layer_state.sinks.length() + layer_state.window.occupancy();
  for (int64_t head = 0; head < shape().kv_heads; ++head) {
    HeadUnits& units = layer_state.heads[size_t(head)];
    while (reserved + units.selected_tokens > config().budget && !units.selected.empty()) {
      size_t lowest = size_t(std::min_element(units.selected_scores.begin(),
                                              units.selected_scores.end()) -
                             units.selected_scores.begin());
      int32_t unit = units.selected[lowest];
      layer_state.working_set.release(head, unit);
      units.selected_tokens -= units.lengths[unit];
      units.selected.erase(units.selected.begin() + std::ptrdiff_t(lowest));
      units.selected_scores.erase(units.selected_scores.begin() + std::ptrdiff_t(lowest));
    }
  }
}

void OffloadingPolicy::select_rows(Sequence& sequence, int /*layer*/, LayerState& state,
                                   std::span<const float> query, AttendedSpans& spans) {
  auto& layer_state = static_cast<OffloadedLayer&>(state);
  bool wanted = should_reselect(layer_state, query);
  if (wanted || !layer_state.has_selection) {
    reselect(sequence, layer_state, query);
  } else {
    trim_to_budget(layer_state);
  }
  for (int64_t head = 0; head < shape().kv_heads; ++head) {
    layer_state.sinks.add_span(spans, head, 0, layer_state.sinks.length());
    layer_state.window.add_spans(spans, head);
    for (int32_t unit : layer_state.heads[size_t(head)].selected) {
      layer_state.working_set.add_spans(spans, head, unit);
    }
    spans.end_row();
  }
}

}  // namespace louiskv
