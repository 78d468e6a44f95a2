#include "io/safetensors.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "io/io_test_helpers.h"
#include "io/json_file.h"
#include "io/mapped_file.h"
#include "io/model_config.h"
#include "io/safetensors_writer.h"

namespace louiskv {
namespace {

using nlohmann::json;
using testing::TempDir;
using testing::throws_error;
using testing::write_raw_safetensors;

constexpr const char* second_shard = "model-00002-of-00003.safetensors";

std::vector<uint16_t> bits_of(const std::vector<float>& values, DType dtype) {
  std::vector<uint16_t> bits(values.size());
  convert_from_f32(values.data(), dtype, bits.data(), values.size());
  return bits;
}

// Checks what the format asks of every file, independently of our reader: the header length is
// a multiple of 8 (the writer's padding), the header is a JSON object, and the tensors cover the
// data section exactly, with no gap and no overlap.
void expect_well_formed(const std::filesystem::path& path) {
  MappedFile file(path);
  ASSERT_GE(file.size(), 8u);
  uint64_t header_length = 0;
  std::memcpy(&header_length, file.data(), 8);  // little-endian host
  EXPECT_EQ(header_length % 8, 0u);
  ASSERT_LE(header_length, file.size() - 8);
  const auto* header_text = reinterpret_cast<const char*>(file.data() + 8);
  const json header = json::parse(std::string_view(header_text, header_length));
  ASSERT_TRUE(header.is_object());
  EXPECT_EQ(header["__metadata__"]["format"], "pt");
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    ranges.emplace_back(entry["data_offsets"][0].get<uint64_t>(),
                        entry["data_offsets"][1].get<uint64_t>());
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t covered = 0;
  for (const auto& [begin, end] : ranges) {
    EXPECT_EQ(begin, covered) << "gap or overlap in the data section";
    covered = end;
  }
  EXPECT_EQ(covered, file.size() - 8 - header_length);
}

// ---------------------------------------------------------------------------------------------
// Writer and reader

TEST(Safetensors, RoundTripAllDtypesExactly) {
  TempDir dir("safetensors");
  // Awkward values: signed zero, a subnormal, the extremes, and a NaN, whose bits must survive.
  const std::vector<float> f32 = {1.5f,    -0.0f,  1e-40f,
                                  3.4e38f, -2.75f, std::numeric_limits<float>::quiet_NaN()};
  const std::vector<uint16_t> f16 =
      bits_of({0.5f, -65504.0f, 6e-8f, 1.0f / 3.0f, -7.0f}, DType::f16);
  const std::vector<uint16_t> bf16 =
      bits_of({1.0f, -1e30f, 3.14159f, 0.0f, -1e-30f, 2.0f}, DType::bf16);
  const float scalar = 42.0f;
  const std::vector<TensorToWrite> tensors = {
      {"layer.half",
       DType::f16,
       {5},
       f16.data()},  // 10 bytes: a 4-byte tensor after it would misalign
      {"layer.weight", DType::f32, {2, 3}, f32.data()},
      {"brain.float", DType::bf16, {3, 1, 2}, bf16.data()},
      {"scalar", DType::f32, {}, &scalar},
      {"empty", DType::bf16, {0, 4}, nullptr},
  };
  const auto path = dir.path() / "round_trip.safetensors";
  write_safetensors(path, tensors);
  expect_well_formed(path);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "round_trip.safetensors.partial"));

  const SafetensorsFile file(path);
  ASSERT_EQ(file.tensors().size(), tensors.size());
  for (const TensorToWrite& written : tensors) {
    SCOPED_TRACE(written.name);
    const auto found = file.tensors().find(written.name);
    ASSERT_NE(found, file.tensors().end());
    const TensorInfo& read = found->second;
    EXPECT_EQ(read.name, written.name);
    EXPECT_EQ(read.dtype, written.dtype);
    EXPECT_EQ(read.shape, written.shape);
    EXPECT_EQ(read.file, path.string());
    size_t elements = 1;
    for (int64_t dim : written.shape) elements *= size_t(dim);
    ASSERT_EQ(read.nbytes, elements * dtype_size(written.dtype));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(read.data) % dtype_size(read.dtype), 0u);
    if (read.nbytes > 0) {
      EXPECT_EQ(std::memcmp(read.data, written.data, read.nbytes), 0);
    }
  }
}

