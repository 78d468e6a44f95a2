// out[T, N] = in[T, K] @ weight[N, K]^T (+ bias). Weights stay in their file dtype: for a few
// rows (decode) each weight row is widened on the fly inside the dot products, which reads the
// weights once; for many rows (prefill) panels of weight rows are widened to fp32 and handed to
// OpenBLAS, whose sgemm reaches the machine's FLOP rate.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/view_checks.h"

namespace louiskv {
namespace {

// Below this many rows the GEMV path wins: widening a weight panel costs as much as using it.
constexpr int64_t gemm_min_rows = 8;
// Weight rows per panel: each thread widens one panel into its scratch and multiplies it.
constexpr int64_t panel_rows = 64;

template <class Widen>
void gemv_rows(const float* in, const void* weight, float* out, int64_t tokens, int64_t n, int64_t k, int threads,
               Widen widen) {
  // A parallel region costs microseconds of wake-up and barrier; below a million multiply-adds
  // one thread finishes sooner, and does not stall when another process holds a core.
#pragma omp parallel for num_threads(threads) schedule(static) if (n * k * tokens >= (int64_t(1) << 20))
  for (int64_t row = 0; row < n; ++row) {
    float widened[1024];
    float sums[gemm_min_rows] = {};
    for (int64_t start = 0; start < k; start += 1024) {
      const int64_t length = std::min<int64_t>(1024, k - start);
      widen(weight, size_t(row * k + start), widened, length);
      for (int64_t t = 0; t < tokens; ++t) {
        const float* x = in + t * k + start;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
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

  if (tokens < gemm_min_rows && weight.dtype != DType::f32) {
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
    const int64_t panels = (n + panel_rows - 1) / panel_rows;
#pragma omp parallel for num_threads(threads_) schedule(dynamic)
    for (int64_t panel = 0; panel < panels; ++panel) {
      const int64_t first = panel * panel_rows, rows = std::min(panel_rows, n - first);
      const char* source = static_cast<const char*>(weight.data) + size_t(first * k) * dtype_size(weight.dtype);
      const float* rows_f32 = reinterpret_cast<const float*>(source);
      if (weight.dtype != DType::f32) {
        float* widened = thread_scratch(omp_get_thread_num(), size_t(rows * k));
        convert_to_f32(source, weight.dtype, widened, size_t(rows * k));
        rows_f32 = widened;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(tokens), int(rows), int(k), 1.0f, x, int(k), rows_f32,
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
