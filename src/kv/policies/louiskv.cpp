// LouisKV (arXiv 2510.11292), as DESIGN.md section 5 builds it: prompt keys in k-means clusters,
// generated keys in temporal segments closed at this layer's semantic boundaries, and retrieval
// only at a boundary, when the query direction changes.
#include <cmath>
#include <limits>

#include "kv/offloading_policy.h"
#include "kv/policies/policies.h"
#include "kv/seeded_random.h"

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
  Grouping prompt_grouping(int layer) const override {
    return {.kind = UnitKind::cluster,
            .cluster_tokens = config().cluster_tokens,
            .seed = mix_seed(config().seed, uint64_t(layer))};
  }
  // A segment is one unit.
  Grouping generated_grouping(int) const override { return {.kind = UnitKind::segment, .run_tokens = 0}; }

  int64_t segment_close_length() const override { return config().max_segment_tokens; }

  // Group-consistent: softmax over units of q.centroid / sqrt(d) per query head, averaged over
  // the group, so that every head of the group attends the same units.
  UnitTable::Needs summaries() const override { return {.keys = true}; }
  UnitScoring scoring() const override {
    return {.bound = UnitBound::dot, .reduction = GroupReduction::softmax_mean, .scale = attention_scale()};
  }

  // The trigger: re-select when mean_h cos(q_t, q_{t-1}) < tau. tau <= 0 never fires: the layer
  // selects once, on its first decode step.
  std::optional<float> trigger_threshold() const override {
    return config().tau > 0 ? float(config().tau) : -std::numeric_limits<float>::infinity();
  }
  // The boundary falls between the previous token and the current one, so the open segment
  // closes before the current token.
  void on_boundary(OffloadedLayer& layer) override { layer.window.close_before_newest(); }

  bool keeps_leaving_segments() const override { return true; }
};

}  // namespace

std::unique_ptr<KvPolicy> make_louiskv_policy(const KvConfig& config, const KvShape& shape,
                                              Backend& backend) {
  return std::make_unique<LouisKvPolicy>(config, shape, backend);
}

}  // namespace louiskv
