// K-means over the keys of one KV head (DESIGN.md section 5: LouisKV's prompt clusters, ClusterKV).
// Plain functions over fp32 host arrays, free of policy state, each written as the kernel it will
// become: assignment is a GEMM plus an argmax (the nearest centroid is the one maximising
// 2 p.c - |c|^2, which drops the |p|^2 that every centroid shares), the update is a reduction.
//
//   points     [count, dim]      row-major fp32
//   centroids  [clusters, dim]   row-major fp32
//   assignment [count]           cluster of each point
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace louiskv {

struct KmeansResult {
  int64_t clusters = 0;
  std::vector<float> centroids;     // [clusters, dim], each the mean of its points
  std::vector<int32_t> assignment;  // [count], in [0, clusters)
  std::vector<int64_t> sizes;       // [clusters], every size >= 1
};

// Sets assignment[p] to the cluster maximising 2 p.c - |c|^2 (ties: the lowest cluster index).
void assign_to_nearest(std::span<const float> points, int64_t count, int64_t dim,
                       std::span<const float> centroids, int64_t clusters,
                       std::span<int32_t> assignment);

// Sets each centroid to the mean of its points and sizes[c] to their number. A cluster left
// without points keeps its previous centroid and gets size 0.
void update_centroids(std::span<const float> points, int64_t count, int64_t dim,
                      std::span<const int32_t> assignment, std::span<float> centroids,
                      int64_t clusters, std::span<int64_t> sizes);

// Gives every empty cluster a point of its own: the point farthest from its centroid, taken from
// a cluster that keeps at least one point, becomes the empty cluster's centroid and member.
// Returns the number of clusters reseeded.
int64_t reseed_empty_clusters(std::span<const float> points, int64_t count, int64_t dim,
                              std::span<int32_t> assignment, std::span<float> centroids,
                              int64_t clusters, std::span<int64_t> sizes);

// Lloyd's algorithm: seeded k-means++ initialisation, then `iterations` rounds of assignment,
// centroid update and empty-cluster reseeding. `clusters` is clamped to [1, count]; clusters still
// empty at the end are dropped, so the result's clusters may be fewer. count == 0 gives 0 clusters.
KmeansResult kmeans(std::span<const float> points, int64_t count, int64_t dim, int64_t clusters,
                    int iterations, uint64_t seed);

// Number of clusters for `count` points at about `tokens_per_cluster` each (at least one when
// count > 0, never more than count).
int64_t cluster_count_for(int64_t count, int64_t tokens_per_cluster);

}  // namespace louiskv
