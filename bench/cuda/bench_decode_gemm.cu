// Decode-time projections of Llama-3.1-8B at batch 1 to 32: achieved GB/s of weight read,
// against the device-to-device copy ceiling measured in the same run (target: at least 80%). At
// these batch sizes a projection is a pass over its weights, so weight bytes / time is the
// figure that matters. Weights rotate among copies totalling more than the L2, so every run
// reads memory. qkv and gate+up are one product each, as the decoder runs them at these sizes
// (Backend::matmul_parts: one pipelined launch over the parts' weights, each part's output
// where it belongs).
//
// Rows: cuBLAS; the weight-streaming kernels on the automatic plan; the best of a sweep of the
// register kernel's block shapes and K splits (printed as m<rows/64> u<steps in flight>
// s<split>, then x when the input is staged in shared memory, and e or p when the launch
// overlaps the previous kernel: e prefetches the first weights into the L2, p also loads them
// into registers) for each way of overlapping; the best of a sweep of the pipelined kernel
// (printed as k<warps splitting K> st<ring stages> b<blocks per multiprocessor> r<resident
// limit, 0 none>, then e when the launch overlaps and i when each warp streams its input with
// its weight tiles, and after a slash the plan that follows: s<split> y<row blocks> g<groups
// per warp>); and the automatic path (what the backend runs), whose worst batch is the summary
// figure. The pipelined sweep ends with candidates aimed at the fixed cost per call: 12 stages
// (more weights in flight and fetched before the wait) and streamed input, 8 and 4 warps on K,
// one block per multiprocessor, overlapping; the best of them is also checked against cuBLAS.
//
// Then a table: for each projection and batch, the best candidate of all (cuBLAS, the best
// register plan, the best pipelined plan, each timed again after the sweep so that the choice
// does not ride on one lucky median), its GB/s and its share of the copy ceiling; and one
// `suggest |` line per projection and batch giving the plan-table row
// (matmul_weight_streaming.cu) that would make the automatic path take it.
//
// `--projections qkv,o` and `--batches 1,2,4` narrow the run (every projection, batches 1 to 32
// by default), e.g. to compare two builds of a kernel in one session on the GPU.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <exception>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/matmul.h"
#include "backend/cuda/matmul_weight_streaming.h"
#include "bench_support.cuh"

