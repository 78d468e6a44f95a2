// Element types of weights, activations and KV, and their conversions to and from fp32.
// bf16 -> fp32 is exact; fp32 -> bf16 rounds to nearest even, as PyTorch does.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace louiskv {

enum class DType : uint8_t { f32, f16, bf16, i32 };

constexpr size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::i32: return 4;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
  }
  return "?";
}

inline float bf16_to_f32(uint16_t bits) { return std::bit_cast<float>(uint32_t(bits) << 16); }

inline uint16_t f32_to_bf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
    return uint16_t((bits >> 16) | 0x0040u);  // keep NaN a (quiet) NaN
  }
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t((bits + rounding) >> 16);
}

inline float f16_to_f32(uint16_t bits) { return float(std::bit_cast<_Float16>(bits)); }
inline uint16_t f32_to_f16(float value) { return std::bit_cast<uint16_t>(_Float16(value)); }

// Reads element i of a buffer of any floating dtype as fp32.
inline float load_as_f32(const void* data, DType dtype, size_t i) {
  switch (dtype) {
    case DType::f32: return static_cast<const float*>(data)[i];
    case DType::f16: return f16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case DType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(data)[i]);
    case DType::i32: return float(static_cast<const int32_t*>(data)[i]);
  }
  return 0.0f;
}

inline void store_from_f32(void* data, DType dtype, size_t i, float value) {
  switch (dtype) {
    case DType::f32: static_cast<float*>(data)[i] = value; break;
    case DType::f16: static_cast<uint16_t*>(data)[i] = f32_to_f16(value); break;
    case DType::bf16: static_cast<uint16_t*>(data)[i] = f32_to_bf16(value); break;
    case DType::i32: static_cast<int32_t*>(data)[i] = int32_t(value); break;
  }
}

// Widens n elements to fp32.
void convert_to_f32(const void* source, DType dtype, float* out, size_t n);
// Narrows n fp32 values to dtype.
void convert_from_f32(const float* source, DType dtype, void* out, size_t n);

}  // namespace louiskv
