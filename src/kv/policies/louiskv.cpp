// LouisKV (arXiv 2510.11292), as DESIGN.md section 5 builds it: prompt keys in k-means clusters,
// generated keys in temporal segments closed at this layer's semantic boundaries, and retrieval
// only at a boundary, when the query direction changes.
#include <cmath>

#include "kv/kmeans.h"
#include "kv/offloading_policy.h"
#include "kv/policies/policies.h"
#include "kv/query_cosine.h"
#include "kv/seeded_random.h"
#include "kv/unit_scoring.h"

namespace louiskv {
namespace {

class LouisKvPolicy final : public OffloadingPolicy {
 public:
  LouisKvPolicy(const KvConfig& config, const KvShape& shape, Backend& backend)
      : OffloadingPolicy("louiskv", config, shape, backend) {
    require(config.cluster_tokens >= 1, "cluster_tokens", "must be at least 1");
    require(config.kmeans_iterations >= 1, "kmeans_iterations", "must be at least 1");
    require(config.max_segment_tokens >= 1, "max_segment_tokens", "must be at least 1");
    require(!std::isnan(config.tau), "tau", "must be a number");
  }

 private:
  // Sinks are excluded by the caller: they are attended anyway and would pull a centroid.
  Partition partition_prompt(int layer, int64_t head, std::span<const float> keys,
                             int64_t count) override {
    KmeansResult result =
        kmeans(keys, count, shape().head_dim, cluster_count_for(count, config().cluster_tokens),
               config().kmeans_iterations, mix_seed(config().seed, uint64_t(layer), uint64_t(head)));
    return clusters_of(result, count);
  }

  Partition partition_generated(int, int64_t, std::span<const float>, int64_t count) override {
    return contiguous_runs(UnitKind::segment, count, count);  // a segment is one unit
  }

  int64_t segment_close_length() const override { return config().max_segment_tokens; }

  // Group-consistent: softmax over units of q.centroid / sqrt(d) per query head, averaged over
  // the group, so that every head of the group attends the same units.
  void score_units(const HeadUnits& units, std::span<const float> queries,
                   std::span<float> scores) override {
    int64_t count = int64_t(units.units.size()), group = group_size();
    per_head_.resize(size_t(group * count));
    dot_scores(queries, group, units.mean_keys, count, shape().head_dim, per_head_);
    reduce_over_group(per_head_, group, count, GroupReduction::softmax_mean, attention_scale(),
                      scores);
  }

  // The trigger: re-select when mean_h cos(q_t, q_{t-1}) < tau. The boundary falls between the
  // previous token and the current one, so the open segment closes before the current token.
  // tau <= 0 never fires: the layer selects once, on its first decode step.
  bool should_reselect(OffloadedLayer& layer, std::span<const float> query) override {
    bool first = layer.previous_query.empty();
    bool boundary = false;
    if (!first && config().tau > 0) {
      double similarity =
          mean_query_cosine(query, layer.previous_query, shape().heads, shape().head_dim);
      boundary = similarity < config().tau;
    }
    layer.previous_query.assign(query.begin(), query.end());
    if (boundary) layer.window.close_before_newest();
    return first || boundary;
  }

  bool keeps_leaving_segments() const override { return true; }

  std::vector<float> per_head_;
};

}  // namespace

std::unique_ptr<KvPolicy> make_louiskv_policy(const KvConfig& config, const KvShape& shape,
                                              Backend& backend) {
  return std::make_unique<LouisKvPolicy>(config, shape, backend);
}

}  // namespace louiskv
