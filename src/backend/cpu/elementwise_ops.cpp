// Row-wise and elementwise ops of the CPU backend: embedding, RMSNorm, RoPE, SwiGLU, add, and the
// KV cache write.
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/view_checks.h"

namespace louiskv {

void CpuBackend::embedding(TensorView out, TensorView table, TensorView ids) {
  cpu::require_f32(out, "embedding", "out");
  cpu::require_host(table, "embedding", "table");
  cpu::require_host(ids, "embedding", "ids");
  cpu::require(ids.dtype == DType::i32 && out.rank == 2 && table.rank == 2 && out.dim(0) == ids.numel() &&
                   out.dim(1) == table.dim(1),
               "embedding", "shapes out " + out.describe() + ", table " + table.describe() + ", ids " + ids.describe());
  const int64_t tokens = out.dim(0), hidden = out.dim(1), vocab = table.dim(0);
  const auto* id = ids.as<const int32_t>();
  for (int64_t t = 0; t < tokens; ++t) {
    if (id[t] < 0 || id[t] >= vocab) {
      throw_error(ErrorKind::invalid_input, "token id " + std::to_string(id[t]) + " is outside the vocabulary [0, " +
                                                std::to_string(vocab) + ")");
    }
  }
#pragma omp parallel for num_threads(threads_)
  for (int64_t t = 0; t < tokens; ++t) {
    const char* row = static_cast<const char*>(table.data) + size_t(id[t]) * size_t(hidden) * dtype_size(table.dtype);
    convert_to_f32(row, table.dtype, out.as<float>() + t * hidden, size_t(hidden));
  }
}

void CpuBackend::rms_norm(TensorView out, TensorView in, TensorView weight, float eps) {
  cpu::require_f32(out, "rms_norm", "out");
  cpu::require_f32(in, "rms_norm", "in");
  cpu::require_host(weight, "rms_norm", "weight");
  const int64_t width = weight.numel();
  cpu::require(in.numel() == out.numel() && width > 0 && in.numel() % width == 0, "rms_norm",
               "in " + in.describe() + " is not rows of weight " + weight.describe());
  const int64_t rows = in.numel() / width;
  std::vector<float> gamma(static_cast<size_t>(width));
  convert_to_f32(weight.data, weight.dtype, gamma.data(), size_t(width));
#pragma omp parallel for num_threads(threads_) if (rows > 16)
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = in.as<const float>() + r * width;
    float* y = out.as<float>() + r * width;
    float sum_squares = 0.0f;
#pragma omp simd reduction(+ : sum_squares)
    for (int64_t i = 0; i < width; ++i) sum_squares += x[i] * x[i];
    const float inverse_rms = 1.0f / std::sqrt(sum_squares / float(width) + eps);
    for (int64_t i = 0; i < width; ++i) y[i] = gamma[i] * (x[i] * inverse_rms);
  }
}

void CpuBackend::rope(TensorView x, TensorView positions, TensorView inv_freq) {
  cpu::require_f32(x, "rope", "x");
  cpu::require_f32(inv_freq, "rope", "inv_freq");
  cpu::require_host(positions, "rope", "positions");
  cpu::require(x.rank == 3 && positions.dtype == DType::i32 && positions.numel() == x.dim(0) &&
                   inv_freq.numel() * 2 == x.dim(2),
               "rope", "x " + x.describe() + ", positions " + positions.describe() + ", inv_freq " + inv_freq.describe());
  const int64_t tokens = x.dim(0), heads = x.dim(1), dim = x.dim(2), half = dim / 2;
  constexpr int64_t max_rope_pairs = 512;
  cpu::require(half <= max_rope_pairs, "rope", "head_dim above 1024");
  const auto* position = positions.as<const int32_t>();
  const auto* frequency = inv_freq.as<const float>();
#pragma omp parallel for num_threads(threads_) if (tokens > 4)
  for (int64_t t = 0; t < tokens; ++t) {
    // The angle is a float product, as transformers computes it, so that long positions round
    // the same way the reference does.
    float cosines[max_rope_pairs], sines[max_rope_pairs];
    for (int64_t i = 0; i < half; ++i) {
      const float angle = float(position[t]) * frequency[i];
      cosines[i] = std::cos(angle);
      sines[i] = std::sin(angle);
    }
    for (int64_t h = 0; h < heads; ++h) {
      float* row = x.as<float>() + (t * heads + h) * dim;
      for (int64_t i = 0; i < half; ++i) {
        const float first = row[i], second = row[i + half];
        row[i] = first * cosines[i] - second * sines[i];
        row[i + half] = second * cosines[i] + first * sines[i];
      }
    }
  }
}

void CpuBackend::swiglu(TensorView out, TensorView gate, TensorView up) {
  cpu::require_f32(out, "swiglu", "out");
  cpu::require_f32(gate, "swiglu", "gate");
  cpu::require_f32(up, "swiglu", "up");
  cpu::require(out.numel() == gate.numel() && gate.numel() == up.numel(), "swiglu", "element counts differ");
  const int64_t n = out.numel();
  const float* g = gate.as<const float>();
  const float* u = up.as<const float>();
  float* y = out.as<float>();
#pragma omp parallel for num_threads(threads_) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) y[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void CpuBackend::add(TensorView out, TensorView a, TensorView b) {
  cpu::require_f32(out, "add", "out");
  cpu::require_f32(a, "add", "a");
  cpu::require_f32(b, "add", "b");
  cpu::require(out.numel() == a.numel() && a.numel() == b.numel(), "add", "element counts differ");
  const int64_t n = out.numel();
  const float* x = a.as<const float>();
  const float* y = b.as<const float>();
  float* z = out.as<float>();
#pragma omp parallel for num_threads(threads_) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) z[i] = x[i] + y[i];
}

void CpuBackend::write_kv(TensorView cache, TensorView rows, int64_t first_position) {
  cpu::require_f32(cache, "write_kv", "cache");
  cpu::require_f32(rows, "write_kv", "rows");
  cpu::require(cache.rank == 3 && rows.rank == 3 && cache.dim(0) == rows.dim(1) && cache.dim(2) == rows.dim(2) &&
                   first_position >= 0 && first_position + rows.dim(0) <= cache.dim(1),
               "write_kv", "cache " + cache.describe() + ", rows " + rows.describe() + " at " + std::to_string(first_position));
  const int64_t tokens = rows.dim(0), kv_heads = rows.dim(1), dim = rows.dim(2), capacity = cache.dim(1);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < kv_heads; ++h) {
      std::memcpy(cache.as<float>() + (h * capacity + first_position + t) * dim, rows.as<const float>() + (t * kv_heads + h) * dim,
                  size_t(dim) * sizeof(float));
    }
  }
}

}  // namespace louiskv
