// Reading the JSON files of a model folder (config.json, generation_config.json,
// model.safetensors.index.json) with errors that name the file.
#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

namespace louiskv {

// Throws louiskv::Error: io (naming the path and the system's reason) when the file cannot be
// read, invalid_input (naming the path and the parser's position) when it is not valid JSON.
nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace louiskv
