#include "kv/offloading_policy.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>

#include "kv/kmeans.h"
#include "kv/kv_views.h"
#include "kv/seeded_random.h"

namespace louiskv {

// The prompt's k-means of one layer, queued on the side stream; the layer's prompt (its source)
// and the run's buffers stay alive until the work is done.
struct OffloadingPolicy::PendingClusters {
  PendingClusters(Backend& backend_in, DenseCache prompt_in) : backend(backend_in), prompt(std::move(prompt_in)) {}
  PendingClusters(const PendingClusters&) = delete;
  PendingClusters& operator=(const PendingClusters&) = delete;
  // Freeing the buffers while the side stream still reads them would be a use after free.
  ~PendingClusters() { backend.wait_for(mark); }

  Backend& backend;
  DenseCache prompt;
  std::unique_ptr<KmeansRun> run;
  WorkMark mark;
  int64_t pool_first = 0;
};

OffloadingPolicy::OffloadedLayer::OffloadedLayer() = default;
OffloadingPolicy::OffloadedLayer::~OffloadedLayer() = default;

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

int64_t OffloadingPolicy::row_bytes() const {
  return shape().head_dim * int64_t(dtype_size(backend().kv_dtype()));
}

int32_t OffloadingPolicy::add_run_units(OffloadedLayer& layer_state, const Grouping& grouping, TensorView keys,
                                        TensorView values, int64_t source_first, int64_t pool_first,
                                        int64_t count) {
  const int64_t kv_heads = shape().kv_heads;
  auto first_unit = int32_t(layer_state.heads[0].units.size());
  if (count == 0) return first_unit;
  copies_.clear();
  for (int64_t head = 0; head < kv_heads; ++head) {
    copies_.push_back({head_rows(keys, head, source_first, count).data,
                       head_rows(values, head, source_first, count).data,
                       layer_state.pool.keys(head, pool_first, count).data,
                       layer_state.pool.values(head, pool_first, count).data, count});
  }
  backend().gather_kv(copies_, row_bytes());

  const int64_t run = grouping.run_tokens > 0 ? grouping.run_tokens : count;
  const int64_t new_units = (count + run - 1) / run;
  layer_state.table.reserve(backend(), first_unit + new_units, first_unit);
  jobs_.clear();
  for (int64_t head = 0; head < kv_heads; ++head) {
    HeadUnits& units = layer_state.heads[size_t(head)];
    int64_t unit = first_unit;
    for (int64_t offset = 0; offset < count; offset += run, ++unit) {
      int64_t length = std::min(run, count - offset);
      units.units.push_back({grouping.kind, pool_first + offset, length});
      // Summaries from the source, which is on the device, rather than from the pool.
      jobs_.push_back(layer_state.table.summary_job(head, unit, head_rows(keys, head, source_first + offset, length).data,
                                                    length));
    }
  }
  backend().summarize_units(jobs_, shape().head_dim);
  return first_unit;
}

std::unique_ptr<KmeansRun> OffloadingPolicy::cluster_units(OffloadedLayer& layer_state, const Grouping& grouping,
                                                           TensorView keys, TensorView values, int64_t source_first,
                                                           int64_t pool_first, int64_t count, bool side_stream) {
  const int64_t clusters = cluster_count_for(count, grouping.cluster_tokens);
  const auto first_unit = int64_t(layer_state.heads[0].units.size());
  layer_state.table.reserve(backend(), first_unit + clusters, first_unit);
  if (side_stream) backend().begin_side_work();
  std::unique_ptr<KmeansRun> run;
  try {
    run = std::make_unique<KmeansRun>(backend(), keys, source_first, count, clusters, config().kmeans_iterations,
                                      grouping.seed);
    backend().reorder_kv(layer_state.pool.all_keys(), layer_state.pool.all_values(), pool_first, keys, values,
                         source_first, run->order());
    // Each cluster's score key is its centroid, the mean of its keys.
    for (int64_t head = 0; head < shape().kv_heads; ++head) {
      backend().copy(layer_state.table.keys(head, first_unit, clusters),
                     run->centroids().rows(head, 1).reshaped({clusters, shape().head_dim}));
      backend().copy(layer_state.table.lengths(head, first_unit, clusters),
                     run->sizes().rows(head, 1).reshaped({clusters}));
    }
  } catch (...) {
    if (side_stream) {
      // Back on the main stream, once the side work queued so far no longer reads the run.
      backend().wait_for(backend().end_side_work());
    }
    throw;
  }
  // On the side stream the caller ends the side work, so that the mark covers all of it.
  return run;
}

void OffloadingPolicy::add_cluster_units(OffloadedLayer& layer_state, const KmeansRun& run, int64_t pool_first) {
  const int64_t clusters = run.clusters();
  for (int64_t head = 0; head < shape().kv_heads; ++head) {
    HeadUnits& units = layer_state.heads[size_t(head)];
    int64_t offset = 0;
    // Clusters left empty stay as units of no tokens, so that unit ids match the unit table.
    for (int64_t c = 0; c < clusters; ++c) {
      int64_t size = run.host_sizes()[head * clusters + c];
      units.units.push_back({UnitKind::cluster, pool_first + offset, size});
      offset += size;
    }
    LOUISKV_CHECK(offset == run.count(), "k-means sizes do not add up to the clustered tokens");
  }
}

bool OffloadingPolicy::complete_pending(OffloadedLayer& layer_state, bool wait) {
  if (!layer_state.pending) return false;
  PendingClusters& pending = *layer_state.pending;
  bool done = backend().work_done(pending.mark);
  if (!done && !wait) return false;
  if (!done) backend().wait_for(pending.mark);
  add_cluster_units(layer_state, *pending.run, pending.pool_first);
  layer_state.pending.reset();
  return !done;
}

std::unique_ptr<PolicyBase::LayerState> OffloadingPolicy::finish_prefill(Sequence& sequence, int layer,
                                                                         DenseCache& prompt) {
  const int64_t kv_heads = shape().kv_heads, dim = shape().head_dim;
  // Earlier layers whose clustering has finished meanwhile complete now, without waiting.
  for (LayerEntry& entry : sequence.layers) {
    if (entry.state) complete_pending(static_cast<OffloadedLayer&>(*entry.state), false);
  }
  auto state = std::make_unique<OffloadedLayer>();
  const int64_t prompt_tokens = prompt.length();
  const int64_t sinks = std::min(config().sink_tokens, prompt_tokens);
  state->sinks = DenseCache(backend(), kv_heads, sinks, dim);
  state->sinks.append_from(backend(), prompt, 0, sinks);
  state->pool = HostPool(backend(), kv_heads, sequence.capacity - sinks, dim);
  state->heads.resize(size_t(kv_heads));

  // The prompt's newest tokens start in the window; the rest after the sinks goes to the pool.
  const int64_t tail = std::clamp<int64_t>(config().prompt_window_tokens, 0,
                                           std::min(prompt_tokens - sinks, config().window_tokens));
  const int64_t rest = prompt_tokens - sinks - tail;
  const Grouping grouping = prompt_grouping(layer);
  const bool clustered = grouping.cluster_tokens > 0;
  int64_t prompt_units = 0;
  if (rest > 0) {
    prompt_units = clustered ? cluster_count_for(rest, grouping.cluster_tokens)
                             : (grouping.run_tokens > 0 ? (rest + grouping.run_tokens - 1) / grouping.run_tokens : 1);
  }
  // Room for some generated units too; the table grows if generation outruns it.
  const int64_t generated_room = std::clamp<int64_t>(sequence.capacity - prompt_tokens, 1, 256);
  // A choice never holds more units than tokens, nor more tokens than the budget.
  state->table = UnitTable(backend(), kv_heads, dim, summaries(), prompt_units + generated_room, config().budget);
  // A selection never takes more than budget - sinks - 1 tokens (the current token is always in
  // the window), nor more than the pool holds.
  const int64_t slots = std::clamp<int64_t>(config().budget - sinks - 1, 0, sequence.capacity - sinks);
  state->working_set = WorkingSet(backend(), kv_heads, slots, dim);
  state->window = DecodeWindow(backend(), kv_heads, config().window_tokens, dim);
  const size_t leaving_bytes = size_t(kv_heads * config().window_tokens * dim) * dtype_size(backend().kv_dtype());
  state->leaving_keys = backend().allocate(leaving_bytes);
  state->leaving_values = backend().allocate(leaving_bytes);
  if (trigger_threshold()) {
    state->previous_query =
        backend().allocate(size_t(shape().heads * dim) * dtype_size(backend().activation_dtype()));
  }
  state->window.seed(backend(), prompt.keys(), prompt.values(), sinks + rest, tail);
  if (rest == 0) return state;

  const int64_t pool_first = state->pool.reserve(rest);
  if (!clustered) {
    add_run_units(*state, grouping, prompt.keys(), prompt.values(), sinks, pool_first, rest);
    return state;  // the prompt is freed by the caller once the queued copies have read it
  }
  // The k-means runs on the side stream while the next layers compute; the layer's units
  // appear when it completes (at the latest on the layer's first decode step).
  auto pending = std::make_unique<PendingClusters>(backend(), std::move(prompt));
  pending->pool_first = pool_first;
  pending->run = cluster_units(*state, grouping, pending->prompt.keys(), pending->prompt.values(), sinks,
                               pool_first, rest, true);
  pending->mark = backend().end_side_work();
  state->pending = std::move(pending);
  return state;
}

void OffloadingPolicy::offload_oldest_segment(Sequence& sequence, OffloadedLayer& layer_state, int layer) {
  const int64_t kv_heads = shape().kv_heads, dim = shape().head_dim;
  const WindowSegment segment = layer_state.window.segments().front();
  const int64_t length = segment.length;
  const DType kv = backend().kv_dtype();
  TensorView leaving_keys = layer_state.leaving_keys.view(kv, {kv_heads, config().window_tokens, dim});
  TensorView leaving_values = layer_state.leaving_values.view(kv, {kv_heads, config().window_tokens, dim});

  // The segment, contiguous on the device (the ring may wrap): clustering and summaries read it.
  copies_.clear();
  for (int64_t head = 0; head < kv_heads; ++head) {
    int64_t offset = 0;
    for (const SlotRange& range : layer_state.window.ring_ranges(segment.first, length)) {
      copies_.push_back({layer_state.window.keys(head, range.first, range.length).data,
                         layer_state.window.values(head, range.first, range.length).data,
                         head_rows(leaving_keys, head, offset, range.length).data,
                         head_rows(leaving_values, head, offset, range.length).data, range.length});
      offset += range.length;
    }
  }
  backend().gather_kv(copies_, row_bytes());

  const int64_t pool_first = layer_state.pool.reserve(length);
  Grouping grouping = generated_grouping(layer);
  int32_t unit = 0;
  if (grouping.cluster_tokens > 0) {
    // Each batch of generated tokens gets its own initialisation.
    grouping.seed = mix_seed(grouping.seed, uint64_t(layer), uint64_t(pool_first));
    auto run = cluster_units(layer_state, grouping, leaving_keys, leaving_values, 0, pool_first, length, false);
    // The host needs the cluster sizes to list the new units.
    backend().synchronize();
    ++sequence.stats.host_syncs;
    unit = int32_t(layer_state.heads[0].units.size());
    add_cluster_units(layer_state, *run, pool_first);
  } else {
    unit = add_run_units(layer_state, grouping, leaving_keys, leaving_values, 0, pool_first, length);
  }

  if (keeps_leaving_segments() && layer_state.has_selection) {
    // Window occupancy once the segment has left and the token being appended has arrived.
    const int64_t occupancy_after = layer_state.window.occupancy() - length + 1;
    copies_.clear();
    for (int64_t head = 0; head < kv_heads; ++head) {
      HeadUnits& units = layer_state.heads[size_t(head)];
      LOUISKV_CHECK(units.units.size() == size_t(unit) + 1 && units.units[size_t(unit)].host_first == pool_first,
                    "a segment kept attended must stay one unit in window order");
      if (layer_state.sinks.length() + occupancy_after + units.selected_tokens + length > config().budget) {
        continue;
      }
      int64_t offset = 0;
      for (const SlotRange& slots : layer_state.working_set.place(head, unit, length)) {
        copies_.push_back({head_rows(leaving_keys, head, offset, slots.length).data,
                           head_rows(leaving_values, head, offset, slots.length).data,
                           layer_state.working_set.keys(head, slots.first, slots.length).data,
                           layer_state.working_set.values(head, slots.first, slots.length).data, slots.length});
        offset += slots.length;
      }
      units.selected.push_back(unit);
      // The newest context is trimmed last when the window grows into the budget.
      units.selected_scores.push_back(INFINITY);
      units.selected_tokens += length;
    }
    backend().gather_kv(copies_, row_bytes());
  }
  layer_state.window.pop_oldest();
}

void OffloadingPolicy::append_token(Sequence& sequence, int layer, LayerState& state, TensorView k,
                                    TensorView v) {
  auto& layer_state = static_cast<OffloadedLayer&>(state);
  if (complete_pending(layer_state, true)) ++sequence.stats.host_syncs;
  while (layer_state.window.full()) offload_oldest_segment(sequence, layer_state, layer);
  layer_state.window.append(backend(), k, v);
  if (layer_state.window.open_length() >= segment_close_length()) {
    layer_state.window.close_open_segment();
  }
}

void OffloadingPolicy::plan_head(OffloadedLayer& layer_state, int64_t head, LoadPlan& plan) {
  HeadUnits& units = layer_state.heads[size_t(head)];
  const int32_t* count = layer_state.table.chosen_count(head);
  LOUISKV_CHECK(count[0] >= 0 && count[0] <= int64_t(units.units.size()), "budget fill gave no choice for a row");
  units.selected.assign(layer_state.table.chosen(head), layer_state.table.chosen(head) + count[0]);
  units.selected_scores.assign(layer_state.table.chosen_scores(head), layer_state.table.chosen_scores(head) + count[0]);
  units.selected_tokens = count[1];
  layer_state.working_set.plan_selection(head, units.selected, units.units, plan);
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
      units.selected_tokens -= units.units[size_t(unit)].length;
      units.selected.erase(units.selected.begin() + std::ptrdiff_t(lowest));
      units.selected_scores.erase(units.selected_scores.begin() + std::ptrdiff_t(lowest));
    }
  }
}

