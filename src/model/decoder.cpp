#include "model/decoder.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace louiskv {

// Activation buffers sized once for the larger of a prefill chunk and a decode batch.
struct Decoder::Scratch {
  Buffer residual;  // [max_batch, hidden]: the decode step's residual stream
  Buffer normed, q, k, v, attention, projected, gate, up, logits, positions, ids, lse;
  std::vector<float> host_logits;
};

namespace {
const TensorView* bias_or_null(const TensorView& bias) { return bias.empty() ? nullptr : &bias; }
}  // namespace

Decoder::Decoder(const Model& model, Backend& backend, int64_t max_batch, int64_t prefill_chunk)
    : model_(model), backend_(backend), max_batch_(max_batch), chunk_(prefill_chunk), scratch_(std::make_unique<Scratch>()) {
  const ModelConfig& c = model.config();
  const int64_t rows = std::max(max_batch, prefill_chunk);
  const size_t act = dtype_size(backend.activation_dtype());
  auto make = [&](int64_t elements, size_t element_bytes) { return backend.allocate(size_t(elements) * element_bytes); };
  scratch_->residual = make(max_batch * c.hidden_size, act);
  scratch_->normed = make(rows * c.hidden_size, act);
  scratch_->q = make(rows * c.num_heads * c.head_dim, act);
  scratch_->k = make(rows * c.num_kv_heads * c.head_dim, act);
  scratch_->v = make(rows * c.num_kv_heads * c.head_dim, act);
  scratch_->attention = make(rows * c.num_heads * c.head_dim, act);
  scratch_->projected = make(rows * c.hidden_size, act);
  scratch_->gate = make(rows * c.intermediate_size, act);
  scratch_->up = make(rows * c.intermediate_size, act);
  scratch_->logits = make(rows * c.vocab_size, sizeof(float));
  scratch_->positions = make(rows, sizeof(int32_t));
  scratch_->ids = make(rows, sizeof(int32_t));
  scratch_->lse = make(max_batch * c.num_heads, sizeof(float));
}

Decoder::~Decoder() = default;

void Decoder::project_qkv(const LayerWeights& layer, TensorView normed, TensorView q, TensorView k, TensorView v,
                          TensorView positions, int layer_index) {
  const ModelConfig& c = model_.config();
  const int64_t rows = normed.dim(0);
  // q: [rows, heads * head_dim], k and v: [rows, kv_heads * head_dim]
  const MatmulPart qkv[] = {{q, layer.q_proj, bias_or_null(layer.q_bias)},
                            {k, layer.k_proj, bias_or_null(layer.k_bias)},
                            {v, layer.v_proj, bias_or_null(layer.v_bias)}};
  backend_.matmul_parts(normed, qkv);
  TensorView q_heads = q.reshaped({rows, c.num_heads, c.head_dim});
  TensorView k_heads = k.reshaped({rows, c.num_kv_heads, c.head_dim});
  if (c.qk_norm) {  // Qwen3: RMSNorm over each head before RoPE
    TensorView q_rows = q.reshaped({rows * c.num_heads, c.head_dim});
    TensorView k_rows = k.reshaped({rows * c.num_kv_heads, c.head_dim});
    backend_.rms_norm(q_rows, q_rows, layer.q_norm, float(c.rms_norm_eps));
    backend_.rms_norm(k_rows, k_rows, layer.k_norm, float(c.rms_norm_eps));
  }
  backend_.rope(q_heads, positions, model_.inverse_frequencies());
  backend_.rope(k_heads, positions, model_.inverse_frequencies());
  emit("self_attn.q_proj", layer_index, q_heads);
  emit("self_attn.k_proj", layer_index, k_heads);
}

