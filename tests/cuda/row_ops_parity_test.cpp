// Parity of the row-wise and elementwise CUDA ops (embedding, rms_norm, rope, swiglu, add,
// write_kv, convert) with the CPU reference, over awkward sizes: single rows, widths that are
// not multiples of 8, and model widths; in bf16 (the default) and in the f32 mode.
#include <cmath>
#include <string>
#include <vector>

#include "cuda/parity_harness.h"

namespace louiskv::testing {
namespace {

constexpr double elementwise_bound = 4e-3;  // one bf16 rounding of each output, at most a flip apart

std::string shape_name(const std::vector<int64_t>& shape) {
  std::string name = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) name.append(",");
    name.append(std::to_string(shape[i]));
  }
  name.append("]");
  return name;
}

TEST(CudaParity, Embedding) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  struct Case { int64_t vocab, hidden, tokens; DType table; };
  for (Case c : {Case{1000, 64, 1, DType::bf16}, Case{1000, 100, 7, DType::f32}, Case{5000, 4096, 129, DType::bf16},
                 Case{300, 2050, 3, DType::f16}, Case{64, 128, 17, DType::f32}}) {
    std::string what = "embedding table " + std::string(dtype_name(c.table)) + shape_name({c.vocab, c.hidden}) +
                       " tokens " + std::to_string(c.tokens);
    std::vector<float> table = rounded_to(random.uniform(size_t(c.vocab * c.hidden), -2.0f, 2.0f), c.table);
    std::vector<float> ids(size_t(c.tokens));
    for (float& id : ids) id = float(random.integer(0, c.vocab - 1));
    ids.back() = float(c.vocab - 1);  // the last row of the table

    auto cpu_table = make_tensor(*backends.cpu, c.table, {c.vocab, c.hidden}, table);
    auto cpu_ids = make_tensor(*backends.cpu, DType::i32, {c.tokens}, ids);
    auto cpu_out = make_output(*backends.cpu, DType::f32, {c.tokens, c.hidden});
    backends.cpu->embedding(cpu_out.view, cpu_table.view, cpu_ids.view);

    auto gpu_table = make_tensor(*backends.gpu, c.table, {c.vocab, c.hidden}, table);
    auto gpu_ids = make_tensor(*backends.gpu, DType::i32, {c.tokens}, ids);
    auto gpu_out = make_output(*backends.gpu, DType::bf16, {c.tokens, c.hidden});
    backends.gpu->embedding(gpu_out.view, gpu_table.view, gpu_ids.view);

    expect_equal(read_values(*backends.gpu, gpu_out.view),
                 rounded_to(read_values(*backends.cpu, cpu_out.view), DType::bf16), what);
    expect_guard_intact(*backends.gpu, gpu_out, what);
  }
}

TEST(CudaParity, RmsNorm) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  struct Case { int64_t rows, hidden; DType weight; bool in_place; };
  for (Case c : {Case{1, 4096, DType::bf16, false}, Case{7, 100, DType::f32, false}, Case{129, 128, DType::bf16, true},
                 Case{3, 2050, DType::f16, false}, Case{1024, 64, DType::f32, false}, Case{5, 14336, DType::bf16, true}}) {
    std::string what = "rms_norm " + shape_name({c.rows, c.hidden}) + " weight " + std::string(dtype_name(c.weight)) +
                       (c.in_place ? " in place" : "");
    std::vector<float> in = random.uniform(size_t(c.rows * c.hidden), -3.0f, 3.0f);
    std::vector<float> weight = rounded_to(random.uniform(size_t(c.hidden), 0.2f, 1.8f), c.weight);
    const float eps = 1e-5f;

    auto cpu_in = make_tensor(*backends.cpu, DType::f32, {c.rows, c.hidden}, in);
    auto cpu_weight = make_tensor(*backends.cpu, c.weight, {c.hidden}, weight);
    auto cpu_out = make_output(*backends.cpu, DType::f32, {c.rows, c.hidden});
    backends.cpu->rms_norm(cpu_out.view, cpu_in.view, cpu_weight.view, eps);

    auto gpu_in = make_tensor(*backends.gpu, DType::bf16, {c.rows, c.hidden}, in);
    auto gpu_weight = make_tensor(*backends.gpu, c.weight, {c.hidden}, weight);
    auto gpu_out = make_output(*backends.gpu, DType::bf16, {c.rows, c.hidden});
    const OwnedTensor& gpu_result = c.in_place ? gpu_in : gpu_out;
    backends.gpu->rms_norm(gpu_result.view, gpu_in.view, gpu_weight.view, eps);

    expect_close(read_values(*backends.gpu, gpu_result.view),
                 rounded_to(read_values(*backends.cpu, cpu_out.view), DType::bf16), elementwise_bound, what);
    expect_guard_intact(*backends.gpu, gpu_result, what);
  }
}

