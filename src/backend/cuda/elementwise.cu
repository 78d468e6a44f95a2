#include "backend/cuda/elementwise.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int threads_per_block = 256;

struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};

// silu(g) * u in fp32; expf overflows to inf for g < -88, where g / inf correctly gives -0.
struct SwigluOp {
  __device__ float operator()(float gate, float up) const { return gate / (1.0f + expf(-gate)) * up; }
};

template <class T, class Op>
__global__ void binary_scalar_kernel(T* out, const T* a, const T* b, int64_t count, Op op) {
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    out[i] = from_float<T>(op(to_float(a[i]), to_float(b[i])));
  }
}

// 8 bf16 per thread and access: 16-byte loads and stores.
template <class Op>
__global__ void binary_bf16x8_kernel(uint4* out, const uint4* a, const uint4* b, int64_t vectors,
                                     Op op) {
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < vectors; i += stride) {
    float x[8], y[8], z[8];
    unpack_bf16x8(a[i], x);
    unpack_bf16x8(b[i], y);
#pragma unroll
    for (int e = 0; e < 8; ++e) z[e] = op(x[e], y[e]);
    out[i] = pack_bf16x8(z);
  }
}

unsigned grid_for(int64_t items) {
  // Enough blocks to fill any current GPU several times; the kernels stride over the rest.
  int64_t blocks = (items + threads_per_block - 1) / threads_per_block;
  return unsigned(blocks < 1 ? 1 : blocks > 65536 ? 65536 : blocks);
}

template <class Op>
void launch_binary(const TensorView& out, const TensorView& a, const TensorView& b, Op op,
                   cudaStream_t stream) {
  int64_t count = out.numel();
  if (count == 0) return;
  if (out.dtype == DType::bf16) {
    if (vector_friendly(count, {out.data, a.data, b.data})) {
      int64_t vectors = count / 8;
      binary_bf16x8_kernel<<<grid_for(vectors), threads_per_block, 0, stream>>>(
          out.as<uint4>(), a.as<const uint4>(), b.as<const uint4>(), vectors, op);
    } else {
      binary_scalar_kernel<<<grid_for(count), threads_per_block, 0, stream>>>(
          out.as<__nv_bfloat16>(), a.as<const __nv_bfloat16>(), b.as<const __nv_bfloat16>(), count,
          op);
    }
  } else {
    binary_scalar_kernel<<<grid_for(count), threads_per_block, 0, stream>>>(
        out.as<float>(), a.as<const float>(), b.as<const float>(), count, op);
  }
  LOUISKV_CUDA_CHECK_LAUNCH();
}

void check_binary(std::string_view op, const TensorView& out, const TensorView& a,
                  const TensorView& b, const char* a_name, const char* b_name) {
  require_on_device(out, op, "out");
  require_on_device(a, op, a_name);
  require_on_device(b, op, b_name);
  LOUISKV_REQUIRE(out.dtype == DType::bf16 || out.dtype == DType::f32, op,
          "out (" + out.describe() + ") must be bf16 or f32");
  require_dtype(a, out.dtype, op, a_name);
  require_dtype(b, out.dtype, op, b_name);
  LOUISKV_REQUIRE(a.numel() == out.numel() && b.numel() == out.numel(), op,
          std::string("out (") + out.describe() + "), " + a_name + " (" + a.describe() + ") and " +
              b_name + " (" + b.describe() + ") must have the same element count");
}

}  // namespace

void launch_add(const AddParams& params, cudaStream_t stream) {
  check_binary("add", params.out, params.a, params.b, "a", "b");
  launch_binary(params.out, params.a, params.b, AddOp{}, stream);
}

void launch_swiglu(const SwigluParams& params, cudaStream_t stream) {
  check_binary("swiglu", params.out, params.gate, params.up, "gate", "up");
  launch_binary(params.out, params.gate, params.up, SwigluOp{}, stream);
}

}  // namespace louiskv::kernels
