// KvConfig: every knob of the KV policies (DESIGN.md sections 3-6), with its default.
// The CLI exposes each field as a flag of the same name (underscores become dashes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace louiskv {

struct KvConfig {
  // Policy name: full, streaming, h2o, quest, arkvale, clusterkv, raas, louiskv.
  std::string policy = "full";
  // Tokens attended per KV head per step, sinks and window included. `full` ignores it.
  int64_t budget = 2048;
  // First tokens of every sequence, always attended (streaming, arkvale, clusterkv, louiskv).
  int64_t sink_tokens = 16;
  // Newest tokens, always attended: H2O's recent window and the decode window of arkvale,
  // clusterkv and louiskv. StreamingLLM's recent window is budget - sink_tokens, so that it
  // spends the same budget as the others.
  int64_t window_tokens = 64;
  // The prompt's newest tokens that start in the decode window of arkvale, clusterkv and louiskv
  // (one closed segment, at most window_tokens), so that the local context of the first decode
  // steps is attended rather than left to retrieval; the rest of the prompt goes to the pool.
  int64_t prompt_window_tokens = 0;
  // Layers that keep full attention and are never offloaded, for every policy (`full` keeps
  // them all). Default: the first two; empty: none.
  std::vector<int> dense_layers{0, 1};

  // LouisKV
  // Re-select when mean_h cos(q_t, q_{t-1}) < tau; tau <= 0 selects on the first decode step
  // only, tau = 1 on every step whose queries differ from the previous step's.
  double tau = 0.7;
  int64_t cluster_tokens = 16;          // average prompt tokens per K-means cluster
  int kmeans_iterations = 10;           // Lloyd iterations (LouisKV and ClusterKV)
  // A generated segment closes at a boundary or at this length (ClusterKV clusters generated
  // tokens in batches of this length). Half the window rather than all of it: when a full
  // window hands its oldest segment to the host pool, at least window_tokens - 32 + 1 tokens stay
  // in it; a window-long segment would leave just the current token.
  int64_t max_segment_tokens = 32;

  // Quest and ArkVale
  int64_t quest_page_tokens = 16;
  int64_t arkvale_page_tokens = 32;
  std::string arkvale_digest = "sphere";  // "sphere" or "box"

  // ClusterKV
  int64_t clusterkv_cluster_tokens = 16;

  // RaaS (docs/raas.md)
  // Tokens per page (Quest's 16): RaaS keeps and drops whole pages.
  int64_t raas_page_tokens = 16;
  // A page's timestamp is refreshed on each step where, for some query head of the group, its
  // most attended token draws at least this share of the attention of the head's most attended
  // token. Relative to the step's maximum, so that one value means the same at every budget.
  double raas_importance_ratio = 0.5;

  uint64_t seed = 0;  // K-means initialisation
};

}  // namespace louiskv
