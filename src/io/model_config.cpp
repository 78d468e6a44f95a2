#include "io/model_config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "io/json_file.h"

namespace louiskv {
namespace {

using nlohmann::json;

constexpr std::string_view config_file_name = "config.json";
constexpr std::string_view generation_config_file_name = "generation_config.json";

// Reads typed fields of one JSON object; `prefix` places nested objects in messages
// ("rope_scaling.factor"). JSON null counts as absent, as transformers treats it.
class FieldReader {
 public:
  FieldReader(const json& object, std::string prefix, const std::string& source)
      : object_(object), prefix_(std::move(prefix)), source_(source) {}

  std::string field_name(std::string_view key) const { return prefix_ + std::string(key); }

  [[noreturn]] void fail(ErrorKind kind, std::string_view key, const std::string& problem) const {
    throw_error(kind, source_ + ": field '" + field_name(key) + "' " + problem);
  }

  const json* find(std::string_view key) const {
    const auto found = object_.find(key);
    if (found == object_.end() || found->is_null()) return nullptr;
    return &*found;
  }

  [[noreturn]] void missing(std::string_view key) const {
    throw_error(ErrorKind::invalid_input,
                source_ + ": required field '" + field_name(key) + "' is missing");
  }

  const json& required(std::string_view key) const {
    const json* value = find(key);
    if (value == nullptr) missing(key);
    return *value;
  }

  // Integers written as 8192.0 are accepted: they mean the same to transformers.
  std::optional<int64_t> optional_int(std::string_view key) const {
    const json* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (value->is_number_integer()) {
      if (value->is_number_unsigned() &&
          value->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) {
        fail(ErrorKind::invalid_input, key, "is too large: " + value->dump());
      }
      return value->get<int64_t>();
    }
    if (value->is_number_float()) {
      const double number = value->get<double>();
      if (std::isfinite(number) && number == std::floor(number) && std::abs(number) < 0x1p62) {
        return static_cast<int64_t>(number);
      }
    }
    fail(ErrorKind::invalid_input, key, "must be an integer, got " + value->dump());
  }

  int64_t positive_int(std::string_view key, std::optional<int64_t> fallback = std::nullopt) const {
    std::optional<int64_t> value = optional_int(key);
    if (!value) {
      if (fallback) return *fallback;
      missing(key);
    }
    if (*value <= 0) {
      fail(ErrorKind::invalid_input, key,
           "must be a positive integer, got " + std::to_string(*value));
    }
    return *value;
  }

  double positive_number(std::string_view key,
                         std::optional<double> fallback = std::nullopt) const {
    const json* value = fallback ? find(key) : &required(key);
    if (value == nullptr) return *fallback;
    if (!value->is_number() || !(value->get<double>() > 0.0) ||
        !std::isfinite(value->get<double>())) {
      fail(ErrorKind::invalid_input, key, "must be a positive number, got " + value->dump());
    }
    return value->get<double>();
  }

  bool boolean(std::string_view key, bool fallback) const {
    const json* value = find(key);
    if (value == nullptr) return fallback;
    if (!value->is_boolean()) {
      fail(ErrorKind::invalid_input, key, "must be true or false, got " + value->dump());
    }
    return value->get<bool>();
  }

  std::optional<std::string> optional_string(std::string_view key) const {
    const json* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (!value->is_string()) {
      fail(ErrorKind::invalid_input, key, "must be a string, got " + value->dump());
    }
    return value->get<std::string>();
  }

  // A token id or a list of them (eos_token_id takes both forms); empty when absent.
  std::vector<int> token_ids(std::string_view key) const {
    const json* value = find(key);
    if (value == nullptr) return {};
    std::vector<int> ids;
    const auto add = [&](const json& id) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
          id.get<int64_t>() > std::numeric_limits<int>::max()) {
        fail(ErrorKind::invalid_input, key,
             "must be a token id or a list of token ids, got " + value->dump());
      }
      ids.push_back(static_cast<int>(id.get<int64_t>()));
    };
    if (value->is_array()) {
      for (const json& id : *value) add(id);
    } else {
      add(*value);
    }
    return ids;
  }

 private:
  const json& object_;
  std::string prefix_;
  const std::string& source_;
};

