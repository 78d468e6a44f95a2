// The host's share of an offloaded decode step: planning a re-selection of one (sequence, layer,
// KV head) row (WorkingSet::plan_selection), listing its copies for the gather (add_copies) and
// its attended spans (add_spans), with the state of every offloaded layer in play so that the
// caches are as cold as in a real step. No device and no model: units are runs of the host pool
// whose lengths look like k-means clusters, and each step's selection keeps a share of the
// previous one (0: every unit new, as with random weights; a trained model keeps most).
//
//   kv_planning [--layers 14] [--kv-heads 8] [--units 2048] [--unit-tokens 16] [--budget 2048]
//               [--keep 0,0.5,0.9] [--steps 40]
//
// Single-threaded: the policy plans the rows of a layer in parallel, so a step costs about
// rows x layers x (the figure per row) / threads.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "kv/host_pool.h"
#include "kv/working_set.h"

using namespace louiskv;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  int layers = 14;
  int64_t kv_heads = 8, units = 2048, unit_tokens = 16, budget = 2048, steps = 40;
  std::vector<double> keep{0.0, 0.5, 0.9};
};

double microseconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::micro>(to - from).count();
}

// One offloaded layer's units (the same for every head here), pool and working set.
struct Layer {
  std::vector<Unit> units;
  std::unique_ptr<HostPool> pool;
  std::unique_ptr<WorkingSet> working_set;
  std::vector<std::vector<int32_t>> selected;  // by head
};

// The next selection of a row: a `keep` share of the current one, filled up to `room` tokens
// with units drawn at random.
std::vector<int32_t> next_selection(const std::vector<Unit>& units, const std::vector<int32_t>& current, double keep,
                                    int64_t room, std::mt19937& generator) {
  std::vector<int32_t> next;
  std::vector<uint8_t> taken(units.size(), 0);
  int64_t tokens = 0;
  std::bernoulli_distribution kept(keep);
  for (int32_t unit : current) {
    if (kept(generator)) {
      next.push_back(unit);
      taken[size_t(unit)] = 1;
      tokens += units[size_t(unit)].length;
    }
  }
  std::uniform_int_distribution<int32_t> any(0, int32_t(units.size()) - 1);
  for (int tries = 0; tries < 8 * int(units.size()) && tokens < room; ++tries) {
    const int32_t unit = any(generator);
    if (taken[size_t(unit)] || tokens + units[size_t(unit)].length > room) continue;
    next.push_back(unit);
    taken[size_t(unit)] = 1;
    tokens += units[size_t(unit)].length;
  }
  return next;
}

void run(const Options& options, double keep) {
  CpuBackend backend(1);
  std::mt19937 generator(7);
  // Cluster sizes of k-means on 32K random keys into 2048 clusters spread from 1 to about 3.5x
  // the mean; a geometric law capped there is close enough for planning.
  std::geometric_distribution<int64_t> extra(1.0 / double(options.unit_tokens));
  const int64_t head_dim = 64, sinks = 16, window = 64;
  const int64_t slots = options.budget - sinks - 1, room = options.budget - sinks - window;
  std::vector<Layer> layers(size_t(options.layers));
  for (Layer& layer : layers) {
    int64_t first = 0;
    for (int64_t u = 0; u < options.units; ++u) {
      const int64_t length = std::min<int64_t>(1 + extra(generator), 7 * options.unit_tokens / 2);
      layer.units.push_back({UnitKind::cluster, first, length});
      first += length;
    }
    layer.pool = std::make_unique<HostPool>(backend, options.kv_heads, first, head_dim);
    layer.pool->reserve(first);
    layer.working_set = std::make_unique<WorkingSet>(backend, options.kv_heads, slots, head_dim);
    layer.selected.assign(size_t(options.kv_heads), {});
  }

  double plan_us = 0, copies_us = 0, spans_us = 0;
  int64_t rows = 0, copies = 0, spans = 0, units_loaded = 0;
  std::vector<KvCopy> copy_list;
  AttendedSpans span_list;
  for (int64_t step = 0; step < options.steps + 1; ++step) {
    // Drawn ahead of the timed part.
    for (Layer& layer : layers) {
      for (auto& selected : layer.selected) selected = next_selection(layer.units, selected, keep, room, generator);
    }
    for (Layer& layer : layers) {
      for (int64_t head = 0; head < options.kv_heads; ++head) {
        LoadPlan plan;
        copy_list.clear();
        span_list.clear();
        const auto start = Clock::now();
        layer.working_set->plan_selection(head, layer.selected[size_t(head)], layer.units, plan);
        const auto planned = Clock::now();
        layer.working_set->add_copies(plan, *layer.pool, copy_list);
        const auto listed = Clock::now();
        layer.working_set->add_spans(span_list, head);
        const auto spanned = Clock::now();
        if (step == 0) continue;  // the first step fills an empty working set
        plan_us += microseconds(start, planned);
        copies_us += microseconds(planned, listed);
        spans_us += microseconds(listed, spanned);
        ++rows;
        copies += int64_t(copy_list.size());
        spans += int64_t(span_list.spans.size());
        units_loaded += plan.units;
      }
    }
  }
  const double per_row = 1.0 / double(rows);
  std::printf("keep %.2f | per row: plan %6.2f us, copies %5.2f us, spans %5.2f us | %6.1f units loaded, %6.1f copies, "
              "%5.1f spans\n",
              keep, plan_us * per_row, copies_us * per_row, spans_us * per_row, double(units_loaded) * per_row,
              double(copies) * per_row, double(spans) * per_row);
}

std::vector<double> parse_list(const std::string& text) {
  std::vector<double> values;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) values.push_back(std::stod(item));
  return values;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--layers") {
      options.layers = std::stoi(value);
    } else if (flag == "--kv-heads") {
      options.kv_heads = std::stoll(value);
    } else if (flag == "--units") {
      options.units = std::stoll(value);
    } else if (flag == "--unit-tokens") {
      options.unit_tokens = std::stoll(value);
    } else if (flag == "--budget") {
      options.budget = std::stoll(value);
    } else if (flag == "--keep") {
      options.keep = parse_list(value);
    } else if (flag == "--steps") {
      options.steps = std::stoll(value);
    } else {
      std::fprintf(stderr, "kv_planning: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (options.layers < 1 || options.kv_heads < 1 || options.units < 1 || options.unit_tokens < 1 ||
      options.budget < 100 || options.steps < 1) {
    std::fprintf(stderr, "kv_planning: sizes must be positive and the budget at least 100 tokens\n");
    return 2;
  }
  std::printf("host planning of a re-selection: %d layers x %lld KV heads, %lld units of about %lld tokens, "
              "budget %lld, %lld steps, one thread\n",
              options.layers, (long long)options.kv_heads, (long long)options.units, (long long)options.unit_tokens,
              (long long)options.budget, (long long)options.steps);
  for (double keep : options.keep) run(options, keep);
  return 0;
}
