// Writes tensors to one safetensors file: how tests and tools make single-file, fp32 or fp16
// copies of a model that the reader, transformers and the safetensors library all accept.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace louiskv {

struct TensorToWrite {
  std::string name;
  DType dtype = DType::f32;    // f32, f16 or bf16
  std::vector<int64_t> shape;  // row-major; [] is a scalar
  const void* data = nullptr;  // shape-product elements of dtype, contiguous
};

// Writes `path` (replacing it) with every tensor, and the metadata {"format": "pt"} that
// transformers expects. Tensors are laid out by decreasing element size, so that each is aligned
// for its type with no gap between them. The file appears under its name only once complete.
// Throws louiskv::Error: invalid_input for a duplicate or empty name, a negative dimension or a
// missing data pointer; unsupported for a dtype safetensors files of ours do not hold; io (naming
// the path and the system's reason) when the file cannot be written.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<TensorToWrite>& tensors);

}  // namespace louiskv
