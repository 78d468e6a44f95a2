// make_kv_policy: the one place that maps a policy name (--kv NAME) to its implementation.
#include <functional>
#include <utility>
#include <vector>

#include "kv/kv_policy.h"
#include "kv/policies/full_cache.h"
#include "kv/policies/policies.h"

namespace louiskv {
namespace {

using PolicyMaker = std::function<std::unique_ptr<KvPolicy>(const KvConfig&, const KvShape&, Backend&)>;

const std::vector<std::pair<std::string, PolicyMaker>>& policy_makers() {
  static const std::vector<std::pair<std::string, PolicyMaker>> makers = {
      {"full", [](const KvConfig&, const KvShape& shape, Backend& backend) {
         return std::make_unique<FullCachePolicy>(shape, backend);
       }},
      {"streaming", make_streaming_policy},
      {"h2o", make_h2o_policy},
      {"quest", make_quest_policy},
      {"arkvale", make_arkvale_policy},
      {"clusterkv", make_clusterkv_policy},
      {"raas", make_raas_policy},
      {"louiskv", make_louiskv_policy},
  };
  return makers;
}

}  // namespace

std::vector<std::string> kv_policy_names() {
  std::vector<std::string> names;
  for (const auto& [name, maker] : policy_makers()) names.push_back(name);
  return names;
}

std::unique_ptr<KvPolicy> make_kv_policy(const KvConfig& config, const KvShape& shape, Backend& backend) {
  for (const auto& [name, maker] : policy_makers()) {
    if (name == config.policy) return maker(config, shape, backend);
  }
  std::string known;
  for (const auto& name : kv_policy_names()) known += (known.empty() ? "" : ", ") + name;
  throw_error(ErrorKind::invalid_input, "unknown KV policy '" + config.policy + "' (known: " + known + ")");
}

}  // namespace louiskv
