// Counters a KV policy keeps per sequence, with the names of DESIGN.md section 8 (the CLI's
// JSON, the benchmarks and the docs use the same names).
#pragma once

#include <cstdint>

namespace louiskv {

// Counters of one sequence, with the names of DESIGN.md section 8.
struct KvStats {
  int64_t decode_steps = 0;
  int64_t offloaded_layers = 0;
  int64_t selections = 0;         // (step, offloaded layer) pairs that re-selected
  int64_t units_loaded = 0;       // units copied host -> device
  int64_t tokens_loaded = 0;
  int64_t h2d_bytes = 0;          // bytes copied host -> device during decode
  int64_t tokens_dropped = 0;     // evicting policies: tokens gone for good
  int64_t attended_tokens = 0;    // summed over steps, layers and KV heads
  int64_t host_syncs = 0;         // decode waits of the host for the device (a policy that plans
                                  // on the host needs the device's choice: once per layer)
  double score_ms = 0, select_ms = 0, transfer_ms = 0;

  double retrieval_rate() const {
    int64_t opportunities = decode_steps * offloaded_layers;
    return opportunities ? double(selections) / double(opportunities) : 0.0;
  }
  double h2d_bytes_per_token() const { return decode_steps ? double(h2d_bytes) / double(decode_steps) : 0.0; }
};

}  // namespace louiskv