TEST(CudaParity, Rope) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  struct Case { int64_t tokens, heads, head_dim; bool far_positions; };
  for (Case c : {Case{1, 32, 128, true}, Case{7, 8, 64, false}, Case{129, 4, 128, true}, Case{33, 2, 64, true}}) {
    std::string what = "rope " + shape_name({c.tokens, c.heads, c.head_dim}) +
                       (c.far_positions ? " positions up to 131071" : " positions from 0");
    std::vector<float> x = random.uniform(size_t(c.tokens * c.heads * c.head_dim), -2.0f, 2.0f);
    std::vector<float> positions(size_t(c.tokens));
    for (size_t t = 0; t < positions.size(); ++t) {
      positions[t] = c.far_positions ? float(random.integer(0, 131071)) : float(t);
    }
    std::vector<float> inv_freq(size_t(c.head_dim / 2));
    for (size_t i = 0; i < inv_freq.size(); ++i) {
      inv_freq[i] = float(std::pow(500000.0, -2.0 * double(i) / double(c.head_dim)));
    }

    auto cpu_x = make_tensor(*backends.cpu, DType::f32, {c.tokens, c.heads, c.head_dim}, x);
    auto cpu_positions = make_tensor(*backends.cpu, DType::i32, {c.tokens}, positions);
    auto cpu_freq = make_tensor(*backends.cpu, DType::f32, {c.head_dim / 2}, inv_freq);
    backends.cpu->rope(cpu_x.view, cpu_positions.view, cpu_freq.view);

    auto gpu_x = make_tensor(*backends.gpu, DType::bf16, {c.tokens, c.heads, c.head_dim}, x);
    auto gpu_positions = make_tensor(*backends.gpu, DType::i32, {c.tokens}, positions);
    auto gpu_freq = make_tensor(*backends.gpu, DType::f32, {c.head_dim / 2}, inv_freq);
    backends.gpu->rope(gpu_x.view, gpu_positions.view, gpu_freq.view);

    expect_close(read_values(*backends.gpu, gpu_x.view), rounded_to(read_values(*backends.cpu, cpu_x.view), DType::bf16),
                 elementwise_bound, what);
    expect_guard_intact(*backends.gpu, gpu_x, what);
  }
}

TEST(CudaParity, SwigluAndAdd) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  for (std::vector<int64_t> shape : std::vector<std::vector<int64_t>>{{1, 1}, {7, 100}, {3, 4097}, {129, 14336}}) {
    int64_t count = element_count(shape);
    std::vector<float> a = random.uniform(size_t(count), -6.0f, 6.0f);
    std::vector<float> b = random.uniform(size_t(count), -2.0f, 2.0f);
    auto cpu_a = make_tensor(*backends.cpu, DType::f32, shape, a);
    auto cpu_b = make_tensor(*backends.cpu, DType::f32, shape, b);
    auto cpu_out = make_output(*backends.cpu, DType::f32, shape);
    auto gpu_a = make_tensor(*backends.gpu, DType::bf16, shape, a);
    auto gpu_b = make_tensor(*backends.gpu, DType::bf16, shape, b);
    auto gpu_out = make_output(*backends.gpu, DType::bf16, shape);

    std::string what = "swiglu " + shape_name(shape);
    backends.cpu->swiglu(cpu_out.view, cpu_a.view, cpu_b.view);
    backends.gpu->swiglu(gpu_out.view, gpu_a.view, gpu_b.view);
    expect_close(read_values(*backends.gpu, gpu_out.view),
                 rounded_to(read_values(*backends.cpu, cpu_out.view), DType::bf16), elementwise_bound, what);
    expect_guard_intact(*backends.gpu, gpu_out, what);

    // The residual add runs in place (out aliases a), as the decoder calls it.
    what = "add in place " + shape_name(shape);
    backends.cpu->add(cpu_a.view, cpu_a.view, cpu_b.view);
    backends.gpu->add(gpu_a.view, gpu_a.view, gpu_b.view);
    expect_close(read_values(*backends.gpu, gpu_a.view),
                 rounded_to(read_values(*backends.cpu, cpu_a.view), DType::bf16), elementwise_bound, what);
    expect_guard_intact(*backends.gpu, gpu_a, what);
  }
}

