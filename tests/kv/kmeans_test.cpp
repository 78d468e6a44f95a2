// K-means (src/kv/kmeans.h): recovery of known clusters, the pieces it is built from, and the
// edges (fewer points than clusters, duplicate points, one cluster).
#include "kv/kmeans.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>
#include <vector>

#include <gtest/gtest.h>

namespace louiskv {
namespace {

struct Blobs {
  std::vector<float> points;
  std::vector<int> truth;    // the centre each point was drawn around
  std::vector<float> centres;
};

// `per_centre` points around each of `centres` centres drawn far apart (spread 0.05, centres
// about 10 apart, their norms varied so that a dot product alone would not find the nearest),
// in a shuffled order.
Blobs make_blobs(int centres, int per_centre, int dim, uint32_t seed) {
  std::mt19937 generator(seed);
  std::normal_distribution<float> wide(0.0f, 10.0f), narrow(0.0f, 0.05f);
  Blobs blobs;
  blobs.centres.resize(size_t(centres * dim));
  for (size_t i = 0; i < blobs.centres.size(); ++i) {
    blobs.centres[i] = wide(generator) * float(1 + i / size_t(dim) % 3);
  }
  std::vector<int> order(size_t(centres * per_centre));
  for (size_t i = 0; i < order.size(); ++i) order[i] = int(i) % centres;
  std::shuffle(order.begin(), order.end(), generator);
  for (int centre : order) {
    blobs.truth.push_back(centre);
    for (int i = 0; i < dim; ++i) blobs.points.push_back(blobs.centres[centre * dim + i] + narrow(generator));
  }
  return blobs;
}

TEST(Kmeans, RecoversWellSeparatedClusters) {
  const int centres = 12, per_centre = 20, dim = 16;
  for (uint32_t seed : {1u, 2u, 3u}) {
    Blobs blobs = make_blobs(centres, per_centre, dim, seed);
    int64_t count = int64_t(blobs.truth.size());
    KmeansResult result = kmeans(blobs.points, count, dim, centres, 10, seed);
    ASSERT_EQ(result.clusters, centres);
    // Same partition: every true group maps to one cluster, and no two groups share one.
    std::map<int, int32_t> cluster_of_centre;
    for (int64_t p = 0; p < count; ++p) {
      auto [it, inserted] = cluster_of_centre.emplace(blobs.truth[p], result.assignment[p]);
      EXPECT_EQ(it->second, result.assignment[p]) << "point " << p << " split from its group";
    }
    std::set<int32_t> used;
    for (auto& [centre, cluster] : cluster_of_centre) used.insert(cluster);
    EXPECT_EQ(int(used.size()), centres);
    // Each centroid lies next to the centre it found.
    for (auto& [centre, cluster] : cluster_of_centre) {
      EXPECT_EQ(result.sizes[cluster], per_centre);
      for (int i = 0; i < dim; ++i) {
        EXPECT_NEAR(result.centroids[cluster * dim + i], blobs.centres[centre * dim + i], 0.05);
      }
    }
  }
}

TEST(Kmeans, CentroidsAreMeansOfTheirPoints) {
  Blobs blobs = make_blobs(5, 7, 8, 9);
  int64_t count = int64_t(blobs.truth.size());
  KmeansResult result = kmeans(blobs.points, count, 8, 6, 4, 11);
  std::vector<double> sums(size_t(result.clusters * 8), 0.0);
  for (int64_t p = 0; p < count; ++p) {
    for (int i = 0; i < 8; ++i) sums[result.assignment[p] * 8 + i] += blobs.points[p * 8 + i];
  }
  for (int64_t c = 0; c < result.clusters; ++c) {
    ASSERT_GT(result.sizes[c], 0);
    for (int i = 0; i < 8; ++i) {
      EXPECT_NEAR(result.centroids[c * 8 + i], sums[c * 8 + i] / double(result.sizes[c]), 1e-4);
    }
  }
}

TEST(Kmeans, SameSeedSameClusters) {
  Blobs blobs = make_blobs(4, 9, 4, 5);
  int64_t count = int64_t(blobs.truth.size());
  KmeansResult a = kmeans(blobs.points, count, 4, 5, 3, 42);
  KmeansResult b = kmeans(blobs.points, count, 4, 5, 3, 42);
  EXPECT_EQ(a.assignment, b.assignment);
  EXPECT_EQ(a.centroids, b.centroids);
}

TEST(Kmeans, AssignmentPicksTheNearestCentroid) {
  // (1.2, 0) is nearest (1, 0) although its dot product with (10, 0) is larger: the |c|^2 term
  // is what turns the dot product into a distance.
  std::vector<float> points{1.2f, 0, 9, 1, -3, 0};
  std::vector<float> centroids{10, 0, 1, 0};
  std::vector<int32_t> assignment(3, -1);
  assign_to_nearest(points, 3, 2, centroids, 2, assignment);
  EXPECT_EQ(assignment, (std::vector<int32_t>{1, 0, 1}));
}

TEST(Kmeans, EmptyClusterTakesTheFarthestPoint) {
  // Three points in cluster 0, none in cluster 1: cluster 1 must take the point farthest from
  // centroid 0, i.e. (10, 0).
  std::vector<float> points{0, 0, 1, 0, 10, 0};
  std::vector<int32_t> assignment{0, 0, 0};
  std::vector<float> centroids{0, 0, 99, 99};
  std::vector<int64_t> sizes(2);
  update_centroids(points, 3, 2, assignment, centroids, 2, sizes);
  EXPECT_EQ(sizes, (std::vector<int64_t>{3, 0}));
  EXPECT_EQ(reseed_empty_clusters(points, 3, 2, assignment, centroids, 2, sizes), 1);
  EXPECT_EQ(assignment, (std::vector<int32_t>{0, 0, 1}));
  EXPECT_EQ(sizes, (std::vector<int64_t>{2, 1}));
  EXPECT_FLOAT_EQ(centroids[2], 10.0f);
}

TEST(Kmeans, MoreClustersThanPointsIsClamped) {
  std::vector<float> points{0, 0, 5, 5, 9, 1};
  KmeansResult result = kmeans(points, 3, 2, 10, 5, 0);
  EXPECT_EQ(result.clusters, 3);
  std::set<int32_t> distinct(result.assignment.begin(), result.assignment.end());
  EXPECT_EQ(distinct.size(), 3u);
}

TEST(Kmeans, DuplicatePointsNeverLeaveAnEmptyCluster) {
  std::vector<float> points(20 * 3, 1.5f);  // 20 copies of one point
  KmeansResult result = kmeans(points, 20, 3, 4, 5, 7);
  ASSERT_GE(result.clusters, 1);
  int64_t total = 0;
  for (int64_t size : result.sizes) {
    EXPECT_GT(size, 0);
    total += size;
  }
  EXPECT_EQ(total, 20);
}

TEST(Kmeans, NoPointsNoClusters) {
  KmeansResult result = kmeans({}, 0, 4, 3, 5, 0);
  EXPECT_EQ(result.clusters, 0);
  EXPECT_TRUE(result.assignment.empty());
}

TEST(Kmeans, ClusterCount) {
  EXPECT_EQ(cluster_count_for(0, 16), 0);
  EXPECT_EQ(cluster_count_for(1, 16), 1);
  EXPECT_EQ(cluster_count_for(16, 16), 1);
  EXPECT_EQ(cluster_count_for(17, 16), 2);
  EXPECT_EQ(cluster_count_for(5, 0), 5);
}

}  // namespace
}  // namespace louiskv
