#include "runtime/calibration.h"

#include <fstream>

#include <nlohmann/json.hpp>

namespace louiskv {

CalibrationResult calibrate_tau(Engine& engine, KvConfig kv, const std::vector<int32_t>& tokens, int64_t context,
                                int64_t steps, const CalibrationTarget& target, int iterations,
                                const ProgressCallback& progress) {
  if (target.retrieval_rate.has_value() == target.top1_agreement.has_value()) {
    throw_error(ErrorKind::invalid_input, "calibrate needs exactly one target: --target-retrieval-rate or --target-top1");
  }
  kv.policy = "louiskv";
  // Both measures grow with tau (a higher threshold re-selects more often), so a bisection on
  // tau finds the boundary; the answer is the feasible end of the final interval.
  double low = 0.0, high = 1.0;
  CalibrationResult result;
  std::optional<CalibrationProbe> best;
  const bool by_rate = target.retrieval_rate.has_value();
  for (int i = 0; i < iterations; ++i) {
    const double tau = (low + high) / 2.0;
    kv.tau = tau;
    // Both measures of every probe, whichever is the target: the file then shows the trade-off.
    CalibrationProbe probe{tau, evaluate_teacher_forced(engine, kv, tokens, context, steps, true)};
    result.probes.push_back(probe);
    const bool feasible = by_rate ? probe.report.kv.retrieval_rate() <= *target.retrieval_rate
                                  : probe.report.top1_agreement >= *target.top1_agreement;
    // By rate: feasible taus are low, keep the highest. By fidelity: feasible taus are high, keep the lowest.
    if (feasible) {
      if (!best || (by_rate ? tau > best->tau : tau < best->tau)) best = probe;
      (by_rate ? low : high) = tau;
    } else {
      (by_rate ? high : low) = tau;
    }
    if (progress) progress(i + 1, iterations);
  }
  if (!best) {
    // Nothing met the target inside the search: take the end of the range that comes closest.
    kv.tau = by_rate ? 0.0 : 1.0;
    best = CalibrationProbe{kv.tau, evaluate_teacher_forced(engine, kv, tokens, context, steps, true)};
    result.probes.push_back(*best);
  }
  result.tau = best->tau;
  result.report = best->report;
  return result;
}

std::filesystem::path calibration_file(const std::filesystem::path& model_dir) {
  return model_dir / "louiskv-calibration.json";
}

void write_calibration(const std::filesystem::path& file, const CalibrationResult& result, const CalibrationTarget& target) {
  nlohmann::json probes = nlohmann::json::array();
  for (const auto& probe : result.probes) {
    probes.push_back({{"tau", probe.tau},
                      {"retrieval_rate", probe.report.kv.retrieval_rate()},
                      {"top1_agreement", probe.report.top1_agreement}});
  }
  nlohmann::json document = {{"tau", result.tau},
                             {"retrieval_rate", result.report.kv.retrieval_rate()},
                             {"top1_agreement", result.report.top1_agreement},
                             {"probes", probes}};
  if (target.retrieval_rate) document["target_retrieval_rate"] = *target.retrieval_rate;
  if (target.top1_agreement) document["target_top1_agreement"] = *target.top1_agreement;
  // Written beside the target and renamed over it, so that a failed write never leaves a
  // truncated file where `run` and `eval` look for tau.
  std::filesystem::path partial = file;
  partial += ".partial";
  {
    std::ofstream out(partial);
    if (!out) {
      throw_error(ErrorKind::io, file.string() + ": cannot write the calibration (read-only model folder? give --output FILE)");
    }
    out << document.dump(2) << "\n";
    out.close();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(partial, ignored);
      throw_error(ErrorKind::io, partial.string() + ": writing the calibration failed (disk full?)");
    }
  }
  std::error_code error;
  std::filesystem::rename(partial, file, error);
  if (error) {
    std::filesystem::remove(partial, error);
    throw_error(ErrorKind::io, file.string() + ": cannot replace the calibration file");
  }
}

std::optional<double> read_calibrated_tau(const std::filesystem::path& model_dir) {
  const auto file = calibration_file(model_dir);
  if (!std::filesystem::exists(file)) return std::nullopt;
  std::ifstream in(file);
  nlohmann::json document = nlohmann::json::parse(in, nullptr, false);
  if (document.is_discarded() || !document.contains("tau") || !document["tau"].is_number()) {
    throw_error(ErrorKind::invalid_input, file.string() + ": field 'tau' must be a number (delete the file or re-run calibrate)");
  }
  return document["tau"].get<double>();
}

}  // namespace louiskv
