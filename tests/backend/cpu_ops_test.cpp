// The CPU backend against closed forms computed here in double precision, on random inputs.
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "backend/backend.h"

namespace louiskv {
namespace {

std::vector<float> random_vector(size_t n, std::mt19937& generator, float scale = 1.0f) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(n);
  for (auto& value : values) value = normal(generator);
  return values;
}

TensorView host(std::vector<float>& values, std::initializer_list<int64_t> dims) {
  return TensorView(values.data(), DType::f32, Device::cpu, dims);
}

double max_abs_difference(const std::vector<float>& a, const std::vector<double>& b) {
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - b[i]));
  return worst;
}

class CpuOps : public ::testing::Test {
 protected:
  std::unique_ptr<Backend> backend = make_cpu_backend(2);
  std::mt19937 generator{1234};
};

TEST_F(CpuOps, MatmulMatchesDoubleReferenceForEveryWeightDtypeAndPath) {
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    for (int64_t tokens : {1, 3, 17}) {  // GEMV path below 8 rows, sgemm path above
      const int64_t n = 37, k = 300;
      auto input = random_vector(size_t(tokens * k), generator);
      auto weight_f32 = random_vector(size_t(n * k), generator, 0.1f);
      auto bias_f32 = random_vector(size_t(n), generator);
      std::vector<uint16_t> weight_bits(size_t(n * k));
      for (size_t i = 0; i < weight_bits.size(); ++i) {
        if (dtype == DType::bf16) weight_bits[i] = f32_to_bf16(weight_f32[i]);
        if (dtype == DType::f16) weight_bits[i] = f32_to_f16(weight_f32[i]);
        if (dtype != DType::f32) weight_f32[i] = load_as_f32(weight_bits.data(), dtype, i);
      }
      void* weight_data = dtype == DType::f32 ? static_cast<void*>(weight_f32.data()) : weight_bits.data();
      TensorView weight(weight_data, dtype, Device::cpu, {n, k});
      TensorView bias = host(bias_f32, {n});
      std::vector<float> out(size_t(tokens * n), std::nanf(""));
      backend->matmul(host(out, {tokens, n}), host(input, {tokens, k}), weight, &bias);
      std::vector<double> expected(out.size());
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t j = 0; j < n; ++j) {
          double sum = bias_f32[size_t(j)];
          for (int64_t i = 0; i < k; ++i) sum += double(input[size_t(t * k + i)]) * weight_f32[size_t(j * k + i)];
          expected[size_t(t * n + j)] = sum;
        }
      }
      EXPECT_LT(max_abs_difference(out, expected), 1e-4) << dtype_name(dtype) << " tokens " << tokens;
    }
  }
}

// matmul_parts is one product per part of the same input, each with its own bias or none.
TEST_F(CpuOps, MatmulPartsMatchOneProductPerPart) {
  const int64_t tokens = 3, k = 96;
  const int64_t rows[] = {40, 16, 7};
  auto input = random_vector(size_t(tokens * k), generator);
  std::vector<std::vector<float>> weights, biases, outs;
  for (int64_t n : rows) {
    weights.push_back(random_vector(size_t(n * k), generator, 0.1f));
    biases.push_back(random_vector(size_t(n), generator));
    outs.emplace_back(size_t(tokens * n), std::nanf(""));
  }
  std::vector<TensorView> bias_views;
  for (size_t p = 0; p < 3; ++p) bias_views.push_back(host(biases[p], {rows[p]}));
  std::vector<MatmulPart> parts;
  for (size_t p = 0; p < 3; ++p) {
    // The middle part has no bias.
    parts.push_back({host(outs[p], {tokens, rows[p]}), host(weights[p], {rows[p], k}), p == 1 ? nullptr : &bias_views[p]});
  }
  backend->matmul_parts(host(input, {tokens, k}), parts);
  for (size_t p = 0; p < 3; ++p) {
    const int64_t n = rows[p];
    std::vector<double> expected(outs[p].size());
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = p == 1 ? 0.0 : biases[p][size_t(j)];
        for (int64_t i = 0; i < k; ++i) sum += double(input[size_t(t * k + i)]) * weights[p][size_t(j * k + i)];
        expected[size_t(t * n + j)] = sum;
      }
    }
    EXPECT_LT(max_abs_difference(outs[p], expected), 1e-4) << "part " << p;
  }
}

