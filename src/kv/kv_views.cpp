#include "kv/kv_views.h"

namespace louiskv {

TensorView head_rows(TensorView cache, int64_t head, int64_t first, int64_t count) {
  LOUISKV_CHECK(cache.rank == 3, "a KV cache view is [kv_heads, capacity, head_dim]");
  LOUISKV_CHECK(head >= 0 && head < cache.dim(0), "KV head out of range");
  LOUISKV_CHECK(first >= 0 && count >= 0 && first + count <= cache.dim(1),
                "token rows out of the cache's capacity");
  int64_t dim = cache.dim(2);
  size_t offset = size_t((head * cache.dim(1) + first) * dim) * dtype_size(cache.dtype);
  return TensorView(static_cast<char*>(cache.data) + offset, cache.dtype, cache.device,
                    {count, dim});
}

TensorView token_rows(TensorView rows, int64_t token) {
  LOUISKV_CHECK(rows.rank == 3, "per-head rows are [tokens, kv_heads, head_dim]");
  return rows.rows(token, 1);
}

TensorView token_head(TensorView token, int64_t head) {
  LOUISKV_CHECK(token.rank == 3 && token.dim(0) == 1, "one token's rows are [1, kv_heads, head_dim]");
  LOUISKV_CHECK(head >= 0 && head < token.dim(1), "KV head out of range");
  int64_t dim = token.dim(2);
  size_t offset = size_t(head * dim) * dtype_size(token.dtype);
  return TensorView(static_cast<char*>(token.data) + offset, token.dtype, token.device, {1, dim});
}

void copy_converting(Backend& backend, TensorView dst, TensorView src) {
  if (dst.dtype == src.dtype) {
    backend.copy(dst, src);
  } else {
    backend.convert(dst, src);
  }
}

void read_as_f32(Backend& backend, TensorView source, std::vector<float>& out, Buffer& staging) {
  size_t count = size_t(source.numel());
  out.resize(count);
  if (count == 0) return;
  const void* readable = source.data;
  if (source.device == Device::cpu) {
    backend.synchronize();  // the op that wrote `source` may still be running
  } else {
    if (staging.bytes() < source.nbytes()) staging = backend.allocate_host(source.nbytes());
    TensorView host(staging.data(), source.dtype, staging.device(), {source.numel()});
    backend.copy(host, source.reshaped({source.numel()}));
    backend.synchronize();
    readable = staging.data();
  }
  convert_to_f32(readable, source.dtype, out.data(), count);
}

}  // namespace louiskv
