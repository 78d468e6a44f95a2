// Small helpers shared by the io tests: asserting an error's kind and message, and writing the
// files (raw bytes, hand-made safetensors, copies of the bundled model) the cases need.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "common/error.h"
#include "support/test_support.h"

namespace louiskv::testing {

// Succeeds when `action` throws louiskv::Error of `kind` whose message holds every fragment.
template <class Action>
::testing::AssertionResult throws_error(Action&& action, ErrorKind kind,
                                        std::initializer_list<std::string_view> fragments) {
  try {
    action();
  } catch (const Error& error) {
    const std::string message = error.what();
    if (error.kind() != kind) {
      return ::testing::AssertionFailure()
             << "kind " << error_kind_name(error.kind()) << ", expected " << error_kind_name(kind)
             << "; message: " << message;
    }
    for (std::string_view fragment : fragments) {
      if (message.find(fragment) == std::string::npos) {
        return ::testing::AssertionFailure()
               << "message lacks \"" << fragment << "\"; message: " << message;
      }
    }
    return ::testing::AssertionSuccess() << message;
  }
  return ::testing::AssertionFailure() << "no louiskv::Error was thrown";
}

inline void write_file(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

// A safetensors file put together by hand: the declared header length, the header text, then
// `data_bytes` zero bytes. Lets a test declare anything, including what the writer refuses.
inline void write_raw_safetensors(const std::filesystem::path& path, std::string_view header,
                                  size_t data_bytes, uint64_t declared_header_length) {
  std::string bytes(8, '\0');
  for (size_t i = 0; i < 8; ++i) {
    bytes[i] = static_cast<char>((declared_header_length >> (8 * i)) & 0xffu);
  }
  bytes += header;
  bytes.append(data_bytes, '\0');
  write_file(path, bytes);
}

inline void write_raw_safetensors(const std::filesystem::path& path, std::string_view header,
                                  size_t data_bytes) {
  write_raw_safetensors(path, header, data_bytes, header.size());
}

// Copies the bundled model's files into `destination`, so a test can damage the copy.
inline void copy_bundled_model(const std::filesystem::path& destination) {
  for (const auto& entry : std::filesystem::directory_iterator(bundled_model_dir())) {
    std::filesystem::copy_file(entry.path(), destination / entry.path().filename(),
                               std::filesystem::copy_options::overwrite_existing);
  }
}

}  // namespace louiskv::testing
