// Parity of flash prefill attention and sparse decode attention with the CPU reference.
//
// Prefill: chunks that start at position 0 and past it, lengths around the kernel's 64-query and
// 64-key tiles, GQA groups 1 to 16; cache slots the chunk must not read hold NaN on the GPU.
// Decode: spans of random lengths (1 and lengths that are not multiples of 16 included) at random
// places of a K/V pool, rows long enough to be cut into several chunks, batches of 1, 3 and 17,
// spans in mapped host memory, and an empty row.
// The f32 mode runs the same cases through its fp32 kernels on full-precision f32 inputs.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "backend/cuda/attention_decode.h"
#include "backend/cuda/attention_decode_f32.h"
#include "backend/cuda/attention_prefill.h"
#include "backend/cuda/decode_plan.h"
#include "cuda/parity_harness.h"

namespace louiskv::testing {
namespace {

TEST(CudaParity, AttentionPrefill) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  struct Case { int64_t tokens, first, query_heads, kv_heads, head_dim; };
  for (Case c : {Case{1, 0, 4, 4, 64}, Case{7, 5, 8, 2, 128}, Case{129, 0, 8, 1, 128}, Case{129, 100, 12, 2, 64},
                 Case{300, 37, 4, 2, 128}, Case{64, 64, 2, 2, 64}, Case{33, 0, 16, 1, 64}, Case{1024, 0, 8, 2, 128},
                 Case{1, 700, 8, 2, 128}}) {
    std::string what = "attention_prefill T=" + std::to_string(c.tokens) + " first=" + std::to_string(c.first) +
                       " heads " + std::to_string(c.query_heads) + "/" + std::to_string(c.kv_heads) +
                       " D=" + std::to_string(c.head_dim);
    const int64_t seen = c.first + c.tokens;
    const int64_t capacity = seen + 9;  // slots past the chunk: never attended
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    std::vector<float> q = random.uniform(size_t(c.tokens * c.query_heads * c.head_dim), -2.0f, 2.0f);
    std::vector<float> k = random.uniform(size_t(c.kv_heads * capacity * c.head_dim), -2.0f, 2.0f);
    std::vector<float> v = random.uniform(size_t(c.kv_heads * capacity * c.head_dim), -1.0f, 1.0f);

    auto cpu_q = make_tensor(*backends.cpu, DType::f32, {c.tokens, c.query_heads, c.head_dim}, q);
    auto cpu_k = make_tensor(*backends.cpu, DType::f32, {c.kv_heads, capacity, c.head_dim}, k);
    auto cpu_v = make_tensor(*backends.cpu, DType::f32, {c.kv_heads, capacity, c.head_dim}, v);
    auto cpu_out = make_output(*backends.cpu, DType::f32, {c.tokens, c.query_heads, c.head_dim});
    backends.cpu->attention_prefill(cpu_out.view, cpu_q.view, cpu_k.view, cpu_v.view, c.first, scale);

    // On the GPU the unattended slots are NaN: reading one would poison the output.
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (int64_t h = 0; h < c.kv_heads; ++h) {
      for (int64_t t = seen; t < capacity; ++t) {
        for (int64_t d = 0; d < c.head_dim; ++d) {
          k[size_t((h * capacity + t) * c.head_dim + d)] = nan;
          v[size_t((h * capacity + t) * c.head_dim + d)] = nan;
        }
      }
    }
    auto gpu_q = make_tensor(*backends.gpu, DType::bf16, {c.tokens, c.query_heads, c.head_dim}, q);
    auto gpu_k = make_tensor(*backends.gpu, DType::bf16, {c.kv_heads, capacity, c.head_dim}, k);
    auto gpu_v = make_tensor(*backends.gpu, DType::bf16, {c.kv_heads, capacity, c.head_dim}, v);
    auto gpu_out = make_output(*backends.gpu, DType::bf16, {c.tokens, c.query_heads, c.head_dim});
    backends.gpu->attention_prefill(gpu_out.view, gpu_q.view, gpu_k.view, gpu_v.view, c.first, scale);

    // P is rounded to bf16 before P V on the tensor cores, hence a looser bound than elementwise ops.
    std::vector<float> expected = rounded_to(read_values(*backends.cpu, cpu_out.view), DType::bf16);
    expect_close(read_values(*backends.gpu, gpu_out.view), expected, 1e-2, what);
    expect_guard_intact(*backends.gpu, gpu_out, what);

    // Both block shapes of the kernel (4 and 8 warps), both orders of its steps (the next
    // tile's scores before or after this tile's softmax), and at D = 64 warps of 32 queries,
    // whichever the backend defaults to.
    for (int variant = 0; variant < (c.head_dim == 64 ? 6 : 4); ++variant) {
      const int warps = variant % 2 == 0 ? 4 : 8;
      const int lookahead = variant / 2 == 1 ? 1 : 0;
      const int queries_per_warp = variant / 2 == 2 ? 32 : 16;
      auto variant_out = make_output(*backends.gpu, DType::bf16, {c.tokens, c.query_heads, c.head_dim});
      kernels::PrefillAttentionParams params;
      params.out = variant_out.view;
      params.q = gpu_q.view;
      params.k = gpu_k.view;
      params.v = gpu_v.view;
      params.first_position = c.first;
      params.scale = scale;
      params.warps = warps;
      params.score_lookahead = lookahead;
      params.queries_per_warp = queries_per_warp;
      kernels::launch_attention_prefill(params, nullptr);  // legacy stream: ordered with the copies
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      std::string name = what + " warps=" + std::to_string(warps) + " lookahead=" + std::to_string(lookahead) +
                         " queries/warp=" + std::to_string(queries_per_warp);
      expect_close(read_values(*backends.gpu, variant_out.view), expected, 1e-2, name);
      expect_guard_intact(*backends.gpu, variant_out, name);
    }
  }
}

struct DecodeCase {
  int64_t batch, query_heads, kv_heads, head_dim;
  int64_t max_row_tokens;
  bool host_pool;       // K/V pool in mapped host memory (allocate_host)
  bool short_spans;     // every span of length 1
  bool empty_row;       // row 1 attends nothing
  bool want_lse;
};

// One pool of K rows and one of V rows, [pool_tokens, D]; spans point into them.
struct SpanPlan {
  std::vector<std::vector<std::pair<int64_t, int32_t>>> rows;  // (first pool token, length) per span
};

SpanPlan random_plan(Random& random, const DecodeCase& c, int64_t pool_tokens) {
  static const int32_t lengths[] = {1, 3, 16, 17, 31, 64, 100, 250};
  SpanPlan plan;
  plan.rows.resize(size_t(c.batch * c.kv_heads));
  for (size_t r = 0; r < plan.rows.size(); ++r) {
    if (c.empty_row && r == 1) continue;
    // Row 0 is always as long as allowed, so that some row spans several chunks.
    int64_t target = r == 0 ? c.max_row_tokens : random.integer(1, c.max_row_tokens);
    int64_t total = 0;
    while (total < target) {
      int32_t length = c.short_spans ? 1 : lengths[random.integer(0, 7)];
      length = int32_t(std::min<int64_t>(length, target - total));
      plan.rows[r].push_back({random.integer(0, pool_tokens - length), length});
      total += length;
    }
  }
  return plan;
}

AttendedSpans spans_over(const SpanPlan& plan, const TensorView& keys, const TensorView& values, int64_t head_dim) {
  AttendedSpans spans;
  size_t row_bytes = size_t(head_dim) * dtype_size(keys.dtype);
  for (const auto& row : plan.rows) {
    for (auto [first, length] : row) {
      spans.add(static_cast<const char*>(keys.data) + size_t(first) * row_bytes,
                static_cast<const char*>(values.data) + size_t(first) * row_bytes, length);
    }
    spans.end_row();
  }
  return spans;
}

TEST(CudaParity, AttentionDecode) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  for (DecodeCase c : {DecodeCase{1, 8, 8, 64, 100, false, false, false, true},
                       DecodeCase{3, 32, 8, 128, 2100, false, false, false, true},
                       DecodeCase{17, 16, 2, 128, 700, false, false, false, false},
                       DecodeCase{3, 12, 2, 64, 1500, false, false, false, true},
                       DecodeCase{2, 32, 2, 128, 600, false, false, false, true},
                       DecodeCase{3, 8, 2, 128, 900, true, false, false, true},
                       DecodeCase{2, 4, 2, 64, 77, false, true, true, true},
                       DecodeCase{1, 32, 8, 128, 5000, false, false, false, true}}) {
    std::string what = "attention_decode B=" + std::to_string(c.batch) + " heads " + std::to_string(c.query_heads) +
                       "/" + std::to_string(c.kv_heads) + " D=" + std::to_string(c.head_dim) + " tokens<=" +
                       std::to_string(c.max_row_tokens) + (c.host_pool ? " host pool" : "") +
                       (c.short_spans ? " spans of 1" : "") + (c.empty_row ? " empty row" : "");
    const int64_t pool_tokens = 4096;
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    std::vector<float> q = random.uniform(size_t(c.batch * c.query_heads * c.head_dim), -2.0f, 2.0f);
    std::vector<float> k = random.uniform(size_t(pool_tokens * c.head_dim), -2.0f, 2.0f);
    std::vector<float> v = random.uniform(size_t(pool_tokens * c.head_dim), -1.0f, 1.0f);
    SpanPlan plan = random_plan(random, c, pool_tokens);

    auto cpu_q = make_tensor(*backends.cpu, DType::f32, {c.batch, c.query_heads, c.head_dim}, q);
    auto cpu_k = make_tensor(*backends.cpu, DType::f32, {pool_tokens, c.head_dim}, k);
    auto cpu_v = make_tensor(*backends.cpu, DType::f32, {pool_tokens, c.head_dim}, v);
    auto cpu_out = make_output(*backends.cpu, DType::f32, {c.batch, c.query_heads, c.head_dim});
    auto cpu_lse = make_output(*backends.cpu, DType::f32, {c.batch, c.query_heads});
    AttendedSpans cpu_spans = spans_over(plan, cpu_k.view, cpu_v.view, c.head_dim);
    backends.cpu->attention_decode(cpu_out.view, cpu_q.view, cpu_spans, scale, &cpu_lse.view);

    auto gpu_q = make_tensor(*backends.gpu, DType::bf16, {c.batch, c.query_heads, c.head_dim}, q);
    auto gpu_k = make_tensor(*backends.gpu, DType::bf16, {pool_tokens, c.head_dim}, k, c.host_pool);
    auto gpu_v = make_tensor(*backends.gpu, DType::bf16, {pool_tokens, c.head_dim}, v, c.host_pool);
    auto gpu_out = make_output(*backends.gpu, DType::bf16, {c.batch, c.query_heads, c.head_dim});
    auto gpu_lse = make_output(*backends.gpu, DType::f32, {c.batch, c.query_heads});
    AttendedSpans gpu_spans = spans_over(plan, gpu_k.view, gpu_v.view, c.head_dim);
    backends.gpu->attention_decode(gpu_out.view, gpu_q.view, gpu_spans, scale, c.want_lse ? &gpu_lse.view : nullptr);
    // The span list is host data: the call must have taken its own copy.
    gpu_spans.clear();

    expect_close(read_values(*backends.gpu, gpu_out.view),
                 rounded_to(read_values(*backends.cpu, cpu_out.view), DType::bf16), 1e-2, what);
    expect_guard_intact(*backends.gpu, gpu_out, what);
    if (!c.want_lse) continue;
    std::vector<float> lse = read_values(*backends.gpu, gpu_lse.view);
    std::vector<float> expected_lse = read_values(*backends.cpu, cpu_lse.view);
    // An empty row has lse = -inf on both; the finite ones are compared.
    std::vector<float> finite_gpu, finite_cpu;
    for (size_t i = 0; i < lse.size(); ++i) {
      if (std::isinf(expected_lse[i]) && expected_lse[i] < 0) {
        EXPECT_TRUE(std::isinf(lse[i]) && lse[i] < 0) << what << ": lse of an empty row is " << lse[i];
        continue;
      }
      finite_gpu.push_back(lse[i]);
      finite_cpu.push_back(expected_lse[i]);
    }
    expect_close(finite_gpu, finite_cpu, 1e-3, what + " lse");
    expect_guard_intact(*backends.gpu, gpu_lse, what + " lse");
  }
}

