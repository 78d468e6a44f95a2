// rope_inverse_frequencies against the closed form, computed here independently in double.
#include <cmath>
#include <numbers>

#include <gtest/gtest.h>

#include "io/json_file.h"
#include "io/model_config.h"
#include "support/test_support.h"

namespace louiskv {
namespace {

ModelConfig rope_config(int64_t head_dim, double theta) {
  ModelConfig config;
  config.head_dim = head_dim;
  config.rope.theta = theta;
  return config;
}

// The shapes of Llama-3.1-8B: head_dim 128, theta 500000, factor 8 over an 8192 context.
ModelConfig llama3_config() {
  ModelConfig config = rope_config(128, 500000.0);
  config.rope.type = RopeType::llama3;
  config.rope.factor = 8.0;
  config.rope.low_freq_factor = 1.0;
  config.rope.high_freq_factor = 4.0;
  config.rope.original_max_position_embeddings = 8192;
  return config;
}

double closed_form(int64_t i, int64_t head_dim, double theta) {
  return 1.0 / std::pow(theta, double(2 * i) / double(head_dim));
}

// fp32 pow against the exact value: a few ulp, amplified by log(theta) through the exponent.
constexpr double relative_tolerance = 4e-6;

TEST(RopeInverseFrequencies, DefaultMatchesClosedForm) {
  for (const auto& [head_dim, theta] : {std::pair<int64_t, double>{64, 100000.0},
                                        {128, 500000.0},
                                        {128, 1000000.0},
                                        {96, 10000.0}}) {
    SCOPED_TRACE("head_dim " + std::to_string(head_dim) + ", theta " + std::to_string(theta));
    const auto inverse = rope_inverse_frequencies(rope_config(head_dim, theta));
    ASSERT_EQ(inverse.size(), size_t(head_dim / 2));
    EXPECT_EQ(inverse[0], 1.0f);
    for (int64_t i = 0; i < head_dim / 2; ++i) {
      const double expected = closed_form(i, head_dim, theta);
      EXPECT_NEAR(inverse[i], expected, expected * relative_tolerance) << "i = " << i;
    }
  }
}

TEST(RopeInverseFrequencies, Llama3ScalesThreeBands) {
  const ModelConfig config = llama3_config();
  const auto scaled = rope_inverse_frequencies(config);
  ASSERT_EQ(scaled.size(), 64u);

  const double factor = 8.0;
  const double low_freq_wavelength = 8192.0 / 1.0;
  const double high_freq_wavelength = 8192.0 / 4.0;
  int unchanged = 0;
  int divided = 0;
  int blended = 0;
  for (int64_t i = 0; i < 64; ++i) {
    const double base = closed_form(i, 128, 500000.0);
    const double wavelength = 2.0 * std::numbers::pi / base;
    double expected = 0.0;
    if (wavelength < high_freq_wavelength) {
      expected = base;
      ++unchanged;
    } else if (wavelength > low_freq_wavelength) {
      expected = base / factor;
      ++divided;
    } else {
      const double smooth = (8192.0 / wavelength - 1.0) / (4.0 - 1.0);
      expected = (1.0 - smooth) * base / factor + smooth * base;
      ++blended;
      // A blended value lies strictly between the two it mixes.
      EXPECT_LT(scaled[i], base * (1.0 - 1e-6)) << "i = " << i;
      EXPECT_GT(scaled[i], base / factor * (1.0 + 1e-6)) << "i = " << i;
    }
    EXPECT_NEAR(scaled[i], expected, expected * relative_tolerance) << "i = " << i;
  }
  // The Llama-3.1 shapes put entries in every band: 0..28 unchanged, 29..34 blended, 35..63
  // divided.
  EXPECT_EQ(unchanged, 29);
  EXPECT_EQ(blended, 6);
  EXPECT_EQ(divided, 29);

  // The high-frequency end is untouched, bit for bit, and the low-frequency end is divided.
  const auto plain = rope_inverse_frequencies(rope_config(128, 500000.0));
  EXPECT_EQ(scaled[0], plain[0]);
  EXPECT_EQ(scaled[28], plain[28]);
  EXPECT_FLOAT_EQ(scaled[63], plain[63] / 8.0f);
}

TEST(RopeInverseFrequencies, Llama31SharedConfig) {
  LOUISKV_REQUIRE_SHARED();
  const auto path = *testing::shared_dir() / "configs" / "llama-3.1-8b.json";
  const ModelConfig config = parse_model_config(read_json_file(path), path.string());
  EXPECT_EQ(rope_inverse_frequencies(config), rope_inverse_frequencies(llama3_config()));
}

}  // namespace
}  // namespace louiskv
