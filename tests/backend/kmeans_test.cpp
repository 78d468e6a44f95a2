// The k-means steps of the CPU reference (src/backend/cpu/kmeans.h), which the cpu backend's
// kmeans_* ops run and the CUDA kernels are tested against.
#include "backend/cpu/kmeans.h"

#include <vector>

#include <gtest/gtest.h>

namespace louiskv {
namespace {

TEST(KmeansReference, AssignmentPicksTheNearestCentroid) {
  // (1.2, 0) is nearest (1, 0) although its dot product with (10, 0) is larger: the |c|^2 term
  // is what turns the dot product into a distance.
  std::vector<float> points{1.2f, 0, 9, 1, -3, 0};
  std::vector<float> centroids{10, 0, 1, 0};
  std::vector<int32_t> assignment(3, -1);
  assign_to_nearest(points, 3, 2, centroids, 2, assignment);
  EXPECT_EQ(assignment, (std::vector<int32_t>{1, 0, 1}));
}

TEST(KmeansReference, TiesGoToTheLowestCluster) {
  std::vector<float> points{0, 0};
  std::vector<float> centroids{1, 0, -1, 0, 0, 1};
  std::vector<int32_t> assignment(1, -1);
  assign_to_nearest(points, 1, 2, centroids, 3, assignment);
  EXPECT_EQ(assignment[0], 0);
}

TEST(KmeansReference, UpdateTakesMeansAndKeepsEmptyCentroids) {
  std::vector<float> points{0, 0, 2, 0, 10, 4, 7, 7};
  std::vector<int32_t> assignment{0, 0, 2, -1};  // the last point belongs to no cluster
  std::vector<float> centroids{9, 9, 5, 5, 9, 9};
  std::vector<int32_t> sizes(3, -1);
  update_centroids(points, 4, 2, assignment, centroids, 3, sizes);
  EXPECT_EQ(sizes, (std::vector<int32_t>{2, 0, 1}));
  EXPECT_EQ(centroids, (std::vector<float>{1, 0, 5, 5, 10, 4}));
}

TEST(KmeansReference, OrderIsClusterByClusterAndStable) {
  std::vector<int32_t> assignment{2, 0, 2, 1, 0, 2};
  std::vector<int32_t> sizes{2, 1, 3};
  std::vector<int32_t> order(6, -1);
  cluster_order(assignment, 6, sizes, 3, order);
  EXPECT_EQ(order, (std::vector<int32_t>{1, 4, 3, 0, 2, 5}));
}

}  // namespace
}  // namespace louiskv