TEST(CudaParity, WriteKv) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends;
  Random random;
  SCOPED_TRACE(seed_note(random));
  struct Case { int64_t kv_heads, capacity, head_dim, tokens, first; bool host_cache; };
  for (Case c : {Case{1, 16, 64, 1, 0, false}, Case{8, 50, 128, 7, 43, false}, Case{2, 300, 128, 129, 100, false},
                 Case{4, 40, 64, 5, 35, true}, Case{3, 10, 36, 3, 2, false}}) {
    std::string what = "write_kv cache " + shape_name({c.kv_heads, c.capacity, c.head_dim}) + " rows " +
                       std::to_string(c.tokens) + " at " + std::to_string(c.first) +
                       (c.host_cache ? " (mapped host cache)" : "");
    std::vector<float> cache = random.uniform(size_t(c.kv_heads * c.capacity * c.head_dim), -1.0f, 1.0f);
    std::vector<float> rows = random.uniform(size_t(c.tokens * c.kv_heads * c.head_dim), -1.0f, 1.0f);
    auto cpu_cache = make_tensor(*backends.cpu, DType::f32, {c.kv_heads, c.capacity, c.head_dim}, cache);
    auto cpu_rows = make_tensor(*backends.cpu, DType::f32, {c.tokens, c.kv_heads, c.head_dim}, rows);
    backends.cpu->write_kv(cpu_cache.view, cpu_rows.view, c.first);
    auto gpu_cache =
        make_tensor(*backends.gpu, DType::bf16, {c.kv_heads, c.capacity, c.head_dim}, cache, c.host_cache);
    auto gpu_rows = make_tensor(*backends.gpu, DType::bf16, {c.tokens, c.kv_heads, c.head_dim}, rows);
    backends.gpu->write_kv(gpu_cache.view, gpu_rows.view, c.first);
    expect_equal(read_values(*backends.gpu, gpu_cache.view), read_values(*backends.cpu, cpu_cache.view), what);
    expect_guard_intact(*backends.gpu, gpu_cache, what);
  }
}

TEST(CudaParity, Convert) {
  LOUISKV_REQUIRE_CUDA();
  auto gpu = make_cuda_backend();
  Random random;
  SCOPED_TRACE(seed_note(random));
  const DType dtypes[] = {DType::f32, DType::f16, DType::bf16};
  for (int64_t count : {int64_t(1), int64_t(1000), int64_t(100003)}) {
    for (DType from : dtypes) {
      for (DType to : dtypes) {
        std::string what = "convert " + std::string(dtype_name(from)) + " -> " + std::string(dtype_name(to)) + " x" +
                           std::to_string(count);
        // Values with more precision than bf16 where the source allows it, to exercise rounding.
        std::vector<float> values(static_cast<size_t>(count));
        std::vector<float> coarse = random.uniform(size_t(count), -100.0f, 100.0f);
        std::vector<float> fine = random.uniform(size_t(count), -0.01f, 0.01f);
        for (size_t i = 0; i < values.size(); ++i) values[i] = coarse[i] + fine[i];
        values = rounded_to(values, from);
        auto source = make_tensor(*gpu, from, {count}, values);
        auto destination = make_output(*gpu, to, {count});
        gpu->convert(destination.view, source.view);
        expect_equal(read_values(*gpu, destination.view), rounded_to(values, to), what);
        expect_guard_intact(*gpu, destination, what);
      }
    }
  }
}

