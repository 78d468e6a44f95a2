// Parity of the KV-retrieval ops (gather_kv, reorder_kv, summarize_units, kmeans_*, score_units,
// budget_fill, query_cosine) with the CPU reference, on random inputs over awkward sizes: units of
// one token, lengths that are not multiples of 16, GQA groups of 1, 4 and 8, head_dim 64 and 128.
// Outputs are poisoned first (NaN bytes, -1 ids) and followed by guard bytes. The ops that read K/V
// rows or queries (the activation dtype) run again on a backend of the f32 mode, with f32 rows and
// queries; budget_fill reads neither, and k-means takes f32 points in both modes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "cuda/parity_harness.h"

namespace louiskv::testing {
namespace {

std::vector<float> nan_filled(size_t count) { return std::vector<float>(count, std::numeric_limits<float>::quiet_NaN()); }

std::vector<float> ints_of(const std::vector<int32_t>& values) { return std::vector<float>(values.begin(), values.end()); }

std::vector<int32_t> read_ints(Backend& backend, const TensorView& view) {
  std::vector<int32_t> values(size_t(view.numel()));
  read_bytes(backend, values.data(), view.data, values.size() * sizeof(int32_t));
  return values;
}

// ---- gather_kv and reorder_kv: copies, so the result must be exact ----------------------------

TEST(CudaParity, GatherKvMovesEveryRunExactly) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  Backend& gpu = *backends.gpu;
  for (int64_t dim : {64, 128}) {
    const int64_t heads = 3, tokens = 700, slots = 600;
    const std::string what = "gather_kv head_dim " + std::to_string(dim);
    std::vector<float> keys = random.uniform(size_t(heads * tokens * dim), -2, 2);
    std::vector<float> values = random.uniform(size_t(heads * tokens * dim), -2, 2);
    // The pool in pinned host memory; the working set on the device, poisoned.
    auto pool_keys = make_tensor(gpu, DType::bf16, {heads, tokens, dim}, keys, true);
    auto pool_values = make_tensor(gpu, DType::bf16, {heads, tokens, dim}, values, true);
    auto set_keys = make_output(gpu, DType::bf16, {heads, slots, dim});
    auto set_values = make_output(gpu, DType::bf16, {heads, slots, dim});
    const size_t row = size_t(dim) * 2;
    // Runs of 1, 3, 17, 16, 64 and 300 tokens (several chunks), in every head, filling the slots
    // in a shuffled order of runs.
    std::vector<int64_t> lengths{1, 3, 17, 16, 64, 300, 2, 5};
    std::vector<KvCopy> copies;
    std::vector<float> expected_keys(size_t(heads * slots * dim), std::numeric_limits<float>::quiet_NaN());
    std::vector<float> expected_values = expected_keys;
    for (int64_t h = 0; h < heads; ++h) {
      int64_t source = random.integer(0, 10), slot = 0;
      for (int64_t length : lengths) {
        int64_t destination = slots - slot - length;  // from the end of the slots backwards
        copies.push_back({static_cast<char*>(pool_keys.view.data) + size_t(h * tokens + source) * row,
                          static_cast<char*>(pool_values.view.data) + size_t(h * tokens + source) * row,
                          static_cast<char*>(set_keys.view.data) + size_t(h * slots + destination) * row,
                          static_cast<char*>(set_values.view.data) + size_t(h * slots + destination) * row, length});
        for (int64_t t = 0; t < length * dim; ++t) {
          expected_keys[size_t((h * slots + destination) * dim + t)] = keys[size_t((h * tokens + source) * dim + t)];
          expected_values[size_t((h * slots + destination) * dim + t)] = values[size_t((h * tokens + source) * dim + t)];
        }
        source += length;
        slot += length;
      }
    }
    gpu.gather_kv(copies, int64_t(row));
    expect_equal(read_values(gpu, set_keys.view), rounded_to(expected_keys, DType::bf16), what + " keys");
    expect_equal(read_values(gpu, set_values.view), rounded_to(expected_values, DType::bf16), what + " values");
    expect_guard_intact(gpu, set_keys, what);
    expect_guard_intact(gpu, set_values, what);

    // And back: device rows into pinned memory (a window segment leaving for the pool).
    auto back_keys = make_tensor(gpu, DType::bf16, {heads, slots, dim}, nan_filled(size_t(heads * slots * dim)), true);
    auto back_values = make_tensor(gpu, DType::bf16, {heads, slots, dim}, nan_filled(size_t(heads * slots * dim)), true);
    std::vector<KvCopy> back{{set_keys.view.data, set_values.view.data, back_keys.view.data, back_values.view.data,
                              heads * slots}};
    gpu.gather_kv(back, int64_t(row));
    expect_equal(read_values(gpu, back_keys.view), read_values(gpu, set_keys.view), what + " device to host");
    expect_equal(read_values(gpu, back_values.view), read_values(gpu, set_values.view), what + " device to host");
  }
}

TEST(CudaParity, ReorderKvLaysRowsOutByIndex) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  for (int64_t dim : {64, 128}) {
    const int64_t heads = 2, capacity = 300, count = 257, src_first = 5, dst_first = 11;
    const std::string what = "reorder_kv head_dim " + std::to_string(dim);
    std::vector<float> keys = random.uniform(size_t(heads * capacity * dim), -2, 2);
    std::vector<float> values = random.uniform(size_t(heads * capacity * dim), -2, 2);
    std::vector<float> order;
    for (int64_t h = 0; h < heads; ++h) {
      std::vector<int32_t> permutation(static_cast<size_t>(count));
      std::iota(permutation.begin(), permutation.end(), 0);
      for (int64_t i = count - 1; i > 0; --i) std::swap(permutation[size_t(i)], permutation[size_t(random.integer(0, i))]);
      order.insert(order.end(), permutation.begin(), permutation.end());
    }
    std::vector<float> poison = nan_filled(size_t(heads * capacity * dim));
    std::vector<std::vector<float>> results;
    for (Backend* backend : {backends.cpu.get(), backends.gpu.get()}) {
      bool gpu = backend == backends.gpu.get();
      DType kv = backend->kv_dtype();
      auto src_keys = make_tensor(*backend, kv, {heads, capacity, dim}, keys);
      auto src_values = make_tensor(*backend, kv, {heads, capacity, dim}, values);
      auto dst_keys = make_tensor(*backend, kv, {heads, capacity, dim}, poison, gpu);  // the pool: pinned
      auto dst_values = make_tensor(*backend, kv, {heads, capacity, dim}, poison, gpu);
      auto indices = make_tensor(*backend, DType::i32, {heads, count}, order);
      backend->reorder_kv(dst_keys.view, dst_values.view, dst_first, src_keys.view, src_values.view, src_first,
                          indices.view);
      std::vector<float> both = read_values(*backend, dst_keys.view);
      std::vector<float> more = read_values(*backend, dst_values.view);
      both.insert(both.end(), more.begin(), more.end());
      results.push_back(rounded_to(both, DType::bf16));
      if (gpu) expect_guard_intact(*backend, dst_keys, what);
    }
    expect_equal(results[1], results[0], what);
  }
}

