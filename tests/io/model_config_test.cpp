#include "io/model_config.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "io/io_test_helpers.h"
#include "io/json_file.h"

namespace louiskv {
namespace {

using nlohmann::json;
using testing::TempDir;
using testing::throws_error;
using testing::write_file;

ModelConfig load_shared_config(const std::string& name) {
  const auto path = *testing::shared_dir() / "configs" / name;
  return parse_model_config(read_json_file(path), path.string());
}

// The smallest config that parses, for cases that change one field at a time.
json minimal_config(const std::string& architecture) {
  return {{"architectures", json::array({architecture})},
          {"hidden_size", 256},
          {"intermediate_size", 512},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"vocab_size", 1000},
          {"max_position_embeddings", 4096}};
}

ModelConfig parse(const json& document) { return parse_model_config(document, "config.json"); }

// ---------------------------------------------------------------------------------------------
// The shapes of real models

TEST(ModelConfig, Llama31_8B) {
  LOUISKV_REQUIRE_SHARED();
  const ModelConfig config = load_shared_config("llama-3.1-8b.json");
  EXPECT_EQ(config.architecture, Architecture::llama);
  EXPECT_EQ(config.hidden_size, 4096);
  EXPECT_EQ(config.intermediate_size, 14336);
  EXPECT_EQ(config.num_layers, 32);
  EXPECT_EQ(config.num_heads, 32);
  EXPECT_EQ(config.num_kv_heads, 8);
  EXPECT_EQ(config.head_dim, 128);
  EXPECT_EQ(config.vocab_size, 128256);
  EXPECT_EQ(config.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(config.rms_norm_eps, 1e-5);
  EXPECT_EQ(config.rope.type, RopeType::llama3);
  EXPECT_DOUBLE_EQ(config.rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(config.rope.factor, 8.0);
  EXPECT_DOUBLE_EQ(config.rope.low_freq_factor, 1.0);
  EXPECT_DOUBLE_EQ(config.rope.high_freq_factor, 4.0);
  EXPECT_EQ(config.rope.original_max_position_embeddings, 8192);
  EXPECT_FALSE(config.qkv_bias);
  EXPECT_FALSE(config.output_bias);
  EXPECT_FALSE(config.mlp_bias);
  EXPECT_FALSE(config.qk_norm);
  EXPECT_FALSE(config.tie_word_embeddings);
  EXPECT_EQ(config.bos_token_id, 128000);
  EXPECT_EQ(config.eos_token_ids, std::vector<int>{128001});
  EXPECT_EQ(config.dtype, DType::bf16);
}

TEST(ModelConfig, Llama32_1B) {
  LOUISKV_REQUIRE_SHARED();
  const ModelConfig config = load_shared_config("llama-3.2-1b.json");
  EXPECT_EQ(config.architecture, Architecture::llama);
  EXPECT_EQ(config.hidden_size, 2048);
  EXPECT_EQ(config.num_layers, 16);
  EXPECT_EQ(config.num_kv_heads, 8);
  EXPECT_EQ(config.head_dim, 64);
  EXPECT_EQ(config.rope.type, RopeType::llama3);
  EXPECT_DOUBLE_EQ(config.rope.factor, 32.0);
  EXPECT_TRUE(config.tie_word_embeddings);
}

TEST(ModelConfig, Qwen25_7B) {
  LOUISKV_REQUIRE_SHARED();
  const ModelConfig config = load_shared_config("qwen2.5-7b.json");
  EXPECT_EQ(config.architecture, Architecture::qwen2);
  EXPECT_EQ(config.hidden_size, 3584);
  EXPECT_EQ(config.intermediate_size, 18944);
  EXPECT_EQ(config.num_layers, 28);
  EXPECT_EQ(config.num_heads, 28);
  EXPECT_EQ(config.num_kv_heads, 4);
  EXPECT_EQ(config.head_dim, 128);  // absent from the file: 3584 / 28
  EXPECT_EQ(config.vocab_size, 152064);
  EXPECT_EQ(config.max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(config.rms_norm_eps, 1e-6);
  EXPECT_EQ(config.rope.type, RopeType::standard);
  EXPECT_DOUBLE_EQ(config.rope.theta, 1000000.0);
  EXPECT_TRUE(config.qkv_bias);
  EXPECT_FALSE(config.output_bias);
  EXPECT_FALSE(config.qk_norm);
  EXPECT_FALSE(config.tie_word_embeddings);
  EXPECT_EQ(config.eos_token_ids, std::vector<int>{151645});
}

TEST(ModelConfig, Qwen3_8B) {
  LOUISKV_REQUIRE_SHARED();
  const ModelConfig config = load_shared_config("qwen3-8b.json");
  EXPECT_EQ(config.architecture, Architecture::qwen3);
  EXPECT_EQ(config.hidden_size, 4096);
  EXPECT_EQ(config.intermediate_size, 12288);
  EXPECT_EQ(config.num_layers, 36);
  EXPECT_EQ(config.num_heads, 32);
  EXPECT_EQ(config.num_kv_heads, 8);
  EXPECT_EQ(config.head_dim, 128);
  EXPECT_EQ(config.vocab_size, 151936);
  EXPECT_EQ(config.rope.type, RopeType::standard);
  EXPECT_DOUBLE_EQ(config.rope.theta, 1000000.0);
  EXPECT_TRUE(config.qk_norm);
  EXPECT_FALSE(config.qkv_bias);
  EXPECT_FALSE(config.output_bias);
}

TEST(ModelConfig, EverySharedConfigParses) {
  LOUISKV_REQUIRE_SHARED();
  int parsed = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(*testing::shared_dir() / "configs")) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    const ModelConfig config =
        parse_model_config(read_json_file(entry.path()), entry.path().string());
    EXPECT_EQ(config.num_heads % config.num_kv_heads, 0);
    EXPECT_EQ(config.head_dim % 2, 0);
    EXPECT_EQ(rope_inverse_frequencies(config).size(), size_t(config.head_dim / 2));
    EXPECT_FALSE(config.eos_token_ids.empty());
    ++parsed;
  }
  EXPECT_GE(parsed, 4);
}

TEST(ModelConfig, BundledModel) {
  const ModelConfig config = load_model_config(testing::bundled_model_dir());
  EXPECT_EQ(config.architecture, Architecture::llama);
  EXPECT_EQ(architecture_name(config.architecture), "LlamaForCausalLM");
  EXPECT_EQ(config.hidden_size, 384);
  EXPECT_EQ(config.intermediate_size, 1024);
  EXPECT_EQ(config.num_layers, 8);
  EXPECT_EQ(config.num_heads, 6);
  EXPECT_EQ(config.num_kv_heads, 2);
  EXPECT_EQ(config.head_dim, 64);
  EXPECT_EQ(config.vocab_size, 4096);
  EXPECT_EQ(config.max_position_embeddings, 16384);
  EXPECT_DOUBLE_EQ(config.rms_norm_eps, 1e-5);
  // rope_parameters style (transformers 5)
  EXPECT_EQ(config.rope.type, RopeType::standard);
  EXPECT_DOUBLE_EQ(config.rope.theta, 100000.0);
  EXPECT_TRUE(config.tie_word_embeddings);
  EXPECT_FALSE(config.qkv_bias);
  EXPECT_EQ(config.bos_token_id, 0);
  EXPECT_EQ(config.eos_token_ids, std::vector<int>{1});
  EXPECT_EQ(config.dtype, DType::bf16);
}

// ---------------------------------------------------------------------------------------------
// Variants and defaults

TEST(ModelConfig, DefaultsFollowTransformers) {
  json document = minimal_config("LlamaForCausalLM");
  document.erase("num_key_value_heads");
  const ModelConfig config = parse(document);
  EXPECT_EQ(config.num_kv_heads, 4);  // absent: one KV head per query head
  EXPECT_EQ(config.head_dim, 64);     // absent: 256 / 4
  EXPECT_FALSE(config.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(config.rope.theta, 10000.0);
  EXPECT_EQ(config.rope.type, RopeType::standard);
  EXPECT_EQ(config.bos_token_id, -1);
  EXPECT_TRUE(config.eos_token_ids.empty());
}

TEST(ModelConfig, ModelTypeDecidesWhenArchitecturesIsAbsent) {
  json document = minimal_config("LlamaForCausalLM");
  document.erase("architectures");
  document["model_type"] = "qwen3";
  EXPECT_EQ(parse(document).architecture, Architecture::qwen3);
  document["architectures"] = json::array({"Qwen2ForCausalLM"});  // the class wins over model_type
  EXPECT_EQ(parse(document).architecture, Architecture::qwen2);
}

TEST(ModelConfig, LlamaAttentionBiasCoversAllFourProjections) {
  json document = minimal_config("LlamaForCausalLM");
  document["attention_bias"] = true;
  document["mlp_bias"] = true;
  const ModelConfig config = parse(document);
  EXPECT_TRUE(config.qkv_bias);
  EXPECT_TRUE(config.output_bias);
  EXPECT_TRUE(config.mlp_bias);
  EXPECT_FALSE(config.qk_norm);
}

TEST(ModelConfig, Qwen2AlwaysBiasesQkvAndNeverOutput) {
  json document = minimal_config("Qwen2ForCausalLM");
  document["attention_bias"] = false;  // not a Qwen2 field: ignored, as transformers does
  const ModelConfig config = parse(document);
  EXPECT_TRUE(config.qkv_bias);
  EXPECT_FALSE(config.output_bias);
  EXPECT_FALSE(config.qk_norm);
}

TEST(ModelConfig, Qwen3HasQkNormAndOptionalBias) {
  json document = minimal_config("Qwen3ForCausalLM");
  EXPECT_TRUE(parse(document).qk_norm);
  EXPECT_FALSE(parse(document).qkv_bias);
  document["attention_bias"] = true;
  EXPECT_TRUE(parse(document).qkv_bias);
  EXPECT_TRUE(parse(document).output_bias);
}

TEST(ModelConfig, RopeScalingOlderStyles) {
  json document = minimal_config("LlamaForCausalLM");
  document["rope_theta"] = 500000.0;
  document["rope_scaling"] = nullptr;
  EXPECT_EQ(parse(document).rope.type, RopeType::standard);
  EXPECT_DOUBLE_EQ(parse(document).rope.theta, 500000.0);

  // `type` is the key of older configs
  document["rope_scaling"] = {{"type", "llama3"},
                              {"factor", 16},
                              {"low_freq_factor", 2.0},
                              {"high_freq_factor", 8.0},
                              {"original_max_position_embeddings", 4096}};
  const RopeConfig rope = parse(document).rope;
  EXPECT_EQ(rope.type, RopeType::llama3);
  EXPECT_DOUBLE_EQ(rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(rope.factor, 16.0);
  EXPECT_DOUBLE_EQ(rope.low_freq_factor, 2.0);
  EXPECT_DOUBLE_EQ(rope.high_freq_factor, 8.0);
  EXPECT_EQ(rope.original_max_position_embeddings, 4096);

  document["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_EQ(parse(document).rope.type, RopeType::standard);
}

TEST(ModelConfig, RopeParametersNewerStyle) {
  json document = minimal_config("LlamaForCausalLM");
  document["rope_parameters"] = {
      {"rope_theta", 500000.0},  {"rope_type", "llama3"},
      {"factor", 8.0},           {"low_freq_factor", 1.0},
      {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  const RopeConfig rope = parse(document).rope;
  EXPECT_EQ(rope.type, RopeType::llama3);
  EXPECT_DOUBLE_EQ(rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(rope.factor, 8.0);
  EXPECT_EQ(rope.original_max_position_embeddings, 8192);
}

TEST(ModelConfig, EosIdsFromListAndGenerationConfig) {
  TempDir dir("model-config");
  json document = minimal_config("LlamaForCausalLM");
  document["eos_token_id"] = json::array({5, 9});
  document["torch_dtype"] = "float16";
  write_file(dir.path() / "config.json", document.dump());
  write_file(dir.path() / "generation_config.json", R"({"eos_token_id": [9, 11]})");
  const ModelConfig config = load_model_config(dir.path());
  EXPECT_EQ(config.eos_token_ids, (std::vector<int>{5, 9, 11}));
  EXPECT_EQ(config.dtype, DType::f16);
}

// ---------------------------------------------------------------------------------------------
// Bad input: each names the file and the field

TEST(ModelConfigErrors, MissingConfigJson) {
  TempDir dir("model-config");
  EXPECT_TRUE(throws_error([&] { load_model_config(dir.path()); }, ErrorKind::io,
                           {(dir.path() / "config.json").string(), "No such file"}));
}

TEST(ModelConfigErrors, MalformedJson) {
  TempDir dir("model-config");
  write_file(dir.path() / "config.json", R"({"hidden_size": 256, "num_hidden_layers": })");
  EXPECT_TRUE(throws_error([&] { load_model_config(dir.path()); }, ErrorKind::invalid_input,
                           {"config.json", "not valid JSON"}));
}

TEST(ModelConfigErrors, MalformedGenerationConfig) {
  TempDir dir("model-config");
  write_file(dir.path() / "config.json", minimal_config("LlamaForCausalLM").dump());
  write_file(dir.path() / "generation_config.json", R"({"eos_token_id": "end"})");
  EXPECT_TRUE(throws_error([&] { load_model_config(dir.path()); }, ErrorKind::invalid_input,
                           {"generation_config.json", "'eos_token_id'"}));
}

TEST(ModelConfigErrors, UnknownArchitecture) {
  EXPECT_TRUE(throws_error([&] { parse(minimal_config("MistralForCausalLM")); },
                           ErrorKind::unsupported,
                           {"config.json: field 'architectures'", "MistralForCausalLM"}));
  json document = minimal_config("LlamaForCausalLM");
  document.erase("architectures");
  document["model_type"] = "gemma";
  EXPECT_TRUE(throws_error([&] { parse(document); }, ErrorKind::unsupported,
                           {"config.json: field 'model_type'", "gemma"}));
  document.erase("model_type");
  EXPECT_TRUE(throws_error([&] { parse(document); }, ErrorKind::invalid_input,
                           {"config.json", "'architectures'", "'model_type'"}));
}

TEST(ModelConfigErrors, MissingRequiredField) {
  for (const char* field : {"hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads", "vocab_size", "max_position_embeddings"}) {
    json document = minimal_config("LlamaForCausalLM");
    document.erase(field);
    EXPECT_TRUE(
        throws_error([&] { parse(document); }, ErrorKind::invalid_input,
                     {"config.json: required field '" + std::string(field) + "' is missing"}));
  }
}

TEST(ModelConfigErrors, SizesMustBePositiveIntegers) {
  json document = minimal_config("LlamaForCausalLM");
  document["num_attention_heads"] = 0;
  EXPECT_TRUE(
      throws_error([&] { parse(document); }, ErrorKind::invalid_input,
                   {"config.json: field 'num_attention_heads' must be a positive integer"}));
  document["num_attention_heads"] = "32";
  EXPECT_TRUE(throws_error([&] { parse(document); }, ErrorKind::invalid_input,
                           {"config.json: field 'num_attention_heads' must be an integer"}));
  document = minimal_config("LlamaForCausalLM");
  document["rms_norm_eps"] = -1e-5;
  EXPECT_TRUE(throws_error([&] { parse(document); }, ErrorKind::invalid_input,
                           {"config.json: field 'rms_norm_eps' must be a positive number"}));
}

TEST(ModelConfigErrors, HeadsMustDivideIntoKvGroups) {
  json document = minimal_config("LlamaForCausalLM");
  document["num_key_value_heads"] = 3;
  EXPECT_TRUE(
      throws_error([&] { parse(document); }, ErrorKind::invalid_input,
                   {"config.json: field 'num_attention_heads'", "'num_key_value_heads' (3)"}));
}

TEST(ModelConfigErrors, HeadDimMustBeEven) {
  json document = minimal_config("LlamaForCausalLM");
  document["head_dim"] = 63;
  EXPECT_TRUE(throws_error([&] { parse(document); }, ErrorKind::invalid_input,
                           {"config.json: field 'head_dim' (63) must be even"}));
  document.erase("head_dim");
  document["hidden_size"] = 260;  // derived head_dim 65
  EXPECT_TRUE(throws_error([&] { parse(document); }, ErrorKind::invalid_input,
                           {"'head_dim' (65, derived as hidden_size / num_attention_heads)"}));
  document["hidden_size"] = 258;  // not a multiple of 4 heads
  EXPECT_TRUE(throws_error([&] { parse(document); }, ErrorKind::invalid_input,
                           {"'head_dim' is absent", "'hidden_size' (258)"}));
}

TEST(ModelConfigErrors, BadRopeType) {
  json document = minimal_config("Qwen2ForCausalLM");
  document["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
  EXPECT_TRUE(throws_error([&] { parse(document); }, ErrorKind::unsupported,
                           {"config.json: field 'rope_scaling.type'", "'yarn'"}));
  document.erase("rope_scaling");
  document["rope_parameters"] = {{"rope_theta", 10000.0}, {"rope_type", "dynamic"}};
  EXPECT_TRUE(throws_error([&] { parse(document); }, ErrorKind::unsupported,
                           {"config.json: field 'rope_parameters.rope_type'", "'dynamic'"}));
}

TEST(ModelConfigErrors, Llama3RopeNeedsItsParameters) {
  json document = minimal_config("LlamaForCausalLM");
  document["rope_scaling"] = {{"rope_type", "llama3"},
                              {"low_freq_factor", 1.0},
                              {"high_freq_factor", 4.0},
                              {"original_max_position_embeddings", 8192}};
  EXPECT_TRUE(throws_error([&] { parse(document); }, ErrorKind::invalid_input,
                           {"config.json: required field 'rope_scaling.factor' is missing"}));
  document["rope_scaling"]["factor"] = 8.0;
  document["rope_scaling"]["high_freq_factor"] = 1.0;
  EXPECT_TRUE(
      throws_error([&] { parse(document); }, ErrorKind::invalid_input,
                   {"field 'rope_scaling.high_freq_factor'", "'rope_scaling.low_freq_factor'"}));
}

TEST(ModelConfigErrors, UnsupportedVariants) {
  json document = minimal_config("Qwen2ForCausalLM");
  document["use_sliding_window"] = true;
  EXPECT_TRUE(throws_error([&] { parse(document); }, ErrorKind::unsupported,
                           {"config.json: field 'use_sliding_window'"}));
  document = minimal_config("LlamaForCausalLM");
  document["hidden_act"] = "gelu";
  EXPECT_TRUE(throws_error([&] { parse(document); }, ErrorKind::unsupported,
                           {"config.json: field 'hidden_act'", "'gelu'"}));
  document = minimal_config("LlamaForCausalLM");
  document["torch_dtype"] = "float8_e4m3fn";
  EXPECT_TRUE(throws_error([&] { parse(document); }, ErrorKind::unsupported,
                           {"config.json: field 'torch_dtype'", "float8_e4m3fn"}));
}

}  // namespace
}  // namespace louiskv
