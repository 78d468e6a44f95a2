#include "backend/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "backend/cuda/attention_decode.h"
#include "backend/cuda/attention_decode_f32.h"
#include "backend/cuda/attention_prefill.h"
#include "backend/cuda/attention_prefill_f32.h"
#include "backend/cuda/budget_fill.h"
#include "backend/cuda/convert.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/decode_plan.h"
#include "backend/cuda/elementwise.h"
#include "backend/cuda/embedding.h"
#include "backend/cuda/gather.h"
#include "backend/cuda/kmeans.h"
#include "backend/cuda/matmul.h"
#include "backend/cuda/query_cosine.h"
#include "backend/cuda/rms_norm.h"
#include "backend/cuda/rope.h"
#include "backend/cuda/table_upload.h"
#include "backend/cuda/unit_scoring.h"
#include "backend/cuda/unit_summary.h"
#include "backend/cuda/view_checks.h"
#include "backend/cuda/write_kv.h"

namespace louiskv {

namespace {

// cuBLAS on Hopper wants up to 32 MiB of workspace for its fastest kernels.
constexpr size_t cublas_workspace_bytes = size_t(32) << 20;
// prepare_weight converts weights of another dtype on the device through a staging buffer of
// this size.
constexpr size_t weight_staging_bytes = size_t(64) << 20;

// An event recorded on `stream`: what a WorkMark holds for the cuda backend.
std::shared_ptr<void> make_event_mark(cudaStream_t stream) {
  cudaEvent_t event = nullptr;
  LOUISKV_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  cudaError_t status = cudaEventRecord(event, stream);
  if (status != cudaSuccess) {
    cudaEventDestroy(event);
    LOUISKV_CUDA_CHECK(status);
  }
  return std::shared_ptr<void>(event, [](void* pointer) { cudaEventDestroy(static_cast<cudaEvent_t>(pointer)); });
}

// A table uploaded for one call, released after the kernels that read it were queued (or after
// a launch failed, so that the slot is not lost).
class UploadedTable {
 public:
  UploadedTable(kernels::TableUploader& uploader, const void* data, size_t bytes, cudaStream_t stream)
      : uploader_(uploader), stream_(stream), table_(uploader.upload(data, bytes, stream)) {}
  UploadedTable(const UploadedTable&) = delete;
  UploadedTable& operator=(const UploadedTable&) = delete;
  ~UploadedTable() {
    try {
      uploader_.release(table_, stream_);
    } catch (...) {
      // Only a failing device gets here, and its error has reached the caller already.
    }
  }
  template <class T>
  const T* as() const {
    return static_cast<const T*>(table_.device);
  }

