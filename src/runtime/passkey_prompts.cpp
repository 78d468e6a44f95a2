#include "runtime/passkey_prompts.h"

#include <algorithm>
#include <random>

namespace louiskv {

PasskeyItem make_passkey_prompt(const Tokenizer& tokenizer, const std::vector<int32_t>& haystack_ids,
                                const PasskeyPromptSpec& spec) {
  const std::string needle = "\nThe pass key is " + spec.key + ". Remember it. " + spec.key + " is the pass key.\n";
  const std::string question = "\nWhat is the pass key? The pass key is";
  const int64_t overhead = int64_t(tokenizer.encode(needle, false).size() + tokenizer.encode(question, false).size()) + 1;
  const int64_t filler = spec.context_tokens - overhead;
  if (filler < 1 || spec.haystack_offset + filler > int64_t(haystack_ids.size())) {
    throw_error(ErrorKind::invalid_input, "the haystack has " + std::to_string(haystack_ids.size()) +
                                              " tokens, too few for a pass-key prompt of " +
                                              std::to_string(spec.context_tokens) + " tokens");
  }
  const int64_t before = int64_t(double(filler) * std::clamp(spec.depth, 0.0, 1.0));
  auto piece = [&](int64_t first, int64_t count) {
    std::vector<int32_t> ids(haystack_ids.begin() + first, haystack_ids.begin() + first + count);
    return tokenizer.decode(ids, true);
  };
  PasskeyItem item;
  item.prompt = piece(spec.haystack_offset, before) + needle + piece(spec.haystack_offset + before, filler - before) + question;
  item.key = spec.key;
  return item;
}

std::vector<PasskeyItem> make_passkey_prompts(const Tokenizer& tokenizer, const std::string& haystack,
                                              const std::vector<int64_t>& lengths, int count, uint64_t seed) {
  const std::vector<int32_t> haystack_ids = tokenizer.encode(haystack, false);
  std::mt19937_64 generator(seed);
  std::uniform_int_distribution<int> digits(10000, 99999);
  std::uniform_real_distribution<double> depth(0.1, 0.9);
  std::vector<PasskeyItem> items;
  for (int64_t length : lengths) {
    for (int i = 0; i < count; ++i) {
      PasskeyPromptSpec spec;
      spec.context_tokens = length;
      spec.depth = depth(generator);
      spec.key = std::to_string(digits(generator));
      const int64_t room = std::max<int64_t>(0, int64_t(haystack_ids.size()) - length);
      spec.haystack_offset = count > 1 ? room * i / (count - 1) : 0;
      items.push_back(make_passkey_prompt(tokenizer, haystack_ids, spec));
    }
  }
  return items;
}

}  // namespace louiskv