// Many calls in a row, each with a new span list, none waiting for the device: the staged span
// lists must not be overwritten while an earlier call's copy may still read them.
TEST(CudaParity, AttentionDecodeBackToBack) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  const DecodeCase c{4, 16, 4, 128, 300, false, false, false, true};
  const int64_t pool_tokens = 2048, calls = 40;
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  std::vector<float> q = random.uniform(size_t(c.batch * c.query_heads * c.head_dim), -2.0f, 2.0f);
  std::vector<float> k = random.uniform(size_t(pool_tokens * c.head_dim), -2.0f, 2.0f);
  std::vector<float> v = random.uniform(size_t(pool_tokens * c.head_dim), -1.0f, 1.0f);
  auto cpu_q = make_tensor(*backends.cpu, DType::f32, {c.batch, c.query_heads, c.head_dim}, q);
  auto cpu_k = make_tensor(*backends.cpu, DType::f32, {pool_tokens, c.head_dim}, k);
  auto cpu_v = make_tensor(*backends.cpu, DType::f32, {pool_tokens, c.head_dim}, v);
  auto gpu_q = make_tensor(*backends.gpu, DType::bf16, {c.batch, c.query_heads, c.head_dim}, q);
  auto gpu_k = make_tensor(*backends.gpu, DType::bf16, {pool_tokens, c.head_dim}, k);
  auto gpu_v = make_tensor(*backends.gpu, DType::bf16, {pool_tokens, c.head_dim}, v);
  std::vector<SpanPlan> plans;
  std::vector<std::vector<float>> expected;
  std::vector<OwnedTensor> outputs;
  for (int64_t call = 0; call < calls; ++call) {
    plans.push_back(random_plan(random, c, pool_tokens));
    auto cpu_out = make_output(*backends.cpu, DType::f32, {c.batch, c.query_heads, c.head_dim});
    AttendedSpans cpu_spans = spans_over(plans.back(), cpu_k.view, cpu_v.view, c.head_dim);
    backends.cpu->attention_decode(cpu_out.view, cpu_q.view, cpu_spans, scale, nullptr);
    expected.push_back(rounded_to(read_values(*backends.cpu, cpu_out.view), DType::bf16));
    outputs.push_back(make_output(*backends.gpu, DType::bf16, {c.batch, c.query_heads, c.head_dim}));
  }
  // Enqueue every call with one reused span list, then read all the results.
  AttendedSpans reused;
  for (int64_t call = 0; call < calls; ++call) {
    reused = spans_over(plans[size_t(call)], gpu_k.view, gpu_v.view, c.head_dim);
    backends.gpu->attention_decode(outputs[size_t(call)].view, gpu_q.view, reused, scale, nullptr);
  }
  for (int64_t call = 0; call < calls; ++call) {
    std::string what = "attention_decode back-to-back call " + std::to_string(call);
    expect_close(read_values(*backends.gpu, outputs[size_t(call)].view), expected[size_t(call)], 1e-2, what);
  }
}

