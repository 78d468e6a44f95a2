#include "tokenizer/unicode_regex.h"

#include <memory>
#include <utility>

#include <pcre2.h>

#include "common/error.h"
#include "tokenizer/utf8.h"

namespace louiskv::tokenization {
namespace {

std::string pcre2_message(int error_code) {
  PCRE2_UCHAR buffer[256];
  int length = pcre2_get_error_message(error_code, buffer, sizeof(buffer));
  if (length < 0) return "PCRE2 error " + std::to_string(error_code);
  return std::string(reinterpret_cast<const char*>(buffer), size_t(length));
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};
using MatchData = std::unique_ptr<pcre2_match_data, MatchDataDeleter>;

// One search from `offset`. Returns false when nothing matches. The JIT runs on a small machine
// stack; a subject that exhausts it (very long runs) is matched again by the interpreter, whose
// memory comes from the heap.
bool search(const pcre2_code* code, std::string_view subject, size_t offset,
            pcre2_match_data* match_data, const std::string& where, ByteRange& found) {
  auto data = reinterpret_cast<PCRE2_SPTR>(subject.data());
  int result = pcre2_match(code, data, subject.size(), offset, PCRE2_NO_UTF_CHECK, match_data,
                           nullptr);
  if (result == PCRE2_ERROR_JIT_STACKLIMIT) {
    result = pcre2_match(code, data, subject.size(), offset, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                         match_data, nullptr);
  }
  if (result == PCRE2_ERROR_NOMATCH) return false;
  if (result < 0) {
    throw_error(ErrorKind::invalid_input, where + ": matching a text of " +
                                              std::to_string(subject.size()) +
                                              " bytes failed: " + pcre2_message(result));
  }
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_data);
  found.begin = ovector[0];
  found.end = ovector[1] < ovector[0] ? ovector[0] : ovector[1];
  return true;
}

}  // namespace

UnicodeRegex::UnicodeRegex(const std::string& pattern, Syntax syntax, const std::string& where)
    : where_(where) {
  // PCRE2 refuses UCP together with LITERAL; a literal has no classes for UCP to widen anyway.
  uint32_t options = syntax == Syntax::literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP;
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                        &error_code, &error_offset, nullptr);
  if (code_ == nullptr) {
    throw_error(ErrorKind::invalid_input, where + ": PCRE2 rejects the pattern at offset " +
                                              std::to_string(error_offset) + ": " +
                                              pcre2_message(error_code));
  }
  // Without JIT support (some platforms) pcre2_match interprets the pattern instead.
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
}

UnicodeRegex::UnicodeRegex(UnicodeRegex&& other) noexcept
    : code_(std::exchange(other.code_, nullptr)), where_(std::move(other.where_)) {}

UnicodeRegex& UnicodeRegex::operator=(UnicodeRegex&& other) noexcept {
  if (this != &other) {
    pcre2_code_free(code_);
    code_ = std::exchange(other.code_, nullptr);
    where_ = std::move(other.where_);
  }
  return *this;
}

UnicodeRegex::~UnicodeRegex() { pcre2_code_free(code_); }

void UnicodeRegex::find_all(std::string_view subject, std::vector<ByteRange>& matches) const {
  if (subject.empty()) return;
  MatchData match_data(pcre2_match_data_create_from_pattern(code_, nullptr));
  if (!match_data) throw_error(ErrorKind::out_of_memory, where_ + ": no memory for match data");
  size_t offset = 0;
  ByteRange found;
  while (offset < subject.size() && search(code_, subject, offset, match_data.get(), where_, found)) {
    if (found.end > found.begin) {
      matches.push_back(found);
      offset = found.end;
    } else {
      if (found.begin >= subject.size()) break;
      offset = found.begin + utf8_sequence_length(static_cast<unsigned char>(subject[found.begin]));
    }
  }
}

bool UnicodeRegex::matches(std::string_view subject) const {
  MatchData match_data(pcre2_match_data_create_from_pattern(code_, nullptr));
  if (!match_data) throw_error(ErrorKind::out_of_memory, where_ + ": no memory for match data");
  ByteRange found;
  std::string_view nonnull_subject = subject.data() == nullptr ? std::string_view("") : subject;
  return search(code_, nonnull_subject, 0, match_data.get(), where_, found);
}

}  // namespace louiskv::tokenization