// ---- summarize_units ---------------------------------------------------------------------------

TEST(CudaParity, SummarizeUnits) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  for (int64_t dim : {64, 128}) {
    const std::vector<int64_t> lengths{1, 5, 16, 33, 200, 2};
    const int64_t tokens = std::accumulate(lengths.begin(), lengths.end(), int64_t(0));
    const int64_t units = int64_t(lengths.size());
    const std::string what = "summarize_units head_dim " + std::to_string(dim);
    std::vector<float> keys = random.uniform(size_t(tokens * dim), -3, 3);
    std::vector<std::vector<float>> results;
    for (Backend* backend : {backends.cpu.get(), backends.gpu.get()}) {
      bool gpu = backend == backends.gpu.get();
      // Keys in pinned host memory on the GPU (summaries of units read from the pool).
      auto source = make_tensor(*backend, backend->kv_dtype(), {tokens, dim}, keys, gpu);
      auto means = make_output(*backend, DType::f32, {units, dim});
      auto lower = make_output(*backend, DType::f32, {units, dim});
      auto upper = make_output(*backend, DType::f32, {units, dim});
      auto radii = make_output(*backend, DType::f32, {units});
      auto counts = make_output(*backend, DType::i32, {units});
      std::vector<UnitSummaryJob> jobs;
      int64_t first = 0;
      const size_t row = size_t(dim) * dtype_size(backend->kv_dtype());
      for (int64_t u = 0; u < units; ++u) {
        jobs.push_back({static_cast<char*>(source.view.data) + size_t(first) * row, int32_t(lengths[size_t(u)]),
                        means.view.as<float>() + u * dim, lower.view.as<float>() + u * dim,
                        upper.view.as<float>() + u * dim, radii.view.as<float>() + u,
                        counts.view.as<int32_t>() + u});
        first += lengths[size_t(u)];
      }
      backend->summarize_units(jobs, dim);
      std::vector<float> all;
      for (auto* view : {&means.view, &lower.view, &upper.view, &radii.view}) {
        std::vector<float> part = read_values(*backend, *view);
        all.insert(all.end(), part.begin(), part.end());
      }
      std::vector<int32_t> written = read_ints(*backend, counts.view);
      for (int64_t u = 0; u < units; ++u) EXPECT_EQ(written[size_t(u)], lengths[size_t(u)]) << what;
      results.push_back(all);
      if (gpu) expect_guard_intact(*backend, radii, what);
    }
    expect_close(results[1], results[0], 1e-5, what);
  }
}

// ---- k-means -----------------------------------------------------------------------------------

TEST(CudaParity, KmeansInitAndOrderAreExact) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  const int64_t heads = 3, count = 1000, dim = 64, clusters = 130;
  std::vector<float> points = random.uniform(size_t(heads * count * dim), -1, 1);
  std::vector<float> seeds, assignment;
  for (int64_t i = 0; i < heads * clusters; ++i) seeds.push_back(float(random.integer(0, count - 1)));
  std::vector<float> sizes(size_t(heads * clusters), 0.0f);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t p = 0; p < count; ++p) {
      // Some clusters stay empty: only every third is used.
      int64_t c = random.integer(0, clusters / 3 - 1) * 3;
      assignment.push_back(float(c));
      sizes[size_t(h * clusters + c)] += 1;
    }
  }
  std::vector<std::vector<float>> centroids, orders;
  for (Backend* backend : {backends.cpu.get(), backends.gpu.get()}) {
    auto point_view = make_tensor(*backend, DType::f32, {heads, count, dim}, points);
    auto seed_view = make_tensor(*backend, DType::i32, {heads, clusters}, seeds, backend == backends.gpu.get());
    auto centroid_view = make_output(*backend, DType::f32, {heads, clusters, dim});
    backend->kmeans_init(centroid_view.view, point_view.view, seed_view.view);
    centroids.push_back(read_values(*backend, centroid_view.view));
    auto assignment_view = make_tensor(*backend, DType::i32, {heads, count}, assignment);
    auto size_view = make_tensor(*backend, DType::i32, {heads, clusters}, sizes);
    auto order_view = make_output(*backend, DType::i32, {heads, count});
    backend->kmeans_order(order_view.view, assignment_view.view, size_view.view);
    orders.push_back(ints_of(read_ints(*backend, order_view.view)));
    if (backend == backends.gpu.get()) expect_guard_intact(*backend, order_view, "kmeans_order");
  }
  expect_equal(centroids[1], centroids[0], "kmeans_init");
  expect_equal(orders[1], orders[0], "kmeans_order");
}

