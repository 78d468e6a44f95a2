// The KV-retrieval ops on the CPU: each runs the plain reference functions (kmeans.h,
// unit_scoring.h, budget_fill.h, query_cosine.h, unit_summary.h) head by head or row by row, so
// that the policies in kv/ run one code path on every backend and the CUDA kernels have an oracle.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/cpu/budget_fill.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kmeans.h"
#include "backend/cpu/query_cosine.h"
#include "backend/cpu/unit_scoring.h"
#include "backend/cpu/unit_summary.h"
#include "backend/cpu/view_checks.h"

namespace louiskv {
namespace {

std::span<const float> floats(const TensorView& view, int64_t first, int64_t count) {
  return {view.as<const float>() + first, size_t(count)};
}

// A row takes part unless its gate says otherwise (UnitRow::similarity).
bool row_active(const UnitRow& row, float gate_threshold) {
  return row.similarity == nullptr || *row.similarity < gate_threshold;
}

void check_kmeans_views(const char* op, const TensorView& points, const TensorView& centroids) {
  cpu::require_f32(points, op, "points");
  cpu::require_f32(centroids, op, "centroids");
  cpu::require(points.rank == 3 && centroids.rank == 3 && points.dim(0) == centroids.dim(0) &&
                   points.dim(2) == centroids.dim(2),
               op, "points [H, N, D] and centroids [H, C, D] disagree: " + points.describe() + ", " +
                       centroids.describe());
}

void check_i32(const char* op, const char* name, const TensorView& view, int64_t heads, int64_t count) {
  cpu::require_host(view, op, name);
  cpu::require(view.dtype == DType::i32 && view.rank == 2 && view.dim(0) == heads && view.dim(1) == count, op,
               std::string(name) + " must be i32 [" + std::to_string(heads) + ", " + std::to_string(count) +
                   "], got " + view.describe());
}

}  // namespace

void CpuBackend::gather_kv(std::span<const KvCopy> copies, int64_t row_bytes) {
  cpu::require(row_bytes > 0, "gather_kv", "row_bytes must be positive");
  for (const KvCopy& copy : copies) {
    cpu::require(copy.rows >= 0, "gather_kv", "a copy of a negative number of rows");
    if (copy.rows == 0) continue;
    cpu::require(copy.source_keys && copy.source_values && copy.keys && copy.values, "gather_kv",
                 "a copy with a null pointer");
    size_t bytes = size_t(copy.rows * row_bytes);
    std::memmove(copy.keys, copy.source_keys, bytes);
    std::memmove(copy.values, copy.source_values, bytes);
  }
}

void CpuBackend::reorder_kv(TensorView dst_keys, TensorView dst_values, int64_t dst_first, TensorView src_keys,
                            TensorView src_values, int64_t src_first, TensorView order) {
  const char* op = "reorder_kv";
  for (const TensorView* view : {&dst_keys, &dst_values, &src_keys, &src_values}) {
    cpu::require_host(*view, op, "K/V views");
    cpu::require(view->rank == 3 && view->dtype == dst_keys.dtype && view->dim(0) == dst_keys.dim(0) &&
                     view->dim(2) == dst_keys.dim(2),
                 op, "K/V views must be [H, capacity, D] of one dtype, got " + view->describe());
  }
  cpu::require(dst_keys.shape == dst_values.shape && src_keys.shape == src_values.shape, op,
               "keys and values differ in shape");
  const int64_t heads = dst_keys.dim(0), count = order.rank == 2 ? order.dim(1) : -1;
  check_i32(op, "order", order, heads, count);
  cpu::require(dst_first >= 0 && dst_first + count <= dst_keys.dim(1) && src_first >= 0, op,
               "destination rows beyond its capacity");
  const size_t row = size_t(dst_keys.dim(2)) * dtype_size(dst_keys.dtype);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < count; ++i) {
      int64_t source = src_first + order.as<const int32_t>()[h * count + i];
      cpu::require(source >= 0 && source < src_keys.dim(1), op, "order points outside the source");
      size_t to = size_t(h * dst_keys.dim(1) + dst_first + i) * row;
      size_t from = size_t(h * src_keys.dim(1) + source) * row;
      std::memcpy(dst_keys.as<char>() + to, src_keys.as<const char>() + from, row);
      std::memcpy(dst_values.as<char>() + to, src_values.as<const char>() + from, row);
    }
  }
}

