// Device-side element types and conversions shared by the kernels: the storage type of each
// floating DType, loads and stores through fp32, and the 16-byte vector of 8 16-bit elements
// that memory-bound kernels move per thread.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <initializer_list>

#include "common/dtype.h"

namespace louiskv::kernels {

template <DType dtype>
struct Storage;
template <>
struct Storage<DType::f32> {
  using type = float;
};
template <>
struct Storage<DType::f16> {
  using type = __half;
};
template <>
struct Storage<DType::bf16> {
  using type = __nv_bfloat16;
};

template <DType dtype>
using storage_t = typename Storage<dtype>::type;

__device__ __forceinline__ float to_float(float value) { return value; }
__device__ __forceinline__ float to_float(__half value) { return __half2float(value); }
__device__ __forceinline__ float to_float(__nv_bfloat16 value) { return __bfloat162float(value); }

template <class T>
__device__ __forceinline__ T from_float(float value);
template <>
__device__ __forceinline__ float from_float<float>(float value) {
  return value;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float value) {
  return __float2half_rn(value);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float value) {
  return __float2bfloat16_rn(value);
}

// 8 bf16 values in 16 bytes, the unit of a vectorised load or store.
union Bf16x8 {
  uint4 bits;
  __nv_bfloat162 pairs[4];
};

__device__ __forceinline__ void unpack_bf16x8(const uint4& bits, float (&out)[8]) {
  Bf16x8 packed;
  packed.bits = bits;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float2 pair = __bfloat1622float2(packed.pairs[i]);
    out[2 * i] = pair.x;
    out[2 * i + 1] = pair.y;
  }
}

__device__ __forceinline__ uint4 pack_bf16x8(const float (&in)[8]) {
  Bf16x8 packed;
#pragma unroll
  for (int i = 0; i < 4; ++i) packed.pairs[i] = __floats2bfloat162_rn(in[2 * i], in[2 * i + 1]);
  return packed.bits;
}

// True when every pointer is 16-byte aligned and `count` is a multiple of 8 elements, so a
// kernel may move 8 bf16 values per access.
inline bool vector_friendly(int64_t count, std::initializer_list<const void*> pointers) {
  if (count % 8 != 0) return false;
  for (const void* pointer : pointers) {
    if (reinterpret_cast<uintptr_t>(pointer) % 16 != 0) return false;
  }
  return true;
}

// Blocks of `threads` threads covering `items` items, one per thread.
inline unsigned blocks_for(int64_t items, int threads) {
  return unsigned((items + threads - 1) / threads);
}

}  // namespace louiskv::kernels