void Decoder::attention_output_and_mlp(const LayerWeights& layer, TensorView x, TensorView attention, int64_t rows,
                                       int layer_index) {
  const ModelConfig& c = model_.config();
  const DType act = backend_.activation_dtype();
  TensorView projected = scratch_->projected.view(act, {rows, c.hidden_size});
  TensorView normed = scratch_->normed.view(act, {rows, c.hidden_size});
  TensorView gate = scratch_->gate.view(act, {rows, c.intermediate_size});
  TensorView up = scratch_->up.view(act, {rows, c.intermediate_size});
  // x: [rows, hidden] residual stream
  backend_.matmul(projected, attention, layer.o_proj, bias_or_null(layer.o_bias));
  backend_.add(x, x, projected);
  backend_.rms_norm(normed, x, layer.mlp_norm, float(c.rms_norm_eps));
  const MatmulPart gate_up[] = {{gate, layer.gate_proj, bias_or_null(layer.gate_bias)},
                                {up, layer.up_proj, bias_or_null(layer.up_bias)}};
  backend_.matmul_parts(normed, gate_up);
  backend_.swiglu(gate, gate, up);
  backend_.matmul(projected, gate, layer.down_proj, bias_or_null(layer.down_bias));
  backend_.add(x, x, projected);
  emit("hidden", layer_index, x);
}

void Decoder::compute_logits(TensorView x, int64_t rows, float* host_logits) {
  const ModelConfig& c = model_.config();
  TensorView normed = scratch_->normed.view(backend_.activation_dtype(), {rows, c.hidden_size});
  TensorView logits = scratch_->logits.view(DType::f32, {rows, c.vocab_size});
  backend_.rms_norm(normed, x, model_.weights().final_norm, float(c.rms_norm_eps));
  backend_.matmul(logits, normed, model_.weights().lm_head, nullptr);
  backend_.copy(TensorView(host_logits, DType::f32, Device::cpu, {rows, c.vocab_size}), logits);
  backend_.synchronize();
}

void Decoder::prefill(SequenceId id, std::span<const int32_t> tokens, KvPolicy& kv, int64_t logits_from,
                      const LogitsSink& sink) {
  const ModelConfig& c = model_.config();
  const DType act = backend_.activation_dtype();
  const int64_t total = int64_t(tokens.size());
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  LOUISKV_CHECK(total > 0, "empty prompt");

  // The whole prompt's residual stream stays resident, since prefill is layer-major.
  Buffer hidden_buffer = backend_.allocate(size_t(total * c.hidden_size) * dtype_size(act));
  TensorView hidden = hidden_buffer.view(act, {total, c.hidden_size});
  std::vector<int32_t> positions(tokens.size());
  for (int64_t i = 0; i < total; ++i) positions[size_t(i)] = int32_t(i);

  for (int64_t first = 0; first < total; first += chunk_) {
    const int64_t rows = std::min(chunk_, total - first);
    TensorView ids = scratch_->ids.view(DType::i32, {rows});
    backend_.copy(ids, TensorView(const_cast<int32_t*>(tokens.data() + first), DType::i32, Device::cpu, {rows}));
    backend_.embedding(hidden.rows(first, rows), model_.weights().embed_tokens, ids);
  }

  for (int layer_index = 0; layer_index < int(c.num_layers); ++layer_index) {
    const LayerWeights& layer = model_.weights().layers[size_t(layer_index)];
    for (int64_t first = 0; first < total; first += chunk_) {
      const int64_t rows = std::min(chunk_, total - first);
      TensorView x = hidden.rows(first, rows);  // [rows, hidden]
      TensorView normed = scratch_->normed.view(act, {rows, c.hidden_size});
      TensorView q = scratch_->q.view(act, {rows, c.num_heads * c.head_dim});
      TensorView k = scratch_->k.view(act, {rows, c.num_kv_heads * c.head_dim});
      TensorView v = scratch_->v.view(act, {rows, c.num_kv_heads * c.head_dim});
      TensorView attention = scratch_->attention.view(act, {rows, c.num_heads, c.head_dim});
      TensorView chunk_positions = scratch_->positions.view(DType::i32, {rows});
      backend_.copy(chunk_positions, TensorView(positions.data() + first, DType::i32, Device::cpu, {rows}));

      backend_.rms_norm(normed, x, layer.attention_norm, float(c.rms_norm_eps));
      project_qkv(layer, normed, q, k, v, chunk_positions, layer_index);
      kv.prefill_append(id, layer_index, k.reshaped({rows, c.num_kv_heads, c.head_dim}),
                        v.reshaped({rows, c.num_kv_heads, c.head_dim}), first);
      DenseKv dense = kv.prefill_view(id, layer_index);
      backend_.attention_prefill(attention, q.reshaped({rows, c.num_heads, c.head_dim}), dense.keys, dense.values, first,
                                 scale);
      attention_output_and_mlp(layer, x, attention.reshaped({rows, c.num_heads * c.head_dim}), rows, layer_index);
    }
    kv.prefill_done(id, layer_index);
  }

  const int64_t start = std::clamp<int64_t>(logits_from, 0, total);
  std::vector<float>& host = scratch_->host_logits;
  for (int64_t first = start; first < total; first += chunk_) {
    const int64_t rows = std::min(chunk_, total - first);
    host.resize(size_t(rows * c.vocab_size));
    compute_logits(hidden.rows(first, rows), rows, host.data());
    sink(first, host.data(), rows);
  }
  backend_.synchronize();
}

