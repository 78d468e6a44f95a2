#include "io/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "io/os_error.h"
#include "io/safetensors_dtype.h"

namespace louiskv {
namespace {

// The header length field is 8 bytes, and the format pads the header so that the data section
// starts on an 8-byte boundary.
constexpr size_t header_alignment = 8;

// `where` names the file and the tensor for messages.
size_t checked_byte_count(const TensorToWrite& tensor, const std::string& where) {
  const auto element_size = dtype_size(tensor.dtype);
  size_t elements = 1;
  for (int64_t dim : tensor.shape) {
    if (dim < 0) {
      throw_error(ErrorKind::invalid_input,
                  where + " has a negative dimension " + std::to_string(dim));
    }
    const auto size = static_cast<size_t>(dim);
    if (size != 0 && elements > std::numeric_limits<size_t>::max() / element_size / size) {
      throw_error(ErrorKind::invalid_input, where + " has more bytes than the address space holds");
    }
    elements *= size;
  }
  return elements * element_size;
}

// Closes the descriptor and removes the unfinished file unless the write completed.
class PartialFile {
 public:
  explicit PartialFile(std::filesystem::path path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      throw_error(ErrorKind::io, path_.string() + ": cannot create: " + os_reason(errno));
    }
  }
  ~PartialFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) {
      std::error_code ignored;
      std::filesystem::remove(path_, ignored);
    }
  }
  PartialFile(const PartialFile&) = delete;
  PartialFile& operator=(const PartialFile&) = delete;

  void write(const void* data, size_t size) {
    const auto* bytes = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t written = ::write(fd_, bytes, size);
      if (written < 0) {
        if (errno == EINTR) continue;
        throw_error(ErrorKind::io, path_.string() + ": write failed: " + os_reason(errno));
      }
      bytes += written;
      size -= static_cast<size_t>(written);
    }
  }

  void commit_as(const std::filesystem::path& final_path) {
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
      throw_error(ErrorKind::io, path_.string() + ": write failed on close: " + os_reason(errno));
    }
    if (::rename(path_.c_str(), final_path.c_str()) != 0) {
      throw_error(ErrorKind::io, final_path.string() + ": cannot move the finished file " +
                                     path_.string() + " into place: " + os_reason(errno));
    }
    committed_ = true;
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

void write_safetensors(const std::filesystem::path& path,
                       const std::vector<TensorToWrite>& tensors) {
  std::vector<size_t> byte_counts(tensors.size());
  std::set<std::string_view> names;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorToWrite& tensor = tensors[i];
    const std::string where = path.string() + ": tensor '" + tensor.name + "'";
    if (tensor.name.empty() || tensor.name == "__metadata__") {
      throw_error(ErrorKind::invalid_input,
                  path.string() + ": tensor name '" + tensor.name +
                      "' cannot be used (empty, or the format's metadata key)");
    }
    if (!names.insert(tensor.name).second) {
      throw_error(ErrorKind::invalid_input, where + " is given twice");
    }
    if (!safetensors_dtype_name(tensor.dtype)) {
      throw_error(ErrorKind::unsupported, where + " has dtype " +
                                              std::string(dtype_name(tensor.dtype)) +
                                              "; louiskv writes F32, F16 and BF16 tensors");
    }
    byte_counts[i] = checked_byte_count(tensor, where);
    if (byte_counts[i] > 0 && tensor.data == nullptr) {
      throw_error(ErrorKind::invalid_input, where + " has no data pointer");
    }
  }

  // Wider elements first: every offset then stays a multiple of each tensor's element size,
  // without the gaps the format forbids.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].dtype) > dtype_size(tensors[b].dtype);
  });

  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (size_t i : order) {
    const TensorToWrite& tensor = tensors[i];
    header[tensor.name] = {{"dtype", *safetensors_dtype_name(tensor.dtype)},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + byte_counts[i]}}};
    offset += byte_counts[i];
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::json::type_error& error) {
    throw Error(ErrorKind::invalid_input,
                path.string() + ": a tensor name is not valid UTF-8 (" + error.what() + ")");
  }
  // Spaces are the padding the format allows: they are JSON whitespace.
  header_text.append((header_alignment - header_text.size() % header_alignment) % header_alignment,
                     ' ');

  unsigned char length_bytes[8];
  const uint64_t header_length = header_text.size();
  for (size_t i = 0; i < sizeof(length_bytes); ++i) {
    length_bytes[i] = static_cast<unsigned char>(header_length >> (8 * i));
  }

  auto partial_path = path;
  partial_path += ".partial";
  PartialFile file(partial_path);
  file.write(length_bytes, sizeof(length_bytes));
  file.write(header_text.data(), header_text.size());
  for (size_t i : order) file.write(tensors[i].data, byte_counts[i]);
  file.commit_as(path);
}

}  // namespace louiskv