// Affinity 2 p.c - |c|^2 in double: what the assignment maximises.
double affinity(const std::vector<float>& points, const std::vector<float>& centroids, int64_t point, int64_t centroid,
                int64_t dim) {
  double dot = 0, norm = 0;
  for (int64_t i = 0; i < dim; ++i) {
    dot += double(points[size_t(point * dim + i)]) * centroids[size_t(centroid * dim + i)];
    norm += double(centroids[size_t(centroid * dim + i)]) * centroids[size_t(centroid * dim + i)];
  }
  return 2 * dot - norm;
}

TEST(CudaParity, KmeansAssignPicksANearestCentroid) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  struct Case { int64_t heads, count, clusters, dim; };
  for (Case c : {Case{1, 1, 1, 64}, Case{2, 17, 5, 128}, Case{3, 1000, 130, 64}, Case{1, 4099, 256, 128},
                 Case{8, 300, 64, 100}}) {
    const std::string what = "kmeans_assign heads " + std::to_string(c.heads) + " points " + std::to_string(c.count) +
                             " clusters " + std::to_string(c.clusters) + " dim " + std::to_string(c.dim);
    std::vector<float> points = random.uniform(size_t(c.heads * c.count * c.dim), -1, 1);
    std::vector<float> centroids = random.uniform(size_t(c.heads * c.clusters * c.dim), -1, 1);
    auto point_view = make_tensor(*backends.gpu, DType::f32, {c.heads, c.count, c.dim}, points);
    auto centroid_view = make_tensor(*backends.gpu, DType::f32, {c.heads, c.clusters, c.dim}, centroids);
    auto assignment = make_output(*backends.gpu, DType::i32, {c.heads, c.count});
    backends.gpu->kmeans_assign(assignment.view, point_view.view, centroid_view.view);
    std::vector<int32_t> chosen = read_ints(*backends.gpu, assignment.view);
    expect_guard_intact(*backends.gpu, assignment, what);

    auto cpu_points = make_tensor(*backends.cpu, DType::f32, {c.heads, c.count, c.dim}, points);
    auto cpu_centroids = make_tensor(*backends.cpu, DType::f32, {c.heads, c.clusters, c.dim}, centroids);
    auto cpu_assignment = make_output(*backends.cpu, DType::i32, {c.heads, c.count});
    backends.cpu->kmeans_assign(cpu_assignment.view, cpu_points.view, cpu_centroids.view);
    std::vector<int32_t> reference = read_ints(*backends.cpu, cpu_assignment.view);

    // fp32 sums in another order may swap two centroids whose affinities tie to rounding: the
    // GPU's choice must be as near as the CPU's, within that rounding.
    int64_t same = 0, worse = 0;
    for (int64_t h = 0; h < c.heads; ++h) {
      std::vector<float> head_points(points.begin() + h * c.count * c.dim, points.begin() + (h + 1) * c.count * c.dim);
      std::vector<float> head_centroids(centroids.begin() + h * c.clusters * c.dim,
                                        centroids.begin() + (h + 1) * c.clusters * c.dim);
      for (int64_t p = 0; p < c.count; ++p) {
        int32_t g = chosen[size_t(h * c.count + p)], r = reference[size_t(h * c.count + p)];
        ASSERT_TRUE(g >= 0 && g < c.clusters) << what << ": point " << p << " assigned to " << g;
        same += g == r;
        double gap = affinity(head_points, head_centroids, p, r, c.dim) - affinity(head_points, head_centroids, p, g, c.dim);
        worse += gap > 1e-4;
      }
    }
    std::printf("[parity] %-70s %lld of %lld as the CPU\n", what.c_str(), (long long)same, (long long)(c.heads * c.count));
    EXPECT_EQ(worse, 0) << what << ": points assigned to a centroid clearly farther than the CPU's";
  }
}

TEST(CudaParity, KmeansUpdateTakesMeansAndKeepsEmptyCentroids) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  struct Case { int64_t heads, count, clusters, dim; };
  for (Case c : {Case{1, 1, 1, 64}, Case{2, 700, 40, 128}, Case{4, 1500, 97, 64}}) {
    const std::string what = "kmeans_update heads " + std::to_string(c.heads) + " points " + std::to_string(c.count) +
                             " clusters " + std::to_string(c.clusters) + " dim " + std::to_string(c.dim);
    std::vector<float> points = random.uniform(size_t(c.heads * c.count * c.dim), -2, 2);
    std::vector<float> previous = random.uniform(size_t(c.heads * c.clusters * c.dim), -2, 2);
    std::vector<float> assignment;
    for (int64_t i = 0; i < c.heads * c.count; ++i) {
      // Point to even clusters only (odd ones stay empty), some points to none (-1).
      int64_t cluster = random.integer(-1, (c.clusters - 1) / 2) * 2;
      assignment.push_back(float(cluster < 0 ? -1 : cluster));
    }
    std::vector<std::vector<float>> centroids, sizes;
    for (Backend* backend : {backends.cpu.get(), backends.gpu.get()}) {
      auto point_view = make_tensor(*backend, DType::f32, {c.heads, c.count, c.dim}, points);
      auto centroid_view = make_tensor(*backend, DType::f32, {c.heads, c.clusters, c.dim}, previous);
      auto assignment_view = make_tensor(*backend, DType::i32, {c.heads, c.count}, assignment);
      auto size_view = make_output(*backend, DType::i32, {c.heads, c.clusters});
      backend->kmeans_update(centroid_view.view, size_view.view, point_view.view, assignment_view.view);
      centroids.push_back(read_values(*backend, centroid_view.view));
      sizes.push_back(ints_of(read_ints(*backend, size_view.view)));
      if (backend == backends.gpu.get()) expect_guard_intact(*backend, size_view, what);
    }
    expect_equal(sizes[1], sizes[0], what + " sizes");
    expect_close(centroids[1], centroids[0], 1e-6, what + " centroids");
  }
}

// ---- score_units -------------------------------------------------------------------------------

struct ScoreCase {
  int64_t group, dim;
  UnitBound bound;
  GroupReduction reduction;
};

