#include "tokenizer/json_field.h"

#include <limits>

namespace louiskv::tokenization {

std::string JsonField::child_path(std::string_view key) const {
  return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
}

JsonField JsonField::operator[](std::string_view key) const {
  expect_object();
  auto found = value_->find(key);
  if (found == value_->end() || found->is_null()) {
    JsonField(*value_, file_, child_path(key)).fail(ErrorKind::invalid_input, "is missing");
  }
  return JsonField(*found, file_, child_path(key));
}

std::optional<JsonField> JsonField::optional(std::string_view key) const {
  expect_object();
  auto found = value_->find(key);
  if (found == value_->end() || found->is_null()) return std::nullopt;
  return JsonField(*found, file_, child_path(key));
}

JsonField JsonField::element(size_t index) const {
  expect_array();
  return JsonField(value_->at(index), file_, path_ + "[" + std::to_string(index) + "]");
}

std::string JsonField::as_string() const {
  if (!value_->is_string()) fail(ErrorKind::invalid_input, "must be a string");
  return value_->get<std::string>();
}

bool JsonField::as_bool() const {
  if (!value_->is_boolean()) fail(ErrorKind::invalid_input, "must be true or false");
  return value_->get<bool>();
}

int64_t JsonField::as_integer() const {
  if (value_->is_number_unsigned()) {
    auto value = value_->get<uint64_t>();
    if (value > uint64_t(std::numeric_limits<int64_t>::max())) {
      fail(ErrorKind::invalid_input, "is too large");
    }
    return int64_t(value);
  }
  if (!value_->is_number_integer()) fail(ErrorKind::invalid_input, "must be an integer");
  return value_->get<int64_t>();
}

const JsonField& JsonField::expect_object() const {
  if (!value_->is_object()) fail(ErrorKind::invalid_input, "must be a JSON object");
  return *this;
}

const JsonField& JsonField::expect_array() const {
  if (!value_->is_array()) fail(ErrorKind::invalid_input, "must be a JSON array");
  return *this;
}

bool JsonField::bool_or(std::string_view key, bool fallback) const {
  auto member = optional(key);
  return member ? member->as_bool() : fallback;
}

void JsonField::fail(ErrorKind kind, std::string_view problem) const {
  std::string where = path_.empty() ? std::string("the top level") : "field '" + path_ + "'";
  throw_error(kind, *file_ + ": " + where + " " + std::string(problem));
}

}  // namespace louiskv::tokenization
