// The dtype names of the safetensors format that louiskv reads and writes. The format has more
// (integers, fp8, f64, bool); the weights of the models we serve use only these three.
#pragma once

#include <optional>
#include <string_view>

#include "common/dtype.h"

namespace louiskv {

// "F32", "F16", "BF16"; nullopt for a dtype that safetensors files of ours never hold.
constexpr std::optional<std::string_view> safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
    case DType::i32: return std::nullopt;
  }
  return std::nullopt;
}

constexpr std::optional<DType> dtype_from_safetensors_name(std::string_view name) {
  if (name == "F32") return DType::f32;
  if (name == "F16") return DType::f16;
  if (name == "BF16") return DType::bf16;
  return std::nullopt;
}

}  // namespace louiskv
