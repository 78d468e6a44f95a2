// KvPolicy: the contract between the decoder and a KV policy (DESIGN.md section 4). A policy owns
// the KV of its sequences (host pool, working set, units) and decides, per layer and step, what
// each KV head's queries attend to. Calls are made per layer; decode calls are batched over the
// sequences of a step. The heavy steps (scoring, k-means, gathers) are Backend ops.
//
// DESIGN.md's hooks, here: on_prefill is prefill_append (per chunk) + prefill_done (units built,
// KV offloaded), with prefill_view for prefill attention; select is select; on_append is
// decode_append.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "louiskv/kv_config.h"
#include "louiskv/stats.h"

namespace louiskv {

using SequenceId = int64_t;

struct KvShape {
  int64_t layers = 0;
  int64_t heads = 0;     // query heads
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
};

// Dense K and V of one layer of one sequence: [kv_heads, capacity, head_dim] in the KV dtype,
// tokens [0, length) valid. Prefill attention reads them.
struct DenseKv {
  TensorView keys;
  TensorView values;
  int64_t length = 0;
};

class KvPolicy {
 public:
  virtual ~KvPolicy() = default;
  virtual std::string_view name() const = 0;

  // Reserves the storage of a sequence of at most `capacity` tokens (prompt and generation).
  virtual void add_sequence(SequenceId id, int64_t capacity) = 0;
  virtual void remove_sequence(SequenceId id) = 0;

  // Prefill runs layer by layer over the whole prompt (so that one layer's KV can be clustered
  // and offloaded while the next computes). For each chunk: k, v [T, Hkv, D] (act dtype,
  // post-RoPE) of positions [first_position, first_position + T).
  virtual void prefill_append(SequenceId id, int layer, TensorView k, TensorView v,
                              int64_t first_position) = 0;
  // Everything appended so far to this layer, for prefill attention.
  virtual DenseKv prefill_view(SequenceId id, int layer) = 0;
  // The prompt is complete for this layer: build units, offload.
  virtual void prefill_done(SequenceId id, int layer) = 0;

  // Decode, batched: k, v [B, Hkv, D] (act) of the step's new tokens.
  virtual void decode_append(std::span<const SequenceId> batch, int layer, TensorView k,
                             TensorView v) = 0;
  // What the queries q [B, Hq, D] attend to: row b * Hkv + h, the new token included. The
  // returned spans stay valid until the next call on this policy.
  virtual const AttendedSpans& select(std::span<const SequenceId> batch, int layer,
                                      TensorView q) = 0;
  // Policies that learn from attention (H2O) return true and get the attention's lse [B, Hq].
  virtual bool wants_attention_lse() const { return false; }
  virtual void observe_attention(std::span<const SequenceId> /*batch*/, int /*layer*/,
                                 TensorView /*q*/, TensorView /*lse*/) {}

  virtual KvStats stats(SequenceId id) const = 0;
};

// Makes the policy named config.policy; throws louiskv::Error (invalid_input) listing the known
// names when it is unknown.
// The names make_kv_policy accepts, in the order the CLI lists them.
std::vector<std::string> kv_policy_names();

std::unique_ptr<KvPolicy> make_kv_policy(const KvConfig& config, const KvShape& shape,
                                         Backend& backend);

}  // namespace louiskv
