// The steps of k-means over the keys of one KV head, as plain functions over fp32 host arrays:
// the cpu backend's kmeans_* ops run them head by head, and the CUDA kernels are tested against
// them. Assignment is a GEMM plus an argmax (the nearest centroid is the one maximising
// 2 p.c - |c|^2, which drops the |p|^2 that every centroid shares), the update a reduction.
//
//   points     [count, dim]      row-major fp32
//   centroids  [clusters, dim]   row-major fp32
//   assignment [count]           cluster of each point
//   sizes      [clusters]        points per cluster
#pragma once

#include <cstdint>
#include <span>

namespace louiskv {

// Sets assignment[p] to the cluster maximising 2 p.c - |c|^2 (ties: the lowest cluster index).
void assign_to_nearest(std::span<const float> points, int64_t count, int64_t dim,
                       std::span<const float> centroids, int64_t clusters,
                       std::span<int32_t> assignment);

// Sets each centroid to the mean of its points and sizes[c] to their number. A point whose
// assignment is negative belongs to no cluster. A cluster left without points keeps its previous
// centroid and gets size 0.
void update_centroids(std::span<const float> points, int64_t count, int64_t dim,
                      std::span<const int32_t> assignment, std::span<float> centroids,
                      int64_t clusters, std::span<int32_t> sizes);

// order[0 .. count) lists the points cluster by cluster (cluster 0 first), the points of each
// cluster in their original order: a stable counting sort by assignment. `sizes` must count the
// assignment.
void cluster_order(std::span<const int32_t> assignment, int64_t count, std::span<const int32_t> sizes,
                   int64_t clusters, std::span<int32_t> order);

}  // namespace louiskv
