// MappedFile: a whole file mapped read-only into memory, unmapped when the object goes away.
// Weights are read straight from the mapping, so the page cache is the only copy on the host.
#pragma once

#include <cstddef>
#include <filesystem>

namespace louiskv {

class MappedFile {
 public:
  // Throws louiskv::Error (io) naming the path and the operating system's reason when the file
  // cannot be opened, is not a regular file, or cannot be mapped.
  explicit MappedFile(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  // nullptr for an empty file: there is nothing to map.
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  void unmap() noexcept;

  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace louiskv