std::string case_name(const ScoreCase& c) {
  const char* bounds[] = {"dot", "box", "sphere"};
  const char* reductions[] = {"max", "sum", "softmax_mean"};
  return std::string(bounds[int(c.bound)]) + "/" + reductions[int(c.reduction)] + " group " + std::to_string(c.group) +
         " dim " + std::to_string(c.dim);
}

// Summaries of a row's units, in one backend's memory.
struct RowData {
  OwnedTensor keys, lower, upper, radii, lengths, scores;
};

TEST(CudaParity, ScoreUnits) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  const std::vector<ScoreCase> cases{
      {1, 64, UnitBound::dot, GroupReduction::softmax_mean}, {4, 128, UnitBound::dot, GroupReduction::softmax_mean},
      {8, 64, UnitBound::dot, GroupReduction::sum},          {4, 128, UnitBound::box, GroupReduction::max},
      {8, 128, UnitBound::sphere, GroupReduction::max},      {1, 128, UnitBound::sphere, GroupReduction::max},
      {4, 64, UnitBound::box, GroupReduction::max},
  };
  const std::vector<int64_t> unit_counts{1, 7, 100, 1000, 0, 33};
  for (const ScoreCase& c : cases) {
    const int64_t kv_heads = 2, heads = kv_heads * c.group, batch = 3;
    const std::string what = "score_units " + case_name(c);
    std::vector<float> q = random.uniform(size_t(batch * heads * c.dim), -1, 1);
    // Row r: sequence r / kv_heads, KV head r % kv_heads; its units summarised at random, boxes
    // ordered, radii positive, a few units of no tokens.
    struct Row { int64_t units; std::vector<float> keys, lower, upper, radii, lengths; };
    std::vector<Row> rows;
    for (size_t r = 0; r < unit_counts.size(); ++r) {
      Row row;
      row.units = unit_counts[r];
      row.keys = random.uniform(size_t(row.units * c.dim), -1, 1);
      row.lower = random.uniform(size_t(row.units * c.dim), -1, 0);
      row.upper = random.uniform(size_t(row.units * c.dim), 0, 1);
      row.radii = random.uniform(size_t(row.units), 0.1f, 2);
      for (int64_t u = 0; u < row.units; ++u) row.lengths.push_back(float(random.integer(0, 5) == 0 ? 0 : random.integer(1, 40)));
      rows.push_back(std::move(row));
    }
    std::vector<std::vector<float>> results;
    for (Backend* backend : {backends.cpu.get(), backends.gpu.get()}) {
      auto q_view = make_tensor(*backend, backend->activation_dtype(), {batch, heads, c.dim}, q);
      // One row's similarity sits above the gate: it must not be scored.
      auto similarity = make_tensor(*backend, DType::f32, {2}, {0.2f, 0.9f}, backend == backends.gpu.get());
      std::vector<RowData> data;
      std::vector<UnitRow> unit_rows;
      for (size_t r = 0; r < rows.size(); ++r) {
        const Row& row = rows[r];
        const int64_t n = std::max<int64_t>(row.units, 1);
        auto pad = [&](std::vector<float> values, int64_t width) {
          values.resize(size_t(n * width), 0.5f);
          return values;
        };
        RowData d{make_tensor(*backend, DType::f32, {n, c.dim}, pad(row.keys, c.dim)),
                  make_tensor(*backend, DType::f32, {n, c.dim}, pad(row.lower, c.dim)),
                  make_tensor(*backend, DType::f32, {n, c.dim}, pad(row.upper, c.dim)),
                  make_tensor(*backend, DType::f32, {n}, pad(row.radii, 1)),
                  make_tensor(*backend, DType::i32, {n}, pad(row.lengths, 1)),
                  make_output(*backend, DType::f32, {n})};
        UnitRow unit_row;
        unit_row.query_row = int32_t(r % size_t(batch));
        unit_row.kv_head = int32_t(r % size_t(kv_heads));
        unit_row.units = int32_t(row.units);
        unit_row.keys = d.keys.view.as<float>();
        unit_row.lower = d.lower.view.as<float>();
        unit_row.upper = d.upper.view.as<float>();
        unit_row.radii = d.radii.view.as<float>();
        unit_row.lengths = d.lengths.view.as<int32_t>();
        unit_row.scores = d.scores.view.as<float>();
        if (r == 2) unit_row.similarity = similarity.view.as<float>() + 0;  // 0.2 < 0.5: scored
        if (r == 3) unit_row.similarity = similarity.view.as<float>() + 1;  // 0.9: gated off
        unit_rows.push_back(unit_row);
        data.push_back(std::move(d));
      }
      UnitScoring scoring{c.bound, c.reduction, int32_t(c.group), 1.0f / std::sqrt(float(c.dim))};
      backend->score_units(q_view.view, unit_rows, scoring, 0.5f);
      std::vector<float> all;
      for (size_t r = 0; r < rows.size(); ++r) {
        std::vector<float> scores = read_values(*backend, data[r].scores.view);
        scores.resize(size_t(rows[r].units));
        if (r == 3) {  // gated off: still poisoned
          for (float score : scores) EXPECT_TRUE(std::isnan(score)) << what << ": a gated row was scored";
          continue;
        }
        all.insert(all.end(), scores.begin(), scores.end());
        if (backend == backends.gpu.get()) expect_guard_intact(*backend, data[r].scores, what);
      }
      results.push_back(all);
    }
    // Units of no tokens score -inf on both; the others are compared by relative error.
    ASSERT_EQ(results[1].size(), results[0].size());
    std::vector<float> gpu_finite, cpu_finite;
    int64_t misplaced = 0;
    for (size_t i = 0; i < results[0].size(); ++i) {
      bool empty_unit = std::isinf(results[0][i]) && results[0][i] < 0;
      if (empty_unit) {
        misplaced += !(std::isinf(results[1][i]) && results[1][i] < 0);
        continue;
      }
      cpu_finite.push_back(results[0][i]);
      gpu_finite.push_back(results[1][i]);
    }
    EXPECT_EQ(misplaced, 0) << what << ": units of no tokens must score -inf";
    expect_close(gpu_finite, cpu_finite, 1e-4, what);
  }
}

