// The operating system's reason for a failed call, for louiskv::Error messages.
#pragma once

#include <string>
#include <system_error>

namespace louiskv {

// std::error_code's message is thread-safe, unlike std::strerror.
inline std::string os_reason(int error_number) {
  return std::error_code(error_number, std::generic_category()).message();
}

}  // namespace louiskv
