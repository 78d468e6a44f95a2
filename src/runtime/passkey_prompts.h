// Pass-key prompts made from any long text: the needle sentence "The pass key is K. Remember it.
// K is the pass key." is placed at a chosen depth of a haystack cut to a target length in
// tokens, and the prompt ends by asking for the key. The same layout the bundled model was
// trained to answer, so that a fresh clone can run the demo without outside data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/evaluation.h"
#include "tokenizer/tokenizer.h"

namespace louiskv {

struct PasskeyPromptSpec {
  int64_t context_tokens = 2048;  // approximate prompt length in tokens
  double depth = 0.5;             // where the needle sits, 0 (start) to 1 (end)
  int64_t haystack_offset = 0;    // where in the haystack's tokens the prompt's text starts
  std::string key;                // five digits
};

// Throws louiskv::Error (invalid_input) when the haystack is too short for the asked length.
PasskeyItem make_passkey_prompt(const Tokenizer& tokenizer, const std::vector<int32_t>& haystack_ids,
                                const PasskeyPromptSpec& spec);

// `count` prompts of each length, keys and depths drawn from `seed`, haystack offsets spread out.
std::vector<PasskeyItem> make_passkey_prompts(const Tokenizer& tokenizer, const std::string& haystack,
                                              const std::vector<int64_t>& lengths, int count, uint64_t seed);

}  // namespace louiskv
