#include "support/test_support.h"

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>

namespace louiskv::testing {

std::optional<std::filesystem::path> shared_dir() {
  if (const char* env = std::getenv("LOUISKV_SHARED_DIR")) {
    if (std::filesystem::is_directory(env)) return std::filesystem::path(env);
  }
  auto candidate = std::filesystem::path(LOUISKV_SOURCE_DIR).parent_path() / "shared";
  if (std::filesystem::is_directory(candidate / "refs")) return candidate;
  return std::nullopt;
}

std::filesystem::path bundled_model_dir() {
  return std::filesystem::path(LOUISKV_SOURCE_DIR) / "models" / "tiny-llama-14m";
}

std::filesystem::path source_dir() { return LOUISKV_SOURCE_DIR; }
std::filesystem::path binary_dir() { return LOUISKV_BINARY_DIR; }

const nlohmann::json& tiny_llama_reference() {
  static std::once_flag once;
  static nlohmann::json reference;
  std::call_once(once, [] {
    auto dir = shared_dir();
    if (!dir) return;
    std::ifstream in(*dir / "refs" / "tiny-llama-14m.json");
    reference = nlohmann::json::parse(in);
  });
  return reference;
}

TempDir::TempDir(const std::string& name) {
  std::random_device device;
  path_ = binary_dir() / "test-tmp" / (name + "-" + std::to_string(device()));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace louiskv::testing
