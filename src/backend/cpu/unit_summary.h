// What a unit carries besides its tokens (DESIGN.md section 3): its mean key (LouisKV's and
// ClusterKV's score key), its per-channel key box (Quest, ArkVale's box digest) and a bounding
// sphere (ArkVale's sphere digest). Plain functions over the unit's fp32 keys [length, dim]: the
// cpu backend's summarize_units runs them unit by unit.
#pragma once

#include <cstdint>
#include <span>

namespace louiskv {

// mean[i] = average of keys[t, i] over the unit's tokens.
void mean_key(std::span<const float> keys, int64_t length, int64_t dim, std::span<float> mean);

// lower[i] / upper[i] = smallest / largest keys[t, i].
void key_box(std::span<const float> keys, int64_t length, int64_t dim, std::span<float> lower,
             std::span<float> upper);

// The largest distance from `center` to a key of the unit: with it, the ball (center, radius)
// holds every key, which is what makes q.center + |q| * radius an upper bound of q.k.
float bounding_radius(std::span<const float> keys, int64_t length, int64_t dim,
                      std::span<const float> center);

}  // namespace louiskv
