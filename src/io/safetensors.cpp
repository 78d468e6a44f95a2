#include "io/safetensors.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "io/json_file.h"
#include "io/mapped_file.h"
#include "io/safetensors_dtype.h"

namespace louiskv {
namespace {

using nlohmann::json;

// The reference implementation refuses headers above 100 MB; a real one is a few hundred KB even
// for a 70B model, so anything larger means the file is something else.
constexpr uint64_t max_header_bytes = 100'000'000;
constexpr uint64_t header_length_bytes = 8;

constexpr std::string_view single_file_name = "model.safetensors";
constexpr std::string_view index_file_name = "model.safetensors.index.json";

std::optional<uint64_t> as_unsigned(const json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer() && value.get<int64_t>() >= 0) {
    return static_cast<uint64_t>(value.get<int64_t>());
  }
  return std::nullopt;
}

// Little-endian regardless of the host's byte order.
uint64_t read_header_length(const std::byte* bytes) {
  uint64_t length = 0;
  for (uint64_t i = 0; i < header_length_bytes; ++i) {
    length |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  }
  return length;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    text += (i == 0 ? "" : ", ") + std::to_string(shape[i]);
  }
  return text + "]";
}

// Parses one entry of the header. Knows nothing of where the data section starts, only its size.
class HeaderEntryParser {
 public:
  HeaderEntryParser(const std::string& file, uint64_t data_start, uint64_t file_size)
      : file_(file), data_start_(data_start), file_size_(file_size) {}

  TensorInfo parse(const std::string& name, const json& entry,
                   const std::byte* data_section) const {
    const std::string where = file_ + ": tensor '" + name + "'";
    if (!entry.is_object()) {
      throw_error(ErrorKind::invalid_input, where + ": header entry is not a JSON object");
    }
    TensorInfo info;
    info.name = name;
    info.file = file_;

    const auto dtype_field = entry.find("dtype");
    if (dtype_field == entry.end() || !dtype_field->is_string()) {
      throw_error(ErrorKind::invalid_input, where + ": field 'dtype' is missing or not a string");
    }
    const auto dtype = dtype_from_safetensors_name(dtype_field->get_ref<const std::string&>());
    if (!dtype) {
      throw_error(ErrorKind::unsupported, where + " has dtype '" + dtype_field->get<std::string>() +
                                              "'; louiskv reads F32, F16 and BF16 weights");
    }
    info.dtype = *dtype;

    const auto shape_field = entry.find("shape");
    if (shape_field == entry.end() || !shape_field->is_array()) {
      throw_error(ErrorKind::invalid_input, where + ": field 'shape' is missing or not an array");
    }
    uint64_t elements = 1;
    bool elements_overflow = false;
    for (const json& dim_value : *shape_field) {
      const auto dim = as_unsigned(dim_value);
      if (!dim || *dim > uint64_t(std::numeric_limits<int64_t>::max())) {
        throw_error(ErrorKind::invalid_input, where + ": field 'shape' holds " + dim_value.dump() +
                                                  ", not a non-negative integer");
      }
      info.shape.push_back(static_cast<int64_t>(*dim));
      if (*dim != 0 && elements > std::numeric_limits<uint64_t>::max() / *dim) {
        elements_overflow = true;
      }
      elements *= *dim;
    }
    const uint64_t element_size = dtype_size(info.dtype);
    if (elements_overflow || elements > std::numeric_limits<uint64_t>::max() / element_size) {
      throw_error(ErrorKind::invalid_input,
                  where + ": shape " + shape_text(info.shape) + " has more bytes than 2^64");
    }
    const uint64_t expected_bytes = elements * element_size;

    const auto offsets_field = entry.find("data_offsets");
    std::optional<uint64_t> begin;
    std::optional<uint64_t> end;
    if (offsets_field != entry.end() && offsets_field->is_array() && offsets_field->size() == 2) {
      begin = as_unsigned((*offsets_field)[0]);
      end = as_unsigned((*offsets_field)[1]);
    }
    if (!begin || !end || *begin > *end) {
      throw_error(
          ErrorKind::invalid_input,
          where + ": field 'data_offsets' must be [begin, end] with 0 <= begin <= end, got " +
              (offsets_field == entry.end() ? std::string("nothing") : offsets_field->dump()));
    }
    if (*end - *begin != expected_bytes) {
      throw_error(ErrorKind::invalid_input,
                  where + " has shape " + shape_text(info.shape) + " of " +
                      std::string(*safetensors_dtype_name(info.dtype)) + ", which is " +
                      std::to_string(expected_bytes) + " bytes, but its data_offsets [" +
                      std::to_string(*begin) + ", " + std::to_string(*end) + "] span " +
                      std::to_string(*end - *begin) + " bytes (corrupted header?)");
    }
    // Compared against the room left after the header, so that no sum can overflow.
    if (*end > file_size_ - data_start_) {
      throw_error(ErrorKind::invalid_input, where + " ends at byte " + file_offset_text(*end) +
                                                ", file has " + std::to_string(file_size_) +
                                                " (truncated download?)");
    }
    // The mapping starts on a page boundary, so a file offset that is a multiple of the element
    // size gives a pointer aligned for that element type; anything else cannot be read in place.
    if ((data_start_ + *begin) % element_size != 0) {
      throw_error(ErrorKind::unsupported,
                  where + " starts at byte " + std::to_string(data_start_ + *begin) +
                      ", not a multiple of its element size " + std::to_string(element_size) +
                      " (written without the format's alignment padding)");
    }
    info.data = data_section + *begin;
    info.nbytes = static_cast<size_t>(expected_bytes);
    return info;
  }

