#include "backend/cuda/view_checks.h"

#include <cuda_runtime.h>

#include "common/error.h"

namespace louiskv::kernels {

namespace {

std::string argument(std::string_view name, const TensorView& view) {
  return std::string(name) + " (" + view.describe() + ")";
}

}  // namespace

void fail(std::string_view op, const std::string& message) {
  // A wrong view is a bug in the calling layer (model/ or kv/), not the user's input.
  throw Error(ErrorKind::internal, "cuda " + std::string(op) + ": " + message + " (a bug in louiskv)");
}

void require_dtype(const TensorView& view, DType dtype, std::string_view op, std::string_view name) {
  LOUISKV_REQUIRE(view.dtype == dtype, op,
          argument(name, view) + " must have dtype " + std::string(dtype_name(dtype)));
}

void require_on_device(const TensorView& view, std::string_view op, std::string_view name) {
  LOUISKV_REQUIRE(!view.empty(), op, argument(name, view) + " is empty (null data)");
  LOUISKV_REQUIRE(view.device == Device::cuda, op,
          argument(name, view) + " must be in device memory (allocate() of the cuda backend)");
}

void require_device_accessible(const TensorView& view, std::string_view op, std::string_view name) {
  LOUISKV_REQUIRE(!view.empty(), op, argument(name, view) + " is empty (null data)");
  if (view.device == Device::cuda) return;
  cudaPointerAttributes attributes{};
  cudaError_t status = cudaPointerGetAttributes(&attributes, view.data);
  if (status != cudaSuccess) cudaGetLastError();  // clear the sticky-free error of the query
  bool mapped = status == cudaSuccess && attributes.type == cudaMemoryTypeHost &&
                attributes.devicePointer == view.data;
  LOUISKV_REQUIRE(mapped, op,
          argument(name, view) +
              " is host memory the GPU cannot read: use device memory or allocate_host()");
}

void require_shape(const TensorView& view, std::initializer_list<int64_t> dims, std::string_view op,
                   std::string_view name) {
  bool same = view.rank == int(dims.size());
  int i = 0;
  for (int64_t d : dims) {
    if (same && view.shape[i] != d) same = false;
    ++i;
  }
  if (same) return;
  std::string expected = "[";
  i = 0;
  for (int64_t d : dims) expected += (i++ ? ", " : "") + std::to_string(d);
  LOUISKV_REQUIRE(false, op, argument(name, view) + " must have shape " + expected + "]");
}

void require_rank(const TensorView& view, int rank, std::string_view op, std::string_view name) {
  LOUISKV_REQUIRE(view.rank == rank, op, argument(name, view) + " must have rank " + std::to_string(rank));
}

void require_floating(const TensorView& view, std::string_view op, std::string_view name) {
  LOUISKV_REQUIRE(view.dtype == DType::f32 || view.dtype == DType::f16 || view.dtype == DType::bf16, op,
          argument(name, view) + " must be f32, f16 or bf16");
}

void require_grid_dimension(int64_t blocks, int64_t limit, std::string_view op,
                            std::string_view what) {
  LOUISKV_REQUIRE(blocks <= limit, op,
          std::string(what) + " needs " + std::to_string(blocks) + " thread blocks, above the " +
              std::to_string(limit) + " a launch allows");
}

}  // namespace louiskv::kernels