// ---- budget_fill -------------------------------------------------------------------------------

TEST(CudaParity, BudgetFillChoosesTheSameUnits) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  // Units per row, and budgets: none, a unit's worth, most, more than all.
  const std::vector<int64_t> unit_counts{0, 1, 2, 31, 500, 5000, 130, 16};
  const std::vector<int64_t> budgets{0, 7, 1000, 40, 300, 2048, 100000, 16};
  std::vector<std::vector<float>> scores, lengths;
  for (int64_t units : unit_counts) {
    std::vector<float> row_scores = random.uniform(size_t(units), -3, 3), row_lengths;
    for (int64_t u = 0; u < units; ++u) {
      int64_t pick = random.integer(0, 19);
      if (pick == 0) row_scores[size_t(u)] = std::numeric_limits<float>::quiet_NaN();
      if (pick == 1) row_scores[size_t(u)] = -INFINITY;
      if (pick == 2 && u > 0) row_scores[size_t(u)] = row_scores[size_t(u - 1)];  // a tie
      if (pick == 3) row_scores[size_t(u)] = random.integer(0, 1) ? 0.0f : -0.0f;
      row_lengths.push_back(float(random.integer(0, 6) == 0 ? (random.integer(0, 1) ? 0 : 1) : random.integer(1, 48)));
    }
    scores.push_back(row_scores);
    lengths.push_back(row_lengths);
  }
  std::vector<std::vector<float>> results;
  for (Backend* backend : {backends.cpu.get(), backends.gpu.get()}) {
    const bool gpu = backend == backends.gpu.get();
    auto similarity = make_tensor(*backend, DType::f32, {1}, {0.95f}, gpu);
    std::vector<OwnedTensor> owned;
    std::vector<UnitRow> rows;
    for (size_t r = 0; r < unit_counts.size() + 1; ++r) {
      const size_t source = std::min(r, unit_counts.size() - 1);
      const int64_t units = unit_counts[source], room = std::max<int64_t>(std::min(units, budgets[source]), 1);
      UnitRow row;
      row.units = int32_t(units);
      row.budget = int32_t(budgets[source]);
      owned.push_back(make_tensor(*backend, DType::f32, {std::max<int64_t>(units, 1)},
                                  units ? scores[source] : std::vector<float>{0.0f}));
      row.scores = owned.back().view.as<float>();
      owned.push_back(make_tensor(*backend, DType::i32, {std::max<int64_t>(units, 1)},
                                  units ? lengths[source] : std::vector<float>{1.0f}));
      row.lengths = owned.back().view.as<int32_t>();
      // The choice goes to pinned host memory, as the policies read it.
      owned.push_back(make_tensor(*backend, DType::i32, {room}, std::vector<float>(size_t(room), -1.0f), gpu));
      row.chosen = owned.back().view.as<int32_t>();
      owned.push_back(make_tensor(*backend, DType::f32, {room}, nan_filled(size_t(room)), gpu));
      row.chosen_scores = owned.back().view.as<float>();
      owned.push_back(make_tensor(*backend, DType::i32, {2}, {-7, -7}, gpu));
      row.chosen_count = owned.back().view.as<int32_t>();
      if (r == unit_counts.size()) row.similarity = similarity.view.as<float>();  // gated off
      rows.push_back(row);
    }
    backend->budget_fill(rows, 0.7f);
    backend->synchronize();
    std::vector<float> all;
    for (size_t r = 0; r < rows.size(); ++r) {
      std::vector<int32_t> count = read_ints(*backend, owned[r * 5 + 4].view);
      all.push_back(float(count[0]));
      all.push_back(float(count[1]));
      std::vector<int32_t> chosen = read_ints(*backend, owned[r * 5 + 2].view);
      for (int32_t i = 0; i < std::max(count[0], 0); ++i) {
        all.push_back(float(chosen[size_t(i)]));
        all.push_back(read_values(*backend, owned[r * 5 + 3].view)[size_t(i)]);
      }
    }
    results.push_back(all);
  }
  expect_equal(results[1], results[0], "budget_fill");
  ASSERT_GE(results[0].size(), 2u);
  EXPECT_EQ(results[0][results[0].size() - 2], -1.0f) << "the gated row reports no choice";
}

// ---- query_cosine ------------------------------------------------------------------------------

TEST(CudaParity, QueryCosine) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  for (int64_t dim : {64, 128}) {
    const int64_t batch = 4, heads = 32;
    const std::string what = "query_cosine head_dim " + std::to_string(dim);
    std::vector<float> q = random.uniform(size_t(batch * heads * dim), -1, 1);
    std::vector<float> previous = random.uniform(size_t(batch * heads * dim), -1, 1);
    // Sequence 1 repeats its query exactly: its similarity must be exactly 1 (tau = 1 relies
    // on it). Sequence 2 had a zero query in head 0.
    std::copy(q.begin() + heads * dim, q.begin() + 2 * heads * dim, previous.begin() + heads * dim);
    std::fill(previous.begin() + 2 * heads * dim, previous.begin() + 2 * heads * dim + dim, 0.0f);
    std::vector<std::vector<float>> similarities, stored;
    for (Backend* backend : {backends.cpu.get(), backends.gpu.get()}) {
      const bool gpu = backend == backends.gpu.get();
      auto q_view = make_tensor(*backend, backend->activation_dtype(), {batch, heads, dim}, q);
      std::vector<OwnedTensor> rows;
      std::vector<void*> pointers;
      for (int64_t b = 0; b < batch; ++b) {
        rows.push_back(make_tensor(*backend, backend->activation_dtype(), {heads, dim},
                                   std::vector<float>(previous.begin() + b * heads * dim,
                                                      previous.begin() + (b + 1) * heads * dim)));
        pointers.push_back(rows.back().view.data);
      }
      auto similarity = make_tensor(*backend, DType::f32, {batch}, nan_filled(size_t(batch)), gpu);
      backend->query_cosine(similarity.view, q_view.view, pointers);
      similarities.push_back(read_values(*backend, similarity.view));
      std::vector<float> all;
      for (const OwnedTensor& row : rows) {
        std::vector<float> part = read_values(*backend, row.view);
        all.insert(all.end(), part.begin(), part.end());
      }
      stored.push_back(rounded_to(all, DType::bf16));
    }
    expect_close(similarities[1], similarities[0], 1e-5, what);
    EXPECT_EQ(similarities[1][1], 1.0f) << what << ": identical queries must give exactly 1";
    expect_equal(stored[1], rounded_to(q, DType::bf16), what + " stores the current queries");
  }
}

