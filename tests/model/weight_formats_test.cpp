// The same model from other files: one merged safetensors file, and fp32 and fp16 copies written
// here, must give the same greedy tokens; wrong tensors must be rejected by name.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "runtime/engine.h"
#include "support/test_support.h"

namespace louiskv {
namespace {

namespace fs = std::filesystem;

// Writes the bundled model to `dir` as one file in `dtype`, letting `edit` alter the tensor list.
void write_model_copy(const fs::path& dir, DType dtype,
                      const std::function<void(std::vector<TensorToWrite>&)>& edit = {}) {
  const fs::path source = testing::bundled_model_dir();
  for (const char* name : {"config.json", "generation_config.json", "tokenizer.json"}) {
    fs::copy_file(source / name, dir / name, fs::copy_options::overwrite_existing);
  }
  WeightFiles files(source);
  std::vector<std::vector<uint8_t>> storage;
  std::vector<TensorToWrite> tensors;
  for (const auto& name : files.names()) {
    const TensorInfo& info = files.get(name);
    size_t count = info.nbytes / dtype_size(info.dtype);
    auto& bytes = storage.emplace_back(count * dtype_size(dtype));
    for (size_t i = 0; i < count; ++i) store_from_f32(bytes.data(), dtype, i, load_as_f32(info.data, info.dtype, i));
    tensors.push_back({name, dtype, info.shape, bytes.data()});
  }
  if (edit) edit(tensors);
  write_safetensors(dir / "model.safetensors", tensors);
}

std::vector<int32_t> greedy(const fs::path& dir, const std::vector<int32_t>& prompt, int64_t tokens) {
  EngineOptions options;
  options.model_dir = dir;
  options.device = "cpu";
  Engine engine(options);
  GenerationConfig generation;
  generation.max_new_tokens = tokens;
  generation.sampling.temperature = 0.0f;
  auto policy = engine.make_policy(KvConfig{});
  return engine.generate(prompt, generation, *policy).ids;
}

TEST(WeightFormats, MergedFp32AndFp16CopiesGiveTheReferenceGreedyTokens) {
  LOUISKV_REQUIRE_SHARED();
  const auto& reference = testing::tiny_llama_reference()["logits"][0];
  const auto prompt = reference["ids"].get<std::vector<int32_t>>();
  auto expected = reference["greedy_ids"].get<std::vector<int32_t>>();
  expected.resize(16);
  for (DType dtype : {DType::bf16, DType::f32, DType::f16}) {
    SCOPED_TRACE(std::string(dtype_name(dtype)));
    testing::TempDir dir("weights-" + std::string(dtype_name(dtype)));
    write_model_copy(dir.path(), dtype);
    EXPECT_EQ(greedy(dir.path(), prompt, 16), expected);
  }
}

TEST(WeightFormats, ATensorOfTheWrongShapeIsRejectedByName) {
  testing::TempDir dir("weights-bad-shape");
  std::vector<float> wrong(384 * 100, 0.5f);
  write_model_copy(dir.path(), DType::bf16, [&](std::vector<TensorToWrite>& tensors) {
    for (auto& tensor : tensors) {
      if (tensor.name == "model.layers.3.mlp.up_proj.weight") tensor = {tensor.name, DType::f32, {100, 384}, wrong.data()};
    }
  });
  EngineOptions options;
  options.model_dir = dir.path();
  options.device = "cpu";
  try {
    Engine engine(options);
    FAIL() << "a wrong shape was accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::invalid_input);
    EXPECT_NE(std::string(error.what()).find("model.layers.3.mlp.up_proj.weight"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("[100, 384]"), std::string::npos) << error.what();
  }
}

TEST(WeightFormats, AMissingTensorIsRejectedByName) {
  testing::TempDir dir("weights-missing");
  write_model_copy(dir.path(), DType::bf16, [](std::vector<TensorToWrite>& tensors) {
    std::erase_if(tensors, [](const TensorToWrite& t) { return t.name == "model.layers.5.self_attn.k_proj.weight"; });
  });
  EngineOptions options;
  options.model_dir = dir.path();
  options.device = "cpu";
  try {
    Engine engine(options);
    FAIL() << "a missing tensor was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("model.layers.5.self_attn.k_proj.weight"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace louiskv
