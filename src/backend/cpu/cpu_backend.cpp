#include "backend/cpu/cpu_backend.h"

#include <cblas.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <new>

#include "backend/cpu/view_checks.h"

namespace louiskv {

CpuBackend::CpuBackend(int threads)
    : threads_(threads > 0 ? threads : omp_get_max_threads()), scratch_(static_cast<size_t>(threads_)) {
  // One thread pool: the ops split work across OpenMP threads and call OpenBLAS from each of
  // them, so OpenBLAS must not start threads of its own. Two pools spinning on the same cores
  // cost more than either saves.
  openblas_set_num_threads(1);
}

float* CpuBackend::thread_scratch(int thread, size_t floats) {
  auto& scratch = scratch_[static_cast<size_t>(thread)];
  if (scratch.size() < floats) scratch.resize(floats);
  return scratch.data();
}

std::string CpuBackend::description() const {
  return "cpu (" + std::to_string(threads_) + " threads, fp32 activations and KV)";
}

Buffer CpuBackend::allocate(size_t bytes) {
  // 64-byte alignment: whole cache lines per row, and what vector loads like.
  size_t rounded = (bytes + 63) / 64 * 64;
  void* data = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!data) {
    throw_error(ErrorKind::out_of_memory, "cpu: cannot allocate " + std::to_string(bytes) + " bytes of host memory");
  }
  return Buffer(data, bytes, Device::cpu, [](void* pointer) { std::free(pointer); });
}

void CpuBackend::copy(TensorView dst, TensorView src) {
  cpu::require_host(dst, "copy", "dst");
  cpu::require_host(src, "copy", "src");
  cpu::require(dst.dtype == src.dtype && dst.numel() == src.numel(), "copy",
               "dst " + dst.describe() + " and src " + src.describe() + " differ");
  std::memmove(dst.data, src.data, src.nbytes());
}

void CpuBackend::convert(TensorView dst, TensorView src) {
  cpu::require_host(dst, "convert", "dst");
  cpu::require_host(src, "convert", "src");
  cpu::require(dst.numel() == src.numel(), "convert", "element counts differ");
  const size_t n = size_t(src.numel());
  for (size_t i = 0; i < n; ++i) store_from_f32(dst.data, dst.dtype, i, load_as_f32(src.data, src.dtype, i));
}

TensorView CpuBackend::prepare_weight(TensorView host_weight, std::vector<Buffer>& /*owner*/) {
  // Weights stay in the mapped file, in their file dtype; the kernels widen them.
  return host_weight;
}

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace louiskv
