// Backends for the kv tests.
//
// HostMemoryBackend: memory and transfers only (allocate, allocate_host, copy, convert,
// write_kv), all in f32 host memory: what the KV memory model needs, without any model op.
//
// TransferCountingBackend: forwards every op to another backend and counts the bytes each copy
// moves, by where its source and destination were allocated (allocate: device, allocate_host:
// host), so that a test can check a policy's KvStats against an independent count.
#pragma once

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "common/error.h"

namespace louiskv::testing {

class HostMemoryBackend : public Backend {
 public:
  Device device() const override { return Device::cpu; }
  std::string description() const override { return "host memory (kv tests)"; }
  DType activation_dtype() const override { return DType::f32; }
  DType kv_dtype() const override { return DType::f32; }

  Buffer allocate(size_t bytes) override { return make(bytes); }
  Buffer allocate_host(size_t bytes) override { return make(bytes); }
  void copy(TensorView dst, TensorView src) override {
    LOUISKV_CHECK(dst.dtype == src.dtype && dst.numel() == src.numel(),
                  "copy " + src.describe() + " -> " + dst.describe());
    std::memmove(dst.data, src.data, src.nbytes());
  }
  void convert(TensorView dst, TensorView src) override {
    LOUISKV_CHECK(dst.numel() == src.numel(), "convert element counts differ");
    for (int64_t i = 0; i < src.numel(); ++i) {
      store_from_f32(dst.data, dst.dtype, size_t(i), load_as_f32(src.data, src.dtype, size_t(i)));
    }
  }
  void synchronize() override {}
  TensorView prepare_weight(TensorView host_weight, std::vector<Buffer>&) override {
    return host_weight;
  }
  void write_kv(TensorView cache, TensorView rows, int64_t first_position) override {
    LOUISKV_CHECK(cache.rank == 3 && rows.rank == 3 && rows.dim(1) == cache.dim(0) &&
                      rows.dim(2) == cache.dim(2) &&
                      first_position + rows.dim(0) <= cache.dim(1),
                  "write_kv " + rows.describe() + " into " + cache.describe());
    int64_t heads = cache.dim(0), capacity = cache.dim(1), dim = cache.dim(2);
    for (int64_t t = 0; t < rows.dim(0); ++t) {
      for (int64_t h = 0; h < heads; ++h) {
        for (int64_t i = 0; i < dim; ++i) {
          float value = load_as_f32(rows.data, rows.dtype, size_t((t * heads + h) * dim + i));
          store_from_f32(cache.data, cache.dtype,
                         size_t((h * capacity + first_position + t) * dim + i), value);
        }
      }
    }
  }

  void embedding(TensorView, TensorView, TensorView) override { unsupported("embedding"); }
  void rms_norm(TensorView, TensorView, TensorView, float) override { unsupported("rms_norm"); }
  void matmul(TensorView, TensorView, TensorView, const TensorView*) override {
    unsupported("matmul");
  }
  void rope(TensorView, TensorView, TensorView) override { unsupported("rope"); }
  void swiglu(TensorView, TensorView, TensorView) override { unsupported("swiglu"); }
  void add(TensorView, TensorView, TensorView) override { unsupported("add"); }
  void attention_prefill(TensorView, TensorView, TensorView, TensorView, int64_t,
                         float) override {
    unsupported("attention_prefill");
  }
  void attention_decode(TensorView, TensorView, const AttendedSpans&, float,
                        TensorView*) override {
    unsupported("attention_decode");
  }

 private:
  static Buffer make(size_t bytes) {
    // Zeroed, so that a slot read before it is written shows up as a wrong value, not garbage.
    void* data = std::calloc(bytes ? bytes : 1, 1);
    if (!data) throw_error(ErrorKind::out_of_memory, "kv test backend: out of memory");
    return Buffer(data, bytes, Device::cpu, [](void* p) { std::free(p); });
  }
  [[noreturn]] static void unsupported(const char* op) {
    throw_error(ErrorKind::unsupported, std::string("kv test backend has no ") + op);
  }
};

class TransferCountingBackend : public Backend {
 public:
  enum class Place { device, host, unknown };
  struct Counts {
    int64_t host_to_device_bytes = 0, host_to_device_copies = 0;
    int64_t device_to_host_bytes = 0, device_to_device_bytes = 0;
  };

  explicit TransferCountingBackend(Backend& inner) : inner_(inner) {}

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

  Backend& inner_;
  std::map<uintptr_t, Range> ranges_;
};

}  // namespace louiskv::testing