namespace louiskv::bench {
namespace {

struct Projection {
  const char* name;
  const char* short_name;
  int64_t inner, columns;  // in [T, inner] @ weight[columns, inner]^T
};

enum class Family { cublas, registers, pipelined };

// One way of running a projection at one batch, with its figure.
struct Candidate {
  Family family = Family::cublas;
  std::string name;
  kernels::WeightStreamingPlan plan;
  kernels::WeightStreamingPipelineOptions options;  // pipelined: what the plan came from
  double gbps = 0.0;                                // the sweep's figure
  double repeat_gbps = 0.0;                         // timed again after the sweep
};

const char* overlap_letter(kernels::WeightStreamingOverlap overlap) {
  switch (overlap) {
    case kernels::WeightStreamingOverlap::none: return "";
    case kernels::WeightStreamingOverlap::early: return "e";
    case kernels::WeightStreamingOverlap::preload: return "p";
  }
  return "?";
}

const char* overlap_enumerator(kernels::WeightStreamingOverlap overlap) {
  switch (overlap) {
    case kernels::WeightStreamingOverlap::none: return "WeightStreamingOverlap::none";
    case kernels::WeightStreamingOverlap::early: return "WeightStreamingOverlap::early";
    case kernels::WeightStreamingOverlap::preload: return "WeightStreamingOverlap::preload";
  }
  return "?";
}

std::string register_plan_name(const kernels::WeightStreamingPlan& plan) {
  return "m" + std::to_string(plan.m_tiles) + "u" + std::to_string(plan.unroll) + "s" + std::to_string(plan.splits) +
         (plan.stage_input ? "x" : "") + overlap_letter(plan.overlap);
}

std::string pipelined_name(const kernels::WeightStreamingPipelineOptions& options,
                           const kernels::WeightStreamingPlan& plan) {
  return "k" + std::to_string(options.k_warps) + "st" + std::to_string(options.stages) + "b" +
         std::to_string(options.blocks_per_multiprocessor) + "r" + std::to_string(options.resident_limit) +
         overlap_letter(options.overlap) + (options.stream_input ? "i" : "") + "/s" + std::to_string(plan.splits) + "y" + std::to_string(plan.row_blocks) +
         "g" + std::to_string(plan.groups_per_warp);
}

std::string candidate_name(const Candidate& candidate) {
  switch (candidate.family) {
    case Family::cublas: return "cuBLAS";
    case Family::registers: return "registers " + candidate.name;
    case Family::pipelined: return "pipelined " + candidate.name;
  }
  return "?";
}

// The plan-table row (matmul_weight_streaming.cu) that gives `candidate` to products of up to
// `tokens` rows and `weight_bytes` bytes of weights.
std::string plan_table_row(const Candidate& candidate, int64_t tokens, int64_t weight_bytes) {
  const std::string limits = "{" + std::to_string(tokens) + ", " + std::to_string((weight_bytes + (1 << 20) - 1) >> 20) +
                             " * mebibytes, ";
  switch (candidate.family) {
    case Family::cublas: return limits + "AutomaticKernel::cublas},";
    case Family::registers:
      return limits + "AutomaticKernel::registers},  // its own block plan; the sweep's best was " + candidate.name;
    case Family::pipelined: {
      const kernels::WeightStreamingPipelineOptions& o = candidate.options;
      return limits + "AutomaticKernel::pipelined, {.k_warps = " + std::to_string(o.k_warps) +
             ", .stages = " + std::to_string(o.stages) +
             ", .blocks_per_multiprocessor = " + std::to_string(o.blocks_per_multiprocessor) +
             ", .resident_limit = " + std::to_string(o.resident_limit) + ", .overlap = " + overlap_enumerator(o.overlap) +
             (o.stream_input ? ", .stream_input = true" : "") + "}},";
    }
  }
  return "?";
}

// One line of the final table.
struct TableLine {
  const Projection* projection = nullptr;
  int64_t batch = 0;
  Candidate cublas, registers, pipelined, best;
  Candidate aimed;  // the best of the candidates aimed at the fixed cost (12 stages, streamed input)
  double automatic_gbps = 0.0;
};

}  // namespace
}  // namespace louiskv::bench

