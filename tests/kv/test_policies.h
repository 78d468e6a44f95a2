// The policies under test, by name. (make_kv_policy on main will pick them the same way.)
#pragma once

#include <memory>
#include <string>

#include "kv/policies/policies.h"

namespace louiskv::testing {

inline std::unique_ptr<KvPolicy> make_test_policy(const KvConfig& config, const KvShape& shape,
                                                  Backend& backend) {
  const std::string& name = config.policy;
  if (name == "streaming") return make_streaming_policy(config, shape, backend);
  if (name == "h2o") return make_h2o_policy(config, shape, backend);
  if (name == "quest") return make_quest_policy(config, shape, backend);
  if (name == "arkvale") return make_arkvale_policy(config, shape, backend);
  if (name == "clusterkv") return make_clusterkv_policy(config, shape, backend);
  if (name == "louiskv") return make_louiskv_policy(config, shape, backend);
  throw_error(ErrorKind::invalid_input, "no test policy named " + name);
}

}  // namespace louiskv::testing