TEST(Safetensors, WriterRejectsBadTensors) {
  TempDir dir("safetensors");
  const float values[4] = {};
  const auto path = dir.path() / "bad.safetensors";
  EXPECT_TRUE(throws_error(
      [&] {
        write_safetensors(path,
                          {{"twice", DType::f32, {1}, values}, {"twice", DType::f32, {2}, values}});
      },
      ErrorKind::invalid_input, {"tensor 'twice' is given twice"}));
  EXPECT_TRUE(throws_error(
      [&] {
        write_safetensors(path, {{"ids", DType::i32, {4}, values}});
      },
      ErrorKind::unsupported, {"tensor 'ids'", "i32"}));
  EXPECT_TRUE(throws_error(
      [&] {
        write_safetensors(path, {{"negative", DType::f32, {-1}, values}});
      },
      ErrorKind::invalid_input, {"tensor 'negative'", "negative dimension"}));
  EXPECT_TRUE(throws_error(
      [&] {
        write_safetensors(path, {{"null", DType::f32, {4}, nullptr}});
      },
      ErrorKind::invalid_input, {"tensor 'null'", "no data pointer"}));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(
      throws_error([&] { write_safetensors(dir.path() / "no-such-folder" / "x.safetensors", {}); },
                   ErrorKind::io, {"no-such-folder", "cannot create"}));
}

// ---------------------------------------------------------------------------------------------
// The bundled model

TEST(WeightFiles, BundledShardedModel) {
  const auto model_dir = testing::bundled_model_dir();
  const ModelConfig config = load_model_config(model_dir);
  const WeightFiles weights(model_dir);
  const json index = read_json_file(model_dir / "model.safetensors.index.json");

  const auto names = weights.names();
  ASSERT_EQ(names.size(), index["weight_map"].size());
  EXPECT_EQ(names.size(), size_t(2 + 9 * config.num_layers));  // embedding, final norm, 9 per layer
  EXPECT_EQ(weights.total_bytes(), index["metadata"]["total_size"].get<size_t>());

  const int64_t hidden = config.hidden_size;
  const int64_t q_rows = config.num_heads * config.head_dim;
  const int64_t kv_rows = config.num_kv_heads * config.head_dim;
  const auto expected_shape = [&](const std::string& name) -> std::vector<int64_t> {
    const auto ends_with = [&](std::string_view suffix) { return name.ends_with(suffix); };
    if (name == "model.embed_tokens.weight") return {config.vocab_size, hidden};
    if (ends_with("norm.weight")) return {hidden};
    if (ends_with("q_proj.weight")) return {q_rows, hidden};
    if (ends_with("k_proj.weight") || ends_with("v_proj.weight")) return {kv_rows, hidden};
    if (ends_with("o_proj.weight")) return {hidden, q_rows};
    if (ends_with("gate_proj.weight") || ends_with("up_proj.weight")) {
      return {config.intermediate_size, hidden};
    }
    if (ends_with("down_proj.weight")) return {hidden, config.intermediate_size};
    return {};
  };
  for (const auto& [name, shard] : index["weight_map"].items()) {
    SCOPED_TRACE(name);
    const TensorInfo* info = weights.find(name);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(&weights.get(name), info);
    EXPECT_EQ(info->dtype, DType::bf16);
    EXPECT_EQ(info->shape, expected_shape(name));
    EXPECT_TRUE(info->file.ends_with(shard.get<std::string>()));
    // Trained weights: finite, and not all zero.
    bool any_nonzero = false;
    const size_t elements = info->nbytes / 2;
    for (size_t i = 0; i < elements; ++i) {
      const float value = load_as_f32(info->data, info->dtype, i);
      ASSERT_TRUE(std::isfinite(value)) << "element " << i;
      any_nonzero = any_nonzero || value != 0.0f;
    }
    EXPECT_TRUE(any_nonzero);
  }
  EXPECT_EQ(weights.get("model.embed_tokens.weight").shape, (std::vector<int64_t>{4096, 384}));
  EXPECT_EQ(weights.find("lm_head.weight"), nullptr);  // tied to the embedding
  EXPECT_TRUE(throws_error(
      [&] { weights.get("lm_head.weight"); }, ErrorKind::invalid_input,
      {"tensor 'lm_head.weight' not found", "3 shards of", "model.safetensors.index.json"}));
}

