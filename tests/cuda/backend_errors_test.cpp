// What the CUDA backend says when it is misused: each wrong view fails at once with an error
// naming the op and the argument, instead of a fault or wrong numbers. The availability probe
// itself runs everywhere, GPU or not.
#include <string>
#include <vector>

#include "cuda/parity_harness.h"

namespace louiskv::testing {
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

TEST(CudaBackend, AvailabilityProbeNeverThrows) {
  bool available = false;
  EXPECT_NO_THROW(available = cuda_device_available());
  if (!available) {
    expect_error([] { make_cuda_backend(); }, ErrorKind::unsupported, "no CUDA device");
  }
}

// The dtype is checked before the device, so this runs on machines without a GPU too.
TEST(CudaBackend, TakesBf16OrF32ActivationsOnly) {
  expect_error([] { make_cuda_backend(0, DType::f16); }, ErrorKind::unsupported, "bf16 or f32 activations, not f16");
}

TEST(CudaBackend, DescribesItsF32Mode) {
  LOUISKV_REQUIRE_CUDA();
  auto gpu = make_cuda_backend(0, DType::f32);
  EXPECT_EQ(gpu->device(), Device::cuda);
  EXPECT_EQ(gpu->activation_dtype(), DType::f32);
  EXPECT_EQ(gpu->kv_dtype(), DType::f32);
  EXPECT_NE(gpu->description().find("f32 activations and KV"), std::string::npos) << gpu->description();
  std::printf("[backend] %s\n", gpu->description().c_str());
}

// In the f32 mode the ops take f32 activations, KV and (prepared) weights, and say so otherwise.
TEST(CudaBackend, F32ModeRejectsBf16Views) {
  LOUISKV_REQUIRE_CUDA();
  auto gpu = make_cuda_backend(0, DType::f32);
  auto in = make_tensor(*gpu, DType::f32, {4, 64}, std::vector<float>(256, 0.5f));
  auto bf16_weight = make_tensor(*gpu, DType::bf16, {32, 64}, std::vector<float>(32 * 64, 0.5f));
  auto out = make_output(*gpu, DType::f32, {4, 32});
  expect_error([&] { gpu->matmul(out.view, in.view, bf16_weight.view, nullptr); }, ErrorKind::internal,
               "must be f32 for f32 in");
  auto cache = make_output(*gpu, DType::f32, {2, 8, 64});
  auto bf16_rows = make_tensor(*gpu, DType::bf16, {4, 2, 64}, std::vector<float>(512, 0.5f));
  expect_error([&] { gpu->write_kv(cache.view, bf16_rows.view, 0); }, ErrorKind::internal, "must have dtype f32");
  auto bf16_q = make_tensor(*gpu, DType::bf16, {1, 4, 64}, std::vector<float>(256, 0.5f));
  auto attention_out = make_output(*gpu, DType::f32, {1, 4, 64});
  expect_error([&] { gpu->attention_prefill(attention_out.view, bf16_q.view, cache.view, cache.view, 0, 0.1f); },
               ErrorKind::internal, "q (bf16[1, 4, 64] on cuda) must have dtype f32");
  auto q = make_tensor(*gpu, DType::f32, {1, 4, 96}, std::vector<float>(384, 0.5f));
  auto k = make_output(*gpu, DType::f32, {2, 8, 96});
  auto out96 = make_output(*gpu, DType::f32, {1, 4, 96});
  expect_error([&] { gpu->attention_prefill(out96.view, q.view, k.view, k.view, 0, 0.1f); }, ErrorKind::internal,
               "head dim 96 is not supported");
}

TEST(CudaBackend, DescribesItself) {
  LOUISKV_REQUIRE_CUDA();
  auto gpu = make_cuda_backend();
  EXPECT_EQ(gpu->device(), Device::cuda);
  EXPECT_EQ(gpu->activation_dtype(), DType::bf16);
  EXPECT_EQ(gpu->kv_dtype(), DType::bf16);
  EXPECT_NE(gpu->description().find("cuda:0"), std::string::npos) << gpu->description();
  EXPECT_NE(gpu->description().find("bf16 activations and KV"), std::string::npos) << gpu->description();
  std::printf("[backend] %s\n", gpu->description().c_str());
  expect_error([] { make_cuda_backend(4096); }, ErrorKind::unsupported, "does not exist");
}

TEST(CudaBackend, RejectsHostMemoryForDeviceOnlyViews) {
  LOUISKV_REQUIRE_CUDA();
  auto gpu = make_cuda_backend();
  std::vector<uint16_t> host(64 * 128, 0x3f80);
  TensorView host_view = view_of(host.data(), DType::bf16, Device::cpu, {64, 128});
  auto weight = make_tensor(*gpu, DType::bf16, {128}, std::vector<float>(128, 1.0f));
  auto out = make_output(*gpu, DType::bf16, {64, 128});
  expect_error([&] { gpu->rms_norm(out.view, host_view, weight.view, 1e-5f); }, ErrorKind::internal,
               "in (bf16[64, 128] on cpu) must be in device memory");
  // Pageable host memory labelled as device memory is not caught by the label, but memory the
  // GPU cannot read is caught where mapped host memory is allowed.
  expect_error([&] { gpu->rms_norm(out.view, out.view, host_view.reshaped({64 * 128}).rows(0, 128), 1e-5f); },
               ErrorKind::internal, "host memory the GPU cannot read");
}

TEST(CudaBackend, RejectsWrongDtypesAndShapes) {
  LOUISKV_REQUIRE_CUDA();
  auto gpu = make_cuda_backend();
  auto in = make_tensor(*gpu, DType::bf16, {4, 64}, std::vector<float>(256, 0.5f));
  auto f32_weight = make_tensor(*gpu, DType::f32, {32, 64}, std::vector<float>(32 * 64, 0.5f));
  auto out = make_output(*gpu, DType::bf16, {4, 32});
  expect_error([&] { gpu->matmul(out.view, in.view, f32_weight.view, nullptr); }, ErrorKind::internal,
               "prepare_weight");
  auto cache = make_output(*gpu, DType::bf16, {2, 8, 64});
  auto rows = make_tensor(*gpu, DType::bf16, {4, 2, 64}, std::vector<float>(512, 0.5f));
  expect_error([&] { gpu->write_kv(cache.view, rows.view, 6); }, ErrorKind::internal, "capacity 8");
  auto q = make_tensor(*gpu, DType::bf16, {1, 4, 96}, std::vector<float>(384, 0.5f));
  auto k = make_output(*gpu, DType::bf16, {2, 8, 96});
  auto attention_out = make_output(*gpu, DType::bf16, {1, 4, 96});
  expect_error([&] { gpu->attention_prefill(attention_out.view, q.view, k.view, k.view, 0, 0.1f); },
               ErrorKind::internal, "head dim 96 is not supported");
}

TEST(CudaBackend, RejectsMalformedSpans) {
  LOUISKV_REQUIRE_CUDA();
  auto gpu = make_cuda_backend();
  auto q = make_tensor(*gpu, DType::bf16, {2, 8, 64}, std::vector<float>(1024, 0.5f));
  auto out = make_output(*gpu, DType::bf16, {2, 8, 64});
  auto pool = make_output(*gpu, DType::bf16, {16, 64});
  AttendedSpans spans;
  spans.add(pool.view.data, pool.view.data, 4);
  spans.end_row();
  spans.end_row();
  spans.end_row();  // 3 rows for a batch of 2
  expect_error([&] { gpu->attention_decode(out.view, q.view, spans, 0.1f, nullptr); }, ErrorKind::internal,
               "not a multiple of the batch");
  spans.clear();
  for (int row = 0; row < 4; ++row) {
    spans.spans.push_back({pool.view.data, nullptr, 3});
    spans.end_row();
  }
  expect_error([&] { gpu->attention_decode(out.view, q.view, spans, 0.1f, nullptr); }, ErrorKind::internal,
               "null key or value pointer");
}

}  // namespace
}  // namespace louiskv::testing