int main(int argc, char** argv) {
  using namespace louiskv;
  using namespace louiskv::bench;
  std::vector<std::string> wanted_projections = {"qkv", "o", "gate+up", "down"};  // the short names below
  std::vector<int64_t> batches = {1, 2, 4, 8, 16, 32};
  auto items_of = [](const std::string& text) {
    std::vector<std::string> items;
    std::stringstream stream(text);
    for (std::string item; std::getline(stream, item, ',');) items.push_back(item);
    return items;
  };
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (i + 1 >= argc || (flag != "--projections" && flag != "--batches")) {
      std::fprintf(stderr, "bench_decode_gemm: usage: bench_decode_gemm [--projections qkv,o,gate+up,down] "
                           "[--batches 1,2,4,8,16,32]\n");
      return 2;
    }
    const std::vector<std::string> items = items_of(argv[i + 1]);
    if (flag == "--projections") {
      wanted_projections = items;
    } else {
      batches.clear();
      for (const std::string& item : items) {
        const int64_t batch = std::atoll(item.c_str());
        if (batch < 1 || batch > kernels::weight_streaming_max_tokens) {
          std::fprintf(stderr, "bench_decode_gemm: --batches: %s is not a batch of 1 to %lld\n", item.c_str(),
                       (long long)kernels::weight_streaming_max_tokens);
          return 2;
        }
        batches.push_back(batch);
      }
    }
  }
  for (const std::string& name : wanted_projections) {
    if (name != "qkv" && name != "o" && name != "gate+up" && name != "down") {
      std::fprintf(stderr, "bench_decode_gemm: --projections: no projection named %s (qkv, o, gate+up, down)\n",
                   name.c_str());
      return 2;
    }
  }
  if (!cuda_device_available()) {
    std::printf("bench_decode_gemm: no CUDA device, nothing measured\n");
    return 0;
  }
  print_device();
  LOUISKV_CUDA_CHECK(cudaSetDevice(0));
  cudaStream_t stream;
  LOUISKV_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  const double copy_gbps = measure_copy_ceiling_gbps(stream);
  std::printf("ceiling: device-to-device copy %.1f GB/s (read + write)\n", copy_gbps);

  cublasHandle_t cublas;
  LOUISKV_CUBLAS_CHECK(cublasCreate(&cublas));
  DeviceMemory workspace(size_t(32) << 20);
  LOUISKV_CUBLAS_CHECK(cublasSetWorkspace(cublas, workspace.data, size_t(32) << 20));

  // Shapes from configs/llama-3.1-8b.json: hidden 4096, 32 q and 8 KV heads of 128, MLP 14336.
  const Projection projections[] = {{"qkv 4096->6144", "qkv", 4096, 6144},
                                    {"o 4096->4096", "o", 4096, 4096},
                                    {"gate+up 4096->28672", "gate+up", 4096, 28672},
                                    {"down 14336->4096", "down", 14336, 4096}};
  cudaDeviceProp properties{};
  LOUISKV_CUDA_CHECK(cudaGetDeviceProperties(&properties, 0));
  const int multiprocessors = properties.multiProcessorCount;
  std::vector<TableLine> table;
  std::printf("decode GEMMs (weight bytes / time), GB/s by batch:\n  %-41s", "projection");
  for (int64_t batch : batches) std::printf(" %8lld", (long long)batch);
  std::printf("\n");
  for (const Projection& p : projections) {
    if (std::find(wanted_projections.begin(), wanted_projections.end(), p.short_name) == wanted_projections.end()) {
      continue;
    }
    const size_t weight_bytes = size_t(p.inner * p.columns) * 2;
    const int copies = int(std::max<size_t>(2, (beyond_cache_bytes + weight_bytes - 1) / weight_bytes));
    std::vector<std::unique_ptr<DeviceMemory>> weights;
    for (int c = 0; c < copies; ++c) {
      weights.push_back(std::make_unique<DeviceMemory>(weight_bytes));
      fill_uniform_bf16(weights.back()->data, weight_bytes / 2, 100 + uint64_t(c), -0.05f, 0.05f, stream);
    }
    DeviceMemory in(size_t(32 * p.inner) * 2), out(size_t(32 * p.columns) * 2);
    fill_uniform_bf16(in.data, size_t(32 * p.inner), 5, -1.0f, 1.0f, stream);
    auto gbps_of = [&](double ms) { return double(weight_bytes) / (ms * 1e-3) / 1e9; };
    auto time_path = [&](int64_t batch, kernels::MatmulPath path, bool back_to_back) {
      kernels::MatmulParams params;
      params.in = TensorView(in.data, DType::bf16, Device::cuda, {batch, p.inner});
      params.out = TensorView(out.data, DType::bf16, Device::cuda, {batch, p.columns});
      params.path = path;
      params.multiprocessors = multiprocessors;
      auto call = [&](int i) {
        params.weight = TensorView(weights[size_t(i % copies)]->data, DType::bf16, Device::cuda, {p.columns, p.inner});
        kernels::launch_matmul(params, cublas, stream);
      };
      return gbps_of(back_to_back ? median_ms_back_to_back(stream, 2, 15, 20, call) : median_ms(stream, 10, 100, call));
    };
    auto time_plan = [&](int64_t batch, const kernels::WeightStreamingPlan& plan) {
      kernels::WeightStreamingParams params;
      params.in = TensorView(in.data, DType::bf16, Device::cuda, {batch, p.inner});
      params.out = TensorView(out.data, DType::bf16, Device::cuda, {batch, p.columns});
      params.plan = plan;
      auto call = [&](int i) {
        params.weight = TensorView(weights[size_t(i % copies)]->data, DType::bf16, Device::cuda, {p.columns, p.inner});
        kernels::launch_matmul_weight_streaming(params, stream);
      };
      return gbps_of(median_ms_back_to_back(stream, 2, 15, 20, call));
    };
    auto time_candidate = [&](int64_t batch, const Candidate& candidate) {
      return candidate.family == Family::cublas ? time_path(batch, kernels::MatmulPath::cublas, true)
                                                : time_plan(batch, candidate.plan);
    };
    // A plan the launcher refuses (or a launch that fails) is reported and skipped, so that one
    // bad candidate cannot end the run: 0 GB/s.
    auto try_time_plan = [&](int64_t batch, const kernels::WeightStreamingPlan& plan, const std::string& what) {
      try {
        return time_plan(batch, plan);
      } catch (const std::exception& error) {
        std::printf("failed | %s | B=%lld | %s | %s\n", p.name, (long long)batch, what.c_str(), error.what());
        return 0.0;
      }
    };
    // The output of one call on the first weight copy, as floats.
    auto output_of = [&](int64_t batch, const Candidate& candidate) {
      const TensorView weight(weights[0]->data, DType::bf16, Device::cuda, {p.columns, p.inner});
      if (candidate.family == Family::cublas) {
        kernels::MatmulParams params;
        params.in = TensorView(in.data, DType::bf16, Device::cuda, {batch, p.inner});
        params.out = TensorView(out.data, DType::bf16, Device::cuda, {batch, p.columns});
        params.weight = weight;
        params.path = kernels::MatmulPath::cublas;
        kernels::launch_matmul(params, cublas, stream);
      } else {
        kernels::WeightStreamingParams params;
        params.in = TensorView(in.data, DType::bf16, Device::cuda, {batch, p.inner});
        params.out = TensorView(out.data, DType::bf16, Device::cuda, {batch, p.columns});
        params.weight = weight;
        params.plan = candidate.plan;
        kernels::launch_matmul_weight_streaming(params, stream);
      }
      std::vector<__nv_bfloat16> bits(size_t(batch * p.columns));
      LOUISKV_CUDA_CHECK(cudaMemcpyAsync(bits.data(), out.data, bits.size() * sizeof(__nv_bfloat16),
                                         cudaMemcpyDeviceToHost, stream));
      LOUISKV_CUDA_CHECK(cudaStreamSynchronize(stream));
      std::vector<float> values(bits.size());
      for (size_t i = 0; i < bits.size(); ++i) values[i] = __bfloat162float(bits[i]);
      return values;
    };
    auto print_row = [&](const char* what, const std::vector<double>& values, const std::vector<std::string>& notes) {
      std::printf("  %-20s %-20s", p.name, what);
      for (double value : values) std::printf(" %8.1f", value);
      for (const std::string& note : notes) std::printf(" %s", note.c_str());
      std::printf("\n");
    };
    // Register-kernel sweep modes: overlap of the previous kernel (none / early / preload) x
    // input staged in shared memory.
    const kernels::WeightStreamingOverlap overlaps[] = {kernels::WeightStreamingOverlap::none,
                                                        kernels::WeightStreamingOverlap::early,
                                                        kernels::WeightStreamingOverlap::preload};
    constexpr int register_modes = 6;
    const char* mode_names[register_modes] = {"none, L1 input",  "none, staged",     "early, L1 input",
                                              "early, staged",   "preload, L1 input", "preload, staged"};
    // Pipelined-kernel placements: blocks per multiprocessor and resident limit. b1r0: one block
    // per multiprocessor, as many as fit; b1r1: one, alone (a next launch's block waits for it
    // to leave); b1r2: one, with room for one of the next launch; b2r2: two, and no more.
    struct Placement {
      const char* name;
      int blocks_per_multiprocessor, resident_limit;
    };
    const Placement placements[] = {{"b1r0", 1, 0}, {"b1r1", 1, 1}, {"b1r2", 1, 2}, {"b2r2", 2, 2}};
    std::vector<double> cublas_b2b, cublas_one, automatic_b2b, automatic_one, streaming_auto;
    std::vector<double> best[register_modes];
    std::vector<std::string> best_names[register_modes], auto_names;
    std::vector<double> best_pipelined[2];
    std::vector<std::string> best_pipelined_names[2];
    for (int64_t batch : batches) {
      TableLine line;
      line.projection = &p;
      line.batch = batch;
      cublas_b2b.push_back(time_path(batch, kernels::MatmulPath::cublas, true));
      cublas_one.push_back(time_path(batch, kernels::MatmulPath::cublas, false));
      line.cublas.family = Family::cublas;
      line.cublas.gbps = cublas_b2b.back();
      const kernels::WeightStreamingPlan automatic = kernels::plan_weight_streaming(batch, p.inner, p.columns, multiprocessors);
      auto_names.push_back(automatic.kernel == kernels::WeightStreamingKernel::registers ? register_plan_name(automatic)
                                                                                         : "pipelined");
      streaming_auto.push_back(time_plan(batch, automatic));
      // The register kernel's sweep: every block shape, unroll and split in each mode; each
      // figure also goes to the log as a "grid" line.
      for (int mode = 0; mode < register_modes; ++mode) {
        double best_gbps = 0.0;
        std::string best_name = "-";
        for (int m_tiles : {1, 2}) {
          for (int unroll : {2, 4}) {
            for (int splits : {1, 2, 4, 8}) {
              kernels::WeightStreamingPlan plan =
                  kernels::plan_weight_streaming(p.inner, m_tiles, unroll, splits, mode % 2 == 1);
              plan.overlap = overlaps[mode / 2];
              if (kernels::weight_streaming_staged_bytes(batch, plan) > kernels::weight_streaming_max_staged_bytes) continue;
              const double gbps = try_time_plan(batch, plan, register_plan_name(plan));
              std::printf("grid | %s | B=%lld | %s | %s | %.1f\n", p.name, (long long)batch, mode_names[mode],
                          register_plan_name(plan).c_str(), gbps);
              if (gbps > best_gbps) best_gbps = gbps, best_name = register_plan_name(plan);
              if (gbps > line.registers.gbps) {
                line.registers.family = Family::registers;
                line.registers.name = register_plan_name(plan);
                line.registers.plan = plan;
                line.registers.gbps = gbps;
              }
            }
          }
        }
        best[mode].push_back(best_gbps);
        best_names[mode].push_back(best_name);
      }
      // The pipelined kernel's sweep, in two rows: without and with overlap; the overlapped row
      // also takes the candidates aimed at the fixed cost (12 stages or streamed input, one block
      // per multiprocessor).
      for (int overlapped = 0; overlapped < 2; ++overlapped) {
        double best_gbps = 0.0;
        std::string best_name = "-";
        std::vector<kernels::WeightStreamingPipelineOptions> sweep;
        for (int k_warps : {8, 4, 2, 1}) {
          for (int stages : {4, 8}) {
            for (const Placement& placement : placements) {
              kernels::WeightStreamingPipelineOptions options;
              options.k_warps = k_warps;
              options.stages = stages;
              options.blocks_per_multiprocessor = placement.blocks_per_multiprocessor;
              options.resident_limit = placement.resident_limit;
              options.overlap = overlapped ? kernels::WeightStreamingOverlap::early : kernels::WeightStreamingOverlap::none;
              sweep.push_back(options);
            }
          }
        }
        const size_t aimed_from = sweep.size();
        if (overlapped) {
          for (int k_warps : {8, 4}) {
            for (int stages : {4, 8, 12}) {
              for (bool stream_input : {false, true}) {
                if (stages != 12 && !stream_input) continue;  // already swept
                kernels::WeightStreamingPipelineOptions options;
                options.k_warps = k_warps;
                options.stages = stages;
                options.overlap = kernels::WeightStreamingOverlap::early;
                options.stream_input = stream_input;
                sweep.push_back(options);
              }
            }
          }
        }
        for (size_t at = 0; at < sweep.size(); ++at) {
          const kernels::WeightStreamingPipelineOptions& options = sweep[at];
          if (!kernels::weight_streaming_pipeline_fits(batch, p.inner, options)) continue;
          const kernels::WeightStreamingPlan plan =
              kernels::plan_weight_streaming_pipelined(batch, p.inner, p.columns, multiprocessors, options);
          const std::string name = pipelined_name(options, plan);
          const double gbps = try_time_plan(batch, plan, name);
          std::printf("grid | %s | B=%lld | pipelined, %s | %s | %.1f\n", p.name, (long long)batch,
                      overlapped ? "early" : "none", name.c_str(), gbps);
          if (gbps > best_gbps) best_gbps = gbps, best_name = name;
          Candidate candidate;
          candidate.family = Family::pipelined;
          candidate.name = name;
          candidate.plan = plan;
          candidate.options = options;
          candidate.gbps = gbps;
          if (gbps > line.pipelined.gbps) line.pipelined = candidate;
          if (at >= aimed_from && gbps > line.aimed.gbps) line.aimed = candidate;
        }
        best_pipelined[overlapped].push_back(best_gbps);
        best_pipelined_names[overlapped].push_back(best_name);
      }
      automatic_b2b.push_back(time_path(batch, kernels::MatmulPath::automatic, true));
      automatic_one.push_back(time_path(batch, kernels::MatmulPath::automatic, false));
      line.automatic_gbps = automatic_b2b.back();
      // The finalists once more, so that the choice does not ride on one lucky median; and
      // their outputs against cuBLAS's (a wrong kernel must not win the table).
      const std::vector<float> reference = output_of(batch, line.cublas);
      // The best aimed candidate is checked too, unless it is the pipelined finalist already.
      if (line.aimed.name == line.pipelined.name) line.aimed = Candidate{};
      for (Candidate* candidate : {&line.cublas, &line.registers, &line.pipelined, &line.aimed}) {
        if (candidate->gbps <= 0.0) continue;
        candidate->repeat_gbps = time_candidate(batch, *candidate);
        const std::vector<float> values = output_of(batch, *candidate);
        double error = 0.0, norm = 0.0;
        for (size_t i = 0; i < values.size(); ++i) {
          error += (double(values[i]) - reference[i]) * (double(values[i]) - reference[i]);
          norm += double(reference[i]) * reference[i];
        }
        const double relative = std::sqrt(error / std::max(norm, 1e-30));
        const bool agrees = std::isfinite(relative) && relative <= 1e-2;
        std::printf("check | %s | B=%lld | %s | relative L2 against cuBLAS %.2e %s\n", p.name, (long long)batch,
                    candidate_name(*candidate).c_str(), relative, agrees ? "ok" : "WRONG: left out of the table");
        if (!agrees) candidate->repeat_gbps = 0.0;
      }
      line.best = line.cublas;
      for (const Candidate* candidate : {&line.registers, &line.pipelined, &line.aimed}) {
        if (candidate->repeat_gbps > line.best.repeat_gbps) line.best = *candidate;
      }
      table.push_back(line);
    }
    print_row("cuBLAS b2b", cublas_b2b, {});
    print_row("cuBLAS one call", cublas_one, {});
    print_row("stream auto b2b", streaming_auto, auto_names);
    for (int mode = 0; mode < register_modes; ++mode) {
      print_row((std::string("best ") + mode_names[mode]).c_str(), best[mode], best_names[mode]);
    }
    print_row("best pipelined", best_pipelined[0], best_pipelined_names[0]);
    print_row("best pipelined, early", best_pipelined[1], best_pipelined_names[1]);
    print_row("automatic b2b", automatic_b2b, {});
    print_row("automatic one call", automatic_one, {});
    auto worst = [&](const std::vector<double>& values, int64_t& batch) {
      size_t at = size_t(std::min_element(values.begin(), values.end()) - values.begin());
      batch = batches[at];
      return values[at];
    };
    int64_t worst_batch = 0;
    double value = worst(automatic_b2b, worst_batch);
    print_summary(std::string("GEMM ") + p.name + " b2b worst B=" + std::to_string(worst_batch), value, "GB/s",
                  copy_gbps, 80);
    value = worst(automatic_one, worst_batch);
    print_summary(std::string("GEMM ") + p.name + " 1call worst B=" + std::to_string(worst_batch), value, "GB/s",
                  copy_gbps, 80);
    value = worst(cublas_b2b, worst_batch);
    print_summary(std::string("GEMM ") + p.name + " cuBLAS b2b worst B=" + std::to_string(worst_batch), value, "GB/s",
                  copy_gbps, 80);
    std::vector<double> best_of_all;
    for (const TableLine& line : table) {
      if (line.projection == &p) best_of_all.push_back(line.best.repeat_gbps);
    }
    value = worst(best_of_all, worst_batch);
    print_summary(std::string("GEMM ") + p.name + " best plan b2b worst B=" + std::to_string(worst_batch), value,
                  "GB/s", copy_gbps, 80);
  }

  // The table: per projection and batch, the best candidate (its repeat figure) and the
  // families' bests (sweep figure / repeat figure).
  std::printf("\ndecode GEMM candidates, calls back to back, copy ceiling %.1f GB/s (sweep / repeat GB/s):\n",
              copy_gbps);
  std::printf("table | %-8s | %2s | %-36s | %7s | %6s | %-11s | %-16s | %-26s | %-40s | %s\n", "weight", "B", "best",
              "GB/s", "copy", "cuBLAS", "automatic now", "best registers", "best pipelined", "80%");
  for (const TableLine& line : table) {
    auto figures = [](const Candidate& c) {
      char text[64];
      std::snprintf(text, sizeof text, "%.0f/%.0f", c.gbps, c.repeat_gbps);
      return std::string(text);
    };
    const std::string registers = line.registers.name + " " + figures(line.registers);
    const std::string pipelined = line.pipelined.name + " " + figures(line.pipelined);
    char automatic[64];
    std::snprintf(automatic, sizeof automatic, "%.0f (%.1f%%)", line.automatic_gbps,
                  100.0 * line.automatic_gbps / copy_gbps);
    std::printf("table | %-8s | %2lld | %-36s | %7.1f | %5.1f%% | %-11s | %-16s | %-26s | %-40s | %s\n",
                line.projection->short_name, (long long)line.batch, candidate_name(line.best).c_str(),
                line.best.repeat_gbps, 100.0 * line.best.repeat_gbps / copy_gbps, figures(line.cublas).c_str(),
                automatic, registers.c_str(), pipelined.c_str(),
                line.best.repeat_gbps >= 0.8 * copy_gbps ? "met" : "MISSED");
  }
  for (const TableLine& line : table) {
    const int64_t weight_bytes = line.projection->inner * line.projection->columns * 2;
    std::printf("suggest | %-8s | B=%-2lld | %s\n", line.projection->short_name, (long long)line.batch,
                plan_table_row(line.best, line.batch, weight_bytes).c_str());
  }
  LOUISKV_CUBLAS_CHECK(cublasDestroy(cublas));
  LOUISKV_CUDA_CHECK(cudaStreamDestroy(stream));
  return 0;
}