// The other merge of a row's chunks (the last block of each row merges them, in one launch),
// run through the launcher on plans of several split sizes, twice each: its counters must be
// left at zero for the next call.
TEST(CudaParity, AttentionDecodeMergeInKernel) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  cudaDeviceProp properties{};
  ASSERT_EQ(cudaGetDeviceProperties(&properties, 0), cudaSuccess);
  kernels::DecodePlanUploader uploader;
  for (DecodeCase c : {DecodeCase{3, 32, 8, 128, 2100, false, false, false, true},
                       DecodeCase{2, 4, 2, 64, 700, false, true, true, true},
                       DecodeCase{2, 32, 2, 128, 600, false, false, false, true}}) {
    const int64_t pool_tokens = 4096;
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    std::vector<float> q = random.uniform(size_t(c.batch * c.query_heads * c.head_dim), -2.0f, 2.0f);
    std::vector<float> k = random.uniform(size_t(pool_tokens * c.head_dim), -2.0f, 2.0f);
    std::vector<float> v = random.uniform(size_t(pool_tokens * c.head_dim), -1.0f, 1.0f);
    SpanPlan plan = random_plan(random, c, pool_tokens);
    auto cpu_q = make_tensor(*backends.cpu, DType::f32, {c.batch, c.query_heads, c.head_dim}, q);
    auto cpu_k = make_tensor(*backends.cpu, DType::f32, {pool_tokens, c.head_dim}, k);
    auto cpu_v = make_tensor(*backends.cpu, DType::f32, {pool_tokens, c.head_dim}, v);
    auto cpu_out = make_output(*backends.cpu, DType::f32, {c.batch, c.query_heads, c.head_dim});
    auto cpu_lse = make_output(*backends.cpu, DType::f32, {c.batch, c.query_heads});
    AttendedSpans cpu_spans = spans_over(plan, cpu_k.view, cpu_v.view, c.head_dim);
    backends.cpu->attention_decode(cpu_out.view, cpu_q.view, cpu_spans, scale, &cpu_lse.view);
    std::vector<float> expected = rounded_to(read_values(*backends.cpu, cpu_out.view), DType::bf16);

    auto gpu_q = make_tensor(*backends.gpu, DType::bf16, {c.batch, c.query_heads, c.head_dim}, q);
    auto gpu_k = make_tensor(*backends.gpu, DType::bf16, {pool_tokens, c.head_dim}, k);
    auto gpu_v = make_tensor(*backends.gpu, DType::bf16, {pool_tokens, c.head_dim}, v);
    AttendedSpans gpu_spans = spans_over(plan, gpu_k.view, gpu_v.view, c.head_dim);
    for (int chunk : {64, 160, 512}) {
      for (int run = 0; run < 2; ++run) {
        std::string what = "attention_decode merge in kernel B=" + std::to_string(c.batch) + " heads " +
                            std::to_string(c.query_heads) + "/" + std::to_string(c.kv_heads) + " D=" +
                            std::to_string(c.head_dim) + " chunk " + std::to_string(chunk) + " run " +
                            std::to_string(run + 1);
        auto gpu_out = make_output(*backends.gpu, DType::bf16, {c.batch, c.query_heads, c.head_dim});
        // The legacy stream orders the launch with the harness's copies.
        kernels::DecodePlan device_plan = uploader.upload(gpu_spans, c.batch, c.kv_heads, c.query_heads, c.head_dim,
                                                          properties.multiProcessorCount, nullptr, chunk);
        kernels::DecodeAttentionParams params;
        params.out = gpu_out.view;
        params.q = gpu_q.view;
        params.scale = scale;
        params.kv_heads = int(c.kv_heads);
        params.spans = device_plan.spans;
        params.indptr = device_plan.indptr;
        params.chunk_first_span = device_plan.chunk_first_span;
        params.split = device_plan.split;
        params.workspace = device_plan.workspace;
        params.workspace_bytes = device_plan.workspace_bytes;
        params.merge_in_kernel = true;
        kernels::launch_attention_decode(params, nullptr);
        uploader.release(device_plan, nullptr);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        expect_close(read_values(*backends.gpu, gpu_out.view), expected, 1e-2, what);
        expect_guard_intact(*backends.gpu, gpu_out, what);
      }
    }
  }
}

