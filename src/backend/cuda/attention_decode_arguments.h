// What the decode attention kernels of both precisions (attention_decode.cu,
// attention_decode_f32.cu) receive: the plan, the workspace's partial results and the work
// items, derived once from checked parameters. Internal to those two files.
#pragma once

#include <cstdint>

#include "backend/cuda/attention_decode.h"
#include "backend/cuda/view_checks.h"

namespace louiskv::kernels {

// Element: the activations' type (q and out), __nv_bfloat16 or float.
template <class Element>
struct DecodeKernelArguments {
  const Element* q;
  const DeviceSpan* spans;
  const int32_t* indptr;
  const int32_t* chunk_first_span;
  float* partial_out;  // [B * Hq, parts, D]
  float* partial_max;  // [B * Hq, parts], base-2 scores
  float* partial_sum;  // [B * Hq, parts]
  int* counters;       // [rows * head blocks], zero between launches; null: merge by a second kernel
  Element* out;        // [B * Hq, D]
  float* lse;          // [B * Hq] or null
  int kv_heads;
  int query_heads;
  int group;  // query heads per KV head
  int head_blocks;
  int chunk_tokens;
  int splits;  // chunks per row
  int parts;   // blocks per row and head block
  int items;   // rows x head blocks x parts
  float scale_log2;
};

// The arguments of a launch whose work items each serve `heads_per_item` query heads of a
// group; `merge_in_kernel` asks for the counters (taken only where there are few enough rows
// and head blocks for the workspace's counter region). Throws where the items do not fit an int.
template <class Element>
DecodeKernelArguments<Element> decode_kernel_arguments(const DecodeAttentionParams& params,
                                                       const DecodeAttentionShape& shape, int64_t heads_per_item,
                                                       bool merge_in_kernel) {
  const int64_t head_blocks = (shape.group + heads_per_item - 1) / heads_per_item;
  const int64_t parts = decode_parts(params.split.splits);
  const int64_t items = shape.rows * head_blocks * parts;
  LOUISKV_REQUIRE(items < (int64_t(1) << 31), "attention_decode",
                  "too many work items (rows x head blocks x parts) for one launch");
  DecodeKernelArguments<Element> args{};
  args.q = params.q.as<const Element>();
  args.spans = params.spans;
  args.indptr = params.indptr;
  args.chunk_first_span = params.chunk_first_span;
  // The workspace: the merge counters' fixed region, then the partials.
  const int64_t partial_floats = shape.query_rows * parts;
  args.counters =
      merge_in_kernel && shape.rows * head_blocks <= decode_max_counters ? static_cast<int*>(params.workspace) : nullptr;
  args.partial_out = reinterpret_cast<float*>(static_cast<char*>(params.workspace) + decode_counter_bytes);
  args.partial_max = args.partial_out + partial_floats * shape.head_dim;
  args.partial_sum = args.partial_max + partial_floats;
  args.out = params.out.as<Element>();
  args.lse = params.lse.empty() ? nullptr : params.lse.as<float>();
  args.kv_heads = params.kv_heads;
  args.query_heads = int(shape.query_heads);
  args.group = int(shape.group);
  args.head_blocks = int(head_blocks);
  args.chunk_tokens = params.split.chunk_tokens;
  args.splits = params.split.splits;
  args.parts = int(parts);
  args.items = int(items);
  args.scale_log2 = params.scale * 1.4426950408889634f;  // scores in base 2
  return args;
}

// Persistent blocks: one per work item, or the split's concurrent blocks where fewer.
template <class Element>
unsigned decode_grid_blocks(const DecodeKernelArguments<Element>& args, int concurrent_blocks) {
  return unsigned(concurrent_blocks > 0 && concurrent_blocks < args.items ? concurrent_blocks : args.items);
}

}  // namespace louiskv::kernels
