// out[T, N] = in[T, K] @ weight[N, K]^T (+ bias). Weights stay in their file dtype: for a few
// rows (decode) each weight row is widened on the fly inside the dot products, which reads the
// weights once; for many rows (prefill) panels of weight rows are widened to fp32 and handed to
// OpenBLAS, whose sgemm reaches the machine's FLOP rate.
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/view_checks.h"

namespace louiskv {
namespace {

// Below this many rows the GEMV path wins: widening a weight panel costs as much as using it.
constexpr int64_t gemm_min_rows = 8;
constexpr int64_t panel_rows = 256;

template <class Widen>
void gemv_rows(const float* in, const void* weight, float* out, int64_t tokens, int64_t n, int64_t k, int threads,
               Widen widen) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t row = 0; row < n; ++row) {
    float widened[1024];
    float sums[gemm_min_rows] = {};
    for (int64_t start = 0; start < k; start += 1024) {
      const int64_t length = std::min<int64_t>(1024, k - start);
      widen(weight, size_t(row * k + start), widened, length);
      for (int64_t t = 0; t < tokens; ++t) {
        const float* x = in + t * k + start;
        float sum = 0.0f;
        for (int64_t i = 0; i < length; ++i) sum += x[i] * widened[i];
        sums[t] += sum;
      }
    }
    for (int64_t t = 0; t < tokens; ++t) out[t * n + row] = sums[t];
  }
}

}  // namespace

void CpuBackend::matmul(TensorView out, TensorView in, TensorView weight, const TensorView* bias) {
  cpu::require_f32(out, "matmul", "out");
  cpu::require_f32(in, "matmul", "in");
  cpu::require_host(weight, "matmul", "weight");
  cpu::require(weight.rank == 2 && cpu::is_float_dtype(weight.dtype), "matmul", "weight " + weight.describe());
  const int64_t n = weight.dim(0), k = weight.dim(1);
  cpu::require(in.numel() % k == 0 && in.dim(-1) == k, "matmul", "in " + in.describe() + " vs weight " + weight.describe());
  const int64_t tokens = in.numel() / k;
  cpu::require(out.numel() == tokens * n, "matmul", "out " + out.describe() + " vs in " + in.describe());
  const float* x = in.as<const float>();
  float* y = out.as<float>();

  if (weight.dtype == DType::f32) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tokens), int(n), int(k), 1.0f, x, int(k),
                weight.as<const float>(), int(k), 0.0f, y, int(n));
  } else if (tokens < gemm_min_rows) {
    auto widen = [dtype = weight.dtype](const void* data, size_t offset, float* into, int64_t length) {
      const auto* bits = static_cast<const uint16_t*>(data) + offset;
      if (dtype == DType::bf16) {
        for (int64_t i = 0; i < length; ++i) into[i] = bf16_to_f32(bits[i]);
      } else {
        for (int64_t i = 0; i < length; ++i) into[i] = f16_to_f32(bits[i]);
      }
    };
    gemv_rows(x, weight.data, y, tokens, n, k, threads_, widen);
  } else {
    std::vector<float> panel(size_t(std::min(panel_rows, n) * k));
    for (int64_t first = 0; first < n; first += panel_rows) {
      const int64_t rows = std::min(panel_rows, n - first);
      const char* source = static_cast<const char*>(weight.data) + size_t(first * k) * dtype_size(weight.dtype);
#pragma omp parallel for num_threads(threads_)
      for (int64_t r = 0; r < rows; ++r) {
        convert_to_f32(source + size_t(r * k) * dtype_size(weight.dtype), weight.dtype, panel.data() + r * k, size_t(k));
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tokens), int(rows), int(k), 1.0f, x, int(k), panel.data(),
                  int(k), 0.0f, y + first, int(n));
    }
  }

  if (bias) {
    cpu::require_host(*bias, "matmul", "bias");
    cpu::require(bias->numel() == n, "matmul", "bias " + bias->describe() + " vs " + std::to_string(n) + " outputs");
    std::vector<float> b(static_cast<size_t>(n));
    convert_to_f32(bias->data, bias->dtype, b.data(), size_t(n));
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t j = 0; j < n; ++j) y[t * n + j] += b[j];
    }
  }
}

}  // namespace louiskv
