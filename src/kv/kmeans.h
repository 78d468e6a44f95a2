// K-means over the keys of every KV head of one layer at once (DESIGN.md section 5: LouisKV's
// prompt clusters, ClusterKV), queued on the backend's ops: distinct points drawn with the seed
// as initial centroids, a fixed number of Lloyd rounds (assignment by GEMM + argmax, centroid
// reduction), then the unit order that lays the clusters out one after the other.
//
// Initialisation is Forgy's (seeded distinct points) rather than k-means++: k-means++ picks one
// centroid after the other, each from a pass over every point, which costs as much as an
// assignment round with none of its parallelism. Clusters that end up empty keep no point; they
// stay in the result with size 0 (units of no tokens, which scoring and selection skip).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace louiskv {

// Number of clusters for `count` points at about `tokens_per_cluster` each (at least one when
// count > 0, never more than count).
int64_t cluster_count_for(int64_t count, int64_t tokens_per_cluster);

// `clusters` distinct indices of [0, count) for each of `heads` heads, drawn with mix_seed(seed,
// head): [heads, clusters], row by row.
std::vector<int32_t> seed_points(int64_t heads, int64_t count, int64_t clusters, uint64_t seed);

// One k-means run over rows [first, first + count) of every head of keys [H, capacity, D] (any
// floating dtype, the backend's memory). Everything is queued on the backend's current stream
// when the object is made; the views below are valid (and the host sizes readable) once that
// work is done. The object owns its buffers: keep it until then.
class KmeansRun {
 public:
  KmeansRun(Backend& backend, TensorView keys, int64_t first, int64_t count, int64_t clusters, int iterations,
            uint64_t seed);

  int64_t heads() const { return heads_; }
  int64_t count() const { return count_; }
  int64_t clusters() const { return clusters_; }
  TensorView centroids() const { return centroids_.view(DType::f32, {heads_, clusters_, dim_}); }
  TensorView sizes() const { return sizes_.view(DType::i32, {heads_, clusters_}); }
  TensorView order() const { return order_.view(DType::i32, {heads_, count_}); }
  // sizes [heads, clusters], copied to host memory after the run.
  const int32_t* host_sizes() const { return static_cast<const int32_t*>(host_sizes_.data()); }

 private:
  int64_t heads_ = 0, count_ = 0, dim_ = 0, clusters_ = 0;
  Buffer points_, centroids_, assignment_, sizes_, order_;
  Buffer seeds_, host_sizes_;  // host memory
};

}  // namespace louiskv
