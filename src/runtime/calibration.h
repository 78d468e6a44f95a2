// Calibration of LouisKV's trigger threshold tau for a model: teacher-forced runs on validation
// text, searching tau for a target retrieval rate or a target top-1 agreement with the full
// cache. The result is written beside the model (louiskv-calibration.json), where `run` and
// `eval` read it when --tau is not given.
#pragma once

#include <filesystem>
#include <optional>
#include <vector>

#include "runtime/evaluation.h"

namespace louiskv {

struct CalibrationTarget {
  std::optional<double> retrieval_rate;   // highest tau whose retrieval_rate stays at or below this
  std::optional<double> top1_agreement;   // lowest tau whose top1_agreement reaches this
};

struct CalibrationProbe {
  double tau = 0;
  FidelityReport report;
};

struct CalibrationResult {
  double tau = 0;
  FidelityReport report;                 // measured at the chosen tau
  std::vector<CalibrationProbe> probes;  // every tau tried, in order
};

CalibrationResult calibrate_tau(Engine& engine, KvConfig kv, const std::vector<int32_t>& tokens, int64_t context,
                                int64_t steps, const CalibrationTarget& target, int iterations = 6,
                                const ProgressCallback& progress = {});

std::filesystem::path calibration_file(const std::filesystem::path& model_dir);
void write_calibration(const std::filesystem::path& file, const CalibrationResult& result, const CalibrationTarget& target);
// The calibrated tau of a model folder, when one was written.
std::optional<double> read_calibrated_tau(const std::filesystem::path& model_dir);

}  // namespace louiskv