std::optional<Architecture> architecture_from_class(std::string_view name) {
  if (name == "LlamaForCausalLM") return Architecture::llama;
  if (name == "Qwen2ForCausalLM") return Architecture::qwen2;
  if (name == "Qwen3ForCausalLM") return Architecture::qwen3;
  return std::nullopt;
}

std::optional<Architecture> architecture_from_model_type(std::string_view name) {
  if (name == "llama") return Architecture::llama;
  if (name == "qwen2") return Architecture::qwen2;
  if (name == "qwen3") return Architecture::qwen3;
  return std::nullopt;
}

// architectures[0] names the class transformers instantiates, so it decides; model_type is the
// fallback for configs written without it.
Architecture parse_architecture(const FieldReader& fields, const std::string& source) {
  if (const json* classes = fields.find("architectures")) {
    if (!classes->is_array() || (!classes->empty() && !(*classes)[0].is_string())) {
      fields.fail(ErrorKind::invalid_input, "architectures",
                  "must be a list of class names, got " + classes->dump());
    }
    if (!classes->empty()) {
      const auto& name = (*classes)[0].get_ref<const std::string&>();
      if (const auto architecture = architecture_from_class(name)) return *architecture;
      fields.fail(ErrorKind::unsupported, "architectures",
                  "names '" + name +
                      "'; louiskv runs LlamaForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM");
    }
  }
  if (const auto model_type = fields.optional_string("model_type")) {
    if (const auto architecture = architecture_from_model_type(*model_type)) return *architecture;
    fields.fail(ErrorKind::unsupported, "model_type",
                "is '" + *model_type + "'; louiskv runs llama, qwen2 and qwen3");
  }
  throw_error(ErrorKind::invalid_input,
              source + ": neither field 'architectures' nor 'model_type' says which model this is");
}

RopeConfig parse_rope_type_and_scaling(const FieldReader& rope_fields, RopeConfig rope) {
  // Older configs name the key `type`, newer ones `rope_type`.
  std::string_view type_key = "rope_type";
  std::optional<std::string> type = rope_fields.optional_string("rope_type");
  if (!type) {
    type = rope_fields.optional_string("type");
    type_key = "type";
  }
  if (!type || *type == "default") {
    rope.type = RopeType::standard;
    return rope;
  }
  if (*type != "llama3") {
    rope_fields.fail(ErrorKind::unsupported, type_key,
                     "is '" + *type + "'; louiskv supports the rope types 'default' and 'llama3'");
  }
  rope.type = RopeType::llama3;
  rope.factor = rope_fields.positive_number("factor");
  rope.low_freq_factor = rope_fields.positive_number("low_freq_factor");
  rope.high_freq_factor = rope_fields.positive_number("high_freq_factor");
  rope.original_max_position_embeddings =
      rope_fields.positive_int("original_max_position_embeddings");
  // The smoothing between the two bands divides by their difference.
  if (!(rope.high_freq_factor > rope.low_freq_factor)) {
    rope_fields.fail(ErrorKind::invalid_input, "high_freq_factor",
                     "(" + json(rope.high_freq_factor).dump() + ") must be greater than '" +
                         rope_fields.field_name("low_freq_factor") + "' (" +
                         json(rope.low_freq_factor).dump() + ")");
  }
  return rope;
}

// Two styles: rope_theta beside rope_scaling (null or an object), or rope_parameters holding
// rope_theta and rope_type together (transformers 5).
RopeConfig parse_rope(const FieldReader& fields, const std::string& source) {
  RopeConfig rope;
  rope.theta = fields.positive_number("rope_theta", rope.theta);
  if (const json* parameters = fields.find("rope_parameters")) {
    if (!parameters->is_object()) {
      fields.fail(ErrorKind::invalid_input, "rope_parameters",
                  "must be an object, got " + parameters->dump());
    }
    FieldReader parameter_fields(*parameters, "rope_parameters.", source);
    rope.theta = parameter_fields.positive_number("rope_theta", rope.theta);
    return parse_rope_type_and_scaling(parameter_fields, rope);
  }
  if (const json* scaling = fields.find("rope_scaling")) {
    if (!scaling->is_object()) {
      fields.fail(ErrorKind::invalid_input, "rope_scaling",
                  "must be an object or null, got " + scaling->dump());
    }
    return parse_rope_type_and_scaling(FieldReader(*scaling, "rope_scaling.", source), rope);
  }
  return rope;
}

