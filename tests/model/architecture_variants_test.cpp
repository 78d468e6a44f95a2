// The decoder's variants against a naive forward pass written here in double precision, on small
// random-weight models: Llama with llama3 RoPE scaling, Qwen2 with q/k/v biases, Qwen3 with
// per-head q/k RMSNorm. Also: prefill in chunks and token-by-token decode give the same logits.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kv/kv_policy.h"
#include "model/decoder.h"

namespace louiskv {
namespace {

ModelConfig small_config(const std::string& architecture) {
  nlohmann::json document = {{"architectures", {architecture}},
                             {"hidden_size", 64},
                             {"intermediate_size", 96},
                             {"num_hidden_layers", 2},
                             {"num_attention_heads", 4},
                             {"num_key_value_heads", 2},
                             {"head_dim", 16},
                             {"vocab_size", 50},
                             {"max_position_embeddings", 4096},
                             {"rms_norm_eps", 1e-6},
                             {"tie_word_embeddings", architecture == "Qwen3ForCausalLM"}};
  if (architecture == "LlamaForCausalLM") {
    document["rope_theta"] = 500000.0;
    document["rope_scaling"] = {{"rope_type", "llama3"},
                                {"factor", 8.0},
                                {"low_freq_factor", 1.0},
                                {"high_freq_factor", 4.0},
                                {"original_max_position_embeddings", 64}};
  } else {
    document["rope_theta"] = 10000.0;
  }
  return parse_model_config(document, "config.json");
}

using Matrix = std::vector<double>;

Matrix read(const TensorView& view) {
  Matrix values(size_t(view.numel()));
  for (size_t i = 0; i < values.size(); ++i) values[i] = load_as_f32(view.data, view.dtype, i);
  return values;
}

// y[n] = sum_k W[n, k] x[k] (+ b[n])
Matrix linear(const TensorView& weight, const Matrix& x, const TensorView* bias) {
  const Matrix w = read(weight);
  const size_t n = size_t(weight.dim(0)), k = size_t(weight.dim(1));
  Matrix y(n, 0.0);
  for (size_t r = 0; r < n; ++r) {
    for (size_t i = 0; i < k; ++i) y[r] += w[r * k + i] * x[i];
  }
  if (bias && !bias->empty()) {
    const Matrix b = read(*bias);
    for (size_t r = 0; r < n; ++r) y[r] += b[r];
  }
  return y;
}

void rms_norm_in_place(double* x, size_t width, const Matrix& gamma, double eps) {
  double squares = 0;
  for (size_t i = 0; i < width; ++i) squares += x[i] * x[i];
  const double inverse = 1.0 / std::sqrt(squares / double(width) + eps);
  for (size_t i = 0; i < width; ++i) x[i] = gamma[i] * x[i] * inverse;
}

void rope_in_place(double* head, size_t dim, int64_t position, const std::vector<float>& frequencies) {
  for (size_t i = 0; i < dim / 2; ++i) {
    const double angle = double(float(position) * frequencies[i]);
    const double a = head[i], b = head[i + dim / 2];
    head[i] = a * std::cos(angle) - b * std::sin(angle);
    head[i + dim / 2] = b * std::cos(angle) + a * std::sin(angle);
  }
}

// Logits [T, vocab] of the whole sequence, straight from the weights.
std::vector<Matrix> naive_forward(const Model& model, const std::vector<int32_t>& ids) {
  const ModelConfig& c = model.config();
  const ModelWeights& w = model.weights();
  const size_t hidden = size_t(c.hidden_size), dim = size_t(c.head_dim), heads = size_t(c.num_heads);
  const size_t kv_heads = size_t(c.num_kv_heads), group = heads / kv_heads, tokens = ids.size();
  const auto frequencies = rope_inverse_frequencies(c);
  const Matrix embedding = read(w.embed_tokens);
  std::vector<Matrix> x(tokens);
  for (size_t t = 0; t < tokens; ++t) x[t] = Matrix(embedding.begin() + ptrdiff_t(size_t(ids[t]) * hidden),
                                                    embedding.begin() + ptrdiff_t(size_t(ids[t] + 1) * hidden));
  for (const LayerWeights& layer : w.layers) {
    std::vector<Matrix> q(tokens), k(tokens), v(tokens);
    for (size_t t = 0; t < tokens; ++t) {
      Matrix normed = x[t];
      rms_norm_in_place(normed.data(), hidden, read(layer.attention_norm), c.rms_norm_eps);
      q[t] = linear(layer.q_proj, normed, &layer.q_bias);
      k[t] = linear(layer.k_proj, normed, &layer.k_bias);
      v[t] = linear(layer.v_proj, normed, &layer.v_bias);
      for (size_t h = 0; h < heads; ++h) {
        if (c.qk_norm) rms_norm_in_place(q[t].data() + h * dim, dim, read(layer.q_norm), c.rms_norm_eps);
        rope_in_place(q[t].data() + h * dim, dim, int64_t(t), frequencies);
      }
      for (size_t h = 0; h < kv_heads; ++h) {
        if (c.qk_norm) rms_norm_in_place(k[t].data() + h * dim, dim, read(layer.k_norm), c.rms_norm_eps);
        rope_in_place(k[t].data() + h * dim, dim, int64_t(t), frequencies);
      }
    }
    for (size_t t = 0; t < tokens; ++t) {
      Matrix attention(heads * dim, 0.0);
      for (size_t h = 0; h < heads; ++h) {
        const size_t kv = h / group;
        std::vector<double> scores(t + 1);
        double maximum = -1e300, sum = 0;
        for (size_t j = 0; j <= t; ++j) {
          double s = 0;
          for (size_t i = 0; i < dim; ++i) s += q[t][h * dim + i] * k[j][kv * dim + i];
          scores[j] = s / std::sqrt(double(dim));
          maximum = std::max(maximum, scores[j]);
        }
        for (auto& s : scores) sum += (s = std::exp(s - maximum));
        for (size_t j = 0; j <= t; ++j) {
          for (size_t i = 0; i < dim; ++i) attention[h * dim + i] += scores[j] / sum * v[j][kv * dim + i];
        }
      }
      Matrix projected = linear(layer.o_proj, attention, &layer.o_bias);
      for (size_t i = 0; i < hidden; ++i) x[t][i] += projected[i];
      Matrix normed = x[t];
      rms_norm_in_place(normed.data(), hidden, read(layer.mlp_norm), c.rms_norm_eps);
      Matrix gate = linear(layer.gate_proj, normed, nullptr), up = linear(layer.up_proj, normed, nullptr);
      for (size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
      Matrix down = linear(layer.down_proj, gate, nullptr);
      for (size_t i = 0; i < hidden; ++i) x[t][i] += down[i];
    }
  }
  std::vector<Matrix> logits(tokens);
  for (size_t t = 0; t < tokens; ++t) {
    rms_norm_in_place(x[t].data(), hidden, read(w.final_norm), c.rms_norm_eps);
    logits[t] = linear(w.lm_head, x[t], nullptr);
  }
  return logits;
}

class ArchitectureVariants : public ::testing::TestWithParam<std::string> {};

TEST_P(ArchitectureVariants, PrefillAndDecodeMatchTheNaiveForwardPass) {
  const ModelConfig config = small_config(GetParam());
  EXPECT_EQ(config.qkv_bias, GetParam() == "Qwen2ForCausalLM");
  EXPECT_EQ(config.qk_norm, GetParam() == "Qwen3ForCausalLM");
  auto backend = make_cpu_backend(2);
  auto model = Model::random(config, *backend, 11);
  // With these seeded weights, leaving out Qwen2's k bias or Qwen3's q/k norm moves the logits
  // by far more than the tolerance (both were checked to fail this test).
  std::vector<int32_t> ids;
  for (int i = 0; i < 37; ++i) ids.push_back((i * 17 + 3) % int(config.vocab_size));
  const auto expected = naive_forward(*model, ids);

  const KvShape shape{config.num_layers, config.num_heads, config.num_kv_heads, config.head_dim};
  const int64_t prompt = 29;  // prefill 29 tokens in chunks of 8, then decode the rest one by one
  Decoder decoder(*model, *backend, 1, 8);
  auto policy = make_kv_policy(KvConfig{}, shape, *backend);
  policy->add_sequence(0, int64_t(ids.size()));
  std::vector<std::vector<float>> logits;
  decoder.prefill(0, std::span(ids.data(), size_t(prompt)), *policy, 0, [&](int64_t, const float* rows, int64_t count) {
    for (int64_t r = 0; r < count; ++r) logits.emplace_back(rows + r * config.vocab_size, rows + (r + 1) * config.vocab_size);
  });
  for (int64_t position = prompt; position < int64_t(ids.size()); ++position) {
    std::vector<float> row(size_t(config.vocab_size));
    const SequenceId batch[1] = {0};
    const int32_t token[1] = {ids[size_t(position)]};
    const int64_t at[1] = {position};
    decoder.decode(batch, token, at, *policy, row.data());
    logits.push_back(row);
  }
  ASSERT_EQ(logits.size(), expected.size());
  double worst = 0, spread = 0;
  for (size_t t = 0; t < logits.size(); ++t) {
    for (size_t i = 0; i < logits[t].size(); ++i) {
      worst = std::max(worst, std::abs(logits[t][i] - expected[t][i]));
      spread = std::max(spread, std::abs(expected[t][i]));
    }
  }
  EXPECT_GT(spread, 1e-3) << "logits too small to tell variants apart";
  EXPECT_LT(worst, 1e-4 * std::max(1.0, spread)) << "largest logit difference; largest logit " << spread;
}

INSTANTIATE_TEST_SUITE_P(Decoder, ArchitectureVariants,
                         ::testing::Values("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"));

}  // namespace
}  // namespace louiskv
