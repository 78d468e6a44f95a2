// ClusterKV (DESIGN.md section 6): the KV is grouped into k-means clusters in key space and the
// clusters whose centroids score best are recalled on every decode step. Generated tokens are
// clustered in batches of max_segment_tokens as they leave the window.
#include "kv/kmeans.h"
#include "kv/offloading_policy.h"
#include "kv/policies/policies.h"
#include "kv/seeded_random.h"
#include "kv/unit_scoring.h"

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
  Partition cluster(int layer, int64_t head, std::span<const float> keys, int64_t count,
                    uint64_t stream) {
    KmeansResult result = kmeans(
        keys, count, shape().head_dim, cluster_count_for(count, config().clusterkv_cluster_tokens),
        config().kmeans_iterations,
        mix_seed(config().seed ^ stream, uint64_t(layer), uint64_t(head)));
    return clusters_of(result, count);
  }
  Partition partition_prompt(int layer, int64_t head, std::span<const float> keys,
                             int64_t count) override {
    return cluster(layer, head, keys, count, 0);
  }
  Partition partition_generated(int layer, int64_t head, std::span<const float> keys,
                                int64_t count) override {
    return cluster(layer, head, keys, count, ++generated_batches_);
  }

  int64_t segment_close_length() const override { return config().max_segment_tokens; }

  // Centroid scores, summed over the query heads of the group.
  void score_units(const HeadUnits& units, std::span<const float> queries,
                   std::span<float> scores) override {
    int64_t count = int64_t(units.units.size()), group = group_size();
    per_head_.resize(size_t(group * count));
    dot_scores(queries, group, units.mean_keys, count, shape().head_dim, per_head_);
    reduce_over_group(per_head_, group, count, GroupReduction::sum, 1.0f, scores);
  }

  uint64_t generated_batches_ = 0;
  std::vector<float> per_head_;
};

}  // namespace

std::unique_ptr<KvPolicy> make_clusterkv_policy(const KvConfig& config, const KvShape& shape,
                                                Backend& backend) {
  return std::make_unique<ClusterKvPolicy>(config, shape, backend);
}

}  // namespace louiskv