// Merging the shards into one model.safetensors is what the model tests do with the writer.
TEST(WeightFiles, MergedSingleFileMatchesTheShards) {
  TempDir dir("weight-files");
  const WeightFiles shards(testing::bundled_model_dir());
  std::vector<TensorToWrite> tensors;
  for (const std::string& name : shards.names()) {
    const TensorInfo& info = shards.get(name);
    tensors.push_back({name, info.dtype, info.shape, info.data});
  }
  write_safetensors(dir.path() / "model.safetensors", tensors);
  expect_well_formed(dir.path() / "model.safetensors");

  const WeightFiles merged(dir.path());
  ASSERT_EQ(merged.names(), shards.names());
  EXPECT_EQ(merged.total_bytes(), shards.total_bytes());
  for (const std::string& name : shards.names()) {
    const TensorInfo& original = shards.get(name);
    const TensorInfo& copy = merged.get(name);
    EXPECT_EQ(copy.shape, original.shape) << name;
    ASSERT_EQ(copy.nbytes, original.nbytes) << name;
    EXPECT_EQ(std::memcmp(copy.data, original.data, copy.nbytes), 0) << name;
    EXPECT_EQ(copy.file, (dir.path() / "model.safetensors").string());
  }
}

// transformers looks for model.safetensors before the index; so do we.
TEST(WeightFiles, SingleFileWinsOverAnIndex) {
  TempDir dir("weight-files");
  testing::copy_bundled_model(dir.path());
  const float value = 1.0f;
  write_safetensors(dir.path() / "model.safetensors", {{"only", DType::f32, {1}, &value}});
  const WeightFiles weights(dir.path());
  EXPECT_EQ(weights.names(), std::vector<std::string>{"only"});
  EXPECT_EQ(weights.get("only").file, (dir.path() / "model.safetensors").string());
}

// ---------------------------------------------------------------------------------------------
// Damaged model folders

TEST(WeightFilesErrors, NeitherWeightFile) {
  TempDir dir("weight-files");
  EXPECT_TRUE(
      throws_error([&] { WeightFiles weights(dir.path()); }, ErrorKind::io,
                   {dir.path().string(), "model.safetensors ", "model.safetensors.index.json"}));
  EXPECT_TRUE(throws_error([&] { WeightFiles weights(dir.path() / "nowhere"); }, ErrorKind::io,
                           {"nowhere", "does not exist", "model.safetensors.index.json"}));
}

TEST(WeightFilesErrors, MissingShard) {
  TempDir dir("weight-files");
  testing::copy_bundled_model(dir.path());
  std::filesystem::remove(dir.path() / second_shard);
  EXPECT_TRUE(throws_error([&] { WeightFiles weights(dir.path()); }, ErrorKind::io,
                           {"model.safetensors.index.json", second_shard, "does not exist"}));
}

TEST(WeightFilesErrors, TruncatedShard) {
  TempDir dir("weight-files");
  testing::copy_bundled_model(dir.path());
  const auto shard = dir.path() / second_shard;
  const auto full_size = std::filesystem::file_size(shard);
  std::filesystem::resize_file(shard, full_size - 1000);
  EXPECT_TRUE(throws_error(
      [&] { WeightFiles weights(dir.path()); }, ErrorKind::invalid_input,
      {second_shard, ": tensor 'model.layers.", "' ends at byte " + std::to_string(full_size),
       "file has " + std::to_string(full_size - 1000), "(truncated download?)"}));
}

TEST(WeightFilesErrors, TensorOfTheIndexAbsentFromItsShard) {
  TempDir dir("weight-files");
  testing::copy_bundled_model(dir.path());
  json index = read_json_file(dir.path() / "model.safetensors.index.json");
  index["weight_map"]["model.layers.3.mlp.extra.weight"] = second_shard;
  testing::write_file(dir.path() / "model.safetensors.index.json", index.dump());
  EXPECT_TRUE(
      throws_error([&] { WeightFiles weights(dir.path()); }, ErrorKind::invalid_input,
                   {second_shard, "tensor 'model.layers.3.mlp.extra.weight'", "does not hold it"}));
}

TEST(WeightFilesErrors, ShardOutsideTheFolder) {
  TempDir dir("weight-files");
  testing::write_file(dir.path() / "model.safetensors.index.json",
                      R"({"weight_map": {"w": "../elsewhere.safetensors"}})");
  EXPECT_TRUE(throws_error([&] { WeightFiles weights(dir.path()); }, ErrorKind::invalid_input,
                           {"'../elsewhere.safetensors'", "not a plain file name"}));
}

// ---------------------------------------------------------------------------------------------
// Damaged files

TEST(SafetensorsErrors, MissingFile) {
  TempDir dir("safetensors");
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(dir.path() / "absent.safetensors"); },
                           ErrorKind::io, {"absent.safetensors", "No such file"}));
}

TEST(SafetensorsErrors, TooShortForTheHeaderLength) {
  TempDir dir("safetensors");
  testing::write_file(dir.path() / "tiny.safetensors", "abc");
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(dir.path() / "tiny.safetensors"); },
                           ErrorKind::invalid_input, {"tiny.safetensors: 3 bytes", "too short"}));
}