void CpuBackend::summarize_units(std::span<const UnitSummaryJob> jobs, int64_t head_dim) {
  const size_t dim = size_t(head_dim);
  std::vector<float> mean(dim), lower(dim), upper(dim);
  for (const UnitSummaryJob& job : jobs) {
    cpu::require(job.keys != nullptr && job.length > 0, "summarize_units", "a unit needs at least one key");
    std::span<const float> keys(static_cast<const float*>(job.keys), size_t(job.length) * dim);
    mean_key(keys, job.length, head_dim, mean);
    if (job.mean) std::copy(mean.begin(), mean.end(), job.mean);
    if (job.lower || job.upper) {
      key_box(keys, job.length, head_dim, lower, upper);
      if (job.lower) std::copy(lower.begin(), lower.end(), job.lower);
      if (job.upper) std::copy(upper.begin(), upper.end(), job.upper);
    }
    if (job.radius) *job.radius = bounding_radius(keys, job.length, head_dim, mean);
    if (job.length_out) *job.length_out = job.length;
  }
}

void CpuBackend::kmeans_init(TensorView centroids, TensorView points, TensorView seeds) {
  check_kmeans_views("kmeans_init", points, centroids);
  const int64_t heads = points.dim(0), count = points.dim(1), dim = points.dim(2), clusters = centroids.dim(1);
  check_i32("kmeans_init", "seeds", seeds, heads, clusters);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t c = 0; c < clusters; ++c) {
      int32_t seed = seeds.as<const int32_t>()[h * clusters + c];
      cpu::require(seed >= 0 && seed < count, "kmeans_init", "a seed outside the points");
      std::copy_n(points.as<const float>() + (h * count + seed) * dim, dim,
                  centroids.as<float>() + (h * clusters + c) * dim);
    }
  }
}

void CpuBackend::kmeans_assign(TensorView assignment, TensorView points, TensorView centroids) {
  check_kmeans_views("kmeans_assign", points, centroids);
  const int64_t heads = points.dim(0), count = points.dim(1), dim = points.dim(2), clusters = centroids.dim(1);
  check_i32("kmeans_assign", "assignment", assignment, heads, count);
  for (int64_t h = 0; h < heads; ++h) {
    assign_to_nearest(floats(points, h * count * dim, count * dim), count, dim,
                      floats(centroids, h * clusters * dim, clusters * dim), clusters,
                      {assignment.as<int32_t>() + h * count, size_t(count)});
  }
}

void CpuBackend::kmeans_update(TensorView centroids, TensorView sizes, TensorView points, TensorView assignment) {
  check_kmeans_views("kmeans_update", points, centroids);
  const int64_t heads = points.dim(0), count = points.dim(1), dim = points.dim(2), clusters = centroids.dim(1);
  check_i32("kmeans_update", "assignment", assignment, heads, count);
  check_i32("kmeans_update", "sizes", sizes, heads, clusters);
  for (int64_t h = 0; h < heads; ++h) {
    update_centroids(floats(points, h * count * dim, count * dim), count, dim,
                     {assignment.as<const int32_t>() + h * count, size_t(count)},
                     {centroids.as<float>() + h * clusters * dim, size_t(clusters * dim)}, clusters,
                     {sizes.as<int32_t>() + h * clusters, size_t(clusters)});
  }
}

void CpuBackend::kmeans_order(TensorView order, TensorView assignment, TensorView sizes) {
  cpu::require(assignment.rank == 2 && sizes.rank == 2, "kmeans_order", "assignment and sizes are [H, N], [H, C]");
  const int64_t heads = assignment.dim(0), count = assignment.dim(1), clusters = sizes.dim(1);
  check_i32("kmeans_order", "assignment", assignment, heads, count);
  check_i32("kmeans_order", "sizes", sizes, heads, clusters);
  check_i32("kmeans_order", "order", order, heads, count);
  for (int64_t h = 0; h < heads; ++h) {
    cluster_order({assignment.as<const int32_t>() + h * count, size_t(count)}, count,
                  {sizes.as<const int32_t>() + h * clusters, size_t(clusters)}, clusters,
                  {order.as<int32_t>() + h * count, size_t(count)});
  }
}

