// Where tests find their data: ../shared beside the repository (optional; tests skip with a
// message when it is absent) and the bundled model inside the repository.
#pragma once

#include <filesystem>
#include <optional>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace louiskv::testing {

// ../shared, or LOUISKV_SHARED_DIR when set; nullopt when neither exists.
std::optional<std::filesystem::path> shared_dir();
std::filesystem::path bundled_model_dir();
std::filesystem::path source_dir();
std::filesystem::path binary_dir();
// ../shared/refs/tiny-llama-14m.json, parsed once per process.
const nlohmann::json& tiny_llama_reference();
// A fresh empty folder under the build tree, removed when the returned object is destroyed.
class TempDir {
 public:
  explicit TempDir(const std::string& name);
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace louiskv::testing

// Skips the calling test with a message when ../shared is absent.
#define LOUISKV_REQUIRE_SHARED()                                                          \
  do {                                                                                    \
    if (!::louiskv::testing::shared_dir()) {                                              \
      GTEST_SKIP() << "../shared (test data beside the repository) is absent; set "       \
                      "LOUISKV_SHARED_DIR to run this test";                              \
    }                                                                                     \
  } while (0)
