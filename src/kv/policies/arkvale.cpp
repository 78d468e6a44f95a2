// ArkVale (DESIGN.md section 6): the KV is cut into fixed pages kept in host memory; each page
// has a digest (a bounding sphere or box of its keys) whose upper bound of q.k ranks it on every
// decode step, and the best pages are recalled into the working set.
#include "kv/offloading_policy.h"
#include "kv/policies/policies.h"
#include "kv/unit_scoring.h"

namespace louiskv {
namespace {

class ArkValePolicy final : public OffloadingPolicy {
 public:
  ArkValePolicy(const KvConfig& config, const KvShape& shape, Backend& backend)
      : OffloadingPolicy("arkvale", config, shape, backend),
        sphere_(config.arkvale_digest == "sphere") {
    require(config.arkvale_page_tokens >= 1, "arkvale_page_tokens", "must be at least 1");
    require(config.arkvale_digest == "sphere" || config.arkvale_digest == "box", "arkvale_digest",
            "must be \"sphere\" or \"box\", got \"" + config.arkvale_digest + "\"");
  }

 private:
  Partition partition_prompt(int, int64_t, std::span<const float>, int64_t count) override {
    return contiguous_runs(UnitKind::page, count, config().arkvale_page_tokens);
  }
  Partition partition_generated(int, int64_t, std::span<const float>, int64_t count) override {
    return contiguous_runs(UnitKind::page, count, config().arkvale_page_tokens);
  }
  // Generated tokens leave the window page by page.
  int64_t segment_close_length() const override { return config().arkvale_page_tokens; }
  Summaries summaries() const override { return {.box = !sphere_, .sphere = sphere_}; }

  // The digest's upper bound of q.k; the best head of the group decides.
  void score_units(const HeadUnits& units, std::span<const float> queries,
                   std::span<float> scores) override {
    int64_t count = int64_t(units.units.size()), group = group_size(), dim = shape().head_dim;
    per_head_.resize(size_t(group * count));
    if (sphere_) {
      sphere_upper_bounds(queries, group, units.mean_keys, units.radii, count, dim, per_head_);
    } else {
      box_upper_bounds(queries, group, units.lower, units.upper, count, dim, per_head_);
    }
    reduce_over_group(per_head_, group, count, GroupReduction::max, 1.0f, scores);
  }

  bool sphere_;
  std::vector<float> per_head_;
};

}  // namespace

std::unique_ptr<KvPolicy> make_arkvale_policy(const KvConfig& config, const KvShape& shape,
                                              Backend& backend) {
  return std::make_unique<ArkValePolicy>(config, shape, backend);
}

}  // namespace louiskv
