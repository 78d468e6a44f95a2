#include "backend/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "backend/cuda/attention_decode.h"
#include "backend/cuda/attention_prefill.h"
#include "backend/cuda/convert.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/decode_plan.h"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/embedding.h"
#include "backend/cuda/matmul.h"
#include "backend/cuda/rms_norm.h"
#include "backend/cuda/rope.h"
#include "backend/cuda/view_checks.h"
#include "backend/cuda/write_kv.h"

namespace louiskv {

namespace {

// cuBLAS on Hopper wants up to 32 MiB of workspace for its fastest kernels.
constexpr size_t cublas_workspace_bytes = size_t(32) << 20;
// prepare_weight converts f32/f16 weights on the device through a staging buffer of this size.
constexpr size_t weight_staging_bytes = size_t(64) << 20;

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device_index) : device_index_(device_index) {
    int count = 0;
    LOUISKV_CUDA_CHECK(cudaGetDeviceCount(&count));
    if (device_index < 0 || device_index >= count) {
      throw Error(ErrorKind::unsupported, "CUDA device " + std::to_string(device_index) +
                                              " does not exist (" + std::to_string(count) +
                                              " present)");
    }
    LOUISKV_CUDA_CHECK(cudaSetDevice(device_index_));
    cudaDeviceProp properties{};
    LOUISKV_CUDA_CHECK(cudaGetDeviceProperties(&properties, device_index_));
    if (properties.major < 8) {
      throw Error(ErrorKind::unsupported,
                  std::string("CUDA device ") + properties.name + " has compute capability " +
                      std::to_string(properties.major) + "." + std::to_string(properties.minor) +
                      "; louiskv needs 8.0 or later (bf16 tensor cores)");
    }
    multiprocessors_ = properties.multiProcessorCount;
    compute_major_ = properties.major;
    description_ = "cuda:" + std::to_string(device_index_) + " " + properties.name + " (sm_" +
                   std::to_string(properties.major) + std::to_string(properties.minor) + ", " +
                   std::to_string(multiprocessors_) + " multiprocessors, " +
                   std::to_string(properties.totalGlobalMem >> 20) + " MiB)";
    LOUISKV_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    LOUISKV_CUBLAS_CHECK(cublasCreate(&cublas_));
    LOUISKV_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    LOUISKV_CUDA_CHECK(cudaMalloc(&cublas_workspace_, cublas_workspace_bytes));
    LOUISKV_CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_, cublas_workspace_bytes));
  }

  ~CudaBackend() override {
    // Errors are ignored: a destructor cannot throw.
    cudaSetDevice(device_index_);
    if (stream_) cudaStreamSynchronize(stream_);
    decode_plan_.reset();
    if (cublas_) cublasDestroy(cublas_);
    if (cublas_workspace_) cudaFree(cublas_workspace_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  Device device() const override { return Device::cuda; }
  std::string description() const override { return description_; }
  DType activation_dtype() const override { return DType::bf16; }
  DType kv_dtype() const override { return DType::bf16; }

  Buffer allocate(size_t bytes) override {
    activate();
    void* data = nullptr;
    if (bytes > 0) LOUISKV_CUDA_CHECK(cudaMalloc(&data, bytes));
    int device = device_index_;
    return Buffer(data, bytes, Device::cuda, [device](void* pointer) {
      cudaSetDevice(device);
      cudaFree(pointer);
    });
  }

  Buffer allocate_host(size_t bytes) override {
    activate();
    void* data = nullptr;
    // Mapped: kernels read it in place (zero-copy); portable: every device sees it.
    if (bytes > 0) {
      LOUISKV_CUDA_CHECK(cudaHostAlloc(&data, bytes, cudaHostAllocMapped | cudaHostAllocPortable));
    }
    return Buffer(data, bytes, Device::cpu, [](void* pointer) { cudaFreeHost(pointer); });
  }

  void copy(TensorView dst, TensorView src) override {
    activate();
    LOUISKV_REQUIRE(dst.dtype == src.dtype && dst.numel() == src.numel(), "copy",
                     "dst (" + dst.describe() + ") and src (" + src.describe() +
                         ") must have the same dtype and element count");
    if (dst.nbytes() == 0) return;
    LOUISKV_REQUIRE(!dst.empty() && !src.empty(), "copy", "dst or src is empty (null data)");
    // With unified addressing the runtime tells host from device memory by the pointer.
    LOUISKV_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, dst.nbytes(), cudaMemcpyDefault, stream_));
  }

  void convert(TensorView dst, TensorView src) override {
    activate();
    kernels::launch_convert({dst, src}, stream_);
  }

  void synchronize() override {
    activate();
    LOUISKV_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  TensorView prepare_weight(TensorView host_weight, std::vector<Buffer>& owner) override {
    activate();
    const char* op = "prepare_weight";
    if (host_weight.device == Device::cuda && host_weight.dtype == DType::bf16) return host_weight;
    LOUISKV_REQUIRE(!host_weight.empty() || host_weight.numel() == 0, op,
                     "weight (" + host_weight.describe() + ") is empty (null data)");
    kernels::require_floating(host_weight, op, "weight");
    TensorView prepared = host_weight;
    Buffer buffer = allocate(size_t(host_weight.numel()) * dtype_size(DType::bf16));
    prepared.data = buffer.data();
    prepared.dtype = DType::bf16;
    prepared.device = Device::cuda;
    if (host_weight.numel() > 0) {
      if (host_weight.dtype == DType::bf16) {
        LOUISKV_CUDA_CHECK(cudaMemcpyAsync(prepared.data, host_weight.data, host_weight.nbytes(),
                                           cudaMemcpyDefault, stream_));
      } else {
        convert_through_staging(prepared, host_weight);
      }
      // The source may be a mapped file the caller unmaps next.
      LOUISKV_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }
    owner.push_back(std::move(buffer));
    return prepared;
  }

  void embedding(TensorView out, TensorView table, TensorView ids) override {
    activate();
    kernels::launch_embedding({out, table, ids}, stream_);
  }

  void rms_norm(TensorView out, TensorView in, TensorView weight, float eps) override {
    activate();
    kernels::launch_rms_norm({out, in, weight, eps}, stream_);
  }

  void matmul(TensorView out, TensorView in, TensorView weight, const TensorView* bias) override {
    activate();
    kernels::MatmulParams params;
    params.out = out;
    params.in = in;
    params.weight = weight;
    params.bias = bias ? *bias : TensorView{};
    // The weight-streaming GEMV splits K over thread-block clusters (sm_90 and later); zero
    // multiprocessors keeps older GPUs on cuBLAS.
    params.multiprocessors = compute_major_ >= 9 ? multiprocessors_ : 0;
    kernels::launch_matmul(params, cublas_, stream_);
  }

  void rope(TensorView x, TensorView positions, TensorView inv_freq) override {
    activate();
    kernels::launch_rope({x, positions, inv_freq}, stream_);
  }

  void swiglu(TensorView out, TensorView gate, TensorView up) override {
    activate();
    kernels::launch_swiglu({out, gate, up}, stream_);
  }

  void add(TensorView out, TensorView a, TensorView b) override {
    activate();
    kernels::launch_add({out, a, b}, stream_);
  }

  void write_kv(TensorView cache, TensorView rows, int64_t first_position) override {
    activate();
    kernels::launch_write_kv({cache, rows, first_position}, stream_);
  }

  void attention_prefill(TensorView out, TensorView q, TensorView k, TensorView v,
                         int64_t first_position, float scale) override {
    activate();
    kernels::launch_attention_prefill({out, q, k, v, first_position, scale}, stream_);
  }

  void attention_decode(TensorView out, TensorView q, const AttendedSpans& spans, float scale,
                        TensorView* lse) override {
    activate();
    const char* op = "attention_decode";
    kernels::require_on_device(q, op, "q");
    kernels::require_rank(q, 3, op, "q");
    int64_t batch = q.dim(0);
    int64_t query_heads = q.dim(1);
    int64_t head_dim = q.dim(2);
    LOUISKV_REQUIRE(batch > 0 && spans.rows() % batch == 0, op,
                     "spans has " + std::to_string(spans.rows()) +
                         " rows, not a multiple of the batch (" + std::to_string(batch) + ")");
    int64_t kv_heads = spans.rows() / batch;
    LOUISKV_REQUIRE(kv_heads > 0 && query_heads % kv_heads == 0, op,
                     "query heads (" + std::to_string(query_heads) +
                         ") must be a multiple of the KV heads (" + std::to_string(kv_heads) +
                         ") implied by spans");
    kernels::DecodePlan plan = decode_plan_->upload(spans, batch, kv_heads, query_heads, head_dim,
                                                    multiprocessors_, stream_);
    kernels::DecodeAttentionParams params;
    params.out = out;
    params.q = q;
    params.lse = lse ? *lse : TensorView{};
    params.scale = scale;
    params.kv_heads = int(kv_heads);
    params.spans = plan.spans;
    params.indptr = plan.indptr;
    params.chunk_first_span = plan.chunk_first_span;
    params.split = plan.split;
    params.workspace = plan.workspace;
    params.workspace_bytes = plan.workspace_bytes;
    try {
      kernels::launch_attention_decode(params, stream_);
    } catch (...) {
      decode_plan_->release(plan, stream_);
      throw;
    }
    decode_plan_->release(plan, stream_);
  }

 private:
  // Several backends may live on several devices in one process; each call makes its own
  // device current (cheap when it already is).
  void activate() const { LOUISKV_CUDA_CHECK(cudaSetDevice(device_index_)); }

  void convert_through_staging(const TensorView& prepared, const TensorView& host_weight) {
    size_t element_bytes = dtype_size(host_weight.dtype);
    int64_t total = host_weight.numel();
    int64_t per_chunk = int64_t(weight_staging_bytes / element_bytes);
    void* staging = nullptr;
    size_t staging_bytes = size_t(total < per_chunk ? total : per_chunk) * element_bytes;
    LOUISKV_CUDA_CHECK(cudaMalloc(&staging, staging_bytes));
    try {
      for (int64_t first = 0; first < total; first += per_chunk) {
        int64_t count = total - first < per_chunk ? total - first : per_chunk;
        const char* source = static_cast<const char*>(host_weight.data) + size_t(first) * element_bytes;
        LOUISKV_CUDA_CHECK(cudaMemcpyAsync(staging, source, size_t(count) * element_bytes,
                                           cudaMemcpyDefault, stream_));
        TensorView from(staging, host_weight.dtype, Device::cuda, {count});
        TensorView to(static_cast<char*>(prepared.data) + size_t(first) * 2, DType::bf16,
                      Device::cuda, {count});
        kernels::launch_convert({to, from}, stream_);
        // The next chunk overwrites the staging buffer.
        LOUISKV_CUDA_CHECK(cudaStreamSynchronize(stream_));
      }
    } catch (...) {
      cudaStreamSynchronize(stream_);
      cudaFree(staging);
      throw;
    }
    LOUISKV_CUDA_CHECK(cudaFree(staging));
  }

  int device_index_;
  int multiprocessors_ = 0;
  int compute_major_ = 0;
  std::string description_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  std::unique_ptr<kernels::DecodePlanUploader> decode_plan_ =
      std::make_unique<kernels::DecodePlanUploader>();
};

}  // namespace

bool cuda_device_available() {
  int count = 0;
  cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // leave no error behind for the next CUDA call
    return false;
  }
  return count > 0;
}

std::unique_ptr<Backend> make_cuda_backend(int device_index) {
  if (!cuda_device_available()) {
    throw Error(ErrorKind::unsupported, "no CUDA device is available (no GPU or no driver)");
  }
  return std::make_unique<CudaBackend>(device_index);
}

}  // namespace louiskv