TEST_F(CpuOps, RmsNormMatchesClosedForm) {
  const int64_t rows = 5, width = 64;
  auto input = random_vector(size_t(rows * width), generator);
  auto weight = random_vector(size_t(width), generator);
  std::vector<float> out(input.size(), std::nanf(""));
  backend->rms_norm(host(out, {rows, width}), host(input, {rows, width}), host(weight, {width}), 1e-5f);
  std::vector<double> expected(out.size());
  for (int64_t r = 0; r < rows; ++r) {
    double squares = 0;
    for (int64_t i = 0; i < width; ++i) squares += double(input[size_t(r * width + i)]) * input[size_t(r * width + i)];
    const double inverse = 1.0 / std::sqrt(squares / width + 1e-5);
    for (int64_t i = 0; i < width; ++i) expected[size_t(r * width + i)] = weight[size_t(i)] * input[size_t(r * width + i)] * inverse;
  }
  EXPECT_LT(max_abs_difference(out, expected), 1e-5);
}

TEST_F(CpuOps, RopeRotatesEachPairByPositionTimesFrequency) {
  const int64_t tokens = 4, heads = 3, dim = 8;
  auto x = random_vector(size_t(tokens * heads * dim), generator);
  const auto original = x;
  std::vector<int32_t> positions = {0, 1, 17, 4000};
  std::vector<float> frequencies = {1.0f, 0.1f, 0.01f, 0.001f};
  backend->rope(host(x, {tokens, heads, dim}), TensorView(positions.data(), DType::i32, Device::cpu, {tokens}),
                host(frequencies, {dim / 2}));
  std::vector<double> expected(x.size());
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < dim / 2; ++i) {
        const double angle = double(float(positions[size_t(t)]) * frequencies[size_t(i)]);
        const size_t a = size_t((t * heads + h) * dim + i), b = a + size_t(dim / 2);
        expected[a] = original[a] * std::cos(angle) - original[b] * std::sin(angle);
        expected[b] = original[b] * std::cos(angle) + original[a] * std::sin(angle);
      }
    }
  }
  EXPECT_LT(max_abs_difference(x, expected), 1e-5);
}

TEST_F(CpuOps, SwigluAddAndEmbeddingMatchClosedForms) {
  auto gate = random_vector(100, generator), up = random_vector(100, generator);
  std::vector<float> out(100, std::nanf(""));
  backend->swiglu(host(out, {100}), host(gate, {100}), host(up, {100}));
  std::vector<double> expected(100);
  for (size_t i = 0; i < 100; ++i) expected[i] = gate[i] / (1.0 + std::exp(-double(gate[i]))) * up[i];
  EXPECT_LT(max_abs_difference(out, expected), 1e-5);

  backend->add(host(out, {100}), host(gate, {100}), host(up, {100}));
  for (size_t i = 0; i < 100; ++i) expected[i] = double(gate[i]) + up[i];
  EXPECT_LT(max_abs_difference(out, expected), 1e-6);

  auto table = random_vector(10 * 6, generator);
  std::vector<uint16_t> table_bits(table.size());
  for (size_t i = 0; i < table.size(); ++i) table_bits[i] = f32_to_bf16(table[i]);
  std::vector<int32_t> ids = {3, 0, 9};
  std::vector<float> rows(18, std::nanf(""));
  backend->embedding(host(rows, {3, 6}), TensorView(table_bits.data(), DType::bf16, Device::cpu, {10, 6}),
                     TensorView(ids.data(), DType::i32, Device::cpu, {3}));
  for (size_t t = 0; t < 3; ++t) {
    for (size_t i = 0; i < 6; ++i) EXPECT_EQ(rows[t * 6 + i], bf16_to_f32(table_bits[size_t(ids[t]) * 6 + i]));
  }
  ids[1] = 10;
  EXPECT_THROW(backend->embedding(host(rows, {3, 6}), TensorView(table_bits.data(), DType::bf16, Device::cpu, {10, 6}),
                                  TensorView(ids.data(), DType::i32, Device::cpu, {3})),
               Error);
}

// Naive causal GQA attention in double: query t (position first + t) over keys [0, first + t].
std::vector<double> naive_attention(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                    int64_t tokens, int64_t heads, int64_t kv_heads, int64_t capacity, int64_t dim,
                                    int64_t first, float scale, std::vector<double>* lse = nullptr) {
  std::vector<double> out(size_t(tokens * heads * dim));
  const int64_t group = heads / kv_heads;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t kv = h / group, seen = first + t + 1;
      std::vector<double> scores(static_cast<size_t>(seen));
      double maximum = -1e300;
      for (int64_t j = 0; j < seen; ++j) {
        double s = 0;
        for (int64_t i = 0; i < dim; ++i) s += double(q[size_t((t * heads + h) * dim + i)]) * k[size_t((kv * capacity + j) * dim + i)];
        scores[size_t(j)] = s * scale;
        maximum = std::max(maximum, scores[size_t(j)]);
      }
      double sum = 0;
      for (auto& s : scores) sum += (s = std::exp(s - maximum));
      for (int64_t i = 0; i < dim; ++i) {
        double acc = 0;
        for (int64_t j = 0; j < seen; ++j) acc += scores[size_t(j)] * v[size_t((kv * capacity + j) * dim + i)];
        out[size_t((t * heads + h) * dim + i)] = acc / sum;
      }
      if (lse) lse->push_back(maximum + std::log(sum));
    }
  }
  return out;
}

