// ClusterKV (DESIGN.md section 6): the KV is grouped into k-means clusters in key space and the
// clusters whose centroids score best are recalled on every decode step. Generated tokens are
// clustered in batches of max_segment_tokens as they leave the window.
#include "kv/offloading_policy.h"
#include "kv/policies/policies.h"
#include "kv/seeded_random.h"

namespace louiskv {
namespace {

class ClusterKvPolicy final : public OffloadingPolicy {
 public:
  ClusterKvPolicy(const KvConfig& config, const KvShape& shape, Backend& backend)
      : OffloadingPolicy("clusterkv", config, shape, backend) {
    require(config.clusterkv_cluster_tokens >= 1, "clusterkv_cluster_tokens", "must be at least 1");
    require(config.kmeans_iterations >= 1, "kmeans_iterations", "must be at least 1");
    require(config.max_segment_tokens >= 1, "max_segment_tokens", "must be at least 1");
  }

 private:
  Grouping prompt_grouping(int layer) const override {
    return {.kind = UnitKind::cluster,
            .cluster_tokens = config().clusterkv_cluster_tokens,
            .seed = mix_seed(config().seed, uint64_t(layer))};
  }
  // Generated tokens are clustered in batches as they leave the window (each batch gets its own
  // initialisation from the seed).
  Grouping generated_grouping(int layer) const override {
    return {.kind = UnitKind::cluster,
            .cluster_tokens = config().clusterkv_cluster_tokens,
            .seed = mix_seed(config().seed ^ 1, uint64_t(layer))};
  }

  int64_t segment_close_length() const override { return config().max_segment_tokens; }

  // Centroid scores, summed over the query heads of the group.
  UnitTable::Needs summaries() const override { return {.keys = true}; }
  UnitScoring scoring() const override { return {.bound = UnitBound::dot, .reduction = GroupReduction::sum}; }
};

}  // namespace

std::unique_ptr<KvPolicy> make_clusterkv_policy(const KvConfig& config, const KvShape& shape,
                                                Backend& backend) {
  return std::make_unique<ClusterKvPolicy>(config, shape, backend);
}

}  // namespace louiskv
