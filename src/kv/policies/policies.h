// Constructors of the KV policies, one per file of this folder (DESIGN.md section 6).
// make_kv_policy picks one by KvConfig::policy; tests may also call them directly.
#pragma once

#include <memory>

#include "kv/kv_policy.h"

namespace louiskv {

std::unique_ptr<KvPolicy> make_streaming_policy(const KvConfig& config, const KvShape& shape,
                                                Backend& backend);
std::unique_ptr<KvPolicy> make_h2o_policy(const KvConfig& config, const KvShape& shape,
                                          Backend& backend);
std::unique_ptr<KvPolicy> make_quest_policy(const KvConfig& config, const KvShape& shape,
                                            Backend& backend);
std::unique_ptr<KvPolicy> make_arkvale_policy(const KvConfig& config, const KvShape& shape,
                                              Backend& backend);
std::unique_ptr<KvPolicy> make_clusterkv_policy(const KvConfig& config, const KvShape& shape,
                                                Backend& backend);
std::unique_ptr<KvPolicy> make_raas_policy(const KvConfig& config, const KvShape& shape,
                                           Backend& backend);
std::unique_ptr<KvPolicy> make_louiskv_policy(const KvConfig& config, const KvShape& shape,
                                              Backend& backend);

}  // namespace louiskv