TEST_F(CpuOps, PrefillAttentionIsCausalGqaAttentionInChunks) {
  const int64_t heads = 6, kv_heads = 2, dim = 16, capacity = 300, first = 150, tokens = 133;
  auto q = random_vector(size_t(tokens * heads * dim), generator);
  auto k = random_vector(size_t(kv_heads * capacity * dim), generator);
  auto v = random_vector(size_t(kv_heads * capacity * dim), generator);
  std::vector<float> out(q.size(), std::nanf(""));
  const float scale = 0.25f;
  backend->attention_prefill(host(out, {tokens, heads, dim}), host(q, {tokens, heads, dim}), host(k, {kv_heads, capacity, dim}),
                             host(v, {kv_heads, capacity, dim}), first, scale);
  auto expected = naive_attention(q, k, v, tokens, heads, kv_heads, capacity, dim, first, scale);
  EXPECT_LT(max_abs_difference(out, expected), 1e-5);
}

TEST_F(CpuOps, DecodeAttentionOverSplitSpansEqualsDenseAttentionAndReportsLse) {
  const int64_t batch = 2, heads = 8, kv_heads = 2, dim = 32, length = 77;
  auto q = random_vector(size_t(batch * heads * dim), generator);
  std::vector<std::vector<float>> keys, values;
  AttendedSpans spans;
  for (int64_t b = 0; b < batch; ++b) {
    keys.push_back(random_vector(size_t(kv_heads * length * dim), generator));
    values.push_back(random_vector(size_t(kv_heads * length * dim), generator));
    for (int64_t h = 0; h < kv_heads; ++h) {
      // Out-of-order pieces of lengths 1, 30 and 46: order and split must not matter.
      const float* kb = keys.back().data() + h * length * dim;
      const float* vb = values.back().data() + h * length * dim;
      spans.add(kb + 31 * dim, vb + 31 * dim, 46);
      spans.add(kb, vb, 1);
      spans.add(kb + 1 * dim, vb + 1 * dim, 30);
      spans.end_row();
    }
  }
  std::vector<float> out(q.size(), std::nanf("")), lse(size_t(batch * heads), std::nanf(""));
  TensorView lse_view = host(lse, {batch, heads});
  const float scale = 1.0f / std::sqrt(float(dim));
  backend->attention_decode(host(out, {batch, heads, dim}), host(q, {batch, heads, dim}), spans, scale, &lse_view);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<float> qb(q.begin() + b * heads * dim, q.begin() + (b + 1) * heads * dim);
    std::vector<double> expected_lse;
    auto expected = naive_attention(qb, keys[size_t(b)], values[size_t(b)], 1, heads, kv_heads, length, dim, length - 1, scale,
                                    &expected_lse);
    std::vector<float> ob(out.begin() + b * heads * dim, out.begin() + (b + 1) * heads * dim);
    EXPECT_LT(max_abs_difference(ob, expected), 1e-5);
    for (int64_t h = 0; h < heads; ++h) EXPECT_NEAR(lse[size_t(b * heads + h)], expected_lse[size_t(h)], 1e-4);
  }
}

TEST_F(CpuOps, WriteKvTransposesRowsIntoTheHeadMajorCache) {
  const int64_t kv_heads = 3, capacity = 10, dim = 4, tokens = 2;
  auto rows = random_vector(size_t(tokens * kv_heads * dim), generator);
  std::vector<float> cache(size_t(kv_heads * capacity * dim), std::nanf(""));
  backend->write_kv(host(cache, {kv_heads, capacity, dim}), host(rows, {tokens, kv_heads, dim}), 5);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < kv_heads; ++h)
      for (int64_t i = 0; i < dim; ++i)
        EXPECT_EQ(cache[size_t((h * capacity + 5 + t) * dim + i)], rows[size_t((t * kv_heads + h) * dim + i)]);
  EXPECT_THROW(backend->write_kv(host(cache, {kv_heads, capacity, dim}), host(rows, {tokens, kv_heads, dim}), 9), Error);
}

}  // namespace
}  // namespace louiskv
