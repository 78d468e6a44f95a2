#include "model/model.h"

#include <omp.h>

#include <random>
#include <string>

#include "io/safetensors.h"

namespace louiskv {
namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

// Binds one tensor of the files, checking it against the shape the config implies.
class WeightBinder {
 public:
  WeightBinder(const WeightFiles& files, Backend& backend, std::vector<Buffer>& storage, size_t& bytes)
      : files_(files), backend_(backend), storage_(storage), bytes_(bytes) {}

  TensorView required(const std::string& name, std::vector<int64_t> shape) {
    return bind(files_.get(name), std::move(shape));
  }
  TensorView optional(const std::string& name, std::vector<int64_t> shape) {
    const TensorInfo* info = files_.find(name);
    return info ? bind(*info, std::move(shape)) : TensorView{};
  }

 private:
  TensorView bind(const TensorInfo& info, std::vector<int64_t> shape) {
    if (info.shape != shape) {
      throw_error(ErrorKind::invalid_input, info.file + ": tensor '" + info.name + "' has shape " + shape_text(info.shape) +
                                                " but config.json implies " + shape_text(shape) +
                                                " (config and weights from different models?)");
    }
    if (info.dtype == DType::i32) {
      throw_error(ErrorKind::unsupported, info.file + ": tensor '" + info.name + "' has dtype i32; weights must be f32, f16 or bf16");
    }
    TensorView view(const_cast<void*>(info.data), info.dtype, Device::cpu, {});
    view.rank = int(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) view.shape[i] = shape[i];
    bytes_ += view.nbytes();
    return backend_.prepare_weight(view, storage_);
  }

  const WeightFiles& files_;
  Backend& backend_;
  std::vector<Buffer>& storage_;
  size_t& bytes_;
};

// Every tensor a config implies, in a fixed order: the loaders of real and random weights agree
// on names and shapes because both walk this list.
template <class Bind>
ModelWeights bind_all(const ModelConfig& config, Bind&& bind) {
  const int64_t hidden = config.hidden_size, head_dim = config.head_dim;
  const int64_t q_out = config.num_heads * head_dim, kv_out = config.num_kv_heads * head_dim;
  const int64_t intermediate = config.intermediate_size;
  ModelWeights weights;
  weights.embed_tokens = bind("model.embed_tokens.weight", {config.vocab_size, hidden});
  weights.final_norm = bind("model.norm.weight", {hidden});
  weights.lm_head = config.tie_word_embeddings ? weights.embed_tokens : bind("lm_head.weight", {config.vocab_size, hidden});
  for (int64_t l = 0; l < config.num_layers; ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    LayerWeights layer;
    layer.attention_norm = bind(prefix + "input_layernorm.weight", {hidden});
    layer.q_proj = bind(prefix + "self_attn.q_proj.weight", {q_out, hidden});
    layer.k_proj = bind(prefix + "self_attn.k_proj.weight", {kv_out, hidden});
    layer.v_proj = bind(prefix + "self_attn.v_proj.weight", {kv_out, hidden});
    layer.o_proj = bind(prefix + "self_attn.o_proj.weight", {hidden, q_out});
    if (config.qkv_bias) {
      layer.q_bias = bind(prefix + "self_attn.q_proj.bias", {q_out});
      layer.k_bias = bind(prefix + "self_attn.k_proj.bias", {kv_out});
      layer.v_bias = bind(prefix + "self_attn.v_proj.bias", {kv_out});
    }
    if (config.output_bias) layer.o_bias = bind(prefix + "self_attn.o_proj.bias", {hidden});
    if (config.qk_norm) {
      layer.q_norm = bind(prefix + "self_attn.q_norm.weight", {head_dim});
      layer.k_norm = bind(prefix + "self_attn.k_norm.weight", {head_dim});
    }
    layer.mlp_norm = bind(prefix + "post_attention_layernorm.weight", {hidden});
    layer.gate_proj = bind(prefix + "mlp.gate_proj.weight", {intermediate, hidden});
    layer.up_proj = bind(prefix + "mlp.up_proj.weight", {intermediate, hidden});
    layer.down_proj = bind(prefix + "mlp.down_proj.weight", {hidden, intermediate});
    if (config.mlp_bias) {
      layer.gate_bias = bind(prefix + "mlp.gate_proj.bias", {intermediate});
      layer.up_bias = bind(prefix + "mlp.up_proj.bias", {intermediate});
      layer.down_bias = bind(prefix + "mlp.down_proj.bias", {hidden});
    }
    weights.layers.push_back(layer);
  }
  return weights;
}

}  // namespace