 private:
  kernels::TableUploader& uploader_;
  cudaStream_t stream_;
  kernels::TableUploader::Table table_;
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device_index, DType activations) : device_index_(device_index), activation_dtype_(activations) {
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
                   std::to_string(properties.totalGlobalMem >> 20) + " MiB, " +
                   std::string(dtype_name(activation_dtype_)) + " activations and KV)";
    LOUISKV_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    LOUISKV_CUDA_CHECK(cudaStreamCreateWithFlags(&side_stream_, cudaStreamNonBlocking));
    LOUISKV_CUDA_CHECK(cudaEventCreateWithFlags(&side_start_, cudaEventDisableTiming));
    current_ = stream_;
    LOUISKV_CUBLAS_CHECK(cublasCreate(&cublas_));
    LOUISKV_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    cublas_stream_ = stream_;
    LOUISKV_CUDA_CHECK(cudaMalloc(&cublas_workspace_, cublas_workspace_bytes));
    LOUISKV_CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_, cublas_workspace_bytes));
  }

  ~CudaBackend() override {
    // Errors are ignored: a destructor cannot throw.
    cudaSetDevice(device_index_);
    if (stream_) cudaStreamSynchronize(stream_);
    if (side_stream_) cudaStreamSynchronize(side_stream_);
    decode_plan_.reset();
    tables_.reset();
    if (score_workspace_) cudaFree(score_workspace_);
    if (cublas_) cublasDestroy(cublas_);
    if (cublas_workspace_) cudaFree(cublas_workspace_);
    if (side_start_) cudaEventDestroy(side_start_);
    if (side_stream_) cudaStreamDestroy(side_stream_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  Device device() const override { return Device::cuda; }
  std::string description() const override { return description_; }
  DType activation_dtype() const override { return activation_dtype_; }
  // The KV cache follows the activations: K and V rows are written from them as they are.
  DType kv_dtype() const override { return activation_dtype_; }

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
    LOUISKV_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, dst.nbytes(), cudaMemcpyDefault, current_));
  }

  void convert(TensorView dst, TensorView src) override {
    activate();
    kernels::launch_convert({dst, src}, current_);
  }

  void synchronize() override {
    activate();
    LOUISKV_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // Weights live on the device in the activation dtype. In f32 mode they are widened once here
  // (exactly, from bf16 or f16 files) and every GEMM is an fp32 cuBLAS GEMM: its products and sums
  // are those of the CPU reference, which widens the same weights in its kernels, up to the order
  // of the sums. Splitting each f32 activation into two bf16 parts for bf16 GEMMs would keep the
  // weights at half the memory, but leaves an activation rounding of about 2^-16 and doubles the
  // GEMMs; the precision mode is for exactness, so it pays the memory instead.
  TensorView prepare_weight(TensorView host_weight, std::vector<Buffer>& owner) override {
    activate();
    const char* op = "prepare_weight";
    const DType target = activation_dtype_;
    if (host_weight.device == Device::cuda && host_weight.dtype == target) return host_weight;
    LOUISKV_REQUIRE(!host_weight.empty() || host_weight.numel() == 0, op,
                     "weight (" + host_weight.describe() + ") is empty (null data)");
    kernels::require_floating(host_weight, op, "weight");
    TensorView prepared = host_weight;
    Buffer buffer = allocate(size_t(host_weight.numel()) * dtype_size(target));
    prepared.data = buffer.data();
    prepared.dtype = target;
    prepared.device = Device::cuda;
    if (host_weight.numel() > 0) {
      if (host_weight.dtype == target) {
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
    kernels::launch_embedding({out, table, ids}, current_);
  }

  void rms_norm(TensorView out, TensorView in, TensorView weight, float eps) override {
    activate();
    kernels::launch_rms_norm({out, in, weight, eps}, current_);
  }

  void matmul(TensorView out, TensorView in, TensorView weight, const TensorView* bias) override {
    run_matmul(out, in, weight, bias, {});
  }

  void matmul_parts(TensorView in, std::span<const MatmulPart> parts) override {
    LOUISKV_REQUIRE(!parts.empty() && parts.size() <= size_t(kernels::weight_streaming_max_parts), "matmul_parts",
                    std::to_string(parts.size()) + " parts (1 to " +
                        std::to_string(kernels::weight_streaming_max_parts) + " share a launch)");
    std::array<kernels::WeightStreamingPart, kernels::weight_streaming_max_parts> more{};
    for (size_t i = 1; i < parts.size(); ++i) {
      more[i - 1] = {parts[i].out, parts[i].weight, parts[i].bias ? *parts[i].bias : TensorView{}};
    }
    run_matmul(parts[0].out, in, parts[0].weight, parts[0].bias, std::span(more.data(), parts.size() - 1));
  }

  void run_matmul(TensorView out, TensorView in, TensorView weight, const TensorView* bias,
                  std::span<const kernels::WeightStreamingPart> more_parts) {
    activate();
    kernels::MatmulParams params;
    params.out = out;
    params.in = in;
    params.weight = weight;
    params.bias = bias ? *bias : TensorView{};
    params.more_parts = more_parts;
    // The weight-streaming GEMV splits K over thread-block clusters (sm_90 and later); zero
    // multiprocessors keeps older GPUs on cuBLAS.
    params.multiprocessors = compute_major_ >= 9 ? multiprocessors_ : 0;
    if (cublas_stream_ != current_) {
      LOUISKV_CUBLAS_CHECK(cublasSetStream(cublas_, current_));
      cublas_stream_ = current_;
    }
    kernels::launch_matmul(params, cublas_, current_);
  }

  void rope(TensorView x, TensorView positions, TensorView inv_freq) override {
    activate();
    kernels::launch_rope({x, positions, inv_freq}, current_);
  }

  void swiglu(TensorView out, TensorView gate, TensorView up) override {
    activate();
    kernels::launch_swiglu({out, gate, up}, current_);
  }

  void add(TensorView out, TensorView a, TensorView b) override {
    activate();
    kernels::launch_add({out, a, b}, current_);
  }

  void write_kv(TensorView cache, TensorView rows, int64_t first_position) override {
    activate();
    kernels::launch_write_kv({cache, rows, first_position}, current_);
  }

  void attention_prefill(TensorView out, TensorView q, TensorView k, TensorView v,
                         int64_t first_position, float scale) override {
    activate();
    if (activation_dtype_ == DType::f32) {
      kernels::launch_attention_prefill_f32({out, q, k, v, first_position, scale}, current_);
    } else {
      kernels::launch_attention_prefill({out, q, k, v, first_position, scale}, current_);
    }
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
                                                    multiprocessors_, current_, 0, kv_dtype());
    try {
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
      if (activation_dtype_ == DType::f32) {
        kernels::launch_attention_decode_f32(params, current_);
      } else {
        kernels::launch_attention_decode(params, current_);
      }
    } catch (...) {
      decode_plan_->release(plan, current_);
      throw;
    }
    decode_plan_->release(plan, current_);
  }

  // ---- streams ---------------------------------------------------------------------------------

  void begin_side_work() override {
    activate();
    LOUISKV_REQUIRE(current_ == stream_, "begin_side_work", "side work already begun");
    LOUISKV_CUDA_CHECK(cudaEventRecord(side_start_, stream_));
    LOUISKV_CUDA_CHECK(cudaStreamWaitEvent(side_stream_, side_start_, 0));
    current_ = side_stream_;
  }

  WorkMark end_side_work() override {
    activate();
    LOUISKV_REQUIRE(current_ == side_stream_, "end_side_work", "no side work begun");
    current_ = stream_;
    return {make_event_mark(side_stream_)};
  }

  bool work_done(const WorkMark& mark) override {
    if (!mark.handle) return true;
    activate();
    cudaError_t status = cudaEventQuery(static_cast<cudaEvent_t>(mark.handle.get()));
    if (status == cudaErrorNotReady) return false;
    LOUISKV_CUDA_CHECK(status);
    return true;
  }

  void wait_for(const WorkMark& mark) override {
    if (!mark.handle) return;
    activate();
    LOUISKV_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(mark.handle.get())));
  }

  // ---- KV retrieval ----------------------------------------------------------------------------

  void gather_kv(std::span<const KvCopy> copies, int64_t row_bytes) override {
    activate();
    gather_chunks_.clear();
    kernels::plan_gather(copies, row_bytes, gather_chunks_);
    if (gather_chunks_.empty()) return;
    UploadedTable table(*tables_, gather_chunks_.data(), gather_chunks_.size() * sizeof(kernels::GatherChunk),
                        current_);
    kernels::launch_gather_kv({table.as<kernels::GatherChunk>(), int64_t(gather_chunks_.size()), multiprocessors_},
                              current_);
  }

  void reorder_kv(TensorView dst_keys, TensorView dst_values, int64_t dst_first, TensorView src_keys,
                  TensorView src_values, int64_t src_first, TensorView order) override {
    activate();
    kernels::launch_reorder_kv({dst_keys, dst_values, src_keys, src_values, order, dst_first, src_first}, current_);
  }

  void summarize_units(std::span<const UnitSummaryJob> jobs, int64_t head_dim) override {
    activate();
    const char* op = "summarize_units";
    for (size_t i = 0; i < jobs.size(); ++i) {
      LOUISKV_REQUIRE(jobs[i].keys != nullptr && jobs[i].length > 0, op,
                      "unit " + std::to_string(i) + " has no keys (null, or a length below 1)");
    }
    if (jobs.empty()) return;
    UploadedTable table(*tables_, jobs.data(), jobs.size() * sizeof(UnitSummaryJob), current_);
    kernels::launch_unit_summary({table.as<UnitSummaryJob>(), int64_t(jobs.size()), head_dim, kv_dtype()}, current_);
  }

  void kmeans_init(TensorView centroids, TensorView points, TensorView seeds) override {
    activate();
    kernels::launch_kmeans_init({centroids, points, seeds}, current_);
  }

  void kmeans_assign(TensorView assignment, TensorView points, TensorView centroids) override {
    activate();
    kernels::launch_kmeans_assign({assignment, points, centroids}, current_);
  }

  void kmeans_update(TensorView centroids, TensorView sizes, TensorView points, TensorView assignment) override {
    activate();
    kernels::launch_kmeans_update({centroids, sizes, points, assignment}, current_);
  }

  void kmeans_order(TensorView order, TensorView assignment, TensorView sizes) override {
    activate();
    kernels::launch_kmeans_order({order, assignment, sizes, device_index_}, current_);
  }

  void score_units(TensorView q, std::span<const UnitRow> rows, const UnitScoring& scoring,
                   float gate_threshold) override {
    activate();
    const char* op = "score_units";
    kernels::require_rank(q, 3, op, "q");
    for (size_t i = 0; i < rows.size(); ++i) {
      const UnitRow& row = rows[i];
      const std::string which = "row " + std::to_string(i);
      LOUISKV_REQUIRE(row.query_row >= 0 && row.query_row < q.dim(0) && row.kv_head >= 0 &&
                          int64_t(row.kv_head + 1) * scoring.group <= q.dim(1) && row.units >= 0,
                      op, which + " lies outside q " + q.describe());
      if (row.units == 0) continue;
      bool summaries = scoring.bound == UnitBound::box      ? row.lower && row.upper
                       : scoring.bound == UnitBound::sphere ? row.keys && row.radii
                                                            : row.keys != nullptr;
      LOUISKV_REQUIRE(summaries && row.lengths && row.scores, op,
                      which + " lacks the summaries, lengths or scores its bound needs");
    }
    if (rows.empty()) return;
    int64_t max_units = 0;
    for (const UnitRow& row : rows) max_units = std::max<int64_t>(max_units, row.units);
    kernels::ScoreUnitsParams params;
    params.q = q;
    params.row_count = int64_t(rows.size());
    params.max_units = max_units;
    params.scoring = scoring;
    params.gate_threshold = gate_threshold;
    if (scoring.reduction == GroupReduction::softmax_mean) {
      const int64_t bytes = kernels::score_units_workspace_bytes(params.row_count, max_units);
      if (bytes > score_workspace_bytes_) {
        // Growth is rare (more rows or units than ever before); queued kernels may use the old one.
        LOUISKV_CUDA_CHECK(cudaDeviceSynchronize());
        if (score_workspace_) LOUISKV_CUDA_CHECK(cudaFree(score_workspace_));
        score_workspace_ = nullptr;
        score_workspace_bytes_ = 0;
        LOUISKV_CUDA_CHECK(cudaMalloc(&score_workspace_, size_t(bytes + bytes / 2)));
        score_workspace_bytes_ = bytes + bytes / 2;
      }
      params.workspace = static_cast<float*>(score_workspace_);
      params.workspace_bytes = score_workspace_bytes_;
    }
    UploadedTable table(*tables_, rows.data(), rows.size() * sizeof(UnitRow), current_);
    params.rows = table.as<UnitRow>();
    kernels::launch_score_units(params, current_);
  }

  void budget_fill(std::span<const UnitRow> rows, float gate_threshold) override {
    activate();
    const char* op = "budget_fill";
    int64_t max_units = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      const UnitRow& row = rows[i];
      const std::string which = "row " + std::to_string(i);
      LOUISKV_REQUIRE(row.units >= 0 && row.budget >= 0 && row.chosen_count != nullptr, op,
                      which + " has a negative size or no chosen_count");
      LOUISKV_REQUIRE(row.units == 0 || (row.scores && row.lengths && row.chosen && row.chosen_scores), op,
                      which + " lacks scores, lengths or room for its choice");
      if (row.units > max_units) max_units = row.units;
    }
    if (rows.empty()) return;
    UploadedTable table(*tables_, rows.data(), rows.size() * sizeof(UnitRow), current_);
    kernels::launch_budget_fill({table.as<UnitRow>(), int64_t(rows.size()), max_units, gate_threshold, device_index_},
                                current_);
  }

  void query_cosine(TensorView similarity, TensorView q, std::span<void* const> previous) override {
    activate();
    const char* op = "query_cosine";
    kernels::require_rank(q, 3, op, "q");
    LOUISKV_REQUIRE(int64_t(previous.size()) == q.dim(0) && similarity.numel() == q.dim(0), op,
                    "q " + q.describe() + ", similarity " + similarity.describe() + " and " +
                        std::to_string(previous.size()) + " previous rows disagree on the batch");
    // Sequences go kernels::query_cosine_max_batch at a time (their pointers are parameters).
    for (size_t first = 0; first < previous.size(); first += kernels::query_cosine_max_batch) {
      const size_t count = std::min(previous.size() - first, size_t(kernels::query_cosine_max_batch));
      kernels::QueryCosineParams params;
      params.similarity = similarity.reshaped({similarity.numel()}).rows(int64_t(first), int64_t(count));
      params.q = q.rows(int64_t(first), int64_t(count));
      params.batch = int(count);
      for (size_t b = 0; b < count; ++b) params.previous[b] = previous[first + b];
      kernels::launch_query_cosine(params, current_);
    }
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
        TensorView to(static_cast<char*>(prepared.data) + size_t(first) * dtype_size(prepared.dtype),
                      prepared.dtype, Device::cuda, {count});
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
  DType activation_dtype_;  // bf16 or f32; the KV cache's too
  int multiprocessors_ = 0;
  int compute_major_ = 0;
  std::string description_;
  cudaStream_t stream_ = nullptr;       // main
  cudaStream_t side_stream_ = nullptr;  // work that overlaps the main stream (begin_side_work)
  cudaStream_t current_ = nullptr;      // where ops are queued now: one of the two
  cudaStream_t cublas_stream_ = nullptr;
  cudaEvent_t side_start_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  std::unique_ptr<kernels::DecodePlanUploader> decode_plan_ =
      std::make_unique<kernels::DecodePlanUploader>();
  std::unique_ptr<kernels::TableUploader> tables_ = std::make_unique<kernels::TableUploader>();
  std::vector<kernels::GatherChunk> gather_chunks_;
  void* score_workspace_ = nullptr;  // device: the softmax partials of score_units
  int64_t score_workspace_bytes_ = 0;
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

std::unique_ptr<Backend> make_cuda_backend(int device_index, DType activations) {
  if (activations != DType::bf16 && activations != DType::f32) {
    throw Error(ErrorKind::unsupported, "the CUDA backend runs bf16 or f32 activations, not " +
                                            std::string(dtype_name(activations)));
  }
  if (!cuda_device_available()) {
    throw Error(ErrorKind::unsupported, "no CUDA device is available (no GPU or no driver)");
  }
  return std::make_unique<CudaBackend>(device_index, activations);
}

}  // namespace louiskv
