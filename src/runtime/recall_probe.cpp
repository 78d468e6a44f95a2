#include "runtime/recall_probe.h"

#include <cmath>

namespace louiskv {

RecallProbe::RecallProbe(std::unique_ptr<KvPolicy> inner, const KvShape& shape, Backend& backend)
    : inner_(std::move(inner)), shape_(shape), backend_(backend), recall_sum_(size_t(shape.layers), 0.0),
      recall_count_(size_t(shape.layers), 0) {
  KvConfig full;
  full.policy = "full";
  shadow_ = make_kv_policy(full, shape, backend);
}

void RecallProbe::add_sequence(SequenceId id, int64_t capacity) {
  inner_->add_sequence(id, capacity);
  shadow_->add_sequence(id, capacity);
}

void RecallProbe::remove_sequence(SequenceId id) {
  inner_->remove_sequence(id);
  shadow_->remove_sequence(id);
}

void RecallProbe::prefill_append(SequenceId id, int layer, TensorView k, TensorView v, int64_t first_position) {
  inner_->prefill_append(id, layer, k, v, first_position);
  shadow_->prefill_append(id, layer, k, v, first_position);
}

void RecallProbe::prefill_done(SequenceId id, int layer) {
  inner_->prefill_done(id, layer);
  shadow_->prefill_done(id, layer);
}

void RecallProbe::decode_append(std::span<const SequenceId> batch, int layer, TensorView k, TensorView v) {
  inner_->decode_append(batch, layer, k, v);
  shadow_->decode_append(batch, layer, k, v);
}

void RecallProbe::attention_lse(const AttendedSpans& spans, TensorView q, std::vector<float>& host_lse) {
  const int64_t batch = q.dim(0), heads = q.dim(1), dim = q.dim(2);
  const size_t output_bytes = size_t(batch * heads * dim) * dtype_size(q.dtype);
  if (output_.bytes() < output_bytes) output_ = backend_.allocate(output_bytes);
  if (lse_.bytes() < size_t(batch * heads) * sizeof(float)) lse_ = backend_.allocate(size_t(batch * heads) * sizeof(float));
  TensorView output = output_.view(q.dtype, {batch, heads, dim});
  TensorView lse = lse_.view(DType::f32, {batch, heads});
  backend_.attention_decode(output, q, spans, 1.0f / std::sqrt(float(dim)), &lse);
  host_lse.resize(size_t(batch * heads));
  // A measurement, not the decode path: reading the lse back synchronises on purpose.
  backend_.copy(TensorView(host_lse.data(), DType::f32, Device::cpu, {batch, heads}), lse);
  backend_.synchronize();
}

const AttendedSpans& RecallProbe::select(std::span<const SequenceId> batch, int layer, TensorView q) {
  const AttendedSpans& full = shadow_->select(batch, layer, q);
  attention_lse(full, q, full_lse_);
  const AttendedSpans& attended = inner_->select(batch, layer, q);
  attention_lse(attended, q, attended_lse_);
  for (size_t i = 0; i < full_lse_.size(); ++i) {
    recall_sum_[size_t(layer)] += std::min(1.0, std::exp(double(attended_lse_[i]) - double(full_lse_[i])));
    recall_count_[size_t(layer)] += 1;
  }
  return attended;
}

std::vector<double> RecallProbe::recall_per_layer() const {
  std::vector<double> result(recall_sum_.size(), 0.0);
  for (size_t l = 0; l < result.size(); ++l) result[l] = recall_count_[l] ? recall_sum_[l] / double(recall_count_[l]) : 1.0;
  return result;
}

double RecallProbe::recall() const {
  const auto layers = recall_per_layer();
  double sum = 0;
  for (double value : layers) sum += value;
  return layers.empty() ? 1.0 : sum / double(layers.size());
}

}  // namespace louiskv
