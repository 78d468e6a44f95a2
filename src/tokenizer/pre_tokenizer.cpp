#include "tokenizer/pre_tokenizer.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/unicode_regex.h"

namespace louiskv::tokenization {
namespace {

// GPT-2's word pattern, which ByteLevel applies when use_regex is true.
constexpr const char* gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// What becomes of the pattern's matches (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

struct Span {
  size_t begin = 0;
  size_t end = 0;
  bool is_match = false;
};

class SplitStep final : public PreTokenizerStep {
 public:
  SplitStep(UnicodeRegex pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}

  void apply(std::vector<std::string>& pieces) const override {
    std::vector<std::string> result;
    result.reserve(pieces.size());
    std::vector<ByteRange> matches;
    std::vector<Span> spans;
    for (const std::string& piece : pieces) {
      matches.clear();
      pattern_.find_all(piece, matches);
      spans.clear();
      size_t previous = 0;
      for (const ByteRange& match : matches) {
        if (match.begin > previous) spans.push_back({previous, match.begin, invert_});
        spans.push_back({match.begin, match.end, !invert_});
        previous = match.end;
      }
      if (previous < piece.size()) spans.push_back({previous, piece.size(), invert_});
      for (const Span& span : arrange(spans)) {
        if (span.end > span.begin) result.emplace_back(piece, span.begin, span.end - span.begin);
      }
    }
    pieces = std::move(result);
  }

 private:
  // The pieces to keep, as Hugging Face's NormalizedString::split forms them.
  std::vector<Span> arrange(const std::vector<Span>& spans) const {
    std::vector<Span> kept;
    bool previous_match = false;
    switch (behavior_) {
      case SplitBehavior::isolated:
        return spans;
      case SplitBehavior::removed:
        for (const Span& span : spans) {
          if (!span.is_match) kept.push_back(span);
        }
        return kept;
      case SplitBehavior::merged_with_previous:
        for (const Span& span : spans) {
          if (span.is_match && !previous_match && !kept.empty()) {
            kept.back().end = span.end;
          } else {
            kept.push_back(span);
          }
          previous_match = span.is_match;
        }
        return kept;
      case SplitBehavior::merged_with_next:
        // Walk backwards: a match joins the piece that follows it.
        for (auto span = spans.rbegin(); span != spans.rend(); ++span) {
          if (span->is_match && !previous_match && !kept.empty()) {
            kept.back().begin = span->begin;
          } else {
            kept.push_back(*span);
          }
          previous_match = span->is_match;
        }
        return {kept.rbegin(), kept.rend()};
      case SplitBehavior::contiguous:
        for (const Span& span : spans) {
          if (span.is_match == previous_match && !kept.empty()) {
            kept.back().end = span.end;
          } else {
            kept.push_back(span);
          }
          previous_match = span.is_match;
        }
        return kept;
    }
    return kept;
  }

  UnicodeRegex pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelStep final : public PreTokenizerStep {
 public:
  ByteLevelStep(bool add_prefix_space, std::unique_ptr<SplitStep> words)
      : add_prefix_space_(add_prefix_space), words_(std::move(words)) {}

  void apply(std::vector<std::string>& pieces) const override {
    if (add_prefix_space_) {
      for (std::string& piece : pieces) {
        if (!piece.empty() && piece.front() != ' ') piece.insert(piece.begin(), ' ');
      }
    }
    if (words_) words_->apply(pieces);
    std::string mapped;
    for (std::string& piece : pieces) {
      mapped.clear();
      append_byte_level(piece, mapped);
      piece.swap(mapped);
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<SplitStep> words_;  // GPT-2's pattern when use_regex is true
};

SplitBehavior behavior_named(const JsonField& field) {
  std::string name = field.as_string();
  if (name == "Removed") return SplitBehavior::removed;
  if (name == "Isolated") return SplitBehavior::isolated;
  if (name == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (name == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (name == "Contiguous") return SplitBehavior::contiguous;
  field.fail(ErrorKind::unsupported,
             "is '" + name + "', not one of Removed, Isolated, MergedWithPrevious, "
             "MergedWithNext, Contiguous");
}

std::unique_ptr<SplitStep> split_from_json(const JsonField& spec) {
  JsonField pattern = spec["pattern"].expect_object();
  std::optional<UnicodeRegex> regex;
  if (auto text = pattern.optional("Regex")) {
    regex.emplace(text->as_string(), UnicodeRegex::Syntax::regex,
                  text->file() + ": field '" + text->path() + "'");
  } else if (auto literal = pattern.optional("String")) {
    regex.emplace(literal->as_string(), UnicodeRegex::Syntax::literal,
                  literal->file() + ": field '" + literal->path() + "'");
  } else {
    pattern.fail(ErrorKind::invalid_input, "must hold a \"Regex\" or a \"String\"");
  }
  return std::make_unique<SplitStep>(std::move(*regex), behavior_named(spec["behavior"]),
                                     spec.bool_or("invert", false));
}

}  // namespace

PreTokenizer PreTokenizer::from_json(const std::optional<JsonField>& spec) {
  PreTokenizer pre_tokenizer;
  if (spec) pre_tokenizer.add_from_json(*spec);
  return pre_tokenizer;
}

void PreTokenizer::add_from_json(const JsonField& spec) {
  JsonField type_field = spec["type"];
  std::string type = type_field.as_string();
  if (type == "Sequence") {
    JsonField members = spec["pretokenizers"].expect_array();
    for (size_t i = 0; i < members.value().size(); ++i) add_from_json(members.element(i));
  } else if (type == "Split") {
    steps_.push_back(split_from_json(spec));
  } else if (type == "ByteLevel") {
    std::unique_ptr<SplitStep> words;
    if (spec.bool_or("use_regex", true)) {
      words = std::make_unique<SplitStep>(
          UnicodeRegex(gpt2_pattern, UnicodeRegex::Syntax::regex, "GPT-2 word pattern"),
          SplitBehavior::isolated, false);
    }
    // add_prefix_space has no default in Hugging Face either: a file without it is refused.
    steps_.push_back(
        std::make_unique<ByteLevelStep>(spec["add_prefix_space"].as_bool(), std::move(words)));
  } else {
    type_field.fail(ErrorKind::unsupported,
                    "is '" + type + "', a pre-tokenizer louiskv does not support (supported: "
                    "Split, ByteLevel, Sequence)");
  }
}

void PreTokenizer::split(std::string_view text, std::vector<std::string>& words) const {
  std::vector<std::string> pieces;
  pieces.emplace_back(text);
  for (const auto& step : steps_) step->apply(pieces);
  for (std::string& piece : pieces) words.push_back(std::move(piece));
}

}  // namespace louiskv::tokenization