// ---- the f32 mode ---------------------------------------------------------------------------
// The same ops on a backend with f32 activations and KV, on full-precision f32 inputs: copies and
// adds must be exact, the rest within fp32 rounding of the CPU's (accurate rsqrt, sin/cos and
// exp, sums in another order).

constexpr double f32_elementwise_bound = 1e-5;  // far below one bf16 rounding (4e-3)

TEST(CudaF32Parity, Embedding) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends(DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  struct Case { int64_t vocab, hidden, tokens; DType table; };
  for (Case c : {Case{1000, 64, 1, DType::f32}, Case{1000, 100, 7, DType::bf16}, Case{5000, 4096, 129, DType::f32},
                 Case{300, 2050, 3, DType::f16}, Case{64, 130, 17, DType::f32}}) {
    std::string what = "f32 embedding table " + std::string(dtype_name(c.table)) + shape_name({c.vocab, c.hidden}) +
                       " tokens " + std::to_string(c.tokens);
    std::vector<float> table = rounded_to(random.uniform_f32(size_t(c.vocab * c.hidden), -2.0f, 2.0f), c.table);
    std::vector<float> ids(size_t(c.tokens));
    for (float& id : ids) id = float(random.integer(0, c.vocab - 1));
    ids.back() = float(c.vocab - 1);

    auto cpu_table = make_tensor(*backends.cpu, c.table, {c.vocab, c.hidden}, table);
    auto cpu_ids = make_tensor(*backends.cpu, DType::i32, {c.tokens}, ids);
    auto cpu_out = make_output(*backends.cpu, DType::f32, {c.tokens, c.hidden});
    backends.cpu->embedding(cpu_out.view, cpu_table.view, cpu_ids.view);

    auto gpu_table = make_tensor(*backends.gpu, c.table, {c.vocab, c.hidden}, table);
    auto gpu_ids = make_tensor(*backends.gpu, DType::i32, {c.tokens}, ids);
    auto gpu_out = make_output(*backends.gpu, DType::f32, {c.tokens, c.hidden});
    backends.gpu->embedding(gpu_out.view, gpu_table.view, gpu_ids.view);

    expect_equal(read_values(*backends.gpu, gpu_out.view), read_values(*backends.cpu, cpu_out.view), what);
    expect_guard_intact(*backends.gpu, gpu_out, what);
  }
}

TEST(CudaF32Parity, RmsNorm) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends(DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  struct Case { int64_t rows, hidden; DType weight; bool in_place; };
  for (Case c : {Case{1, 4096, DType::f32, false}, Case{7, 100, DType::bf16, false}, Case{129, 128, DType::f32, true},
                 Case{3, 2050, DType::f16, false}, Case{1024, 64, DType::f32, false}, Case{5, 14336, DType::bf16, true}}) {
    std::string what = "f32 rms_norm " + shape_name({c.rows, c.hidden}) + " weight " +
                       std::string(dtype_name(c.weight)) + (c.in_place ? " in place" : "");
    std::vector<float> in = random.uniform_f32(size_t(c.rows * c.hidden), -3.0f, 3.0f);
    std::vector<float> weight = rounded_to(random.uniform_f32(size_t(c.hidden), 0.2f, 1.8f), c.weight);
    const float eps = 1e-5f;

    auto cpu_in = make_tensor(*backends.cpu, DType::f32, {c.rows, c.hidden}, in);
    auto cpu_weight = make_tensor(*backends.cpu, c.weight, {c.hidden}, weight);
    auto cpu_out = make_output(*backends.cpu, DType::f32, {c.rows, c.hidden});
    backends.cpu->rms_norm(cpu_out.view, cpu_in.view, cpu_weight.view, eps);

    auto gpu_in = make_tensor(*backends.gpu, DType::f32, {c.rows, c.hidden}, in);
    auto gpu_weight = make_tensor(*backends.gpu, c.weight, {c.hidden}, weight);
    auto gpu_out = make_output(*backends.gpu, DType::f32, {c.rows, c.hidden});
    const OwnedTensor& gpu_result = c.in_place ? gpu_in : gpu_out;
    backends.gpu->rms_norm(gpu_result.view, gpu_in.view, gpu_weight.view, eps);

    expect_close(read_values(*backends.gpu, gpu_result.view), read_values(*backends.cpu, cpu_out.view),
                 f32_elementwise_bound, what);
    expect_guard_intact(*backends.gpu, gpu_result, what);
  }
}

