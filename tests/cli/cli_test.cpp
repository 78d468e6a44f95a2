// The `louiskv` command as a user runs it: JSON outputs, and one clear error (with a non-zero
// exit) for each kind of bad input.
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/test_support.h"

namespace louiskv {
namespace {

namespace fs = std::filesystem;

struct Outcome {
  int exit_code = -1;
  std::string output;  // stdout, and stderr when `with_stderr`
};

Outcome run_louiskv(const std::string& arguments, bool with_stderr = true, const std::string& stdin_text = "") {
  const fs::path binary = testing::binary_dir() / "src" / "louiskv";
  std::string command = binary.string() + " " + arguments;
  if (!stdin_text.empty()) {
    const fs::path input = testing::binary_dir() / "test-tmp" / "cli-stdin.txt";
    fs::create_directories(input.parent_path());
    std::ofstream(input) << stdin_text;
    command += " < " + input.string();
  }
  if (with_stderr) command += " 2>&1";
  Outcome outcome;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return outcome;
  std::array<char, 4096> chunk;
  size_t read = 0;
  while ((read = fread(chunk.data(), 1, chunk.size(), pipe)) > 0) outcome.output.append(chunk.data(), read);
  const int status = pclose(pipe);
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return outcome;
}

std::string model_arg() { return "-m " + testing::bundled_model_dir().string(); }

// A copy of the bundled model folder whose config.json is replaced by `config_text` (weights
// linked, not copied).
fs::path model_with_config(const testing::TempDir& dir, const std::string& config_text) {
  const fs::path source = testing::bundled_model_dir();
  for (const auto& entry : fs::directory_iterator(source)) {
    if (entry.path().filename() != "config.json") fs::create_symlink(entry.path(), dir.path() / entry.path().filename());
  }
  std::ofstream(dir.path() / "config.json") << config_text;
  return dir.path();
}

std::string bundled_config() {
  std::ifstream in(testing::bundled_model_dir() / "config.json");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(Cli, TokenizeJsonGivesTheReferenceIds) {
  LOUISKV_REQUIRE_SHARED();
  const auto& item = testing::tiny_llama_reference()["tokenizer"][1];
  Outcome outcome = run_louiskv("tokenize " + model_arg() + " --json", false, item["text"].get<std::string>());
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  EXPECT_EQ(nlohmann::json::parse(outcome.output)["ids"], item["ids_with_special"]);
  Outcome plain = run_louiskv("tokenize " + model_arg() + " --json --no-special", false, item["text"].get<std::string>());
  EXPECT_EQ(nlohmann::json::parse(plain.output)["ids"], item["ids"]);
}

TEST(Cli, DetokenizeReadsIdsFromStdin) {
  Outcome outcome = run_louiskv("detokenize " + model_arg() + " --json", false, "[42, 627, 81, 14, 1557, 3]");
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  EXPECT_EQ(nlohmann::json::parse(outcome.output)["text"], "Hello, world!");
  Outcome bad = run_louiskv("detokenize " + model_arg(), true, "42 banana");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.output.find("'banana' is not a token id"), std::string::npos) << bad.output;
}

TEST(Cli, RunJsonHasTheDocumentedFieldsAndIsGreedyAtTemperatureZero) {
  LOUISKV_REQUIRE_SHARED();
  const auto& reference = testing::tiny_llama_reference()["logits"][0];
  Outcome outcome = run_louiskv("run --device cpu " + model_arg() + " --temp 0 -n 12 --json -p \"" +
                                    reference["prompt"].get<std::string>() + "\"",
                                false);
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  auto document = nlohmann::json::parse(outcome.output);
  EXPECT_EQ(document["prompt_tokens"], reference["ids"].size());
  auto expected = reference["greedy_ids"].get<std::vector<int>>();
  expected.resize(12);
  EXPECT_EQ(document["ids"].get<std::vector<int>>(), expected);
  EXPECT_TRUE(document["text"].is_string());
  EXPECT_TRUE(document["stats"]["ttft_ms"].is_number());
  EXPECT_TRUE(document["stats"]["tok_per_s"].is_number());
}

// f32 is what the cpu backend computes in, so --dtype f32 there is --dtype auto.
TEST(Cli, DtypeF32OnTheCpuIsItsDefault) {
  LOUISKV_REQUIRE_SHARED();
  const auto& reference = testing::tiny_llama_reference()["logits"][0];
  const std::string prompt = " --temp 0 -n 6 --json -p \"" + reference["prompt"].get<std::string>() + "\"";
  Outcome f32 = run_louiskv("run --device cpu --dtype f32 " + model_arg() + prompt, false);
  ASSERT_EQ(f32.exit_code, 0) << f32.output;
  auto expected = reference["greedy_ids"].get<std::vector<int>>();
  expected.resize(6);
  EXPECT_EQ(nlohmann::json::parse(f32.output)["ids"].get<std::vector<int>>(), expected);
}

TEST(Cli, LogitsJsonListsEveryPosition) {
  Outcome outcome = run_louiskv("logits --device cpu " + model_arg() + " --top 3 --json -p \"Hello, world!\"", false);
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  auto document = nlohmann::json::parse(outcome.output);
  ASSERT_EQ(document["positions"].size(), document["ids"].size());
  EXPECT_EQ(document["positions"][2]["pos"], 2);
  EXPECT_EQ(document["positions"][2]["top_ids"].size(), 3u);
  EXPECT_GE(document["positions"][2]["logsumexp"].get<double>(), document["positions"][2]["top_logits"][0].get<double>());
}

TEST(Cli, InspectDescribesTheModel) {
  Outcome outcome = run_louiskv("inspect " + model_arg() + " --json", false);
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  auto document = nlohmann::json::parse(outcome.output);
  EXPECT_EQ(document["architecture"], "LlamaForCausalLM");
  EXPECT_EQ(document["layers"], 8);
  EXPECT_EQ(document["kv_heads"], 2);
  EXPECT_EQ(document["tensor_dtypes"]["bf16"], 74);
}

TEST(Cli, DemoPrintsOneRowPerPolicyWithTheDocumentedMeasures) {
  Outcome outcome = run_louiskv("demo --device cpu " + model_arg() +
                                    " --policies full streaming louiskv --lengths 300 --prompts-per-length 1"
                                    " --fidelity-context 200 --fidelity-steps 4 --budget 96 --json",
                                false);
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  auto document = nlohmann::json::parse(outcome.output);
  ASSERT_EQ(document["policies"].size(), 3u);
  EXPECT_EQ(document["policies"][0]["policy"], "full");
  // The full cache is its own reference: complete agreement and recall, nothing retrieved.
  EXPECT_EQ(document["policies"][0]["top1_agreement"], 1.0);
  EXPECT_EQ(document["policies"][0]["attn_recall"], 1.0);
  EXPECT_EQ(document["policies"][0]["h2d_bytes_per_token"], 0.0);
  // StreamingLLM attends a 96-token window of a 200-token context: recall must fall below 1.
  EXPECT_LT(document["policies"][1]["attn_recall"].get<double>(), 1.0);
  for (const auto& row : document["policies"]) {
    for (const char* field : {"accuracy", "top1_agreement", "kl_to_full", "retrieval_rate", "h2d_bytes_per_token"}) {
      EXPECT_TRUE(row[field].is_number()) << row["policy"] << " " << field;
    }
  }
}

TEST(Cli, EvalPasskeyReportsAccuracyAndPerItemAnswers) {
  LOUISKV_REQUIRE_SHARED();
  const auto refs = (*testing::shared_dir() / "refs" / "tiny-llama-14m.json").string();
  Outcome outcome = run_louiskv("eval passkey --device cpu " + model_arg() + " --prompts " + refs + " --limit 1 --json", false);
  ASSERT_EQ(outcome.exit_code, 0) << outcome.output;
  auto document = nlohmann::json::parse(outcome.output);
  ASSERT_EQ(document["items"].size(), 1u);
  const auto& reference = testing::tiny_llama_reference()["passkey"][0];
  EXPECT_EQ(document["items"][0]["key"], reference["key"]);
  EXPECT_EQ(document["items"][0]["answer"].get<std::string>().substr(0, 7), reference["full_attention_answer"]);
  EXPECT_EQ(document["accuracy"], 1.0);
  EXPECT_TRUE(document["retrieval_rate"].is_number());
}

// `eval` without --tau runs LouisKV at the tau of the model folder's calibration file, and
// --tau overrides it; `calibrate --passkey` writes such a file with every probe it measured.
TEST(Cli, CalibrationFileSetsTauAndCalibratePasskeyWritesOne) {
  testing::TempDir dir("cli-calibration");
  const fs::path model = model_with_config(dir, bundled_config());
  fs::remove(model / "louiskv-calibration.json");
  const std::string written = (dir.path() / "written.json").string();
  Outcome calibrate = run_louiskv("calibrate --device cpu -m " + model.string() +
                                      " --passkey --lengths 200 --prompts-per-length 1 --taus 0.2 0.95 --budget 96"
                                      " --sink-tokens 4 --window-tokens 16 -o " + written + " --json",
                                  false);
  ASSERT_EQ(calibrate.exit_code, 0) << calibrate.output;
  std::ifstream in(written);
  const auto file = nlohmann::json::parse(in);
  EXPECT_EQ(file["task"], "passkey");
  ASSERT_EQ(file["probes"].size(), 2u);
  EXPECT_EQ(file["target_retrieval_rate"], 0.25);
  // The highest probed tau within the target, else the lowest.
  double expected = 0.2;
  for (const auto& probe : file["probes"]) {
    EXPECT_GE(probe["retrieval_rate"].get<double>(), 0.0);
    if (probe["retrieval_rate"].get<double>() <= 0.25) expected = std::max(expected, probe["tau"].get<double>());
  }
  EXPECT_EQ(file["tau"].get<double>(), expected);

  std::ofstream(model / "louiskv-calibration.json") << "{\"tau\": 0.4375}";
  const std::string fidelity = "eval fidelity --device cpu -m " + model.string() + " -f " +
                               (testing::source_dir() / "data" / "haystack.txt").string() +
                               " --context 96 --steps 2 --kv louiskv --budget 64 --sink-tokens 4 --window-tokens 16 --json";
  Outcome from_file = run_louiskv(fidelity, false);
  ASSERT_EQ(from_file.exit_code, 0) << from_file.output;
  EXPECT_EQ(nlohmann::json::parse(from_file.output)["kv"]["tau"], 0.4375);
  Outcome overridden = run_louiskv(fidelity + " --tau 0.625", false);
  ASSERT_EQ(overridden.exit_code, 0) << overridden.output;
  EXPECT_EQ(nlohmann::json::parse(overridden.output)["kv"]["tau"], 0.625);

  std::ofstream(model / "louiskv-calibration.json") << "{\"tau\": \"high\"}";
  Outcome malformed = run_louiskv(fidelity, true);
  EXPECT_EQ(malformed.exit_code, 2) << malformed.output;
  EXPECT_NE(malformed.output.find("louiskv-calibration.json"), std::string::npos) << malformed.output;
}

struct BadInputCase {
  std::string name;
  std::string config;     // replaces config.json when not empty
  std::string arguments;  // after "louiskv"; MODEL is replaced by the model folder
  int exit_code;
  std::string message;    // must appear in the output
};

TEST(Cli, EachBadInputGivesOneClearErrorAndANonZeroExit) {
  std::string config = bundled_config();
  auto with = [&](const std::string& from, const std::string& to) {
    std::string text = config;
    text.replace(text.find(from), from.size(), to);
    return text;
  };
  const std::vector<BadInputCase> cases = {
      {"missing folder", "", "run -m /nonexistent/model -p hi", 3, "/nonexistent/model"},
      {"malformed config", "{ \"architectures\": [", "run -m MODEL -p hi", 2, "config.json"},
      {"unknown architecture", with("LlamaForCausalLM", "MambaForCausalLM"), "run -m MODEL -p hi", 4, "MambaForCausalLM"},
      {"bad field", with("\"num_attention_heads\": 6", "\"num_attention_heads\": -6"), "run -m MODEL -p hi", 2,
       "num_attention_heads"},
      {"prompt over the context", with("\"max_position_embeddings\": 16384", "\"max_position_embeddings\": 4"),
       "run --device cpu -m MODEL -p \"a prompt of more than four tokens\"", 2, "max_position_embeddings"},
      {"top-p out of range", "", "run -m MODEL -p hi --top-p 2", 2, "top-p"},
      {"unknown policy", "", "run -m MODEL -p hi --kv nonsense", 2, "--kv"},
      {"unknown flag", "", "run -m MODEL -p hi --frobnicate", 2, "frobnicate"},
      {"missing prompt file", "", "run -m MODEL -f /nonexistent/prompt.txt", 3, "/nonexistent/prompt.txt"},
      {"pass-key file without prompts", "", "eval passkey -m MODEL --prompts MODEL/config.json", 2, "passkey"},
      {"fidelity text too short", "", "eval fidelity --device cpu -m MODEL -f MODEL/README.md --context 10000",
       2, "--context"},
      {"fidelity without text", "", "eval fidelity --device cpu -m MODEL", 2, "give the text with -f FILE"},
      {"generate and a text file", "", "eval fidelity --device cpu -m MODEL -p hi --generate 4 -f text.txt", 2, "leave out -f"},
      {"generate without a prompt", "", "eval fidelity --device cpu -m MODEL --generate 4", 2,
       "exactly one of -p TEXT and --prompt-file FILE"},
      {"calibrate without data", "", "calibrate --device cpu -m MODEL", 2, "-f TEXT_FILE, or --passkey"},
      {"eval window past the text", "", "eval fidelity --device cpu -m MODEL -f MODEL/README.md --skip-tokens 100000",
       2, "--skip-tokens"},
      {"raas budget below a page", "", "eval fidelity --device cpu -m MODEL -p hi --generate 4 --kv raas --budget 8", 2,
       "below one page (raas_page_tokens 16)"},
      {"bf16 on the cpu backend", "", "run --device cpu --dtype bf16 -m MODEL -p hi", 2,
       "--dtype bf16: the cpu backend runs f32 activations and KV only"},
      {"bf16 on the cpu backend, eval", "", "eval passkey --device cpu --dtype bf16 -m MODEL --prompts MODEL/config.json",
       2, "--dtype bf16"},
      {"unknown dtype", "", "run --device cpu --dtype f16 -m MODEL -p hi", 2, "--dtype"},
  };
  for (const auto& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    testing::TempDir dir("cli-bad-input");
    std::string arguments = test_case.arguments;
    const fs::path model = test_case.config.empty() ? testing::bundled_model_dir() : model_with_config(dir, test_case.config);
    for (auto at = arguments.find("MODEL"); at != std::string::npos; at = arguments.find("MODEL")) {
      arguments.replace(at, 5, model.string());
    }
    Outcome outcome = run_louiskv(arguments);
    EXPECT_EQ(outcome.exit_code, test_case.exit_code) << outcome.output;
    EXPECT_NE(outcome.output.find(test_case.message), std::string::npos) << outcome.output;
  }
}

TEST(Cli, MissingAndTruncatedShardsAreNamed) {
  for (bool truncate : {false, true}) {
    testing::TempDir dir(truncate ? "cli-truncated-shard" : "cli-missing-shard");
    const fs::path source = testing::bundled_model_dir();
    for (const auto& entry : fs::directory_iterator(source)) {
      const auto name = entry.path().filename().string();
      if (name == "model-00002-of-00003.safetensors") {
        if (truncate) {
          fs::copy_file(entry.path(), dir.path() / name);
          fs::resize_file(dir.path() / name, fs::file_size(entry.path()) / 2);
        }
      } else {
        fs::create_symlink(entry.path(), dir.path() / name);
      }
    }
    Outcome outcome = run_louiskv("run --device cpu -m " + dir.path().string() + " -p hi");
    EXPECT_NE(outcome.exit_code, 0);
    EXPECT_NE(outcome.output.find("model-00002-of-00003.safetensors"), std::string::npos) << outcome.output;
    EXPECT_EQ(outcome.output.find("internal error"), std::string::npos) << outcome.output;
  }
}

}  // namespace
}  // namespace louiskv
