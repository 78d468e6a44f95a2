// Backend: the op interface that model/ and kv/ call. backend/cpu is the reference (fp32
// accumulation, the oracle of every parity test); backend/cuda runs the same ops on the GPU.
//
// Conventions, shared by every implementation:
// - Activations use activation_dtype() (cpu: f32, cuda: bf16); the KV cache uses kv_dtype().
//   Weights stay in their file dtype (f32, f16 or bf16) and are widened inside the kernels.
// - All arithmetic accumulates in fp32.
// - Views are dense and row-major; shapes are given as [dim0, dim1, ...]. Every op checks the
//   dtype, shape and device of its views and throws louiskv::Error on a mismatch.
// - Ops are asynchronous on the backend's stream; synchronize() waits for them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/attended_spans.h"
#include "backend/buffer.h"
#include "backend/tensor.h"

namespace louiskv {

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
};

std::unique_ptr<Backend> make_cpu_backend(int threads = 0);

}  // namespace louiskv
