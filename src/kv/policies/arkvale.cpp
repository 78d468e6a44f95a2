// ArkVale (DESIGN.md section 6): the KV is cut into fixed pages kept in host memory; each page
// has a digest (a bounding sphere or box of its keys) whose upper bound of q.k ranks it on every
// decode step, and the best pages are recalled into the working set.
#include "kv/offloading_policy.h"
#include "kv/policies/policies.h"

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
  Grouping prompt_grouping(int) const override {
    return {.kind = UnitKind::page, .run_tokens = config().arkvale_page_tokens};
  }
  Grouping generated_grouping(int) const override {
    return {.kind = UnitKind::page, .run_tokens = config().arkvale_page_tokens};
  }
  // Generated tokens leave the window page by page.
  int64_t segment_close_length() const override { return config().arkvale_page_tokens; }

  // The digest's upper bound of q.k; the best head of the group decides.
  UnitTable::Needs summaries() const override {
    return {.keys = sphere_, .box = !sphere_, .radius = sphere_};
  }
  UnitScoring scoring() const override {
    return {.bound = sphere_ ? UnitBound::sphere : UnitBound::box, .reduction = GroupReduction::max};
  }

  bool sphere_;
};

}  // namespace

std::unique_ptr<KvPolicy> make_arkvale_policy(const KvConfig& config, const KvShape& shape,
                                              Backend& backend) {
  return std::make_unique<ArkValePolicy>(config, shape, backend);
}

}  // namespace louiskv
