#include "backend/tensor.h"

namespace louiskv {

std::string TensorView::describe() const {
  std::string text = std::string(dtype_name(dtype)) + "[";
  for (int i = 0; i < rank; ++i) {
    if (i) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "] on " + device_name(device);
}

}  // namespace louiskv
