#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "common/error.h"
#include "io/os_error.h"

namespace louiskv {
namespace {

// Closes the descriptor on every path out of the constructor; the mapping outlives it.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

MappedFile::MappedFile(const std::filesystem::path& path) : path_(path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    throw_error(ErrorKind::io, path.string() + ": cannot open: " + os_reason(errno));
  }
  struct stat status {};
  if (::fstat(fd.get(), &status) != 0) {
    throw_error(ErrorKind::io, path.string() + ": cannot read its size: " + os_reason(errno));
  }
  if (!S_ISREG(status.st_mode)) {
    throw_error(ErrorKind::io, path.string() + ": not a regular file" +
                                   (S_ISDIR(status.st_mode) ? " (it is a directory)" : ""));
  }
  size_ = static_cast<size_t>(status.st_size);
  if (size_ == 0) return;  // mmap rejects a zero length; an empty file maps to nothing
  void* address = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (address == MAP_FAILED) {
    throw_error(ErrorKind::io, path.string() + ": cannot map " + std::to_string(size_) +
                                   " bytes into memory: " + os_reason(errno));
  }
  data_ = static_cast<const std::byte*>(address);
}

MappedFile::~MappedFile() { unmap(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void MappedFile::unmap() noexcept {
  if (data_ != nullptr) {
    ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }
}

}  // namespace louiskv
