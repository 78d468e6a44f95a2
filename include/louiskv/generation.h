// What a caller asks of a generation, and what it gets back.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "louiskv/stats.h"
#include "runtime/sampler.h"

namespace louiskv {

struct GenerationConfig {
  int64_t max_new_tokens = 128;        // -n
  SamplingConfig sampling;
  std::vector<std::string> stop_strings;
  bool ignore_eos = false;
};

struct GenerationStats {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double ttft_ms = 0;           // request start to first token
  double prefill_ms = 0;
  double decode_ms = 0;         // after the first token
  double tok_per_s = 0;         // decode tokens per second (first token excluded)
  double prefill_tok_per_s = 0;
};

struct GenerationResult {
  std::vector<int32_t> ids;     // generated ids (stop string tokens included, EOS excluded)
  std::string text;             // generated text, cut before a stop string
  std::string stop_reason;      // "eos", "length", "stop_string", "context"
  GenerationStats stats;
  KvStats kv;                   // the KV policy's counters for this sequence
};

}  // namespace louiskv
