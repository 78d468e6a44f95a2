// Unit scoring: how well each unit (cluster, segment, page) answers the queries of one KV head's
// group of query heads. Plain functions over fp32 host arrays: the cpu backend's score_units runs
// them row by row, and the CUDA kernel is tested against them.
//
//   queries  [group, dim]       the query heads that share one KV head
//   keys     [units, dim]       one score key per unit (centroid, sphere centre)
//   lower/upper [units, dim]    per-channel minimum/maximum key of each unit
//   scores   [group, units]     per query head; reduced to [units] over the group
#pragma once

#include <cstdint>
#include <span>

#include "backend/kv_ops.h"

namespace louiskv {

// scores[g, u] = queries[g] . keys[u]
void dot_scores(std::span<const float> queries, int64_t group, std::span<const float> keys,
                int64_t units, int64_t dim, std::span<float> scores);

// Quest's bound on q.k over a box of keys: sum_i max(q_i * lower_i, q_i * upper_i). It is >= q.k
// for every key k with lower <= k <= upper channel by channel.
void box_upper_bounds(std::span<const float> queries, int64_t group, std::span<const float> lower,
                      std::span<const float> upper, int64_t units, int64_t dim,
                      std::span<float> scores);

// ArkVale's bound on q.k over a ball of keys: q.c + |q| * r, >= q.k for every k with |k - c| <= r.
void sphere_upper_bounds(std::span<const float> queries, int64_t group,
                         std::span<const float> centers, std::span<const float> radii,
                         int64_t units, int64_t dim, std::span<float> scores);

// reduced[u] from scores [group, units]; `scale` is used by softmax_mean only.
void reduce_over_group(std::span<const float> scores, int64_t group, int64_t units,
                       GroupReduction reduction, float scale, std::span<float> reduced);

}  // namespace louiskv
