// K-means of every KV head of a layer on a backend (src/kv/kmeans.h), run on the CPU backend:
// seeding, means, determinism, the unit order, and the edges (as many clusters as points,
// duplicate points, one cluster).
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
  std::vector<int> truth;  // the centre each point was drawn around
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

struct Result {
  std::vector<float> centroids;  // [clusters, dim]
  std::vector<int32_t> sizes, order, assignment;
};

// One head's k-means through KmeansRun on the CPU backend; the assignment is read back from the
// unit order and sizes, as the policies do.
Result run_kmeans(Backend& backend, std::vector<float> points, int64_t dim, int64_t clusters, int iterations,
                  uint64_t seed) {
  const int64_t count = int64_t(points.size()) / dim;
  TensorView keys(points.data(), DType::f32, Device::cpu, {1, count, dim});
  KmeansRun run(backend, keys, 0, count, clusters, iterations, seed);
  backend.synchronize();
  Result result;
  result.centroids.assign(run.centroids().as<float>(), run.centroids().as<float>() + clusters * dim);
  result.sizes.assign(run.host_sizes(), run.host_sizes() + clusters);
  result.order.assign(run.order().as<int32_t>(), run.order().as<int32_t>() + count);
  result.assignment.assign(size_t(count), -1);
  int64_t next = 0;
  for (int64_t c = 0; c < clusters; ++c) {
    for (int32_t i = 0; i < result.sizes[size_t(c)]; ++i) result.assignment[size_t(result.order[size_t(next++)])] = int32_t(c);
  }
  return result;
}

class KmeansRunTest : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend = make_cpu_backend(1);
};

TEST_F(KmeansRunTest, ManySeedsNeverMixWellSeparatedGroups) {
  // Forgy seeding: with four seeds per group on average every group gets one, and Lloyd's rounds
  // then keep each cluster inside one group, each centroid next to its group's centre.
  const int centres = 12, per_centre = 20, dim = 16;
  for (uint32_t seed : {1u, 2u, 3u}) {
    Blobs blobs = make_blobs(centres, per_centre, dim, seed);
    Result result = run_kmeans(*backend, blobs.points, dim, 4 * centres, 10, seed);
    std::map<int32_t, int> group_of_cluster;
    std::set<int> groups_seen;
    for (size_t p = 0; p < blobs.truth.size(); ++p) {
      auto [it, inserted] = group_of_cluster.emplace(result.assignment[p], blobs.truth[p]);
      EXPECT_EQ(it->second, blobs.truth[p]) << "cluster " << result.assignment[p] << " mixes two groups";
      groups_seen.insert(blobs.truth[p]);
    }
    for (auto& [cluster, group] : group_of_cluster) {
      for (int i = 0; i < dim; ++i) {
        EXPECT_NEAR(result.centroids[size_t(cluster * dim + i)], blobs.centres[size_t(group * dim + i)], 0.3);
      }
    }
  }
}

TEST_F(KmeansRunTest, CentroidsAreMeansOfTheirPoints) {
  Blobs blobs = make_blobs(5, 7, 8, 9);
  Result result = run_kmeans(*backend, blobs.points, 8, 6, 4, 11);
  std::vector<double> sums(6 * 8, 0.0);
  for (size_t p = 0; p < blobs.truth.size(); ++p) {
    for (int i = 0; i < 8; ++i) sums[size_t(result.assignment[p] * 8 + i)] += blobs.points[p * 8 + size_t(i)];
  }
  for (int64_t c = 0; c < 6; ++c) {
    if (result.sizes[size_t(c)] == 0) continue;
    for (int i = 0; i < 8; ++i) {
      EXPECT_NEAR(result.centroids[size_t(c * 8 + i)], sums[size_t(c * 8 + i)] / double(result.sizes[size_t(c)]), 1e-4);
    }
  }
}

