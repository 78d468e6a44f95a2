#include "backend/cuda/gather.h"

#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int gather_threads = 128;
// Vectors per thread per tensor: all of a chunk's loads are issued before its first store.
constexpr int gather_unroll = 4;
constexpr int chunk_vectors = gather_threads * gather_unroll;  // 8 KiB
// Resident blocks per multiprocessor the grid asks for; the rest loop over the chunks.
constexpr int gather_blocks_per_multiprocessor = 16;

// One chunk per block and iteration. Zero-copy reads of pinned memory cross PCIe with a latency
// of a microsecond or two, so bandwidth comes from many requests in flight: every thread issues
// its 2 x gather_unroll 16-byte loads before it stores anything.
__global__ void __launch_bounds__(gather_threads) gather_kv_kernel(const GatherChunk* chunks, int64_t count) {
  for (int64_t c = blockIdx.x; c < count; c += gridDim.x) {
    const GatherChunk chunk = chunks[c];
    uint4 keys[gather_unroll], values[gather_unroll];
#pragma unroll
    for (int i = 0; i < gather_unroll; ++i) {
      int index = threadIdx.x + i * gather_threads;
      if (index < chunk.vectors) {
        keys[i] = chunk.source_keys[index];
        values[i] = chunk.source_values[index];
      }
    }
#pragma unroll
    for (int i = 0; i < gather_unroll; ++i) {
      int index = threadIdx.x + i * gather_threads;
      if (index < chunk.vectors) {
        chunk.keys[index] = keys[i];
        chunk.values[index] = values[i];
      }
    }
  }
}

// One 16-byte vector per thread and step; `vectors` per row.
__global__ void reorder_kv_kernel(uint4* dst_keys, uint4* dst_values, const uint4* src_keys,
                                  const uint4* src_values, const int32_t* order, int64_t heads, int64_t count,
                                  int64_t vectors, int64_t dst_capacity, int64_t dst_first, int64_t src_capacity,
                                  int64_t src_first) {
  const int64_t total = heads * count * vectors;
  for (int64_t index = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; index < total;
       index += int64_t(gridDim.x) * blockDim.x) {
    const int64_t vector = index % vectors;
    const int64_t row = index / vectors;  // h * count + i
    const int64_t head = row / count, i = row % count;
    const int64_t source = (head * src_capacity + src_first + order[row]) * vectors + vector;
    const int64_t destination = (head * dst_capacity + dst_first + i) * vectors + vector;
    dst_keys[destination] = src_keys[source];
    dst_values[destination] = src_values[source];
  }
}

bool aligned16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

}  // namespace

int64_t plan_gather(std::span<const KvCopy> copies, int64_t row_bytes, std::vector<GatherChunk>& chunks) {
  const char* op = "gather_kv";
  LOUISKV_REQUIRE(row_bytes > 0 && row_bytes % 16 == 0, op,
                  "row_bytes (" + std::to_string(row_bytes) + ") must be a positive multiple of 16");
  int64_t bytes = 0;
  for (size_t i = 0; i < copies.size(); ++i) {
    const KvCopy& copy = copies[i];
    LOUISKV_REQUIRE(copy.rows >= 0, op, "copy " + std::to_string(i) + " has a negative row count");
    if (copy.rows == 0) continue;
    LOUISKV_REQUIRE(copy.source_keys && copy.source_values && copy.keys && copy.values, op,
                    "copy " + std::to_string(i) + " has a null pointer");
    LOUISKV_REQUIRE(aligned16(copy.source_keys) && aligned16(copy.source_values) && aligned16(copy.keys) &&
                        aligned16(copy.values),
                    op, "copy " + std::to_string(i) + " is not 16-byte aligned");
    const int64_t vectors = copy.rows * row_bytes / 16;
    for (int64_t first = 0; first < vectors; first += chunk_vectors) {
      chunks.push_back({static_cast<const uint4*>(copy.source_keys) + first,
                        static_cast<const uint4*>(copy.source_values) + first, static_cast<uint4*>(copy.keys) + first,
                        static_cast<uint4*>(copy.values) + first,
                        int32_t(vectors - first < chunk_vectors ? vectors - first : chunk_vectors)});
    }
    bytes += 2 * copy.rows * row_bytes;
  }
  return bytes;
}

void launch_gather_kv(const GatherParams& params, cudaStream_t stream) {
  if (params.chunk_count == 0) return;
  LOUISKV_REQUIRE(params.chunks != nullptr && params.multiprocessors > 0, "gather_kv", "no chunk table");
  int64_t blocks = params.chunk_count;
  const int64_t resident = int64_t(params.multiprocessors) * gather_blocks_per_multiprocessor;
  if (blocks > resident) blocks = resident;
  gather_kv_kernel<<<unsigned(blocks), gather_threads, 0, stream>>>(params.chunks, params.chunk_count);
  LOUISKV_CUDA_CHECK_LAUNCH();
}

void launch_reorder_kv(const ReorderParams& params, cudaStream_t stream) {
  const char* op = "reorder_kv";
  const TensorView* kv[] = {&params.dst_keys, &params.dst_values, &params.src_keys, &params.src_values};
  for (const TensorView* view : kv) {
    require_device_accessible(*view, op, "K/V");
    require_rank(*view, 3, op, "K/V");
    LOUISKV_REQUIRE(view->dtype == params.dst_keys.dtype && view->dim(0) == params.dst_keys.dim(0) &&
                        view->dim(2) == params.dst_keys.dim(2),
                    op, "K/V views must share dtype, heads and head_dim: " + view->describe());
  }
  LOUISKV_REQUIRE(params.dst_keys.shape == params.dst_values.shape && params.src_keys.shape == params.src_values.shape,
                  op, "keys and values differ in shape");
  require_device_accessible(params.order, op, "order");
  require_dtype(params.order, DType::i32, op, "order");
  require_rank(params.order, 2, op, "order");
  const int64_t heads = params.dst_keys.dim(0), count = params.order.dim(1);
  LOUISKV_REQUIRE(params.order.dim(0) == heads, op, "order must be [heads, N]");
  LOUISKV_REQUIRE(params.dst_first >= 0 && params.dst_first + count <= params.dst_keys.dim(1) && params.src_first >= 0 &&
                      params.src_first + count <= params.src_keys.dim(1),
                  op, "rows beyond a view's capacity");
  const int64_t row_bytes = params.dst_keys.dim(2) * int64_t(dtype_size(params.dst_keys.dtype));
  LOUISKV_REQUIRE(row_bytes % 16 == 0, op, "rows must be a multiple of 16 bytes");
  for (const TensorView* view : kv) LOUISKV_REQUIRE(aligned16(view->data), op, "K/V must be 16-byte aligned");
  const int64_t vectors = row_bytes / 16;
  const int64_t total = heads * count * vectors;
  if (total == 0) return;
  const int threads = 256;
  int64_t blocks = (total + threads - 1) / threads;
  if (blocks > 65536) blocks = 65536;
  reorder_kv_kernel<<<unsigned(blocks), threads, 0, stream>>>(
      params.dst_keys.as<uint4>(), params.dst_values.as<uint4>(), params.src_keys.as<const uint4>(),
      params.src_values.as<const uint4>(), params.order.as<const int32_t>(), heads, count, vectors,
      params.dst_keys.dim(1), params.dst_first, params.src_keys.dim(1), params.src_first);
  LOUISKV_CUDA_CHECK_LAUNCH();
}

}  // namespace louiskv::kernels