void CpuBackend::score_units(TensorView q, std::span<const UnitRow> rows, const UnitScoring& scoring,
                             float gate_threshold) {
  const char* op = "score_units";
  cpu::require_f32(q, op, "q");
  cpu::require(q.rank == 3, op, "q must be [B, Hq, D], got " + q.describe());
  const int64_t batch = q.dim(0), heads = q.dim(1), dim = q.dim(2), group = scoring.group;
  cpu::require(group > 0 && heads % group == 0, op, "the group must divide the query heads");
  std::vector<float> per_head;
  for (const UnitRow& row : rows) {
    if (!row_active(row, gate_threshold)) continue;
    const int64_t units = row.units;
    cpu::require(row.query_row >= 0 && row.query_row < batch && row.kv_head >= 0 &&
                     (row.kv_head + 1) * group <= heads && units >= 0,
                 op, "a row outside q");
    if (units == 0) continue;
    cpu::require(row.scores && row.lengths, op, "a row without scores or lengths");
    std::span<const float> queries(q.as<const float>() + (row.query_row * heads + row.kv_head * group) * dim,
                                   size_t(group * dim));
    per_head.resize(size_t(group * units));
    switch (scoring.bound) {
      case UnitBound::dot:
        cpu::require(row.keys != nullptr, op, "dot scores need keys");
        dot_scores(queries, group, {row.keys, size_t(units * dim)}, units, dim, per_head);
        break;
      case UnitBound::box:
        cpu::require(row.lower && row.upper, op, "box bounds need lower and upper");
        box_upper_bounds(queries, group, {row.lower, size_t(units * dim)}, {row.upper, size_t(units * dim)}, units,
                         dim, per_head);
        break;
      case UnitBound::sphere:
        cpu::require(row.keys && row.radii, op, "sphere bounds need centres and radii");
        sphere_upper_bounds(queries, group, {row.keys, size_t(units * dim)}, {row.radii, size_t(units)}, units, dim,
                            per_head);
        break;
    }
    // A unit of no tokens (an empty cluster) takes no part, not even in a softmax's sum.
    for (int64_t u = 0; u < units; ++u) {
      if (row.lengths[u] > 0) continue;
      for (int64_t g = 0; g < group; ++g) per_head[size_t(g * units + u)] = -INFINITY;
    }
    std::span<float> scores(row.scores, size_t(units));
    reduce_over_group(per_head, group, units, scoring.reduction, scoring.scale, scores);
    for (int64_t u = 0; u < units; ++u) {
      if (row.lengths[u] <= 0) scores[u] = -INFINITY;
    }
  }
}

void CpuBackend::budget_fill(std::span<const UnitRow> rows, float gate_threshold) {
  const char* op = "budget_fill";
  std::vector<int64_t> lengths;
  for (const UnitRow& row : rows) {
    cpu::require(row.chosen_count != nullptr, op, "a row without chosen_count");
    if (!row_active(row, gate_threshold)) {
      row.chosen_count[0] = -1;
      row.chosen_count[1] = 0;
      continue;
    }
    cpu::require(row.units >= 0 && row.budget >= 0, op, "a row with negative units or budget");
    cpu::require(row.units == 0 || (row.scores && row.lengths && row.chosen && row.chosen_scores), op,
                 "a row without scores, lengths or room for its choice");
    lengths.assign(row.lengths, row.lengths + row.units);
    BudgetFill fill = louiskv::budget_fill({row.scores, size_t(row.units)}, lengths, row.budget, 0);
    for (size_t i = 0; i < fill.units.size(); ++i) {
      row.chosen[i] = fill.units[i];
      row.chosen_scores[i] = row.scores[fill.units[i]];
    }
    row.chosen_count[0] = int32_t(fill.units.size());
    row.chosen_count[1] = int32_t(fill.tokens);
  }
}

void CpuBackend::query_cosine(TensorView similarity, TensorView q, std::span<void* const> previous) {
  const char* op = "query_cosine";
  cpu::require_f32(q, op, "q");
  cpu::require_f32(similarity, op, "similarity");
  cpu::require(q.rank == 3 && similarity.numel() == q.dim(0) && int64_t(previous.size()) == q.dim(0), op,
               "q [B, Hq, D], similarity [B] and previous (B rows) disagree");
  const int64_t heads = q.dim(1), dim = q.dim(2);
  const size_t row = size_t(heads * dim);
  for (size_t b = 0; b < previous.size(); ++b) {
    cpu::require(previous[b] != nullptr, op, "a null previous row");
    std::span<const float> current(q.as<const float>() + b * row, row);
    auto* stored = static_cast<float*>(previous[b]);
    similarity.as<float>()[b] = float(mean_query_cosine(current, {stored, row}, heads, dim));
    std::copy(current.begin(), current.end(), stored);
  }
}

}  // namespace louiskv