TEST(SafetensorsErrors, HeaderLengthBeyondTheFile) {
  TempDir dir("safetensors");
  const auto path = dir.path() / "long.safetensors";
  write_raw_safetensors(path, "{}", 8, 1'000'000);
  EXPECT_TRUE(
      throws_error([&] { SafetensorsFile file(path); }, ErrorKind::invalid_input,
                   {"long.safetensors: header length is 1000000 bytes, but only 10 bytes follow"}));
  // The bytes of a Git LFS pointer read as a huge header length.
  testing::write_file(path, "version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 12\n");
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(path); }, ErrorKind::invalid_input,
                           {"long.safetensors: header length", "Git LFS pointer"}));
}

TEST(SafetensorsErrors, HeaderIsNotJson) {
  TempDir dir("safetensors");
  const auto path = dir.path() / "garbled.safetensors";
  write_raw_safetensors(path, R"({"w": {"dtype": "F32", )", 0);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(path); }, ErrorKind::invalid_input,
                           {"garbled.safetensors: header is not valid JSON"}));
  write_raw_safetensors(path, "[1, 2, 3]", 0);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(path); }, ErrorKind::invalid_input,
                           {"garbled.safetensors: header is not a JSON object"}));
}

TEST(SafetensorsErrors, ByteRangeDisagreesWithShape) {
  TempDir dir("safetensors");
  const auto path = dir.path() / "mismatch.safetensors";
  write_raw_safetensors(
      path, R"({"attn.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})", 16);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(path); }, ErrorKind::invalid_input,
                           {"mismatch.safetensors: tensor 'attn.weight' has shape [2, 2] of F32",
                            "16 bytes", "[0, 12] span 12 bytes"}));
}

TEST(SafetensorsErrors, UnsupportedDtype) {
  TempDir dir("safetensors");
  const auto path = dir.path() / "ints.safetensors";
  write_raw_safetensors(
      path, R"({"position_ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}})", 16);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(path); }, ErrorKind::unsupported,
                           {"ints.safetensors: tensor 'position_ids' has dtype 'I64'"}));
}

TEST(SafetensorsErrors, MalformedEntries) {
  TempDir dir("safetensors");
  const auto path = dir.path() / "entries.safetensors";
  write_raw_safetensors(path, R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})",
                        8);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(path); }, ErrorKind::invalid_input,
                           {"tensor 'w'", "'shape' holds -2"}));
  write_raw_safetensors(path, R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})",
                        8);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(path); }, ErrorKind::invalid_input,
                           {"tensor 'w'", "'data_offsets' must be [begin, end]"}));
  write_raw_safetensors(path, R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", 8);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(path); }, ErrorKind::invalid_input,
                           {"tensor 'w'", "'dtype' is missing"}));
}

TEST(SafetensorsErrors, HugeSizesDoNotOverflow) {
  TempDir dir("safetensors");
  const auto path = dir.path() / "huge.safetensors";
  // 2^62 * 4 * 4 bytes wraps around 2^64 to 0, which would match these offsets.
  write_raw_safetensors(
      path, R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 0]}})",
      8);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(path); }, ErrorKind::invalid_input,
                           {"tensor 'w'", "more bytes than 2^64"}));
  // An end offset near 2^64: the bounds check must not wrap around either.
  write_raw_safetensors(path,
                        R"({"w": {"dtype": "BF16", "shape": [2], )"
                        R"("data_offsets": [18446744073709551612, 18446744073709551615]}})",
                        8);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(path); }, ErrorKind::invalid_input,
                           {"tensor 'w'", "span 3 bytes"}));
  write_raw_safetensors(path,
                        R"({"w": {"dtype": "BF16", "shape": [2], )"
                        R"("data_offsets": [18446744073709551610, 18446744073709551614]}})",
                        8);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(path); }, ErrorKind::invalid_input,
                           {"tensor 'w' ends at byte", "(truncated download?)"}));
}

TEST(SafetensorsErrors, MisalignedTensor) {
  TempDir dir("safetensors");
  const auto path = dir.path() / "unaligned.safetensors";
  // A 2-byte tensor first puts the F32 one at an odd multiple of 2.
  const std::string header = R"({"a": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]},)"
                             R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}})";
  const std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  write_raw_safetensors(path, padded, 6);
  EXPECT_TRUE(throws_error([&] { SafetensorsFile file(path); }, ErrorKind::unsupported,
                           {"tensor 'b' starts at byte", "element size 4"}));
}

}  // namespace
}  // namespace louiskv
