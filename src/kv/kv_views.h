// Views and transfers shared by the KV memory model. Every byte moves through the Backend
// (copy, convert, write_kv), so that the CUDA backend runs the same code; only the host pool,
// which is host memory by definition, is also touched directly by the CPU.
//
// A cache here is [kv_heads, capacity, head_dim]: each KV head's tokens are contiguous rows, so a
// run of tokens of one head is one [count, head_dim] view and one span.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace louiskv {

// Rows [first, first + count) of KV head `head` of a cache [kv_heads, capacity, head_dim]:
// a view [count, head_dim].
TensorView head_rows(TensorView cache, int64_t head, int64_t first, int64_t count);

// Row (token) `token` of a batch of per-head rows [tokens, kv_heads, head_dim]: a view
// [1, kv_heads, head_dim], the shape write_kv takes.
TensorView token_rows(TensorView rows, int64_t token);

// Head `head` of one token's rows [1, kv_heads, head_dim]: a view [1, head_dim].
TensorView token_head(TensorView token, int64_t head);

// dst <- src, converting when the dtypes differ (activations and KV may use different dtypes).
void copy_converting(Backend& backend, TensorView dst, TensorView src);

// Reads any floating view as fp32 on the host. A view in host memory (device cpu) is read in
// place; device memory goes through `staging` (host memory, grown as needed) and waits for the
// backend. The decode loop should not need this once scoring runs on the device.
void read_as_f32(Backend& backend, TensorView source, std::vector<float>& out, Buffer& staging);

}  // namespace louiskv