Model::~Model() = default;

std::unique_ptr<Model> Model::load(const std::filesystem::path& model_dir, Backend& backend) {
  std::unique_ptr<Model> model(new Model());
  model->config_ = load_model_config(model_dir);
  model->files_ = std::make_unique<WeightFiles>(model_dir);
  WeightBinder binder(*model->files_, backend, model->storage_, model->weight_bytes_);
  model->weights_ = bind_all(model->config_, [&](const std::string& name, std::vector<int64_t> shape) {
    return binder.required(name, std::move(shape));
  });
  model->weight_dtype_ = model->weights_.embed_tokens.dtype;
  model->prepare_rope(backend);
  return model;
}

std::unique_ptr<Model> Model::random(const ModelConfig& config, Backend& backend, uint64_t seed) {
  std::unique_ptr<Model> model(new Model());
  model->config_ = config;
  uint64_t tensor_index = 0;
  model->weights_ = bind_all(config, [&](const std::string& name, std::vector<int64_t> shape) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    auto& host = model->host_storage_.emplace_back(static_cast<size_t>(count));
    const bool is_norm = name.find("norm") != std::string::npos;
    // Norm weights near 1 and projections ~N(0, 0.02) keep activations in range through the
    // layers, as an initialised model's are; each tensor gets its own stream from the seed.
    const uint64_t tensor_seed = seed * 1000003ull + tensor_index++;
#pragma omp parallel
    {
      const int threads = omp_get_num_threads(), thread = omp_get_thread_num();
      std::mt19937_64 generator(tensor_seed * 131ull + uint64_t(thread));
      std::normal_distribution<float> normal(0.0f, 0.02f);
      for (int64_t i = thread; i < count; i += threads) {
        host[size_t(i)] = f32_to_bf16(is_norm ? 1.0f + normal(generator) : normal(generator));
      }
    }
    TensorView view(host.data(), DType::bf16, Device::cpu, {});
    view.rank = int(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) view.shape[i] = shape[i];
    model->weight_bytes_ += view.nbytes();
    return backend.prepare_weight(view, model->storage_);
  });
  if (backend.device() != Device::cpu) model->host_storage_.clear();  // uploaded; the host copy is no longer needed
  model->weight_dtype_ = DType::bf16;
  model->prepare_rope(backend);
  return model;
}

void Model::prepare_rope(Backend& backend) {
  std::vector<float> frequencies = rope_inverse_frequencies(config_);
  const int64_t half = int64_t(frequencies.size());
  inverse_frequencies_ = backend.allocate(frequencies.size() * sizeof(float));
  inverse_frequencies_view_ = inverse_frequencies_.view(DType::f32, {half});
  backend.copy(inverse_frequencies_view_, TensorView(frequencies.data(), DType::f32, Device::cpu, {half}));
  backend.synchronize();
}

size_t model_weight_bytes(const ModelConfig& config, DType dtype) {
  size_t elements = 0;
  bind_all(config, [&](const std::string&, std::vector<int64_t> shape) {
    size_t count = 1;
    for (int64_t d : shape) count *= size_t(d);
    elements += count;
    return TensorView{};
  });
  return elements * dtype_size(dtype);
}

}  // namespace louiskv
