// Precondition checks shared by the launchers. Each names the op and the argument, and says
// what was expected and what came, so that a host pointer handed to a kernel or a tensor of the
// wrong dtype fails at once with a message instead of a fault or wrong numbers.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include "backend/tensor.h"

namespace louiskv::kernels {

// Throws internal "cuda <op>: <message>".
[[noreturn]] void fail(std::string_view op, const std::string& message);

void require_dtype(const TensorView& view, DType dtype, std::string_view op, std::string_view name);
// The view lives in device memory (Device::cuda) and is not empty.
void require_on_device(const TensorView& view, std::string_view op, std::string_view name);
// Device memory, or host memory the device can read and write directly (pinned and mapped,
// as allocate_host gives), whose device address equals its host address.
void require_device_accessible(const TensorView& view, std::string_view op, std::string_view name);
// Exactly these dimensions.
void require_shape(const TensorView& view, std::initializer_list<int64_t> dims, std::string_view op,
                   std::string_view name);
void require_rank(const TensorView& view, int rank, std::string_view op, std::string_view name);
// One of f32, f16, bf16.
void require_floating(const TensorView& view, std::string_view op, std::string_view name);

// Number of thread blocks whose grid dimension must not exceed `limit` (grid.y and grid.z).
void require_grid_dimension(int64_t blocks, int64_t limit, std::string_view op, std::string_view what);

}  // namespace louiskv::kernels

// Throws through fail() unless `condition` holds. A macro, so that the message (often built from
// several strings) is only formed on failure: launchers run these checks on every call.
#define LOUISKV_REQUIRE(condition, op, message)                     \
  do {                                                              \
    if (!(condition)) ::louiskv::kernels::fail((op), (message));    \
  } while (0)
