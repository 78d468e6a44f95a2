// The CPU reference backend: plain loops with fp32 accumulation, OpenMP over the outermost
// independent loop, OpenBLAS for the prefill GEMMs. Every other backend is tested against it.
#pragma once

#include <vector>

#include "backend/backend.h"

namespace louiskv {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads);

  Device device() const override { return Device::cpu; }
  std::string description() const override;
  DType activation_dtype() const override { return DType::f32; }
  DType kv_dtype() const override { return DType::f32; }

  Buffer allocate(size_t bytes) override;
  Buffer allocate_host(size_t bytes) override { return allocate(bytes); }
  void copy(TensorView dst, TensorView src) override;
  void convert(TensorView dst, TensorView src) override;
  void synchronize() override {}
  TensorView prepare_weight(TensorView host_weight, std::vector<Buffer>& owner) override;

  void embedding(TensorView out, TensorView table, TensorView ids) override;
  void rms_norm(TensorView out, TensorView in, TensorView weight, float eps) override;
  void matmul(TensorView out, TensorView in, TensorView weight, const TensorView* bias) override;
  void rope(TensorView x, TensorView positions, TensorView inv_freq) override;
  void swiglu(TensorView out, TensorView gate, TensorView up) override;
  void add(TensorView out, TensorView a, TensorView b) override;

  void write_kv(TensorView cache, TensorView rows, int64_t first_position) override;
  void attention_prefill(TensorView out, TensorView q, TensorView k, TensorView v,
                         int64_t first_position, float scale) override;
  void attention_decode(TensorView out, TensorView q, const AttendedSpans& spans, float scale,
                        TensorView* lse) override;

  // One stream: side work runs at once, in call order, so every mark is done.
  void begin_side_work() override {}
  WorkMark end_side_work() override { return {}; }
  bool work_done(const WorkMark&) override { return true; }
  void wait_for(const WorkMark&) override {}

  void gather_kv(std::span<const KvCopy> copies, int64_t row_bytes) override;
  void reorder_kv(TensorView dst_keys, TensorView dst_values, int64_t dst_first, TensorView src_keys,
                  TensorView src_values, int64_t src_first, TensorView order) override;
  void summarize_units(std::span<const UnitSummaryJob> jobs, int64_t head_dim) override;
  void kmeans_init(TensorView centroids, TensorView points, TensorView seeds) override;
  void kmeans_assign(TensorView assignment, TensorView points, TensorView centroids) override;
  void kmeans_update(TensorView centroids, TensorView sizes, TensorView points,
                     TensorView assignment) override;
  void kmeans_order(TensorView order, TensorView assignment, TensorView sizes) override;
  void score_units(TensorView q, std::span<const UnitRow> rows, const UnitScoring& scoring,
                   float gate_threshold) override;
  void budget_fill(std::span<const UnitRow> rows, float gate_threshold) override;
  void query_cosine(TensorView similarity, TensorView q, std::span<void* const> previous) override;

 private:
  // Per-thread working memory of the ops (weight panels, attention scores), kept between calls so
  // that prefill does not map and fault fresh pages for every chunk.
  float* thread_scratch(int thread, size_t floats);

  int threads_;
  std::vector<std::vector<float>> scratch_;
};

}  // namespace louiskv