// ---- the f32 mode ---------------------------------------------------------------------------

// fp32 scores, exponentials and sums in another order than the CPU's: a few ulps per output.
constexpr double f32_attention_bound = 2e-5;

TEST(CudaF32Parity, AttentionPrefill) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends(DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  struct Case { int64_t tokens, first, query_heads, kv_heads, head_dim; };
  // Around the kernel's 32-query blocks and 64-key tiles; GQA groups 1 to 16; the tiny model's
  // shape (6/2 heads, D 64) with a chunk after a long prefix.
  for (Case c : {Case{1, 0, 4, 4, 64}, Case{7, 5, 8, 2, 128}, Case{129, 0, 8, 1, 128}, Case{129, 100, 12, 2, 64},
                 Case{300, 37, 4, 2, 128}, Case{64, 64, 2, 2, 64}, Case{33, 0, 16, 1, 64}, Case{1024, 0, 8, 2, 128},
                 Case{1, 700, 8, 2, 128}, Case{32, 31, 6, 2, 64}, Case{256, 2048, 6, 2, 64}}) {
    std::string what = "f32 attention_prefill T=" + std::to_string(c.tokens) + " first=" + std::to_string(c.first) +
                       " heads " + std::to_string(c.query_heads) + "/" + std::to_string(c.kv_heads) +
                       " D=" + std::to_string(c.head_dim);
    const int64_t seen = c.first + c.tokens;
    const int64_t capacity = seen + 9;  // slots past the chunk: never attended
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    std::vector<float> q = random.uniform_f32(size_t(c.tokens * c.query_heads * c.head_dim), -2.0f, 2.0f);
    std::vector<float> k = random.uniform_f32(size_t(c.kv_heads * capacity * c.head_dim), -2.0f, 2.0f);
    std::vector<float> v = random.uniform_f32(size_t(c.kv_heads * capacity * c.head_dim), -1.0f, 1.0f);

    auto cpu_q = make_tensor(*backends.cpu, DType::f32, {c.tokens, c.query_heads, c.head_dim}, q);
    auto cpu_k = make_tensor(*backends.cpu, DType::f32, {c.kv_heads, capacity, c.head_dim}, k);
    auto cpu_v = make_tensor(*backends.cpu, DType::f32, {c.kv_heads, capacity, c.head_dim}, v);
    auto cpu_out = make_output(*backends.cpu, DType::f32, {c.tokens, c.query_heads, c.head_dim});
    backends.cpu->attention_prefill(cpu_out.view, cpu_q.view, cpu_k.view, cpu_v.view, c.first, scale);

    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (int64_t h = 0; h < c.kv_heads; ++h) {
      for (int64_t t = seen; t < capacity; ++t) {
        for (int64_t d = 0; d < c.head_dim; ++d) {
          k[size_t((h * capacity + t) * c.head_dim + d)] = nan;
          v[size_t((h * capacity + t) * c.head_dim + d)] = nan;
        }
      }
    }
    auto gpu_q = make_tensor(*backends.gpu, DType::f32, {c.tokens, c.query_heads, c.head_dim}, q);
    auto gpu_k = make_tensor(*backends.gpu, DType::f32, {c.kv_heads, capacity, c.head_dim}, k);
    auto gpu_v = make_tensor(*backends.gpu, DType::f32, {c.kv_heads, capacity, c.head_dim}, v);
    auto gpu_out = make_output(*backends.gpu, DType::f32, {c.tokens, c.query_heads, c.head_dim});
    backends.gpu->attention_prefill(gpu_out.view, gpu_q.view, gpu_k.view, gpu_v.view, c.first, scale);

    expect_close(read_values(*backends.gpu, gpu_out.view), read_values(*backends.cpu, cpu_out.view),
                 f32_attention_bound, what);
    expect_guard_intact(*backends.gpu, gpu_out, what);
  }
}

