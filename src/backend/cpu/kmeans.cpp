#include "backend/cpu/kmeans.h"

#include <limits>
#include <vector>

#include "common/error.h"

namespace louiskv {
namespace {

float dot(const float* a, const float* b, int64_t dim) {
  float sum = 0.0f;
  for (int64_t i = 0; i < dim; ++i) sum += a[i] * b[i];
  return sum;
}

void check_sizes(std::span<const float> points, int64_t count, int64_t dim, int64_t clusters) {
  LOUISKV_CHECK(count >= 0 && dim > 0 && clusters >= 0, "k-means sizes must be non-negative");
  LOUISKV_CHECK(int64_t(points.size()) >= count * dim, "k-means points shorter than count * dim");
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
                      int64_t clusters, std::span<int32_t> sizes) {
  check_sizes(points, count, dim, clusters);
  LOUISKV_CHECK(int64_t(centroids.size()) >= clusters * dim, "k-means centroids too short");
  LOUISKV_CHECK(int64_t(sizes.size()) >= clusters, "k-means sizes too short");
  std::vector<double> sums(size_t(clusters * dim), 0.0);
  std::fill_n(sizes.begin(), clusters, 0);
  for (int64_t p = 0; p < count; ++p) {
    int32_t c = assignment[p];
    if (c < 0) continue;
    LOUISKV_CHECK(c < clusters, "k-means assignment out of range");
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

void cluster_order(std::span<const int32_t> assignment, int64_t count, std::span<const int32_t> sizes,
                   int64_t clusters, std::span<int32_t> order) {
  LOUISKV_CHECK(int64_t(assignment.size()) >= count && int64_t(order.size()) >= count &&
                    int64_t(sizes.size()) >= clusters,
                "cluster order arrays too short");
  std::vector<int64_t> next(size_t(clusters), 0);
  int64_t offset = 0;
  for (int64_t c = 0; c < clusters; ++c) {
    next[c] = offset;
    offset += sizes[c];
  }
  LOUISKV_CHECK(offset == count, "cluster sizes do not add up to the points");
  for (int64_t p = 0; p < count; ++p) {
    int32_t c = assignment[p];
    LOUISKV_CHECK(c >= 0 && c < clusters, "k-means assignment out of range");
    order[next[c]++] = int32_t(p);
  }
}

}  // namespace louiskv