DType parse_dtype(const FieldReader& fields, DType fallback) {
  // transformers 5 writes `dtype`, earlier versions `torch_dtype`.
  const std::string_view key = fields.find("dtype") != nullptr ? "dtype" : "torch_dtype";
  const auto name = fields.optional_string(key);
  if (!name) return fallback;
  if (*name == "bfloat16") return DType::bf16;
  if (*name == "float16") return DType::f16;
  if (*name == "float32") return DType::f32;
  fields.fail(ErrorKind::unsupported, key,
              "is '" + *name + "'; louiskv loads bfloat16, float16 and float32 models");
}

void add_unique(std::vector<int>& ids, const std::vector<int>& more) {
  for (int id : more) {
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
}

}  // namespace

std::string_view architecture_name(Architecture arch) {
  switch (arch) {
    case Architecture::llama: return "LlamaForCausalLM";
    case Architecture::qwen2: return "Qwen2ForCausalLM";
    case Architecture::qwen3: return "Qwen3ForCausalLM";
  }
  return "unknown";
}

ModelConfig parse_model_config(const nlohmann::json& document, const std::string& source) {
  if (!document.is_object()) {
    throw_error(ErrorKind::invalid_input, source + ": the top level is not a JSON object");
  }
  const FieldReader fields(document, "", source);
  ModelConfig config;
  config.architecture = parse_architecture(fields, source);

  config.hidden_size = fields.positive_int("hidden_size");
  config.intermediate_size = fields.positive_int("intermediate_size");
  config.num_layers = fields.positive_int("num_hidden_layers");
  config.num_heads = fields.positive_int("num_attention_heads");
  config.num_kv_heads = fields.positive_int("num_key_value_heads", config.num_heads);
  config.vocab_size = fields.positive_int("vocab_size");
  config.max_position_embeddings = fields.positive_int("max_position_embeddings");
  if (fields.find("head_dim") != nullptr) {
    config.head_dim = fields.positive_int("head_dim");
  } else {
    if (config.hidden_size % config.num_heads != 0) {
      throw_error(ErrorKind::invalid_input,
                  source + ": field 'head_dim' is absent and 'hidden_size' (" +
                      std::to_string(config.hidden_size) +
                      ") is not a multiple of 'num_attention_heads' (" +
                      std::to_string(config.num_heads) + "), so head_dim cannot be derived");
    }
    config.head_dim = config.hidden_size / config.num_heads;
  }
  if (config.num_heads % config.num_kv_heads != 0) {
    fields.fail(ErrorKind::invalid_input, "num_attention_heads",
                "(" + std::to_string(config.num_heads) + ") must be a multiple of " +
                    "'num_key_value_heads' (" + std::to_string(config.num_kv_heads) +
                    "): each KV head serves a whole group of query heads");
  }
  if (config.head_dim % 2 != 0) {
    fields.fail(ErrorKind::invalid_input, "head_dim",
                "(" + std::to_string(config.head_dim) +
                    (fields.find("head_dim") != nullptr
                         ? ""
                         : ", derived as hidden_size / num_attention_heads") +
                    ") must be even: RoPE rotates pairs of channels");
  }

  config.rms_norm_eps = fields.positive_number("rms_norm_eps", config.rms_norm_eps);
  if (const auto activation = fields.optional_string("hidden_act");
      activation && *activation != "silu") {
    fields.fail(ErrorKind::unsupported, "hidden_act",
                "is '" + *activation + "'; louiskv's MLP is SwiGLU ('silu')");
  }
  config.rope = parse_rope(fields, source);

  switch (config.architecture) {
    case Architecture::llama:
      config.qkv_bias = fields.boolean("attention_bias", false);
      config.output_bias = config.qkv_bias;
      config.mlp_bias = fields.boolean("mlp_bias", false);
      break;
    case Architecture::qwen2:
      // Qwen2's attention always has q/k/v biases and never an o_proj bias; its config has no
      // field for either.
      config.qkv_bias = true;
      config.output_bias = false;
      break;
    case Architecture::qwen3:
      config.qkv_bias = fields.boolean("attention_bias", false);
      config.output_bias = config.qkv_bias;
      config.qk_norm = true;
      break;
  }
  // Qwen sliding-window attention limits some layers to a window: not a model louiskv runs.
  if (config.architecture != Architecture::llama && fields.boolean("use_sliding_window", false)) {
    fields.fail(ErrorKind::unsupported, "use_sliding_window",
                "is true; louiskv runs full attention in every layer");
  }

  // transformers' own default is false for all three architectures; models that tie say so.
  config.tie_word_embeddings = fields.boolean("tie_word_embeddings", false);
  if (const auto bos = fields.token_ids("bos_token_id"); !bos.empty()) {
    config.bos_token_id = bos.front();
  }
  add_unique(config.eos_token_ids, fields.token_ids("eos_token_id"));
  config.dtype = parse_dtype(fields, config.dtype);
  return config;
}