// The cases of the bf16 decode test, plus the GQA groups the f32 kernel handles by head blocks of
// its own (3 of the tiny model in a block of 4, 7 in one of 8, 16 in two of 8).
const std::vector<DecodeCase> f32_decode_cases = {
    DecodeCase{1, 8, 8, 64, 100, false, false, false, true},    DecodeCase{3, 32, 8, 128, 2100, false, false, false, true},
    DecodeCase{17, 16, 2, 128, 700, false, false, false, false}, DecodeCase{3, 12, 2, 64, 1500, false, false, false, true},
    DecodeCase{2, 32, 2, 128, 600, false, false, false, true},  DecodeCase{3, 8, 2, 128, 900, true, false, false, true},
    DecodeCase{2, 4, 2, 64, 77, false, true, true, true},       DecodeCase{1, 32, 8, 128, 5000, false, false, false, true},
    DecodeCase{2, 6, 2, 64, 2600, false, false, false, true},   DecodeCase{2, 28, 4, 128, 333, false, false, true, true},
};

std::string decode_case_name(const DecodeCase& c) {
  return "B=" + std::to_string(c.batch) + " heads " + std::to_string(c.query_heads) + "/" + std::to_string(c.kv_heads) +
         " D=" + std::to_string(c.head_dim) + " tokens<=" + std::to_string(c.max_row_tokens) +
         (c.host_pool ? " host pool" : "") + (c.short_spans ? " spans of 1" : "") + (c.empty_row ? " empty row" : "");
}

