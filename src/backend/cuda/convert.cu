#include "backend/cuda/convert.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int threads_per_block = 256;

template <class Out, class In>
__global__ void convert_kernel(Out* out, const In* in, int64_t count) {
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    out[i] = from_float<Out>(to_float(in[i]));
  }
}

template <class Out>
void launch_from(const ConvertParams& params, Out* out, int64_t count, unsigned blocks,
                 cudaStream_t stream) {
  switch (params.in.dtype) {
    case DType::f32:
      convert_kernel<<<blocks, threads_per_block, 0, stream>>>(out, params.in.as<const float>(), count);
      break;
    case DType::f16:
      convert_kernel<<<blocks, threads_per_block, 0, stream>>>(out, params.in.as<const __half>(), count);
      break;
    case DType::bf16:
      convert_kernel<<<blocks, threads_per_block, 0, stream>>>(
          out, params.in.as<const __nv_bfloat16>(), count);
      break;
    case DType::i32: break;  // rejected by the checks
  }
}

}  // namespace

void launch_convert(const ConvertParams& params, cudaStream_t stream) {
  const char* op = "convert";
  require_device_accessible(params.out, op, "dst");
  require_device_accessible(params.in, op, "src");
  require_floating(params.out, op, "dst");
  require_floating(params.in, op, "src");
  LOUISKV_REQUIRE(params.out.numel() == params.in.numel(), op,
          "dst (" + params.out.describe() + ") and src (" + params.in.describe() +
              ") must have the same element count");
  int64_t count = params.out.numel();
  if (count == 0) return;
  int64_t wanted = (count + threads_per_block - 1) / threads_per_block;
  unsigned blocks = unsigned(wanted > 65536 ? 65536 : wanted);
  switch (params.out.dtype) {
    case DType::f32: launch_from(params, params.out.as<float>(), count, blocks, stream); break;
    case DType::f16: launch_from(params, params.out.as<__half>(), count, blocks, stream); break;
    case DType::bf16:
      launch_from(params, params.out.as<__nv_bfloat16>(), count, blocks, stream);
      break;
    case DType::i32: break;
  }
  LOUISKV_CUDA_CHECK_LAUNCH();
}

}  // namespace louiskv::kernels
