#include "backend/cuda/write_kv.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int threads_per_block = 256;

// Element type Unit is either a 16-byte vector (8 bf16 or 4 f32) or one element; `width` counts
// Units per row.
template <class Unit>
__global__ void write_kv_kernel(Unit* cache, const Unit* rows, int64_t tokens, int64_t kv_heads,
                                int64_t capacity, int64_t first_position, int64_t width) {
  int64_t total = tokens * kv_heads * width;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t index = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; index < total;
       index += stride) {
    int64_t column = index % width;
    int64_t head = (index / width) % kv_heads;
    int64_t token = index / (width * kv_heads);
    cache[(head * capacity + first_position + token) * width + column] = rows[index];
  }
}

}  // namespace

void launch_write_kv(const WriteKvParams& params, cudaStream_t stream) {
  const char* op = "write_kv";
  require_device_accessible(params.cache, op, "cache");
  require_on_device(params.rows, op, "rows");
  require_rank(params.cache, 3, op, "cache");
  require_rank(params.rows, 3, op, "rows");
  LOUISKV_REQUIRE(params.cache.dtype == DType::bf16 || params.cache.dtype == DType::f32, op,
                  "cache (" + params.cache.describe() + ") must be bf16 or f32");
  require_dtype(params.rows, params.cache.dtype, op, "rows");
  const bool f32 = params.cache.dtype == DType::f32;
  int64_t kv_heads = params.cache.dim(0);
  int64_t capacity = params.cache.dim(1);
  int64_t head_dim = params.cache.dim(2);
  int64_t tokens = params.rows.dim(0);
  require_shape(params.rows, {tokens, kv_heads, head_dim}, op, "rows");
  LOUISKV_REQUIRE(params.first_position >= 0 && params.first_position + tokens <= capacity, op,
          "positions [" + std::to_string(params.first_position) + ", " +
              std::to_string(params.first_position + tokens) + ") do not fit a cache of capacity " +
              std::to_string(capacity));
  int64_t elements = tokens * kv_heads * head_dim;
  if (elements == 0) return;
  // 16-byte vectors need rows of whole vectors (8 bf16 or 4 f32) and aligned bases.
  const int64_t per_vector = f32 ? 4 : 8;
  const bool aligned = ((reinterpret_cast<uintptr_t>(params.cache.data) | reinterpret_cast<uintptr_t>(params.rows.data)) &
                        15) == 0;
  bool vectors = head_dim % per_vector == 0 && aligned;
  int64_t units = vectors ? elements / per_vector : elements;
  int64_t wanted = (units + threads_per_block - 1) / threads_per_block;
  unsigned blocks = unsigned(wanted > 65536 ? 65536 : wanted);
  if (vectors) {
    write_kv_kernel<<<blocks, threads_per_block, 0, stream>>>(
        params.cache.as<uint4>(), params.rows.as<const uint4>(), tokens, kv_heads, capacity,
        params.first_position, head_dim / per_vector);
  } else if (f32) {
    write_kv_kernel<<<blocks, threads_per_block, 0, stream>>>(
        params.cache.as<float>(), params.rows.as<const float>(), tokens, kv_heads, capacity,
        params.first_position, head_dim);
  } else {
    write_kv_kernel<<<blocks, threads_per_block, 0, stream>>>(
        params.cache.as<__nv_bfloat16>(), params.rows.as<const __nv_bfloat16>(), tokens, kv_heads,
        capacity, params.first_position, head_dim);
  }
  LOUISKV_CUDA_CHECK_LAUNCH();
}

}  // namespace louiskv::kernels