// lse of both backends: -inf for an empty row on both, the finite ones compared.
void expect_lse_close(const std::vector<float>& lse, const std::vector<float>& expected_lse, const std::string& what) {
  std::vector<float> finite_gpu, finite_cpu;
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(expected_lse[i]) && expected_lse[i] < 0) {
      EXPECT_TRUE(std::isinf(lse[i]) && lse[i] < 0) << what << ": lse of an empty row is " << lse[i];
      continue;
    }
    finite_gpu.push_back(lse[i]);
    finite_cpu.push_back(expected_lse[i]);
  }
  expect_close(finite_gpu, finite_cpu, 1e-5, what);
}

TEST(CudaF32Parity, AttentionDecode) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends(DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  for (const DecodeCase& c : f32_decode_cases) {
    std::string what = "f32 attention_decode " + decode_case_name(c);
    const int64_t pool_tokens = 4096;
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    std::vector<float> q = random.uniform_f32(size_t(c.batch * c.query_heads * c.head_dim), -2.0f, 2.0f);
    std::vector<float> k = random.uniform_f32(size_t(pool_tokens * c.head_dim), -2.0f, 2.0f);
    std::vector<float> v = random.uniform_f32(size_t(pool_tokens * c.head_dim), -1.0f, 1.0f);
    SpanPlan plan = random_plan(random, c, pool_tokens);

    auto cpu_q = make_tensor(*backends.cpu, DType::f32, {c.batch, c.query_heads, c.head_dim}, q);
    auto cpu_k = make_tensor(*backends.cpu, DType::f32, {pool_tokens, c.head_dim}, k);
    auto cpu_v = make_tensor(*backends.cpu, DType::f32, {pool_tokens, c.head_dim}, v);
    auto cpu_out = make_output(*backends.cpu, DType::f32, {c.batch, c.query_heads, c.head_dim});
    auto cpu_lse = make_output(*backends.cpu, DType::f32, {c.batch, c.query_heads});
    AttendedSpans cpu_spans = spans_over(plan, cpu_k.view, cpu_v.view, c.head_dim);
    backends.cpu->attention_decode(cpu_out.view, cpu_q.view, cpu_spans, scale, &cpu_lse.view);

    auto gpu_q = make_tensor(*backends.gpu, DType::f32, {c.batch, c.query_heads, c.head_dim}, q);
    auto gpu_k = make_tensor(*backends.gpu, DType::f32, {pool_tokens, c.head_dim}, k, c.host_pool);
    auto gpu_v = make_tensor(*backends.gpu, DType::f32, {pool_tokens, c.head_dim}, v, c.host_pool);
    auto gpu_out = make_output(*backends.gpu, DType::f32, {c.batch, c.query_heads, c.head_dim});
    auto gpu_lse = make_output(*backends.gpu, DType::f32, {c.batch, c.query_heads});
    AttendedSpans gpu_spans = spans_over(plan, gpu_k.view, gpu_v.view, c.head_dim);
    backends.gpu->attention_decode(gpu_out.view, gpu_q.view, gpu_spans, scale, c.want_lse ? &gpu_lse.view : nullptr);
    gpu_spans.clear();  // the call must have taken its own copy

    expect_close(read_values(*backends.gpu, gpu_out.view), read_values(*backends.cpu, cpu_out.view),
                 f32_attention_bound, what);
    expect_guard_intact(*backends.gpu, gpu_out, what);
    if (!c.want_lse) continue;
    expect_lse_close(read_values(*backends.gpu, gpu_lse.view), read_values(*backends.cpu, cpu_lse.view), what + " lse");
    expect_guard_intact(*backends.gpu, gpu_lse, what + " lse");
  }
}

