// KvConfig: every knob of the KV policies (DESIGN.md sections 3-6), with its default.
// The CLI exposes each field as a flag of the same name (underscores become dashes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace louiskv {

struct KvConfig {
  // Policy name: full, streaming, h2o, quest, arkvale, clusterkv, louiskv (raas later).
  std::string policy = "full";
  // Tokens attended per KV head per step, sinks and window included. `full` ignores it.
  int64_t budget = 2048;
  // First tokens of every sequence, always attended.
  int64_t sink_tokens = 16;
  // Newest tokens, always attended (StreamingLLM's and H2O's recent window, LouisKV's local window).
  int64_t window_tokens = 64;
  // Layers that keep full attention and are never offloaded. Empty with dense_layers_default
  // means "the first two".
  std::vector<int> dense_layers{0, 1};

  // LouisKV
  double tau = 0.7;                     // re-select when mean_h cos(q_t, q_{t-1}) < tau
  int64_t cluster_tokens = 16;          // average prompt tokens per K-means cluster
  int kmeans_iterations = 10;           // Lloyd iterations
  int64_t max_segment_tokens = 64;      // a generated segment closes at a boundary or this length

  // Quest and ArkVale
  int64_t quest_page_tokens = 16;
  int64_t arkvale_page_tokens = 32;
  std::string arkvale_digest = "sphere";  // "sphere" or "box"

  // ClusterKV
  int64_t clusterkv_cluster_tokens = 16;

  uint64_t seed = 0;  // K-means initialisation
};

}  // namespace louiskv
