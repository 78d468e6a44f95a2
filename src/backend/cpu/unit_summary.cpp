#include "backend/cpu/unit_summary.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/error.h"

namespace louiskv {
namespace {

void check_keys(std::span<const float> keys, int64_t length, int64_t dim) {
  LOUISKV_CHECK(length > 0 && dim > 0, "a unit summary needs at least one key");
  LOUISKV_CHECK(int64_t(keys.size()) >= length * dim, "unit summary keys too short");
}

}  // namespace

void mean_key(std::span<const float> keys, int64_t length, int64_t dim, std::span<float> mean) {
  check_keys(keys, length, dim);
  LOUISKV_CHECK(int64_t(mean.size()) >= dim, "unit summary mean too short");
  std::vector<double> sum(size_t(dim), 0.0);
  for (int64_t t = 0; t < length; ++t) {
    for (int64_t i = 0; i < dim; ++i) sum[i] += keys[t * dim + i];
  }
  for (int64_t i = 0; i < dim; ++i) mean[i] = float(sum[i] / double(length));
}

void key_box(std::span<const float> keys, int64_t length, int64_t dim, std::span<float> lower,
             std::span<float> upper) {
  check_keys(keys, length, dim);
  LOUISKV_CHECK(int64_t(lower.size()) >= dim && int64_t(upper.size()) >= dim,
                "unit summary box too short");
  std::copy_n(keys.begin(), dim, lower.begin());
  std::copy_n(keys.begin(), dim, upper.begin());
  for (int64_t t = 1; t < length; ++t) {
    for (int64_t i = 0; i < dim; ++i) {
      lower[i] = std::min(lower[i], keys[t * dim + i]);
      upper[i] = std::max(upper[i], keys[t * dim + i]);
    }
  }
}

float bounding_radius(std::span<const float> keys, int64_t length, int64_t dim,
                      std::span<const float> center) {
  check_keys(keys, length, dim);
  LOUISKV_CHECK(int64_t(center.size()) >= dim, "unit summary center too short");
  double largest = 0.0;
  for (int64_t t = 0; t < length; ++t) {
    double squared = 0.0;
    for (int64_t i = 0; i < dim; ++i) {
      double difference = double(keys[t * dim + i]) - double(center[i]);
      squared += difference * difference;
    }
    largest = std::max(largest, squared);
  }
  // Rounded up to the next float, so that fp32 rounding never leaves a key outside the ball.
  float radius = float(std::sqrt(largest));
  return std::nextafter(radius, INFINITY);
}

}  // namespace louiskv