// ---- the f32 mode ---------------------------------------------------------------------------

TEST(CudaF32Parity, GatherKvMovesF32RowsExactly) {
  LOUISKV_REQUIRE_CUDA();
  auto gpu = make_cuda_backend(0, DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  for (int64_t dim : {64, 128}) {
    const int64_t heads = 2, tokens = 500, slots = 420;
    const std::string what = "f32 gather_kv head_dim " + std::to_string(dim);
    std::vector<float> keys = random.uniform_f32(size_t(heads * tokens * dim), -2, 2);
    std::vector<float> values = random.uniform_f32(size_t(heads * tokens * dim), -2, 2);
    auto pool_keys = make_tensor(*gpu, DType::f32, {heads, tokens, dim}, keys, true);
    auto pool_values = make_tensor(*gpu, DType::f32, {heads, tokens, dim}, values, true);
    auto set_keys = make_output(*gpu, DType::f32, {heads, slots, dim});
    auto set_values = make_output(*gpu, DType::f32, {heads, slots, dim});
    const size_t row = size_t(dim) * sizeof(float);
    // Runs of 1 to 300 rows (a 300-row run of D = 128 is several 8 KiB chunks).
    const std::vector<int64_t> lengths{1, 3, 17, 16, 64, 300, 2, 5, 12};
    std::vector<KvCopy> copies;
    std::vector<float> expected_keys(size_t(heads * slots * dim), std::numeric_limits<float>::quiet_NaN());
    std::vector<float> expected_values = expected_keys;
    for (int64_t h = 0; h < heads; ++h) {
      int64_t source = random.integer(0, 10), slot = 0;
      for (int64_t length : lengths) {
        const int64_t destination = slots - slot - length;
        copies.push_back({static_cast<char*>(pool_keys.view.data) + size_t(h * tokens + source) * row,
                          static_cast<char*>(pool_values.view.data) + size_t(h * tokens + source) * row,
                          static_cast<char*>(set_keys.view.data) + size_t(h * slots + destination) * row,
                          static_cast<char*>(set_values.view.data) + size_t(h * slots + destination) * row, length});
        for (int64_t t = 0; t < length * dim; ++t) {
          expected_keys[size_t((h * slots + destination) * dim + t)] = keys[size_t((h * tokens + source) * dim + t)];
          expected_values[size_t((h * slots + destination) * dim + t)] = values[size_t((h * tokens + source) * dim + t)];
        }
        source += length;
        slot += length;
      }
    }
    gpu->gather_kv(copies, int64_t(row));
    expect_equal(read_values(*gpu, set_keys.view), expected_keys, what + " keys");
    expect_equal(read_values(*gpu, set_values.view), expected_values, what + " values");
    expect_guard_intact(*gpu, set_keys, what);
    expect_guard_intact(*gpu, set_values, what);
  }
}

TEST(CudaF32Parity, ReorderKvLaysF32RowsOutByIndex) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends(DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  for (int64_t dim : {64, 128}) {
    const int64_t heads = 2, capacity = 300, count = 257, src_first = 5, dst_first = 11;
    const std::string what = "f32 reorder_kv head_dim " + std::to_string(dim);
    std::vector<float> keys = random.uniform_f32(size_t(heads * capacity * dim), -2, 2);
    std::vector<float> values = random.uniform_f32(size_t(heads * capacity * dim), -2, 2);
    std::vector<float> order;
    for (int64_t h = 0; h < heads; ++h) {
      std::vector<int32_t> permutation(static_cast<size_t>(count));
      std::iota(permutation.begin(), permutation.end(), 0);
      for (int64_t i = count - 1; i > 0; --i) std::swap(permutation[size_t(i)], permutation[size_t(random.integer(0, i))]);
      order.insert(order.end(), permutation.begin(), permutation.end());
    }
    std::vector<float> poison = nan_filled(size_t(heads * capacity * dim));
    std::vector<std::vector<float>> results;
    for (Backend* backend : {backends.cpu.get(), backends.gpu.get()}) {
      const bool gpu = backend == backends.gpu.get();
      ASSERT_EQ(backend->kv_dtype(), DType::f32);
      auto src_keys = make_tensor(*backend, DType::f32, {heads, capacity, dim}, keys);
      auto src_values = make_tensor(*backend, DType::f32, {heads, capacity, dim}, values);
      auto dst_keys = make_tensor(*backend, DType::f32, {heads, capacity, dim}, poison, gpu);
      auto dst_values = make_tensor(*backend, DType::f32, {heads, capacity, dim}, poison, gpu);
      auto indices = make_tensor(*backend, DType::i32, {heads, count}, order);
      backend->reorder_kv(dst_keys.view, dst_values.view, dst_first, src_keys.view, src_values.view, src_first,
                          indices.view);
      std::vector<float> both = read_values(*backend, dst_keys.view);
      std::vector<float> more = read_values(*backend, dst_values.view);
      both.insert(both.end(), more.begin(), more.end());
      results.push_back(both);
      if (gpu) expect_guard_intact(*backend, dst_keys, what);
    }
    expect_equal(results[1], results[0], what);
  }
}

TEST(CudaF32Parity, SummarizeUnitsOfF32Keys) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends(DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  for (int64_t dim : {64, 128}) {
    const std::vector<int64_t> lengths{1, 5, 16, 33, 200, 2};
    const int64_t tokens = std::accumulate(lengths.begin(), lengths.end(), int64_t(0));
    const int64_t units = int64_t(lengths.size());
    const std::string what = "f32 summarize_units head_dim " + std::to_string(dim);
    std::vector<float> keys = random.uniform_f32(size_t(tokens * dim), -3, 3);
    std::vector<std::vector<float>> results;
    for (Backend* backend : {backends.cpu.get(), backends.gpu.get()}) {
      const bool gpu = backend == backends.gpu.get();
      auto source = make_tensor(*backend, DType::f32, {tokens, dim}, keys, gpu);
      auto means = make_output(*backend, DType::f32, {units, dim});
      auto lower = make_output(*backend, DType::f32, {units, dim});
      auto upper = make_output(*backend, DType::f32, {units, dim});
      auto radii = make_output(*backend, DType::f32, {units});
      auto counts = make_output(*backend, DType::i32, {units});
      std::vector<UnitSummaryJob> jobs;
      int64_t first = 0;
      for (int64_t u = 0; u < units; ++u) {
        jobs.push_back({static_cast<char*>(source.view.data) + size_t(first * dim) * sizeof(float),
                        int32_t(lengths[size_t(u)]), means.view.as<float>() + u * dim, lower.view.as<float>() + u * dim,
                        upper.view.as<float>() + u * dim, radii.view.as<float>() + u, counts.view.as<int32_t>() + u});
        first += lengths[size_t(u)];
      }
      backend->summarize_units(jobs, dim);
      std::vector<float> all;
      for (auto* view : {&means.view, &lower.view, &upper.view, &radii.view}) {
        std::vector<float> part = read_values(*backend, *view);
        all.insert(all.end(), part.begin(), part.end());
      }
      std::vector<int32_t> written = read_ints(*backend, counts.view);
      for (int64_t u = 0; u < units; ++u) EXPECT_EQ(written[size_t(u)], lengths[size_t(u)]) << what;
      results.push_back(all);
      if (gpu) expect_guard_intact(*backend, radii, what);
    }
    expect_close(results[1], results[0], 1e-5, what);
  }
}

// K-means points are f32 in both modes; on a backend of the f32 mode the steps that do not depend
// on near ties (seeding, the update for a given assignment, the order) match the CPU.
TEST(CudaF32Parity, KmeansStepsOnAnF32Backend) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends(DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  const int64_t heads = 2, count = 700, dim = 128, clusters = 45;
  std::vector<float> points = random.uniform_f32(size_t(heads * count * dim), -1, 1);
  std::vector<float> seeds, assignment, sizes(size_t(heads * clusters), 0.0f);
  for (int64_t i = 0; i < heads * clusters; ++i) seeds.push_back(float(random.integer(0, count - 1)));
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t p = 0; p < count; ++p) {
      const int64_t c = random.integer(0, clusters / 2 - 1) * 2;  // odd clusters stay empty
      assignment.push_back(float(c));
      sizes[size_t(h * clusters + c)] += 1;
    }
  }
  std::vector<std::vector<float>> seeded, updated, sizes_out, orders;
  for (Backend* backend : {backends.cpu.get(), backends.gpu.get()}) {
    auto point_view = make_tensor(*backend, DType::f32, {heads, count, dim}, points);
    auto seed_view = make_tensor(*backend, DType::i32, {heads, clusters}, seeds);
    auto centroid_view = make_output(*backend, DType::f32, {heads, clusters, dim});
    backend->kmeans_init(centroid_view.view, point_view.view, seed_view.view);
    seeded.push_back(read_values(*backend, centroid_view.view));
    auto assignment_view = make_tensor(*backend, DType::i32, {heads, count}, assignment);
    auto size_view = make_output(*backend, DType::i32, {heads, clusters});
    backend->kmeans_update(centroid_view.view, size_view.view, point_view.view, assignment_view.view);
    updated.push_back(read_values(*backend, centroid_view.view));
    sizes_out.push_back(ints_of(read_ints(*backend, size_view.view)));
    auto given_sizes = make_tensor(*backend, DType::i32, {heads, clusters}, sizes);
    auto order_view = make_output(*backend, DType::i32, {heads, count});
    backend->kmeans_order(order_view.view, assignment_view.view, given_sizes.view);
    orders.push_back(ints_of(read_ints(*backend, order_view.view)));
  }
  expect_equal(seeded[1], seeded[0], "f32 backend kmeans_init");
  expect_close(updated[1], updated[0], 1e-6, "f32 backend kmeans_update centroids");
  expect_equal(sizes_out[1], sizes_out[0], "f32 backend kmeans_update sizes");
  expect_equal(orders[1], orders[0], "f32 backend kmeans_order");
}

