// louiskv::Error: the one exception type of the library. Its kind says whose problem it is:
// the user's input (invalid_input, io, unsupported), the machine (out_of_memory), or a bug in
// louiskv (internal). Front ends map kinds to exit codes and HTTP statuses; the library never exits.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace louiskv {

enum class ErrorKind { invalid_input, io, unsupported, out_of_memory, internal };

std::string_view error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

[[noreturn]] void throw_error(ErrorKind kind, const std::string& message);

// Invariant checks that stay on in release builds: a failure is a bug in louiskv, not bad input.
#define LOUISKV_CHECK(condition, message)                                                   \
  do {                                                                                      \
    if (!(condition)) {                                                                     \
      ::louiskv::throw_error(::louiskv::ErrorKind::internal,                                \
                             std::string("internal error (a bug in louiskv): ") + (message) + \
                                 " [" #condition "] at " __FILE__ ":" + std::to_string(__LINE__)); \
    }                                                                                       \
  } while (0)

}  // namespace louiskv
