// A value of tokenizer.json together with its place in the file, so that every error can name
// both: "models/x/tokenizer.json: field 'model.merges[12]' must be ...".
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace louiskv::tokenization {

class JsonField {
 public:
  JsonField(const nlohmann::json& value, std::shared_ptr<const std::string> file, std::string path)
      : value_(&value), file_(std::move(file)), path_(std::move(path)) {}

  const nlohmann::json& value() const { return *value_; }
  const std::string& path() const { return path_; }
  const std::string& file() const { return *file_; }
  bool is_null() const { return value_->is_null(); }

  // A member that must be present (null counts as absent).
  JsonField operator[](std::string_view key) const;
  // A member that may be absent or null.
  std::optional<JsonField> optional(std::string_view key) const;
  JsonField element(size_t index) const;
  // `value`, a member of this object already in hand, named as PATH["key"] (for keys that are
  // data, such as vocabulary tokens, rather than names).
  JsonField entry(std::string_view key, const nlohmann::json& value) const {
    return JsonField(value, file_, path_ + "[\"" + std::string(key) + "\"]");
  }

  std::string as_string() const;
  bool as_bool() const;
  int64_t as_integer() const;
  // The checks below throw unless the value has that JSON type; they return *this for chaining.
  const JsonField& expect_object() const;
  const JsonField& expect_array() const;

  // The value of a boolean member, or `fallback` when it is absent or null.
  bool bool_or(std::string_view key, bool fallback) const;

  // "FILE: field 'PATH' PROBLEM"
  [[noreturn]] void fail(ErrorKind kind, std::string_view problem) const;

 private:
  std::string child_path(std::string_view key) const;

  const nlohmann::json* value_;
  std::shared_ptr<const std::string> file_;
  std::string path_;
};

}  // namespace louiskv::tokenization
