// make_backend, which turns --device and --dtype into a backend: the cpu backend computes in f32,
// so it takes --dtype auto and f32 and refuses bf16 by name; an unknown dtype is refused too.
#include <gtest/gtest.h>

#include <string>

#include "runtime/engine.h"

namespace louiskv {
namespace {

// Runs `call`, expecting a louiskv::Error of `kind` whose message contains `needle`.
template <class Call>
void expect_error(Call call, ErrorKind kind, const std::string& needle) {
  try {
    call();
    ADD_FAILURE() << "expected an error containing '" << needle << "'";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), kind) << error.what();
    EXPECT_NE(std::string(error.what()).find(needle), std::string::npos)
        << "message '" << error.what() << "' lacks '" << needle << "'";
  }
}

TEST(BackendFactory, TheCpuTakesAutoAndF32) {
  for (const char* dtype : {"auto", "f32"}) {
    SCOPED_TRACE(dtype);
    auto backend = make_backend("cpu", 1, dtype);
    EXPECT_EQ(backend->device(), Device::cpu);
    EXPECT_EQ(backend->activation_dtype(), DType::f32);
    EXPECT_EQ(backend->kv_dtype(), DType::f32);
  }
}

TEST(BackendFactory, Bf16OnTheCpuIsRefusedNamingTheFlag) {
  expect_error([] { make_backend("cpu", 1, "bf16"); }, ErrorKind::invalid_input,
               "--dtype bf16: the cpu backend runs f32 activations and KV only");
}

TEST(BackendFactory, UnknownDtypeIsRefused) {
  expect_error([] { make_backend("cpu", 1, "f16"); }, ErrorKind::invalid_input, "--dtype must be auto, bf16 or f32");
}

// --device auto with --dtype bf16: the GPU in bf16 where there is one, else the same refusal,
// saying that auto found no GPU.
TEST(BackendFactory, AutoDeviceWithBf16IsTheGpuOrARefusal) {
  try {
    auto backend = make_backend("auto", 1, "bf16");
    EXPECT_EQ(backend->device(), Device::cuda);
    EXPECT_EQ(backend->activation_dtype(), DType::bf16);
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::invalid_input) << error.what();
    EXPECT_NE(std::string(error.what()).find("found no CUDA device"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace louiskv
