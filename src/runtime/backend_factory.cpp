#include "backend/backend.h"
#include "runtime/engine.h"

#ifdef LOUISKV_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace louiskv {
namespace {

// The cpu backend computes in f32 only: --dtype auto and f32 take it, bf16 is refused by name.
std::unique_ptr<Backend> make_cpu(const std::string& device, const std::string& dtype, int threads) {
  if (dtype == "bf16") {
    throw_error(ErrorKind::invalid_input,
                "--dtype bf16: the cpu backend runs f32 activations and KV only" +
                    std::string(device == "auto" ? " (--device auto found no CUDA device)" : "") +
                    "; use --dtype f32 or auto on the cpu, or bf16 with --device cuda");
  }
  return make_cpu_backend(threads);
}

}  // namespace

std::unique_ptr<Backend> make_backend(const std::string& device, int threads, const std::string& dtype) {
  if (dtype != "auto" && dtype != "bf16" && dtype != "f32") {
    throw_error(ErrorKind::invalid_input, "--dtype must be auto, bf16 or f32, got '" + dtype + "'");
  }
  if (device == "cpu") return make_cpu(device, dtype, threads);
#ifdef LOUISKV_HAVE_CUDA
  if (device == "cuda" || device == "auto") {
    // auto: bf16, the fast path; f32 is the precision mode that tracks the cpu reference.
    if (cuda_device_available()) return make_cuda_backend(0, dtype == "f32" ? DType::f32 : DType::bf16);
    if (device == "cuda") throw_error(ErrorKind::unsupported, "--device cuda: no CUDA device or driver is available");
    return make_cpu(device, dtype, threads);
  }
#else
  if (device == "cuda") throw_error(ErrorKind::unsupported, "--device cuda: this louiskv was built without the CUDA backend");
  if (device == "auto") return make_cpu(device, dtype, threads);
#endif
  throw_error(ErrorKind::invalid_input, "--device must be auto, cpu or cuda, got '" + device + "'");
}

}  // namespace louiskv
