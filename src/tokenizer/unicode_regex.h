// A PCRE2 pattern compiled once, in UTF mode with Unicode properties (\p{L}, \p{N}, Unicode \s
// and caseless matching), JIT-compiled where the platform allows. Matching is const and
// allocates its own match data, so one UnicodeRegex serves any number of threads.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

struct pcre2_real_code_8;

namespace louiskv::tokenization {

struct ByteRange {
  size_t begin = 0;
  size_t end = 0;
};

class UnicodeRegex {
 public:
  enum class Syntax { regex, literal };

  // `where` names the pattern's origin for errors ("tokenizer.json: field 'pre_tokenizer...'");
  // a pattern PCRE2 rejects throws invalid_input with PCRE2's message and offset.
  UnicodeRegex(const std::string& pattern, Syntax syntax, const std::string& where);
  UnicodeRegex(UnicodeRegex&& other) noexcept;
  UnicodeRegex& operator=(UnicodeRegex&& other) noexcept;
  UnicodeRegex(const UnicodeRegex&) = delete;
  UnicodeRegex& operator=(const UnicodeRegex&) = delete;
  ~UnicodeRegex();

  // Appends the non-empty, non-overlapping matches in `subject` (valid UTF-8), left to right.
  // After an empty match the search resumes one character later, as Hugging Face's iteration does.
  void find_all(std::string_view subject, std::vector<ByteRange>& matches) const;

  // Whether the pattern matches somewhere in `subject` (valid UTF-8).
  bool matches(std::string_view subject) const;

 private:
  pcre2_real_code_8* code_ = nullptr;
  std::string where_;
};

}  // namespace louiskv::tokenization