void Decoder::decode(std::span<const SequenceId> batch, std::span<const int32_t> tokens,
                     std::span<const int64_t> positions, KvPolicy& kv, float* logits) {
  const ModelConfig& c = model_.config();
  const DType act = backend_.activation_dtype();
  const int64_t rows = int64_t(batch.size());
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  LOUISKV_CHECK(rows > 0 && rows <= max_batch_ && tokens.size() == batch.size() && positions.size() == batch.size(),
                "decode batch of " + std::to_string(rows) + " (max " + std::to_string(max_batch_) + ")");

  std::vector<int32_t> host_positions(batch.size());
  for (size_t b = 0; b < batch.size(); ++b) host_positions[b] = int32_t(positions[b]);
  TensorView ids = scratch_->ids.view(DType::i32, {rows});
  TensorView step_positions = scratch_->positions.view(DType::i32, {rows});
  backend_.copy(ids, TensorView(const_cast<int32_t*>(tokens.data()), DType::i32, Device::cpu, {rows}));
  backend_.copy(step_positions, TensorView(host_positions.data(), DType::i32, Device::cpu, {rows}));

  TensorView x = scratch_->residual.view(act, {rows, c.hidden_size});  // [B, hidden]
  backend_.embedding(x, model_.weights().embed_tokens, ids);

  for (int layer_index = 0; layer_index < int(c.num_layers); ++layer_index) {
    const LayerWeights& layer = model_.weights().layers[size_t(layer_index)];
    TensorView normed = scratch_->normed.view(act, {rows, c.hidden_size});
    TensorView q = scratch_->q.view(act, {rows, c.num_heads * c.head_dim});
    TensorView k = scratch_->k.view(act, {rows, c.num_kv_heads * c.head_dim});
    TensorView v = scratch_->v.view(act, {rows, c.num_kv_heads * c.head_dim});
    TensorView attention = scratch_->attention.view(act, {rows, c.num_heads, c.head_dim});
    TensorView q_heads = q.reshaped({rows, c.num_heads, c.head_dim});

    backend_.rms_norm(normed, x, layer.attention_norm, float(c.rms_norm_eps));
    project_qkv(layer, normed, q, k, v, step_positions, layer_index);
    kv.decode_append(batch, layer_index, k.reshaped({rows, c.num_kv_heads, c.head_dim}),
                     v.reshaped({rows, c.num_kv_heads, c.head_dim}));
    const AttendedSpans& spans = kv.select(batch, layer_index, q_heads);
    if (kv.wants_attention_lse()) {
      TensorView lse = scratch_->lse.view(DType::f32, {rows, c.num_heads});
      backend_.attention_decode(attention, q_heads, spans, scale, &lse);
      kv.observe_attention(batch, layer_index, q_heads, lse);
    } else {
      backend_.attention_decode(attention, q_heads, spans, scale, nullptr);
    }
    attention_output_and_mlp(layer, x, attention.reshaped({rows, c.num_heads * c.head_dim}), rows, layer_index);
  }

  compute_logits(x, rows, logits);
}

}  // namespace louiskv
