// Attention on the CPU: prefill as blocked GEMMs (scores of a block of queries against every key
// it may see, masked, softmax, then times V), decode as an online softmax over the spans of each
// (sequence, KV head), all query heads of the group reading the same keys.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/view_checks.h"

namespace louiskv {
namespace {
constexpr int64_t query_block = 128;
}

void CpuBackend::attention_prefill(TensorView out, TensorView q, TensorView k, TensorView v, int64_t first_position,
                                   float scale) {
  for (auto* view : {&out, &q, &k, &v}) cpu::require_f32(*view, "attention_prefill", "views");
  cpu::require(q.rank == 3 && out.numel() == q.numel() && k.rank == 3 && v.rank == 3 && k.shape == v.shape &&
                   q.dim(2) == k.dim(2) && q.dim(1) % k.dim(0) == 0,
               "attention_prefill", "q " + q.describe() + ", k " + k.describe() + ", v " + v.describe());
  const int64_t tokens = q.dim(0), heads = q.dim(1), dim = q.dim(2);
  const int64_t kv_heads = k.dim(0), capacity = k.dim(1), group = heads / kv_heads;
  cpu::require(first_position + tokens <= capacity, "attention_prefill", "keys beyond the cache capacity");

  // Work items are (head, block of queries); each thread keeps its scores in its own scratch and
  // runs single-threaded sgemms, so heads and blocks proceed in parallel.
  const int64_t blocks = (tokens + query_block - 1) / query_block;
#pragma omp parallel for num_threads(threads_) schedule(dynamic)
  for (int64_t item = 0; item < heads * blocks; ++item) {
    const int64_t h = item / blocks, block = (item % blocks) * query_block;
    const float* keys = k.as<const float>() + (h / group) * capacity * dim;
    const float* values = v.as<const float>() + (h / group) * capacity * dim;
    const int64_t rows = std::min(query_block, tokens - block);
    const int64_t visible = first_position + block + rows;  // keys the last query of the block sees
    float* scores = thread_scratch(omp_get_thread_num(), size_t(rows * visible));
    const float* queries = q.as<const float>() + (block * heads + h) * dim;
    float* output = out.as<float>() + (block * heads + h) * dim;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(visible), int(dim), scale, queries,
                int(heads * dim), keys, int(dim), 0.0f, scores, int(visible));
    for (int64_t r = 0; r < rows; ++r) {
      float* row = scores + r * visible;
      const int64_t seen = first_position + block + r + 1;
      float maximum = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < seen; ++j) maximum = std::max(maximum, row[j]);
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < seen; ++j) {
        row[j] = std::exp(row[j] - maximum);
        sum += row[j];
      }
      const float inverse = 1.0f / sum;
      for (int64_t j = 0; j < seen; ++j) row[j] *= inverse;
      for (int64_t j = seen; j < visible; ++j) row[j] = 0.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(dim), int(visible), 1.0f, scores, int(visible),
                values, int(dim), 0.0f, output, int(heads * dim));
  }
}

void CpuBackend::attention_decode(TensorView out, TensorView q, const AttendedSpans& spans, float scale,
                                  TensorView* lse) {
  cpu::require_f32(out, "attention_decode", "out");
  cpu::require_f32(q, "attention_decode", "q");
  cpu::require(q.rank == 3 && out.numel() == q.numel(), "attention_decode", "q " + q.describe() + ", out " + out.describe());
  const int64_t batch = q.dim(0), heads = q.dim(1), dim = q.dim(2);
  cpu::require(spans.rows() > 0 && (batch * heads) % spans.rows() == 0 && spans.rows() % batch == 0, "attention_decode",
               "span rows " + std::to_string(spans.rows()) + " do not match batch " + std::to_string(batch));
  const int64_t kv_heads = spans.rows() / batch, group = heads / kv_heads;
  if (lse) {
    cpu::require_f32(*lse, "attention_decode", "lse");
    cpu::require(lse->numel() == batch * heads, "attention_decode", "lse " + lse->describe());
  }

  const int64_t attended = int64_t(spans.spans.empty() ? 0 : spans.tokens_in_row(0));
#pragma omp parallel for num_threads(threads_) schedule(dynamic) if (batch * kv_heads * attended * heads / kv_heads >= 65536)
  for (int64_t row = 0; row < batch * kv_heads; ++row) {
    const int64_t b = row / kv_heads, kv_head = row % kv_heads;
    std::vector<float> maximum(size_t(group), -std::numeric_limits<float>::infinity());
    std::vector<float> sum(size_t(group), 0.0f);
    std::vector<float> accumulator(size_t(group * dim), 0.0f);
    for (int32_t s = spans.indptr[row]; s < spans.indptr[row + 1]; ++s) {
      const AttendSpan& span = spans.spans[s];
      const auto* keys = static_cast<const float*>(span.keys);
      const auto* values = static_cast<const float*>(span.values);
      for (int32_t t = 0; t < span.length; ++t) {
        for (int64_t g = 0; g < group; ++g) {
          const float* query = q.as<const float>() + (b * heads + kv_head * group + g) * dim;
          float score = 0.0f;
#pragma omp simd reduction(+ : score)
          for (int64_t i = 0; i < dim; ++i) score += query[i] * keys[t * dim + i];
          score *= scale;
          float* acc = accumulator.data() + g * dim;
          if (score > maximum[g]) {
            const float correction = std::exp(maximum[g] - score);
            sum[g] *= correction;
            for (int64_t i = 0; i < dim; ++i) acc[i] *= correction;
            maximum[g] = score;
          }
          const float weight = std::exp(score - maximum[g]);
          sum[g] += weight;
          for (int64_t i = 0; i < dim; ++i) acc[i] += weight * values[t * dim + i];
        }
      }
    }
    for (int64_t g = 0; g < group; ++g) {
      const int64_t head = kv_head * group + g;
      float* output = out.as<float>() + (b * heads + head) * dim;
      const float inverse = sum[g] > 0.0f ? 1.0f / sum[g] : 0.0f;
      for (int64_t i = 0; i < dim; ++i) output[i] = accumulator[g * dim + i] * inverse;
      if (lse) lse->as<float>()[b * heads + head] = maximum[g] + std::log(sum[g]);
    }
  }
}

}  // namespace louiskv
