#include "backend/backend.h"
#include "runtime/engine.h"

#ifdef LOUISKV_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace louiskv {

std::unique_ptr<Backend> make_backend(const std::string& device, int threads) {
  if (device == "cpu") return make_cpu_backend(threads);
#ifdef LOUISKV_HAVE_CUDA
  if (device == "cuda" || device == "auto") {
    if (cuda_device_available()) return make_cuda_backend(0);
    if (device == "cuda") throw_error(ErrorKind::unsupported, "--device cuda: no CUDA device or driver is available");
    return make_cpu_backend(threads);
  }
#else
  if (device == "cuda") throw_error(ErrorKind::unsupported, "--device cuda: this louiskv was built without the CUDA backend");
  if (device == "auto") return make_cpu_backend(threads);
#endif
  throw_error(ErrorKind::invalid_input, "--device must be auto, cpu or cuda, got '" + device + "'");
}

}  // namespace louiskv
