#include "common/dtype.h"

namespace louiskv {

void convert_to_f32(const void* source, DType dtype, float* out, size_t n) {
  switch (dtype) {
    case DType::f32: std::memcpy(out, source, n * sizeof(float)); return;
    case DType::bf16: {
      const auto* in = static_cast<const uint16_t*>(source);
      for (size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(in[i]);
      return;
    }
    case DType::f16: {
      const auto* in = static_cast<const uint16_t*>(source);
      for (size_t i = 0; i < n; ++i) out[i] = f16_to_f32(in[i]);
      return;
    }
    case DType::i32: {
      const auto* in = static_cast<const int32_t*>(source);
      for (size_t i = 0; i < n; ++i) out[i] = float(in[i]);
      return;
    }
  }
}

void convert_from_f32(const float* source, DType dtype, void* out, size_t n) {
  for (size_t i = 0; i < n; ++i) store_from_f32(out, dtype, i, source[i]);
}

}  // namespace louiskv
