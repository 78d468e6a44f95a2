#include "kv/kmeans.h"

#include <algorithm>
#include <limits>

#include "common/error.h"
#include "kv/seeded_random.h"

namespace louiskv {
namespace {

float dot(const float* a, const float* b, int64_t dim) {
  float sum = 0.0f;
  for (int64_t i = 0; i < dim; ++i) sum += a[i] * b[i];
  return sum;
}

float squared_distance(const float* a, const float* b, int64_t dim) {
  float sum = 0.0f;
  for (int64_t i = 0; i < dim; ++i) {
    float difference = a[i] - b[i];
    sum += difference * difference;
  }
  return sum;
}

void check_sizes(std::span<const float> points, int64_t count, int64_t dim, int64_t clusters) {
  LOUISKV_CHECK(count >= 0 && dim > 0 && clusters >= 0, "k-means sizes must be non-negative");
  LOUISKV_CHECK(int64_t(points.size()) >= count * dim, "k-means points shorter than count * dim");
}

// k-means++: each new centroid is a point drawn with probability proportional to its squared
// distance from the nearest centroid chosen so far. On well-separated data this starts one
// centroid in each group with high probability, which plain random points do not.
std::vector<float> initial_centroids(std::span<const float> points, int64_t count, int64_t dim,
                                     int64_t clusters, SeededRandom& random) {
  std::vector<float> centroids(size_t(clusters * dim));
  std::vector<float> nearest(size_t(count), std::numeric_limits<float>::max());
  int64_t chosen = random.below(uint64_t(count));
  for (int64_t c = 0; c < clusters; ++c) {
    std::copy_n(points.data() + chosen * dim, dim, centroids.data() + c * dim);
    if (c + 1 == clusters) break;
    double total = 0.0;
    for (int64_t p = 0; p < count; ++p) {
      float distance = squared_distance(points.data() + p * dim, centroids.data() + c * dim, dim);
      nearest[p] = std::min(nearest[p], distance);
      total += nearest[p];
    }
    if (total <= 0.0) {  // every point sits on a centroid already (duplicates): any will do
      chosen = random.below(uint64_t(count));
      continue;
    }
    double target = random.unit() * total;
    chosen = count - 1;
    for (int64_t p = 0; p < count; ++p) {
      target -= nearest[p];
      if (target < 0.0 && nearest[p] > 0.0f) {
        chosen = p;
        break;
      }
    }
  }
  return centroids;
}

}  // namespace

void assign_to_nearest(std::span<const float> points, int64_t count, int64_t dim,
                       std::span<const float> centroids, int64_t clusters,
                       std::span<int32_t> assignment) {
  check_sizes(points, count, dim, clusters);
  LOUISKV_CHECK(clusters > 0 || count == 0, "k-means assignment needs at least one centroid");
  LOUISKV_CHECK(int64_t(centroids.size()) >= clusters * dim, "k-means centroids too short");
  LOUISKV_CHECK(int64_t(assignment.size()) >= count, "k-means assignment too short");
  std::vector<float> squared_norms(static_cast<size_t>(clusters));
  for (int64_t c = 0; c < clusters; ++c) {
    const float* centroid = centroids.data() + c * dim;
    squared_norms[c] = dot(centroid, centroid, dim);
  }
  for (int64_t p = 0; p < count; ++p) {
    const float* point = points.data() + p * dim;
    float best = -std::numeric_limits<float>::infinity();
    int32_t best_cluster = 0;
    for (int64_t c = 0; c < clusters; ++c) {
      float affinity = 2.0f * dot(point, centroids.data() + c * dim, dim) - squared_norms[c];
      if (affinity > best) {
        best = affinity;
        best_cluster = int32_t(c);
      }
    }
    assignment[p] = best_cluster;
  }
}

void update_centroids(std::span<const float> points, int64_t count, int64_t dim,
                      std::span<const int32_t> assignment, std::span<float> centroids,
                      int64_t clusters, std::span<int64_t> sizes) {
  check_sizes(points, count, dim, clusters);
  LOUISKV_CHECK(int64_t(centroids.size()) >= clusters * dim, "k-means centroids too short");
  LOUISKV_CHECK(int64_t(sizes.size()) >= clusters, "k-means sizes too short");
  std::vector<double> sums(size_t(clusters * dim), 0.0);
  std::fill_n(sizes.begin(), clusters, 0);
  for (int64_t p = 0; p < count; ++p) {
    int32_t c = assignment[p];
    LOUISKV_CHECK(c >= 0 && c < clusters, "k-means assignment out of range");
    ++sizes[c];
    const float* point = points.data() + p * dim;
    double* sum = sums.data() + c * dim;
    for (int64_t i = 0; i < dim; ++i) sum[i] += point[i];
  }
  for (int64_t c = 0; c < clusters; ++c) {
    if (sizes[c] == 0) continue;
    for (int64_t i = 0; i < dim; ++i) {
      centroids[c * dim + i] = float(sums[c * dim + i] / double(sizes[c]));
    }
  }
}

int64_t reseed_empty_clusters(std::span<const float> points, int64_t count, int64_t dim,
                              std::span<int32_t> assignment, std::span<float> centroids,
                              int64_t clusters, std::span<int64_t> sizes) {
  check_sizes(points, count, dim, clusters);
  int64_t reseeded = 0;
  for (int64_t empty = 0; empty < clusters; ++empty) {
    if (sizes[empty] != 0) continue;
    int64_t farthest = -1;
    float farthest_distance = -1.0f;
    for (int64_t p = 0; p < count; ++p) {
      int32_t c = assignment[p];
      if (sizes[c] < 2) continue;  // taking a cluster's only point would empty it in turn
      float distance = squared_distance(points.data() + p * dim, centroids.data() + c * dim, dim);
      if (distance > farthest_distance) {
        farthest_distance = distance;
        farthest = p;
      }
    }
    if (farthest < 0) break;  // fewer points than clusters: nothing left to give
    --sizes[assignment[farthest]];
    assignment[farthest] = int32_t(empty);
    sizes[empty] = 1;
    std::copy_n(points.data() + farthest * dim, dim, centroids.data() + empty * dim);
    ++reseeded;
  }
  return reseeded;
}

KmeansResult kmeans(std::span<const float> points, int64_t count, int64_t dim, int64_t clusters,
                    int iterations, uint64_t seed) {
  check_sizes(points, count, dim, clusters);
  KmeansResult result;
  if (count == 0) return result;
  clusters = std::clamp<int64_t>(clusters, 1, count);
  SeededRandom random(seed);
  std::vector<float> centroids = initial_centroids(points, count, dim, clusters, random);
  std::vector<int32_t> assignment(size_t(count), 0);
  std::vector<int64_t> sizes(size_t(clusters), 0);
  // At least one round, so that every point has a cluster and every centroid is a mean.
  for (int round = 0; round < std::max(iterations, 1); ++round) {
    assign_to_nearest(points, count, dim, centroids, clusters, assignment);
    update_centroids(points, count, dim, assignment, centroids, clusters, sizes);
    if (reseed_empty_clusters(points, count, dim, assignment, centroids, clusters, sizes) > 0) {
      update_centroids(points, count, dim, assignment, centroids, clusters, sizes);
    }
  }

  // Drop clusters that are still empty and renumber the rest densely.
  std::vector<int32_t> renumbered(size_t(clusters), -1);
  for (int64_t c = 0; c < clusters; ++c) {
    if (sizes[c] == 0) continue;
    renumbered[c] = int32_t(result.clusters++);
    result.sizes.push_back(sizes[c]);
    result.centroids.insert(result.centroids.end(), centroids.begin() + c * dim,
                            centroids.begin() + (c + 1) * dim);
  }
  result.assignment.resize(size_t(count));
  for (int64_t p = 0; p < count; ++p) result.assignment[p] = renumbered[assignment[p]];
  return result;
}

int64_t cluster_count_for(int64_t count, int64_t tokens_per_cluster) {
  if (count <= 0) return 0;
  int64_t per_cluster = std::max<int64_t>(tokens_per_cluster, 1);
  return std::clamp<int64_t>((count + per_cluster - 1) / per_cluster, 1, count);
}

}  // namespace louiskv