TEST(CudaF32Parity, Rope) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends(DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  struct Case { int64_t tokens, heads, head_dim; bool far_positions; };
  for (Case c : {Case{1, 32, 128, true}, Case{7, 8, 64, false}, Case{129, 4, 128, true}, Case{33, 2, 64, true}}) {
    std::string what = "f32 rope " + shape_name({c.tokens, c.heads, c.head_dim}) +
                       (c.far_positions ? " positions up to 131071" : " positions from 0");
    std::vector<float> x = random.uniform_f32(size_t(c.tokens * c.heads * c.head_dim), -2.0f, 2.0f);
    std::vector<float> positions(size_t(c.tokens));
    for (size_t t = 0; t < positions.size(); ++t) {
      positions[t] = c.far_positions ? float(random.integer(0, 131071)) : float(t);
    }
    std::vector<float> inv_freq(size_t(c.head_dim / 2));
    for (size_t i = 0; i < inv_freq.size(); ++i) {
      inv_freq[i] = float(std::pow(500000.0, -2.0 * double(i) / double(c.head_dim)));
    }

    auto cpu_x = make_tensor(*backends.cpu, DType::f32, {c.tokens, c.heads, c.head_dim}, x);
    auto cpu_positions = make_tensor(*backends.cpu, DType::i32, {c.tokens}, positions);
    auto cpu_freq = make_tensor(*backends.cpu, DType::f32, {c.head_dim / 2}, inv_freq);
    backends.cpu->rope(cpu_x.view, cpu_positions.view, cpu_freq.view);

    auto gpu_x = make_tensor(*backends.gpu, DType::f32, {c.tokens, c.heads, c.head_dim}, x);
    auto gpu_positions = make_tensor(*backends.gpu, DType::i32, {c.tokens}, positions);
    auto gpu_freq = make_tensor(*backends.gpu, DType::f32, {c.head_dim / 2}, inv_freq);
    backends.gpu->rope(gpu_x.view, gpu_positions.view, gpu_freq.view);

    expect_close(read_values(*backends.gpu, gpu_x.view), read_values(*backends.cpu, cpu_x.view),
                 f32_elementwise_bound, what);
    expect_guard_intact(*backends.gpu, gpu_x, what);
  }
}

TEST(CudaF32Parity, SwigluAndAdd) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends(DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  for (std::vector<int64_t> shape : std::vector<std::vector<int64_t>>{{1, 1}, {7, 100}, {3, 4097}, {129, 14336}}) {
    int64_t count = element_count(shape);
    std::vector<float> a = random.uniform_f32(size_t(count), -6.0f, 6.0f);
    std::vector<float> b = random.uniform_f32(size_t(count), -2.0f, 2.0f);
    auto cpu_a = make_tensor(*backends.cpu, DType::f32, shape, a);
    auto cpu_b = make_tensor(*backends.cpu, DType::f32, shape, b);
    auto cpu_out = make_output(*backends.cpu, DType::f32, shape);
    auto gpu_a = make_tensor(*backends.gpu, DType::f32, shape, a);
    auto gpu_b = make_tensor(*backends.gpu, DType::f32, shape, b);
    auto gpu_out = make_output(*backends.gpu, DType::f32, shape);

    std::string what = "f32 swiglu " + shape_name(shape);
    backends.cpu->swiglu(cpu_out.view, cpu_a.view, cpu_b.view);
    backends.gpu->swiglu(gpu_out.view, gpu_a.view, gpu_b.view);
    expect_close(read_values(*backends.gpu, gpu_out.view), read_values(*backends.cpu, cpu_out.view),
                 f32_elementwise_bound, what);
    expect_guard_intact(*backends.gpu, gpu_out, what);

    // One correctly rounded f32 addition on both sides: the same bits.
    what = "f32 add in place " + shape_name(shape);
    backends.cpu->add(cpu_a.view, cpu_a.view, cpu_b.view);
    backends.gpu->add(gpu_a.view, gpu_a.view, gpu_b.view);
    expect_equal(read_values(*backends.gpu, gpu_a.view), read_values(*backends.cpu, cpu_a.view), what);
    expect_guard_intact(*backends.gpu, gpu_a, what);
  }
}

