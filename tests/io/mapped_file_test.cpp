#include "io/mapped_file.h"

#include <cstring>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "io/io_test_helpers.h"

namespace louiskv {
namespace {

using testing::TempDir;
using testing::throws_error;
using testing::write_file;

TEST(MappedFile, MapsTheWholeFile) {
  TempDir dir("mapped-file");
  const std::string content("weights\0and more bytes", 22);
  write_file(dir.path() / "blob.bin", content);

  MappedFile file(dir.path() / "blob.bin");
  ASSERT_EQ(file.size(), content.size());
  ASSERT_NE(file.data(), nullptr);
  EXPECT_EQ(std::memcmp(file.data(), content.data(), content.size()), 0);
  EXPECT_EQ(file.path(), dir.path() / "blob.bin");
}

TEST(MappedFile, EmptyFileMapsToNothing) {
  TempDir dir("mapped-file");
  write_file(dir.path() / "empty.bin", "");
  MappedFile file(dir.path() / "empty.bin");
  EXPECT_EQ(file.size(), 0u);
  EXPECT_EQ(file.data(), nullptr);
}

TEST(MappedFile, MoveHandsTheMappingOver) {
  TempDir dir("mapped-file");
  write_file(dir.path() / "blob.bin", "abcdef");
  MappedFile first(dir.path() / "blob.bin");
  const std::byte* data = first.data();

  MappedFile second(std::move(first));
  EXPECT_EQ(second.data(), data);
  EXPECT_EQ(second.size(), 6u);
  EXPECT_EQ(first.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from state is defined

  write_file(dir.path() / "other.bin", "xyz");
  MappedFile third(dir.path() / "other.bin");
  third = std::move(second);
  EXPECT_EQ(third.data(), data);
  EXPECT_EQ(std::memcmp(third.data(), "abcdef", 6), 0);
}

TEST(MappedFile, MissingFileNamesThePathAndTheReason) {
  TempDir dir("mapped-file");
  const auto path = dir.path() / "absent.safetensors";
  EXPECT_TRUE(throws_error([&] { MappedFile file(path); }, ErrorKind::io,
                           {path.string(), "cannot open", "No such file or directory"}));
}

TEST(MappedFile, DirectoryIsRejected) {
  TempDir dir("mapped-file");
  EXPECT_TRUE(throws_error([&] { MappedFile file(dir.path()); }, ErrorKind::io,
                           {dir.path().string(), "not a regular file", "directory"}));
}

}  // namespace
}  // namespace louiskv
