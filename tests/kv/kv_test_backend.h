// TransferCountingBackend: the CPU reference backend (or another one), with every op forwarded,
// counting the bytes each copy moves by where its source and destination were allocated
// (allocate: device, allocate_host: host), so that a test can check a policy's KvStats against
// an independent count. On the CPU both are host memory; the accounting is what matters.
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
    Place from = place_of(src.data), to = place_of(dst.data);
    int64_t bytes = int64_t(src.nbytes());
    if (from == Place::host && to == Place::device) {
      counts.host_to_device_bytes += bytes;
      ++counts.host_to_device_copies;
    } else if (from == Place::device && to == Place::host) {
      counts.device_to_host_bytes += bytes;
    } else if (from == Place::device && to == Place::device) {
      counts.device_to_device_bytes += bytes;
    }
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

  Place place_of(const void* pointer) const {
    auto address = reinterpret_cast<uintptr_t>(pointer);
    auto it = ranges_.upper_bound(address);
    if (it == ranges_.begin()) return Place::unknown;
    --it;
    return address < it->first + it->second.bytes ? it->second.place : Place::unknown;
  }

 private:
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
