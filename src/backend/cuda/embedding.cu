#include "backend/cuda/embedding.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/element_types.cuh"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

namespace {

constexpr int threads_per_block = 256;

// One block per token; threads stride over the hidden dimension.
template <class Out, class Table>
__global__ void embedding_kernel(Out* out, const Table* table, const int32_t* ids, int64_t vocab,
                                 int64_t hidden) {
  int64_t token = blockIdx.x;
  int32_t id = ids[token];
  Out* out_row = out + token * hidden;
  if (id < 0 || id >= vocab) {
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out_row[i] = from_float<Out>(__int_as_float(0x7fc00000));
    return;
  }
  const Table* row = table + int64_t(id) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) out_row[i] = from_float<Out>(to_float(row[i]));
}

// bf16 table into bf16 out, 16 bytes per access.
__global__ void embedding_bf16x8_kernel(uint4* out, const uint4* table, const int32_t* ids,
                                        int64_t vocab, int64_t row_vectors) {
  int64_t token = blockIdx.x;
  int32_t id = ids[token];
  uint4* out_row = out + token * row_vectors;
  if (id < 0 || id >= vocab) {
    uint4 nan{0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u, 0x7fc07fc0u};
    for (int64_t i = threadIdx.x; i < row_vectors; i += blockDim.x) out_row[i] = nan;
    return;
  }
  const uint4* row = table + int64_t(id) * row_vectors;
  for (int64_t i = threadIdx.x; i < row_vectors; i += blockDim.x) out_row[i] = row[i];
}

template <class Out>
void launch_for_table(const EmbeddingParams& params, Out* out, int64_t tokens, int64_t vocab,
                      int64_t hidden, cudaStream_t stream) {
  const int32_t* ids = params.ids.as<const int32_t>();
  switch (params.table.dtype) {
    case DType::f32:
      embedding_kernel<<<unsigned(tokens), threads_per_block, 0, stream>>>(
          out, params.table.as<const float>(), ids, vocab, hidden);
      break;
    case DType::f16:
      embedding_kernel<<<unsigned(tokens), threads_per_block, 0, stream>>>(
          out, params.table.as<const __half>(), ids, vocab, hidden);
      break;
    case DType::bf16:
      embedding_kernel<<<unsigned(tokens), threads_per_block, 0, stream>>>(
          out, params.table.as<const __nv_bfloat16>(), ids, vocab, hidden);
      break;
    case DType::i32: break;  // rejected by the checks
  }
}

}  // namespace

void launch_embedding(const EmbeddingParams& params, cudaStream_t stream) {
  const char* op = "embedding";
  require_on_device(params.out, op, "out");
  require_device_accessible(params.table, op, "table");
  require_on_device(params.ids, op, "ids");
  require_rank(params.out, 2, op, "out");
  require_rank(params.table, 2, op, "table");
  LOUISKV_REQUIRE(params.out.dtype == DType::bf16 || params.out.dtype == DType::f32, op,
          "out (" + params.out.describe() + ") must be bf16 or f32");
  require_floating(params.table, op, "table");
  require_dtype(params.ids, DType::i32, op, "ids");
  int64_t tokens = params.out.dim(0);
  int64_t hidden = params.out.dim(1);
  int64_t vocab = params.table.dim(0);
  LOUISKV_REQUIRE(params.ids.numel() == tokens, op,
          "ids (" + params.ids.describe() + ") must hold one id per row of out (" + params.out.describe() + ")");
  LOUISKV_REQUIRE(params.table.dim(1) == hidden, op,
          "table (" + params.table.describe() + ") and out (" + params.out.describe() +
              ") must have the same row width");
  require_grid_dimension(tokens, 2147483647, op, "the token count");
  if (tokens == 0 || hidden == 0) return;
  if (params.out.dtype == DType::bf16 && params.table.dtype == DType::bf16 &&
      vector_friendly(hidden, {params.out.data, params.table.data})) {
    embedding_bf16x8_kernel<<<unsigned(tokens), threads_per_block, 0, stream>>>(
        params.out.as<uint4>(), params.table.as<const uint4>(), params.ids.as<const int32_t>(), vocab,
        hidden / 8);
  } else if (params.out.dtype == DType::bf16) {
    launch_for_table(params, params.out.as<__nv_bfloat16>(), tokens, vocab, hidden, stream);
  } else {
    launch_for_table(params, params.out.as<float>(), tokens, vocab, hidden, stream);
  }
  LOUISKV_CUDA_CHECK_LAUNCH();
}

}  // namespace louiskv::kernels
