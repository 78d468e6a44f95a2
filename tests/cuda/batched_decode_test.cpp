// Batched decoding on the GPU (tests/support/batched_decode.h): three sequences of different
// prompt lengths decoded as one batch give the logits each gives on its own, under every KV
// policy, in both modes of the backend. GEMMs of 3 rows and of 1 may round differently (cuBLAS
// picks kernels by shape), so the bound is on the relative size of the differences and on the
// argmax, not on bits.
#include <cstdio>

#include "cuda/parity_harness.h"
#include "support/batched_decode.h"
#include "support/test_support.h"

namespace louiskv {
namespace {

TEST(CudaBatchedDecode, ABatchOfThreeGivesTheLogitsOfEachAlone) {
  LOUISKV_REQUIRE_CUDA();
  for (DType activations : {DType::bf16, DType::f32}) {
    const std::string mode(dtype_name(activations));
    SCOPED_TRACE(mode);
    auto backend = make_cuda_backend(0, activations);
    auto model = Model::load(testing::bundled_model_dir(), *backend);
    auto c = testing::make_batched_decode_case(model->config().vocab_size, {150, 301, 77}, 24);
    for (const std::string& name : testing::every_policy()) {
      SCOPED_TRACE(name);
      KvConfig config = testing::batched_decode_config(name);
      auto batched = testing::decode_logits(*model, *backend, config, c, true);
      auto alone = testing::decode_logits(*model, *backend, config, c, false);
      testing::LogitAgreement agreement = testing::compare_logits(batched, alone);
      std::printf("[batched] %-4s %-9s largest logit difference %.3g, relative mean %.3g worst %.3g, top-1 agreement "
                  "%.3f\n",
                  mode.c_str(), name.c_str(), agreement.worst_difference, agreement.mean_relative,
                  agreement.worst_relative, agreement.top1_agreement);
      EXPECT_LT(agreement.mean_relative, 2e-2);
      EXPECT_GE(agreement.top1_agreement, 0.9);
    }
  }
}

}  // namespace
}  // namespace louiskv
