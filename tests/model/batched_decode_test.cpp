// Batched decoding on the CPU (tests/support/batched_decode.h): three sequences of different
// prompt lengths decoded as one batch give the logits each gives decoded on its own, under every
// KV policy, on the bundled tiny-llama.
#include <cstdio>

#include <gtest/gtest.h>

#include "support/batched_decode.h"
#include "support/test_support.h"

namespace louiskv {
namespace {

TEST(BatchedDecode, ABatchOfThreeGivesTheLogitsOfEachAlone) {
  auto backend = make_cpu_backend(1);
  auto model = Model::load(testing::bundled_model_dir(), *backend);
  auto c = testing::make_batched_decode_case(model->config().vocab_size, {150, 301, 77}, 24);
  for (const std::string& name : testing::every_policy()) {
    SCOPED_TRACE(name);
    KvConfig config = testing::batched_decode_config(name);
    auto batched = testing::decode_logits(*model, *backend, config, c, true);
    auto alone = testing::decode_logits(*model, *backend, config, c, false);
    testing::LogitAgreement agreement = testing::compare_logits(batched, alone);
    std::printf("  %-9s largest logit difference %.2g, top-1 agreement %.3f\n", name.c_str(),
                agreement.worst_difference, agreement.top1_agreement);
    // The same tokens are attended either way; a batch only changes how GEMMs sum.
    EXPECT_LT(agreement.worst_difference, 1e-3);
    EXPECT_EQ(agreement.top1_agreement, 1.0);
  }
}

}  // namespace
}  // namespace louiskv
