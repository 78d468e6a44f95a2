// Backend: the op interface that model/ and kv/ call. backend/cpu is the reference (fp32
// accumulation, the oracle of every parity test); backend/cuda runs the same ops on the GPU.
//
// Conventions, shared by every implementation:
// - Activations use activation_dtype() (cpu: f32; cuda: bf16, or f32 in its precision mode);
//   the KV cache uses kv_dtype().
//   Weights stay in their file dtype (f32, f16 or bf16) and are widened inside the kernels.
// - All arithmetic accumulates in fp32.
// - Views are dense and row-major; shapes are given as [dim0, dim1, ...]. Every op checks the
//   dtype, shape and device of its views and throws louiskv::Error on a mismatch.
// - Ops are asynchronous on the backend's stream; synchronize() waits for them.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/attended_spans.h"
#include "backend/buffer.h"
#include "backend/kv_ops.h"
#include "backend/tensor.h"

namespace louiskv {

// One product of Backend::matmul_parts: out [T, N_i], weight [N_i, K], bias [N_i] or null.
struct MatmulPart {
  TensorView out;
  TensorView weight;
  const TensorView* bias = nullptr;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual Device device() const = 0;
  virtual std::string description() const = 0;
  virtual DType activation_dtype() const = 0;
  virtual DType kv_dtype() const = 0;

  // ---- memory ------------------------------------------------------------------------------
  // Memory the ops read and write (device memory for cuda).
  virtual Buffer allocate(size_t bytes) = 0;
  // Host memory the device reads directly (pinned and mapped for cuda): the KV host pool.
  virtual Buffer allocate_host(size_t bytes) = 0;
  // dst <- src, same dtype and element count; either side may be on the host or the device.
  virtual void copy(TensorView dst, TensorView src) = 0;
  // dst <- src converted between floating dtypes (e.g. bf16 logits to f32), same element count.
  virtual void convert(TensorView dst, TensorView src) = 0;
  // Waits for every op queued on the main stream (not for side work: see wait_for).
  virtual void synchronize() = 0;
  // Makes a weight read from a model file usable by the ops. The cpu backend returns the view
  // unchanged (weights stay in the mapped file); cuda uploads it once, keeping it in `owner`.
  virtual TensorView prepare_weight(TensorView host_weight, std::vector<Buffer>& owner) = 0;

  // ---- model ops ---------------------------------------------------------------------------
  // out[t, :] = table[ids[t], :]        out [T, H] act, table [V, H] any, ids i32 [T]
  virtual void embedding(TensorView out, TensorView table, TensorView ids) = 0;
  // out[r, :] = in[r, :] / rms(in[r, :]) * weight   in/out [R, H] act, weight [H] any.
  // Used with R = tokens for layer norms and R = tokens * heads for Qwen3's per-head q/k norm.
  virtual void rms_norm(TensorView out, TensorView in, TensorView weight, float eps) = 0;
  // out[T, N] = in[T, K] @ weight[N, K]^T (+ bias[N])   in act; out act or f32; weight/bias any.
  virtual void matmul(TensorView out, TensorView in, TensorView weight, const TensorView* bias) = 0;
  // Several projections of one input, out_i = in @ weight_i^T (+ bias_i): q, k and v of a layer,
  // or gate and up. The cuda backend reads every part's weights in one launch at decode sizes,
  // where a projection's fixed cost per launch is a large share of its time; the default runs
  // one matmul per part.
  virtual void matmul_parts(TensorView in, std::span<const MatmulPart> parts) {
    for (const MatmulPart& part : parts) matmul(part.out, in, part.weight, part.bias);
  }
  // Rotates x [T, heads, D] in place at positions i32 [T], pairing dims i and i + D/2 (the
  // Llama/Qwen "rotate half" layout). inv_freq f32 [D/2] already carries any llama3 scaling.
  virtual void rope(TensorView x, TensorView positions, TensorView inv_freq) = 0;
  // out[t, i] = silu(gate[t, i]) * up[t, i]              all [T, I] act
  virtual void swiglu(TensorView out, TensorView gate, TensorView up) = 0;
  // out = a + b, elementwise; out may alias a.
  virtual void add(TensorView out, TensorView a, TensorView b) = 0;

