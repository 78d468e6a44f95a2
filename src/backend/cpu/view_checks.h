// Precondition checks shared by the CPU ops: a wrong view is a caller bug, reported with the op
// and the view's description rather than silently computing garbage.
#pragma once

#include <string>

#include "backend/tensor.h"

namespace louiskv::cpu {

inline void require(bool condition, const char* op, const std::string& what) {
  if (!condition) throw_error(ErrorKind::internal, std::string("cpu ") + op + ": " + what + " (a bug in louiskv)");
}

inline void require_host(const TensorView& view, const char* op, const char* name) {
  require(view.device == Device::cpu && view.data != nullptr, op,
          std::string(name) + " must be host memory, got " + view.describe());
}

inline void require_f32(const TensorView& view, const char* op, const char* name) {
  require_host(view, op, name);
  require(view.dtype == DType::f32, op, std::string(name) + " must be f32, got " + view.describe());
}

inline bool is_float_dtype(DType dtype) { return dtype != DType::i32; }

}  // namespace louiskv::cpu