ModelConfig load_model_config(const std::filesystem::path& model_dir) {
  std::error_code not_a_file;
  if (std::filesystem::is_regular_file(model_dir, not_a_file)) {
    // A config file named directly (shapes for --random-weights): no generation config beside it.
    return parse_model_config(read_json_file(model_dir), model_dir.string());
  }
  const auto config_path = model_dir / config_file_name;
  ModelConfig config = parse_model_config(read_json_file(config_path), config_path.string());

  const auto generation_path = model_dir / generation_config_file_name;
  std::error_code ignored;
  if (std::filesystem::exists(generation_path, ignored)) {
    const json generation = read_json_file(generation_path);
    const std::string source = generation_path.string();
    if (!generation.is_object()) {
      throw_error(ErrorKind::invalid_input, source + ": the top level is not a JSON object");
    }
    add_unique(config.eos_token_ids, FieldReader(generation, "", source).token_ids("eos_token_id"));
  }
  return config;
}

std::vector<float> rope_inverse_frequencies(const ModelConfig& config) {
  LOUISKV_CHECK(config.head_dim > 0 && config.head_dim % 2 == 0,
                "rope_inverse_frequencies needs a positive even head_dim, got " +
                    std::to_string(config.head_dim));
  const auto pairs = static_cast<size_t>(config.head_dim / 2);
  const auto head_dim = static_cast<float>(config.head_dim);
  const auto theta = static_cast<float>(config.rope.theta);

  // Every step in fp32, in transformers' order, so that the angles match its to the last bit
  // wherever the same float operations are used.
  std::vector<float> inverse(pairs);
  for (size_t i = 0; i < pairs; ++i) {
    const float exponent = static_cast<float>(2 * i) / head_dim;
    inverse[i] = 1.0f / std::pow(theta, exponent);
  }
  if (config.rope.type == RopeType::standard) return inverse;

  // llama3: wavelengths longer than the original context are stretched by `factor`, shorter
  // than original / high_freq_factor are left alone, and the band between is blended.
  const RopeConfig& rope = config.rope;
  const auto factor = static_cast<float>(rope.factor);
  const auto low_freq_factor = static_cast<float>(rope.low_freq_factor);
  const auto original_context = static_cast<float>(rope.original_max_position_embeddings);
  const auto low_freq_wavelength =
      static_cast<float>(double(rope.original_max_position_embeddings) / rope.low_freq_factor);
  const auto high_freq_wavelength =
      static_cast<float>(double(rope.original_max_position_embeddings) / rope.high_freq_factor);
  const auto band_width = static_cast<float>(rope.high_freq_factor - rope.low_freq_factor);
  const auto two_pi = static_cast<float>(2.0 * 3.14159265358979323846);
  for (float& frequency : inverse) {
    // PyTorch evaluates `scalar / tensor` as reciprocal(tensor) * scalar.
    const float wavelength = (1.0f / frequency) * two_pi;
    if (wavelength > low_freq_wavelength) {
      frequency = frequency / factor;
    } else if (!(wavelength < high_freq_wavelength)) {
      const float smooth = ((1.0f / wavelength) * original_context - low_freq_factor) / band_width;
      frequency = (1.0f - smooth) * frequency / factor + smooth * frequency;
    }
  }
  return inverse;
}

}  // namespace louiskv