  // ---- attention ---------------------------------------------------------------------------
  // Writes rows [T, kv_heads, D] (act) into a cache [kv_heads, capacity, D] (kv dtype) at
  // token positions [first_position, first_position + T).
  virtual void write_kv(TensorView cache, TensorView rows, int64_t first_position) = 0;
  // Causal attention of a prompt chunk: q [T, Hq, D] holds positions first_position + t;
  // query t sees keys [0, first_position + t] of k/v [Hkv, capacity, D] (kv dtype).
  // GQA: query head h reads KV head h / (Hq / Hkv). out [T, Hq, D] act.
  virtual void attention_prefill(TensorView out, TensorView q, TensorView k, TensorView v,
                                 int64_t first_position, float scale) = 0;
  // One decode step of a batch: q [B, Hq, D] (act), row b * Hkv + h of `spans` lists what the
  // query heads of KV head h of sequence b attend to. out [B, Hq, D] act. If `lse` is given
  // (f32 [B, Hq]) it receives log(sum(exp(scale * q.k))) over the attended keys, from which a
  // policy can recover any token's attention probability, and attn_recall the attended mass.
  virtual void attention_decode(TensorView out, TensorView q, const AttendedSpans& spans,
                                float scale, TensorView* lse) = 0;

  // ---- streams -----------------------------------------------------------------------------
  // Ops run in call order on the main stream. Work that may overlap it (the k-means of one
  // layer's prompt while the next layer computes, DESIGN.md section 2) is queued between
  // begin_side_work() and end_side_work() on a side stream, where it starts after everything
  // queued on the main stream before begin_side_work(). The cpu backend runs it at once.
  virtual void begin_side_work() = 0;
  // Back to the main stream; the mark stands for the side work queued so far.
  virtual WorkMark end_side_work() = 0;
  // Whether the work before `mark` is done; never blocks.
  virtual bool work_done(const WorkMark& mark) = 0;
  // Blocks the host until the work before `mark` is done.
  virtual void wait_for(const WorkMark& mark) = 0;

  // ---- KV retrieval (backend/kv_ops.h) ---------------------------------------------------------
  // All views here may be device memory or allocate_host() memory unless they say otherwise.
  //
  // Copies every run of `copies` (K and V rows of `row_bytes` bytes each) in one launch: pool to
  // working set (the delta load of a decode step), window to pool, window to working set.
  virtual void gather_kv(std::span<const KvCopy> copies, int64_t row_bytes) = 0;
  // For every head h and i < order.dim(1): row dst_first + i of head h of dst_keys/dst_values
  // [H, capacity, D] becomes row src_first + order[h, i] of src_keys/src_values [H, capacity', D]
  // (kv dtype; order i32 [H, N]). Lays a clustered prompt out unit by unit in the host pool.
  virtual void reorder_kv(TensorView dst_keys, TensorView dst_values, int64_t dst_first,
                          TensorView src_keys, TensorView src_values, int64_t src_first,
                          TensorView order) = 0;
  // Mean key, key box, bounding radius and length of each unit of `jobs`, in one launch.
  virtual void summarize_units(std::span<const UnitSummaryJob> jobs, int64_t head_dim) = 0;

  // k-means over the points of several heads at once (LouisKV's and ClusterKV's clusters):
  // points f32 [H, N, D], centroids f32 [H, C, D], assignment i32 [H, N], sizes i32 [H, C].
  // centroids[h, c] = points[h, seeds[h, c]]                              (seeds i32 [H, C])
  virtual void kmeans_init(TensorView centroids, TensorView points, TensorView seeds) = 0;
  // assignment[h, p] = the c maximising 2 p.c - |c|^2, i.e. the nearest centroid (ties: lowest c).
  virtual void kmeans_assign(TensorView assignment, TensorView points, TensorView centroids) = 0;
  // centroids[h, c] = mean of the points assigned to c, sizes[h, c] = their number; a cluster
  // left without points keeps its centroid (size 0).
  virtual void kmeans_update(TensorView centroids, TensorView sizes, TensorView points,
                             TensorView assignment) = 0;
  // order[h, :] lists the points cluster by cluster (cluster 0 first), each cluster's points in
  // their original order: the unit order of the host pool.
  virtual void kmeans_order(TensorView order, TensorView assignment, TensorView sizes) = 0;

  // Scores every unit of every row of `rows` for the row's group of queries in q [B, Hq, D]
  // (act dtype): the per-head bound of `scoring`, reduced over the group; rows gated off by
  // their similarity (>= gate_threshold) are skipped.
  virtual void score_units(TensorView q, std::span<const UnitRow> rows, const UnitScoring& scoring,
                           float gate_threshold) = 0;
  // Per active row: the units in score order (NaN last) that fit the row's budget, a unit too
  // long for what is left being skipped for shorter ones after it (UnitRow says where it goes).
  virtual void budget_fill(std::span<const UnitRow> rows, float gate_threshold) = 0;
  // The LouisKV trigger's measure: similarity f32 [B] = mean over heads of cos(q[b, h],
  // previous[b][h]); then previous[b] <- q[b]. q [B, Hq, D] act dtype; previous[b] [Hq, D] in
  // q's dtype, device memory. A sequence's first comparison is against whatever previous[b] held.
  virtual void query_cosine(TensorView similarity, TensorView q,
                            std::span<void* const> previous) = 0;
};

std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

}  // namespace louiskv
