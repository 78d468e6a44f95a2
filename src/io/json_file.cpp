#include "io/json_file.h"

#include <string_view>

#include "common/error.h"
#include "io/mapped_file.h"

namespace louiskv {

nlohmann::json read_json_file(const std::filesystem::path& path) {
  MappedFile file(path);
  const auto* begin = reinterpret_cast<const char*>(file.data());
  std::string_view text(begin == nullptr ? "" : begin, file.size());
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& error) {
    throw Error(ErrorKind::invalid_input,
                path.string() + ": not valid JSON (" + error.what() + ")");
  }
}

}  // namespace louiskv
