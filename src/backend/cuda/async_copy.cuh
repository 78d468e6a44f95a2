// Thin wrappers over the PTX instructions the attention and decode GEMM kernels build on
// (sm_80 and later, the launch-overlap pair sm_90): asynchronous global-to-shared copies,
// shared-memory matrix loads, the bf16 tensor-core MMA, the fast base-2 exponential, and the
// two halves of programmatic dependent launch.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

namespace louiskv::kernels {

// Copies 16 bytes from global (or mapped host) memory to shared memory without passing through
// registers. When `valid` is false nothing is read and the 16 bytes are zero-filled, so tiles can
// run past the end of their data without a branch around the copy.
__device__ __forceinline__ void copy_async_16(void* shared, const void* global, bool valid) {
  unsigned address = unsigned(__cvta_generic_to_shared(shared));
  int source_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(global),
               "r"(source_bytes));
}

__device__ __forceinline__ void copy_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most `pending` committed groups of this thread are still in flight.
template <int pending>
__device__ __forceinline__ void copy_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(pending));
}

// Four 8x8 b16 matrices; lane l gives the address of row l % 8 of matrix l / 8.
__device__ __forceinline__ void load_matrix_x4(uint32_t (&out)[4], const void* shared) {
  unsigned address = unsigned(__cvta_generic_to_shared(shared));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(out[0]), "=r"(out[1]), "=r"(out[2]), "=r"(out[3])
               : "r"(address));
}

// The same, each matrix transposed on the way (for operands stored k-major).
__device__ __forceinline__ void load_matrix_x4_transposed(uint32_t (&out)[4], const void* shared) {
  unsigned address = unsigned(__cvta_generic_to_shared(shared));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(out[0]), "=r"(out[1]), "=r"(out[2]), "=r"(out[3])
               : "r"(address));
}

// c[16x8] += a[16x16] * b[16x8], bf16 operands, fp32 accumulators.
__device__ __forceinline__ void mma_bf16_16x8x16(float (&c)[4], const uint32_t (&a)[4],
                                                 uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as a bf16 pair, the first in the low half (the lower column of a fragment).
__device__ __forceinline__ uint32_t pack_bf16_pair(float low, float high) {
  __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
  return *reinterpret_cast<uint32_t*>(&pair);
}

// 2^x with the hardware approximation (relative error ~2^-22), flushing denormals; exp2(-inf) = 0.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Programmatic dependent launch (sm_90). A kernel launched with the programmatic stream
// serialization attribute may start while the kernel before it in the stream is finishing;
// wait_for_previous_grid() then blocks until that kernel has completed and its memory writes
// are visible. Every kernel launched that way calls it before its first access to global
// memory, so that the ordering stays transitive along the stream (a kernel that never waited
// could finish before its own predecessor). On a normal launch it returns at once.
__device__ __forceinline__ void wait_for_previous_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// Lets the next kernel in the stream (if launched with the attribute) be scheduled onto
// multiprocessors this grid leaves free; it still waits for this grid before touching memory.
__device__ __forceinline__ void allow_next_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

}  // namespace louiskv::kernels