TEST(CudaF32Parity, ScoreUnitsWithF32Queries) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends(DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  const std::vector<ScoreCase> cases{
      {1, 64, UnitBound::dot, GroupReduction::softmax_mean}, {4, 128, UnitBound::dot, GroupReduction::softmax_mean},
      {3, 64, UnitBound::dot, GroupReduction::softmax_mean}, {8, 64, UnitBound::dot, GroupReduction::sum},
      {4, 128, UnitBound::box, GroupReduction::max},         {8, 128, UnitBound::sphere, GroupReduction::max},
  };
  const std::vector<int64_t> unit_counts{1, 7, 100, 1000, 0, 33};
  for (const ScoreCase& c : cases) {
    const int64_t kv_heads = 2, heads = kv_heads * c.group, batch = 3;
    const std::string what = "f32 score_units " + case_name(c);
    std::vector<float> q = random.uniform_f32(size_t(batch * heads * c.dim), -1, 1);
    struct Row { int64_t units; std::vector<float> keys, lower, upper, radii, lengths; };
    std::vector<Row> rows;
    for (int64_t units : unit_counts) {
      Row row;
      row.units = units;
      row.keys = random.uniform_f32(size_t(units * c.dim), -1, 1);
      row.lower = random.uniform_f32(size_t(units * c.dim), -1, 0);
      row.upper = random.uniform_f32(size_t(units * c.dim), 0, 1);
      row.radii = random.uniform_f32(size_t(units), 0.1f, 2);
      for (int64_t u = 0; u < units; ++u) row.lengths.push_back(float(random.integer(0, 5) == 0 ? 0 : random.integer(1, 40)));
      rows.push_back(std::move(row));
    }
    std::vector<std::vector<float>> results;
    for (Backend* backend : {backends.cpu.get(), backends.gpu.get()}) {
      ASSERT_EQ(backend->activation_dtype(), DType::f32);
      auto q_view = make_tensor(*backend, DType::f32, {batch, heads, c.dim}, q);
      std::vector<RowData> data;
      std::vector<UnitRow> unit_rows;
      for (size_t r = 0; r < rows.size(); ++r) {
        const Row& row = rows[r];
        const int64_t n = std::max<int64_t>(row.units, 1);
        auto pad = [&](std::vector<float> values, int64_t width) {
          values.resize(size_t(n * width), 0.5f);
          return values;
        };
        RowData d{make_tensor(*backend, DType::f32, {n, c.dim}, pad(row.keys, c.dim)),
                  make_tensor(*backend, DType::f32, {n, c.dim}, pad(row.lower, c.dim)),
                  make_tensor(*backend, DType::f32, {n, c.dim}, pad(row.upper, c.dim)),
                  make_tensor(*backend, DType::f32, {n}, pad(row.radii, 1)),
                  make_tensor(*backend, DType::i32, {n}, pad(row.lengths, 1)),
                  make_output(*backend, DType::f32, {n})};
        UnitRow unit_row;
        unit_row.query_row = int32_t(r % size_t(batch));
        unit_row.kv_head = int32_t(r % size_t(kv_heads));
        unit_row.units = int32_t(row.units);
        unit_row.keys = d.keys.view.as<float>();
        unit_row.lower = d.lower.view.as<float>();
        unit_row.upper = d.upper.view.as<float>();
        unit_row.radii = d.radii.view.as<float>();
        unit_row.lengths = d.lengths.view.as<int32_t>();
        unit_row.scores = d.scores.view.as<float>();
        unit_rows.push_back(unit_row);
        data.push_back(std::move(d));
      }
      UnitScoring scoring{c.bound, c.reduction, int32_t(c.group), 1.0f / std::sqrt(float(c.dim))};
      backend->score_units(q_view.view, unit_rows, scoring, 0.5f);
      std::vector<float> all;
      for (size_t r = 0; r < rows.size(); ++r) {
        std::vector<float> scores = read_values(*backend, data[r].scores.view);
        scores.resize(size_t(rows[r].units));
        all.insert(all.end(), scores.begin(), scores.end());
        if (backend == backends.gpu.get()) expect_guard_intact(*backend, data[r].scores, what);
      }
      results.push_back(all);
    }
    ASSERT_EQ(results[1].size(), results[0].size());
    std::vector<float> gpu_finite, cpu_finite;
    int64_t misplaced = 0;
    for (size_t i = 0; i < results[0].size(); ++i) {
      if (std::isinf(results[0][i]) && results[0][i] < 0) {
        misplaced += !(std::isinf(results[1][i]) && results[1][i] < 0);
        continue;
      }
      cpu_finite.push_back(results[0][i]);
      gpu_finite.push_back(results[1][i]);
    }
    EXPECT_EQ(misplaced, 0) << what << ": units of no tokens must score -inf";
    expect_close(gpu_finite, cpu_finite, 1e-5, what);
  }
}