// Imposed chunk sizes, from one tile (16 tokens: many parts per row, merged by the second kernel)
// to long ones (a row in one part), each run twice on the same plan uploader.
TEST(CudaF32Parity, AttentionDecodeAcrossSplits) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends(DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  cudaDeviceProp properties{};
  ASSERT_EQ(cudaGetDeviceProperties(&properties, 0), cudaSuccess);
  kernels::DecodePlanUploader uploader;
  for (DecodeCase c : {DecodeCase{3, 32, 8, 128, 2100, false, false, false, true},
                       DecodeCase{2, 4, 2, 64, 700, false, true, true, true},
                       DecodeCase{2, 6, 2, 64, 1000, true, false, false, true}}) {
    const int64_t pool_tokens = 4096;
    const float scale = 1.0f / std::sqrt(float(c.head_dim));
    std::vector<float> q = random.uniform_f32(size_t(c.batch * c.query_heads * c.head_dim), -2.0f, 2.0f);
    std::vector<float> k = random.uniform_f32(size_t(pool_tokens * c.head_dim), -2.0f, 2.0f);
    std::vector<float> v = random.uniform_f32(size_t(pool_tokens * c.head_dim), -1.0f, 1.0f);
    SpanPlan plan = random_plan(random, c, pool_tokens);
    auto cpu_q = make_tensor(*backends.cpu, DType::f32, {c.batch, c.query_heads, c.head_dim}, q);
    auto cpu_k = make_tensor(*backends.cpu, DType::f32, {pool_tokens, c.head_dim}, k);
    auto cpu_v = make_tensor(*backends.cpu, DType::f32, {pool_tokens, c.head_dim}, v);
    auto cpu_out = make_output(*backends.cpu, DType::f32, {c.batch, c.query_heads, c.head_dim});
    auto cpu_lse = make_output(*backends.cpu, DType::f32, {c.batch, c.query_heads});
    AttendedSpans cpu_spans = spans_over(plan, cpu_k.view, cpu_v.view, c.head_dim);
    backends.cpu->attention_decode(cpu_out.view, cpu_q.view, cpu_spans, scale, &cpu_lse.view);
    std::vector<float> expected = read_values(*backends.cpu, cpu_out.view);
    std::vector<float> expected_lse = read_values(*backends.cpu, cpu_lse.view);

    auto gpu_q = make_tensor(*backends.gpu, DType::f32, {c.batch, c.query_heads, c.head_dim}, q);
    auto gpu_k = make_tensor(*backends.gpu, DType::f32, {pool_tokens, c.head_dim}, k, c.host_pool);
    auto gpu_v = make_tensor(*backends.gpu, DType::f32, {pool_tokens, c.head_dim}, v, c.host_pool);
    AttendedSpans gpu_spans = spans_over(plan, gpu_k.view, gpu_v.view, c.head_dim);
    for (int chunk : {16, 64, 160, 512, 4096}) {
      for (int run = 0; run < 2; ++run) {
        std::string what = "f32 attention_decode " + decode_case_name(c) + " chunk " + std::to_string(chunk) + " run " +
                           std::to_string(run + 1);
        auto gpu_out = make_output(*backends.gpu, DType::f32, {c.batch, c.query_heads, c.head_dim});
        auto gpu_lse = make_output(*backends.gpu, DType::f32, {c.batch, c.query_heads});
        // The legacy stream orders the launch with the harness's copies.
        kernels::DecodePlan device_plan = uploader.upload(gpu_spans, c.batch, c.kv_heads, c.query_heads, c.head_dim,
                                                          properties.multiProcessorCount, nullptr, chunk, DType::f32);
        kernels::DecodeAttentionParams params;
        params.out = gpu_out.view;
        params.q = gpu_q.view;
        params.lse = gpu_lse.view;
        params.scale = scale;
        params.kv_heads = int(c.kv_heads);
        params.spans = device_plan.spans;
        params.indptr = device_plan.indptr;
        params.chunk_first_span = device_plan.chunk_first_span;
        params.split = device_plan.split;
        params.workspace = device_plan.workspace;
        params.workspace_bytes = device_plan.workspace_bytes;
        kernels::launch_attention_decode_f32(params, nullptr);
        uploader.release(device_plan, nullptr);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        expect_close(read_values(*backends.gpu, gpu_out.view), expected, f32_attention_bound, what);
        expect_guard_intact(*backends.gpu, gpu_out, what);
        expect_lse_close(read_values(*backends.gpu, gpu_lse.view), expected_lse, what + " lse");
      }
    }
  }
}

}  // namespace
}  // namespace louiskv::testing
