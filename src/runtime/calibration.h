// Calibration of LouisKV's trigger threshold tau for a model, written beside the model
// (louiskv-calibration.json), where `run`, `eval` and `demo` read it when --tau is not given.
// Two kinds of validation data:
// - text: teacher-forced runs, bisecting tau for a target retrieval rate or a target top-1
//   agreement with the full cache;
// - pass-key prompts: greedy answers at every tau of a grid in one pass, the highest tau whose
//   retrieval rate stays at or below the target. A short answer's rate counts the layer's first
//   selection on its first step, so it sits well above a long text's at the same tau: calibrate
//   on the kind of task the model will serve.
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
  int64_t budget = 0;                    // the budget the probes ran at
  FidelityReport report;                 // measured at the chosen tau
  std::vector<CalibrationProbe> probes;  // every tau tried, in order
};

CalibrationResult calibrate_tau(Engine& engine, KvConfig kv, const std::vector<int32_t>& tokens, int64_t context,
                                int64_t steps, const CalibrationTarget& target, int iterations = 6,
                                const ProgressCallback& progress = {});

struct PasskeyCalibrationProbe {
  double tau = 0;
  PasskeyReport report;
};

struct PasskeyCalibrationResult {
  double tau = 0;
  int64_t budget = 0;
  PasskeyReport report;  // at the chosen tau
  PasskeyReport full;    // the full cache on the same prompts
  std::vector<PasskeyCalibrationProbe> probes;
};

// Every tau of `taus` on `items` (each prompt prefilled once for all of them); the highest tau
// whose retrieval_rate is at most `target_rate`, or the lowest tau when none is.
PasskeyCalibrationResult calibrate_tau_on_passkey(Engine& engine, KvConfig kv, const std::vector<PasskeyItem>& items,
                                                  double target_rate, const std::vector<double>& taus,
                                                  const ProgressCallback& progress = {});

std::filesystem::path calibration_file(const std::filesystem::path& model_dir);
void write_calibration(const std::filesystem::path& file, const CalibrationResult& result, const CalibrationTarget& target);
void write_calibration(const std::filesystem::path& file, const PasskeyCalibrationResult& result, double target_rate);
// The calibrated tau of a model folder, when one was written.
std::optional<double> read_calibrated_tau(const std::filesystem::path& model_dir);

}  // namespace louiskv