TEST_F(KmeansRunTest, EveryPointIsInItsNearestCluster) {
  Blobs blobs = make_blobs(6, 10, 4, 4);
  Result result = run_kmeans(*backend, blobs.points, 4, 8, 25, 2);
  for (size_t p = 0; p < blobs.truth.size(); ++p) {
    auto distance = [&](int64_t c) {
      double sum = 0;
      for (int i = 0; i < 4; ++i) {
        double d = double(blobs.points[p * 4 + size_t(i)]) - result.centroids[size_t(c * 4 + i)];
        sum += d * d;
      }
      return sum;
    };
    for (int64_t c = 0; c < 8; ++c) {
      if (result.sizes[size_t(c)] == 0) continue;
      EXPECT_LE(distance(result.assignment[p]), distance(c) + 1e-6) << p;
    }
  }
}

TEST_F(KmeansRunTest, SameSeedSameClusters) {
  Blobs blobs = make_blobs(4, 9, 4, 5);
  Result a = run_kmeans(*backend, blobs.points, 4, 5, 3, 42);
  Result b = run_kmeans(*backend, blobs.points, 4, 5, 3, 42);
  EXPECT_EQ(a.assignment, b.assignment);
  EXPECT_EQ(a.centroids, b.centroids);
}

TEST_F(KmeansRunTest, AsManyClustersAsPointsGivesEachPointItsOwn) {
  std::vector<float> points{0, 0, 5, 5, 9, 1};
  Result result = run_kmeans(*backend, points, 2, 3, 5, 0);
  EXPECT_EQ(result.sizes, (std::vector<int32_t>{1, 1, 1}));
  std::set<int32_t> distinct(result.assignment.begin(), result.assignment.end());
  EXPECT_EQ(distinct.size(), 3u);
}

TEST_F(KmeansRunTest, DuplicatePointsGatherInOneClusterAndTheRestStayEmpty) {
  std::vector<float> points(20 * 3, 1.5f);  // 20 copies of one point
  Result result = run_kmeans(*backend, points, 3, 4, 5, 7);
  EXPECT_EQ(result.sizes, (std::vector<int32_t>{20, 0, 0, 0}));  // ties go to the lowest cluster
  for (int64_t i = 0; i < 20; ++i) EXPECT_EQ(result.order[size_t(i)], i);
}

TEST_F(KmeansRunTest, OrderListsEachClusterInTimeOrder) {
  Blobs blobs = make_blobs(3, 11, 4, 8);
  Result result = run_kmeans(*backend, blobs.points, 4, 3, 5, 1);
  int64_t next = 0;
  for (int32_t size : result.sizes) {
    for (int32_t i = 1; i < size; ++i) EXPECT_LT(result.order[size_t(next + i - 1)], result.order[size_t(next + i)]);
    next += size;
  }
  EXPECT_EQ(next, int64_t(blobs.truth.size()));
}

TEST(KmeansSeeds, DistinctPointsPerHeadAndReproducible) {
  std::vector<int32_t> seeds = seed_points(3, 50, 20, 9);
  ASSERT_EQ(seeds.size(), 60u);
  for (int head = 0; head < 3; ++head) {
    std::set<int32_t> distinct(seeds.begin() + head * 20, seeds.begin() + head * 20 + 20);
    EXPECT_EQ(distinct.size(), 20u);
    EXPECT_GE(*distinct.begin(), 0);
    EXPECT_LT(*distinct.rbegin(), 50);
  }
  EXPECT_EQ(seeds, seed_points(3, 50, 20, 9));
  EXPECT_NE(seeds, seed_points(3, 50, 20, 10));
}

TEST(KmeansSeeds, ClusterCount) {
  EXPECT_EQ(cluster_count_for(0, 16), 0);
  EXPECT_EQ(cluster_count_for(1, 16), 1);
  EXPECT_EQ(cluster_count_for(16, 16), 1);
  EXPECT_EQ(cluster_count_for(17, 16), 2);
  EXPECT_EQ(cluster_count_for(5, 0), 5);
}

}  // namespace
}  // namespace louiskv