void OffloadingPolicy::add_spans(const OffloadedLayer& layer_state, AttendedSpans& spans) const {
  for (int64_t head = 0; head < shape().kv_heads; ++head) {
    layer_state.sinks.add_span(spans, head, 0, layer_state.sinks.length());
    layer_state.window.add_spans(spans, head);
    // The working set holds exactly the selected units, so its occupied slots are the selection.
    const int64_t attended = layer_state.working_set.add_spans(spans, head);
    LOUISKV_CHECK(attended == layer_state.heads[size_t(head)].selected_tokens,
                  "the working set's occupied slots differ from the selection");
    spans.end_row();
  }
}

void OffloadingPolicy::select_layer(std::span<Sequence* const> sequences, int layer, TensorView q,
                                    AttendedSpans& spans) {
  const int64_t batch = int64_t(sequences.size()), kv_heads = shape().kv_heads;
  layers_.clear();
  for (Sequence* seq : sequences) {
    auto& layer_state = static_cast<OffloadedLayer&>(*layer_entry(*seq, layer).state);
    if (complete_pending(layer_state, true)) ++seq->stats.host_syncs;
    layers_.push_back(&layer_state);
  }

  auto start = PolicyClock::now();
  const std::optional<float> threshold = trigger_threshold();
  const float* similarity = nullptr;
  if (threshold) {
    if (similarity_.bytes() < size_t(batch) * sizeof(float)) {
      similarity_ = backend().allocate_host(size_t(batch) * sizeof(float));
    }
    previous_.clear();
    for (OffloadedLayer* layer_state : layers_) previous_.push_back(layer_state->previous_query.data());
    backend().query_cosine(similarity_.view(DType::f32, {batch}), q, previous_);
    similarity = static_cast<const float*>(similarity_.data());
  }
  rows_.clear();
  for (int64_t b = 0; b < batch; ++b) {
    const OffloadedLayer& layer_state = *layers_[size_t(b)];
    const int64_t reserved = layer_state.sinks.length() + layer_state.window.occupancy();
    LOUISKV_CHECK(reserved <= config().budget, "sinks and window exceed the budget");
    for (int64_t head = 0; head < kv_heads; ++head) {
      UnitRow row = layer_state.table.row(int32_t(b), head, int64_t(layer_state.heads[size_t(head)].units.size()),
                                          config().budget - reserved);
      // The first step selects whatever the trigger says.
      if (threshold && layer_state.has_selection) row.similarity = similarity + b;
      rows_.push_back(row);
    }
  }
  const float gate = threshold.value_or(std::numeric_limits<float>::infinity());
  UnitScoring how = scoring();
  how.group = int32_t(group_size());
  backend().score_units(q, rows_, how, gate);
  backend().budget_fill(rows_, gate);
  // Slots and spans are planned on the host from the device's choice: the one wait of the step
  // for this layer (a policy that kept every step's plan on the device would not need it).
  backend().synchronize();
  const double score_ms = milliseconds_since(start);

  copies_.clear();
  fired_.assign(size_t(batch), false);
  int64_t reselected = 0;
  for (int64_t b = 0; b < batch; ++b) {
    OffloadedLayer& layer_state = *layers_[size_t(b)];
    ++sequences[size_t(b)]->stats.host_syncs;
    // The same test as the kernels' gate, on the same float.
    const bool gated = rows_[size_t(b * kv_heads)].similarity != nullptr;
    if (gated && !(similarity[b] < gate)) {
      LOUISKV_CHECK(layer_state.table.chosen_count(0)[0] == -1, "the device and the host disagree on the trigger");
      trim_to_budget(layer_state);
      continue;
    }
    if (gated) on_boundary(layer_state);
    fired_[size_t(b)] = true;
    ++reselected;
  }
  // Each (sequence, KV head) row plans its own slots and copies, so the rows are planned in
  // parallel: with a batch of sequences re-selecting together, this is the host's largest share
  // of the step.
  auto plan_start = PolicyClock::now();
  const int64_t rows = batch * kv_heads;
  plans_.resize(size_t(rows));
  row_copies_.resize(size_t(rows));
  row_bytes_moved_.assign(size_t(rows), 0);
  std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 1) if (reselected * kv_heads > 1)
  for (int64_t r = 0; r < rows; ++r) {
    plans_[size_t(r)].clear();
    row_copies_[size_t(r)].clear();
    if (!fired_[size_t(r / kv_heads)]) continue;
    try {
      OffloadedLayer& layer_state = *layers_[size_t(r / kv_heads)];
      plan_head(layer_state, r % kv_heads, plans_[size_t(r)]);
      row_bytes_moved_[size_t(r)] =
          layer_state.working_set.add_copies(plans_[size_t(r)], layer_state.pool, row_copies_[size_t(r)]);
    } catch (...) {
#pragma omp critical
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
  for (int64_t b = 0; b < batch; ++b) {
    if (!fired_[size_t(b)]) continue;
    KvStats& stats = sequences[size_t(b)]->stats;
    ++stats.selections;
    for (int64_t head = 0; head < kv_heads; ++head) {
      const size_t r = size_t(b * kv_heads + head);
      copies_.insert(copies_.end(), row_copies_[r].begin(), row_copies_[r].end());
      stats.h2d_bytes += row_bytes_moved_[r];
      stats.units_loaded += plans_[r].units;
      stats.tokens_loaded += plans_[r].tokens;
    }
    layers_[size_t(b)]->has_selection = true;
  }
  const double select_ms = milliseconds_since(plan_start);
  auto transfer_start = PolicyClock::now();
  backend().gather_kv(copies_, row_bytes());
  const double transfer_ms = milliseconds_since(transfer_start);
  // Scoring and transfer are charged to the sequences that re-selected; a layer that kept its
  // selection for every sequence scored nothing (its rows were gated off).
  for (int64_t b = 0; b < batch; ++b) {
    if (!fired_[size_t(b)]) continue;
    KvStats& stats = sequences[size_t(b)]->stats;
    stats.score_ms += score_ms / double(reselected);
    stats.select_ms += select_ms / double(reselected);
    stats.transfer_ms += transfer_ms / double(reselected);
  }
  for (const OffloadedLayer* layer_state : layers_) add_spans(*layer_state, spans);
}

void OffloadingPolicy::select_rows(Sequence& sequence, int layer, LayerState& /*state*/,
                                   std::span<const float> /*query*/, AttendedSpans& /*spans*/) {
  // select_layer does the work on the backend, batch-wide; PolicyBase calls nothing else.
  throw_error(ErrorKind::internal, "internal error (a bug in louiskv): select_rows called for sequence " +
                                       std::to_string(sequence.id) + ", layer " + std::to_string(layer) +
                                       " of an offloading policy");
}

}  // namespace louiskv
