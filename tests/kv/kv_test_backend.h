// TransferCountingBackend: the CPU reference backend (or another one), with every op forwarded,
// counting the bytes each copy (copy, gather_kv, reorder_kv) moves by where its source and
// destination were allocated (allocate: device, allocate_host: host), so that a test can check a
// policy's KvStats against an independent count. On the CPU both are host memory; the accounting
// is what matters.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "common/error.h"

namespace louiskv::testing {

class TransferCountingBackend : public Backend {
 public:
  enum class Place { device, host, unknown };
  struct Counts {
    int64_t host_to_device_bytes = 0, host_to_device_copies = 0;
    int64_t device_to_host_bytes = 0, device_to_device_bytes = 0;
  };

  explicit TransferCountingBackend(std::unique_ptr<Backend> inner = make_cpu_backend(1))
      : owned_(std::move(inner)), inner_(*owned_) {}

  Counts counts;
  void reset_counts() { counts = {}; }

  Device device() const override { return inner_.device(); }
  std::string description() const override { return "counting " + inner_.description(); }
  DType activation_dtype() const override { return inner_.activation_dtype(); }
  DType kv_dtype() const override { return inner_.kv_dtype(); }

  Buffer allocate(size_t bytes) override { return track(inner_.allocate(bytes), Place::device); }
  Buffer allocate_host(size_t bytes) override {
    return track(inner_.allocate_host(bytes), Place::host);
  }
  void copy(TensorView dst, TensorView src) override {
    count(src.data, dst.data, int64_t(src.nbytes()), 1);
    inner_.copy(dst, src);
  }
  void convert(TensorView dst, TensorView src) override { inner_.convert(dst, src); }
  void synchronize() override { inner_.synchronize(); }
  TensorView prepare_weight(TensorView weight, std::vector<Buffer>& owner) override {
    return inner_.prepare_weight(weight, owner);
  }
  void embedding(TensorView out, TensorView table, TensorView ids) override {
    inner_.embedding(out, table, ids);
  }
  void rms_norm(TensorView out, TensorView in, TensorView weight, float eps) override {
    inner_.rms_norm(out, in, weight, eps);
  }
  void matmul(TensorView out, TensorView in, TensorView weight, const TensorView* bias) override {
    inner_.matmul(out, in, weight, bias);
  }
  void rope(TensorView x, TensorView positions, TensorView inv_freq) override {
    inner_.rope(x, positions, inv_freq);
  }
  void swiglu(TensorView out, TensorView gate, TensorView up) override {
    inner_.swiglu(out, gate, up);
  }
  void add(TensorView out, TensorView a, TensorView b) override { inner_.add(out, a, b); }
  void write_kv(TensorView cache, TensorView rows, int64_t first_position) override {
    inner_.write_kv(cache, rows, first_position);
  }
  void attention_prefill(TensorView out, TensorView q, TensorView k, TensorView v,
                         int64_t first_position, float scale) override {
    inner_.attention_prefill(out, q, k, v, first_position, scale);
  }
  void attention_decode(TensorView out, TensorView q, const AttendedSpans& spans, float scale,
                        TensorView* lse) override {
    inner_.attention_decode(out, q, spans, scale, lse);
  }

  void begin_side_work() override { inner_.begin_side_work(); }
  WorkMark end_side_work() override { return inner_.end_side_work(); }
  bool work_done(const WorkMark& mark) override { return inner_.work_done(mark); }
  void wait_for(const WorkMark& mark) override { inner_.wait_for(mark); }
  void gather_kv(std::span<const KvCopy> copies, int64_t row_bytes) override {
    for (const KvCopy& copy : copies) count(copy.source_keys, copy.keys, 2 * copy.rows * row_bytes, 1);
    inner_.gather_kv(copies, row_bytes);
  }
  void reorder_kv(TensorView dst_keys, TensorView dst_values, int64_t dst_first, TensorView src_keys,
                  TensorView src_values, int64_t src_first, TensorView order) override {
    count(src_keys.data, dst_keys.data, 2 * int64_t(order.numel()) * dst_keys.dim(2) * int64_t(dtype_size(dst_keys.dtype)),
          1);
    inner_.reorder_kv(dst_keys, dst_values, dst_first, src_keys, src_values, src_first, order);
  }
  void summarize_units(std::span<const UnitSummaryJob> jobs, int64_t head_dim) override {
    inner_.summarize_units(jobs, head_dim);
  }
  void kmeans_init(TensorView centroids, TensorView points, TensorView seeds) override {
    inner_.kmeans_init(centroids, points, seeds);
  }
  void kmeans_assign(TensorView assignment, TensorView points, TensorView centroids) override {
    inner_.kmeans_assign(assignment, points, centroids);
  }
  void kmeans_update(TensorView centroids, TensorView sizes, TensorView points, TensorView assignment) override {
    inner_.kmeans_update(centroids, sizes, points, assignment);
  }
  void kmeans_order(TensorView order, TensorView assignment, TensorView sizes) override {
    inner_.kmeans_order(order, assignment, sizes);
  }
  void score_units(TensorView q, std::span<const UnitRow> rows, const UnitScoring& scoring,
                   float gate_threshold) override {
    inner_.score_units(q, rows, scoring, gate_threshold);
  }
  void budget_fill(std::span<const UnitRow> rows, float gate_threshold) override {
    inner_.budget_fill(rows, gate_threshold);
  }
  void query_cosine(TensorView similarity, TensorView q, std::span<void* const> previous) override {
    inner_.query_cosine(similarity, q, previous);
  }

  Place place_of(const void* pointer) const {
    auto address = reinterpret_cast<uintptr_t>(pointer);
    auto it = ranges_.upper_bound(address);
    if (it == ranges_.begin()) return Place::unknown;
    --it;
    return address < it->first + it->second.bytes ? it->second.place : Place::unknown;
  }

 private:
  void count(const void* source, const void* destination, int64_t bytes, int64_t copies) {
    Place from = place_of(source), to = place_of(destination);
    if (from == Place::host && to == Place::device) {
      counts.host_to_device_bytes += bytes;
      counts.host_to_device_copies += copies;
    } else if (from == Place::device && to == Place::host) {
      counts.device_to_host_bytes += bytes;
    } else if (from == Place::device && to == Place::device) {
      counts.device_to_device_bytes += bytes;
    }
  }

  struct Range {
    size_t bytes;
    Place place;
  };
  Buffer track(Buffer buffer, Place place) {
    auto address = reinterpret_cast<uintptr_t>(buffer.data());
    ranges_[address] = {buffer.bytes(), place};
    auto owned = std::make_shared<Buffer>(std::move(buffer));
    return Buffer(owned->data(), owned->bytes(), owned->device(),
                  [this, owned, address](void*) {
                    ranges_.erase(address);
                    owned->reset();
                  });
  }

  std::unique_ptr<Backend> owned_;
  Backend& inner_;
  std::map<uintptr_t, Range> ranges_;
};

}  // namespace louiskv::testing