TEST(CudaF32Parity, WriteKv) {
  LOUISKV_REQUIRE_CUDA();
  BackendPair backends(DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  struct Case { int64_t kv_heads, capacity, head_dim, tokens, first; bool host_cache; };
  // 36 dims are whole 16-byte vectors of f32 (not of bf16); 30 take the element-wise kernel.
  for (Case c : {Case{1, 16, 64, 1, 0, false}, Case{8, 50, 128, 7, 43, false}, Case{2, 300, 128, 129, 100, false},
                 Case{4, 40, 64, 5, 35, true}, Case{3, 10, 36, 3, 2, false}, Case{2, 12, 30, 4, 8, true}}) {
    std::string what = "f32 write_kv cache " + shape_name({c.kv_heads, c.capacity, c.head_dim}) + " rows " +
                       std::to_string(c.tokens) + " at " + std::to_string(c.first) +
                       (c.host_cache ? " (mapped host cache)" : "");
    std::vector<float> cache = random.uniform_f32(size_t(c.kv_heads * c.capacity * c.head_dim), -1.0f, 1.0f);
    std::vector<float> rows = random.uniform_f32(size_t(c.tokens * c.kv_heads * c.head_dim), -1.0f, 1.0f);
    auto cpu_cache = make_tensor(*backends.cpu, DType::f32, {c.kv_heads, c.capacity, c.head_dim}, cache);
    auto cpu_rows = make_tensor(*backends.cpu, DType::f32, {c.tokens, c.kv_heads, c.head_dim}, rows);
    backends.cpu->write_kv(cpu_cache.view, cpu_rows.view, c.first);
    auto gpu_cache = make_tensor(*backends.gpu, backends.gpu->kv_dtype(), {c.kv_heads, c.capacity, c.head_dim}, cache,
                                 c.host_cache);
    auto gpu_rows = make_tensor(*backends.gpu, DType::f32, {c.tokens, c.kv_heads, c.head_dim}, rows);
    backends.gpu->write_kv(gpu_cache.view, gpu_rows.view, c.first);
    expect_equal(read_values(*backends.gpu, gpu_cache.view), read_values(*backends.cpu, cpu_cache.view), what);
    expect_guard_intact(*backends.gpu, gpu_cache, what);
  }
}

// convert and copy do not depend on the mode; run through an f32 backend they must still move
// f32 values exactly (activations to bf16 and back, device to host).
TEST(CudaF32Parity, ConvertAndCopy) {
  LOUISKV_REQUIRE_CUDA();
  auto gpu = make_cuda_backend(0, DType::f32);
  Random random;
  SCOPED_TRACE(seed_note(random));
  for (int64_t count : {int64_t(1), int64_t(1000), int64_t(100003)}) {
    std::vector<float> values = random.uniform_f32(size_t(count), -100.0f, 100.0f);
    auto source = make_tensor(*gpu, DType::f32, {count}, values);
    for (DType to : {DType::f32, DType::bf16, DType::f16}) {
      std::string what = "f32 backend convert f32 -> " + std::string(dtype_name(to)) + " x" + std::to_string(count);
      auto destination = make_output(*gpu, to, {count});
      gpu->convert(destination.view, source.view);
      expect_equal(read_values(*gpu, destination.view), rounded_to(values, to), what);
      expect_guard_intact(*gpu, destination, what);
    }
    std::string what = "f32 backend copy device -> mapped host x" + std::to_string(count);
    auto host = make_tensor(*gpu, DType::f32, {count}, std::vector<float>(size_t(count), 0.5f), true);
    gpu->copy(host.view, source.view);
    expect_equal(read_values(*gpu, host.view), values, what);
    expect_guard_intact(*gpu, host, what);
  }
}

}  // namespace
}  // namespace louiskv::testing