TEST(CudaF32Parity, QueryCosineOfF32Queries) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends(DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  for (int64_t dim : {64, 128}) {
    const int64_t batch = 4, heads = 6;
    const std::string what = "f32 query_cosine head_dim " + std::to_string(dim);
    std::vector<float> q = random.uniform_f32(size_t(batch * heads * dim), -1, 1);
    std::vector<float> previous = random.uniform_f32(size_t(batch * heads * dim), -1, 1);
    // Sequence 1 repeats its query exactly (similarity exactly 1); sequence 2 had a zero query in
    // head 0.
    std::copy(q.begin() + heads * dim, q.begin() + 2 * heads * dim, previous.begin() + heads * dim);
    std::fill(previous.begin() + 2 * heads * dim, previous.begin() + 2 * heads * dim + dim, 0.0f);
    std::vector<std::vector<float>> similarities, stored;
    for (Backend* backend : {backends.cpu.get(), backends.gpu.get()}) {
      const bool gpu = backend == backends.gpu.get();
      auto q_view = make_tensor(*backend, DType::f32, {batch, heads, dim}, q);
      std::vector<OwnedTensor> rows;
      std::vector<void*> pointers;
      for (int64_t b = 0; b < batch; ++b) {
        rows.push_back(make_tensor(*backend, DType::f32, {heads, dim},
                                   std::vector<float>(previous.begin() + b * heads * dim,
                                                      previous.begin() + (b + 1) * heads * dim)));
        pointers.push_back(rows.back().view.data);
      }
      auto similarity = make_tensor(*backend, DType::f32, {batch}, nan_filled(size_t(batch)), gpu);
      backend->query_cosine(similarity.view, q_view.view, pointers);
      similarities.push_back(read_values(*backend, similarity.view));
      std::vector<float> all;
      for (const OwnedTensor& row : rows) {
        std::vector<float> part = read_values(*backend, row.view);
        all.insert(all.end(), part.begin(), part.end());
      }
      stored.push_back(all);
    }
    expect_close(similarities[1], similarities[0], 1e-5, what);
    EXPECT_EQ(similarities[1][1], 1.0f) << what << ": identical queries must give exactly 1";
    // Unrounded: a bf16 copy of the queries would differ.
    expect_equal(stored[1], q, what + " stores the current queries");
  }
}

}  // namespace
}  // namespace louiskv::testing