 private:
  std::string file_offset_text(uint64_t offset_in_data) const {
    if (offset_in_data > std::numeric_limits<uint64_t>::max() - data_start_) {
      return std::to_string(data_start_) + " + " + std::to_string(offset_in_data);
    }
    return std::to_string(data_start_ + offset_in_data);
  }

  const std::string& file_;
  uint64_t data_start_;
  uint64_t file_size_;
};

bool exists_quietly(const std::filesystem::path& path) {
  std::error_code ignored;
  return std::filesystem::exists(path, ignored);
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path)
    : path_(path), mapping_(std::make_unique<MappedFile>(path)) {
  const std::string file = path.string();
  const uint64_t file_size = mapping_->size();
  if (file_size < header_length_bytes) {
    throw_error(ErrorKind::invalid_input,
                file + ": " + std::to_string(file_size) +
                    " bytes, too short for a safetensors file, which starts with an 8-byte header "
                    "length (truncated download?)");
  }
  const uint64_t header_bytes = read_header_length(mapping_->data());
  if (header_bytes > file_size - header_length_bytes) {
    throw_error(ErrorKind::invalid_input,
                file + ": header length is " + std::to_string(header_bytes) + " bytes, but only " +
                    std::to_string(file_size - header_length_bytes) +
                    " bytes follow it (truncated download, a Git LFS pointer, or not a safetensors "
                    "file?)");
  }
  if (header_bytes > max_header_bytes) {
    throw_error(ErrorKind::invalid_input,
                file + ": header length is " + std::to_string(header_bytes) +
                    " bytes, above the limit of " + std::to_string(max_header_bytes) +
                    " (not a safetensors file?)");
  }
  const auto* header_begin = reinterpret_cast<const char*>(mapping_->data() + header_length_bytes);
  json header;
  try {
    header = json::parse(std::string_view(header_begin, header_bytes));
  } catch (const json::parse_error& error) {
    throw Error(ErrorKind::invalid_input,
                file + ": header is not valid JSON (" + error.what() + ")");
  }
  if (!header.is_object()) {
    throw_error(ErrorKind::invalid_input, file + ": header is not a JSON object");
  }

  const uint64_t data_start = header_length_bytes + header_bytes;
  const std::byte* data_section = mapping_->data() + data_start;
  HeaderEntryParser parser(file, data_start, file_size);
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;  // free-form strings about the file, not a tensor
    tensors_.emplace(name, parser.parse(name, entry, data_section));
  }
}

SafetensorsFile::~SafetensorsFile() = default;

