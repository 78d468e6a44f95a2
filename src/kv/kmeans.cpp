#include "kv/kmeans.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "kv/kv_views.h"
#include "kv/seeded_random.h"

namespace louiskv {

int64_t cluster_count_for(int64_t count, int64_t tokens_per_cluster) {
  if (count <= 0) return 0;
  int64_t per_cluster = std::max<int64_t>(tokens_per_cluster, 1);
  return std::clamp<int64_t>((count + per_cluster - 1) / per_cluster, 1, count);
}

std::vector<int32_t> seed_points(int64_t heads, int64_t count, int64_t clusters, uint64_t seed) {
  LOUISKV_CHECK(clusters <= count, "k-means: more seeds than points");
  std::vector<int32_t> seeds(static_cast<size_t>(heads * clusters));
  std::vector<int32_t> pool(static_cast<size_t>(count));
  for (int64_t head = 0; head < heads; ++head) {
    // A partial Fisher-Yates shuffle: the first `clusters` entries are a uniform draw without
    // replacement.
    std::iota(pool.begin(), pool.end(), 0);
    SeededRandom random(mix_seed(seed, uint64_t(head)));
    for (int64_t c = 0; c < clusters; ++c) {
      int64_t pick = c + int64_t(random.below(uint64_t(count - c)));
      std::swap(pool[size_t(c)], pool[size_t(pick)]);
      seeds[size_t(head * clusters + c)] = pool[size_t(c)];
    }
  }
  return seeds;
}

KmeansRun::KmeansRun(Backend& backend, TensorView keys, int64_t first, int64_t count, int64_t clusters,
                     int iterations, uint64_t seed)
    : heads_(keys.dim(0)), count_(count), dim_(keys.dim(2)), clusters_(clusters) {
  LOUISKV_CHECK(keys.rank == 3 && first >= 0 && first + count <= keys.dim(1), "k-means rows out of the keys");
  LOUISKV_CHECK(count > 0 && clusters >= 1 && clusters <= count, "k-means needs 1 <= clusters <= points");
  points_ = backend.allocate(size_t(heads_ * count_ * dim_) * sizeof(float));
  centroids_ = backend.allocate(size_t(heads_ * clusters_ * dim_) * sizeof(float));
  assignment_ = backend.allocate(size_t(heads_ * count_) * sizeof(int32_t));
  sizes_ = backend.allocate(size_t(heads_ * clusters_) * sizeof(int32_t));
  order_ = backend.allocate(size_t(heads_ * count_) * sizeof(int32_t));
  seeds_ = backend.allocate_host(size_t(heads_ * clusters_) * sizeof(int32_t));
  host_sizes_ = backend.allocate_host(size_t(heads_ * clusters_) * sizeof(int32_t));

  TensorView points = points_.view(DType::f32, {heads_, count_, dim_});
  for (int64_t head = 0; head < heads_; ++head) {
    TensorView destination = points.rows(head, 1).reshaped({count_, dim_});
    copy_converting(backend, destination, head_rows(keys, head, first, count_));
  }
  std::vector<int32_t> seeds = seed_points(heads_, count_, clusters_, seed);
  std::memcpy(seeds_.data(), seeds.data(), seeds.size() * sizeof(int32_t));
  backend.kmeans_init(centroids(), points, seeds_.view(DType::i32, {heads_, clusters_}));
  // At least one round, so that every point has a cluster and every centroid is a mean.
  TensorView assignment = assignment_.view(DType::i32, {heads_, count_});
  for (int round = 0; round < std::max(iterations, 1); ++round) {
    backend.kmeans_assign(assignment, points, centroids());
    backend.kmeans_update(centroids(), sizes(), points, assignment);
  }
  backend.kmeans_order(order(), assignment, sizes());
  backend.copy(host_sizes_.view(DType::i32, {heads_, clusters_}), sizes());
}

}  // namespace louiskv
