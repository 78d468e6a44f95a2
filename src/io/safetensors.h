// Safetensors model weights, read through mmap: one file, or shards listed by
// model.safetensors.index.json. Every tensor's byte range is checked against its file (overflow-safe)
// when the file is opened; names, dtypes and shapes are checked against the model by the loader.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace louiskv {

class MappedFile;  // io/mapped_file.h

struct TensorInfo {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // inside the mapping
  size_t nbytes = 0;
  std::string file;            // the file it lives in, for error messages
};

class SafetensorsFile {
 public:
  // Maps `path` and parses its header. Throws louiskv::Error naming the file for a missing file,
  // a malformed header, an unsupported dtype, or a tensor that lies outside the file (truncated).
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::unique_ptr<MappedFile> mapping_;
  std::map<std::string, TensorInfo> tensors_;
};

// All tensors of a model folder: model.safetensors, or the shards of model.safetensors.index.json.
class WeightFiles {
 public:
  explicit WeightFiles(const std::filesystem::path& model_dir);
  ~WeightFiles();

  // nullptr when absent.
  const TensorInfo* find(const std::string& name) const;
  // Throws louiskv::Error (invalid_input) naming the tensor and the files searched when absent.
  const TensorInfo& get(const std::string& name) const;
  std::vector<std::string> names() const;
  size_t total_bytes() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*> index_;
  std::string description_;  // "model.safetensors" or "3 shards of model.safetensors.index.json"
};

}  // namespace louiskv