WeightFiles::WeightFiles(const std::filesystem::path& model_dir) {
  const auto single_path = model_dir / single_file_name;
  const auto index_path = model_dir / index_file_name;

  if (exists_quietly(single_path)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single_path));
    for (const auto& [name, info] : files_.back()->tensors()) index_.emplace(name, &info);
    description_ = single_path.string();
    return;
  }
  if (!exists_quietly(index_path)) {
    std::error_code ignored;
    const std::string looked_for =
        std::string(single_file_name) + " or " + std::string(index_file_name);
    if (!std::filesystem::is_directory(model_dir, ignored)) {
      throw_error(ErrorKind::io, model_dir.string() + ": model folder does not exist (looked for " +
                                     looked_for + ")");
    }
    throw_error(ErrorKind::io, model_dir.string() + ": no weights in this folder: neither " +
                                   std::string(single_file_name) + " nor " +
                                   std::string(index_file_name) + " is there");
  }

  const std::string index_file = index_path.string();
  const json index = read_json_file(index_path);
  const auto weight_map = index.is_object() ? index.find("weight_map") : index.end();
  if (weight_map == index.end() || !weight_map->is_object() || weight_map->empty()) {
    throw_error(ErrorKind::invalid_input,
                index_file +
                    ": field 'weight_map' is missing, empty or not an object of "
                    "tensor name -> shard file name");
  }

  // One open file per shard, however many tensors it holds.
  std::map<std::string, SafetensorsFile*> shards;
  for (const auto& [tensor_name, shard_value] : weight_map->items()) {
    if (!shard_value.is_string()) {
      throw_error(ErrorKind::invalid_input, index_file + ": weight_map entry for tensor '" +
                                                tensor_name + "' is not a file name string");
    }
    const auto& shard_name = shard_value.get_ref<const std::string&>();
    auto shard = shards.find(shard_name);
    if (shard == shards.end()) {
      // A shard is a file beside the index: a path elsewhere is a malformed or hostile index.
      if (shard_name.empty() || std::filesystem::path(shard_name).filename() != shard_name ||
          shard_name == "." || shard_name == "..") {
        throw_error(ErrorKind::invalid_input,
                    index_file + ": weight_map names shard '" + shard_name + "' for tensor '" +
                        tensor_name + "', which is not a plain file name in the model folder");
      }
      const auto shard_path = model_dir / shard_name;
      if (!exists_quietly(shard_path)) {
        throw_error(ErrorKind::io, index_file + " lists shard '" + shard_name +
                                       "' (holding tensor '" + tensor_name + "'), but " +
                                       shard_path.string() +
                                       " does not exist (incomplete download?)");
      }
      files_.push_back(std::make_unique<SafetensorsFile>(shard_path));
      shard = shards.emplace(shard_name, files_.back().get()).first;
    }
    const auto& shard_tensors = shard->second->tensors();
    const auto found = shard_tensors.find(tensor_name);
    if (found == shard_tensors.end()) {
      throw_error(ErrorKind::invalid_input,
                  shard->second->path().string() + ": tensor '" + tensor_name + "' is listed in " +
                      std::string(index_file_name) +
                      " as stored here, but the shard does not hold it (index and shards from "
                      "different versions of the model?)");
    }
    index_.emplace(tensor_name, &found->second);
  }
  description_ = std::to_string(files_.size()) + " shard" + (files_.size() == 1 ? "" : "s") +
                 " of " + index_file;
}

WeightFiles::~WeightFiles() = default;

const TensorInfo* WeightFiles::find(const std::string& name) const {
  const auto found = index_.find(name);
  return found == index_.end() ? nullptr : found->second;
}

const TensorInfo& WeightFiles::get(const std::string& name) const {
  if (const TensorInfo* info = find(name)) return *info;
  throw_error(ErrorKind::invalid_input,
              "tensor '" + name + "' not found in " + description_ +
                  " (a checkpoint of another architecture, or a renamed tensor?)");
}

std::vector<std::string> WeightFiles::names() const {
  std::vector<std::string> result;
  result.reserve(index_.size());
  for (const auto& entry : index_) result.push_back(entry.first);
  return result;
}

size_t WeightFiles::total_bytes() const {
  size_t total = 0;
  for (const auto& entry : index_) total += entry.second->nbytes;
  return total;
}

}  // namespace louiskv
