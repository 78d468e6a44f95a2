// `louiskv tokenize` and `louiskv detokenize`: the model's tokenizer alone, text <-> ids.
#include <iostream>
#include <iterator>
#include <sstream>

#include "cli/command.h"
#include "io/model_config.h"

namespace louiskv::cli {
namespace {

std::filesystem::path model_folder(const std::string& model_dir) {
  return model_dir.empty() ? default_model_dir() : std::filesystem::path(model_dir);
}

std::string read_stdin() {
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

}  // namespace

CommandRunner add_tokenize_command(CLI::App& app) {
  struct Options {
    std::string model_dir, file;
    bool no_special = false, json = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* command = app.add_subcommand("tokenize", "text (file or stdin) to token ids");
  command->add_option("-m,--model", options->model_dir, "model folder holding tokenizer.json");
  command->add_option("-f,--file", options->file, "read the text from a file (default: stdin)");
  command->add_flag("--no-special", options->no_special, "do not add BOS/special tokens");
  command->add_flag("--json", options->json, "print {\"ids\": [...]}");
  return [options]() {
    Tokenizer tokenizer = Tokenizer::load(model_folder(options->model_dir) / "tokenizer.json");
    const std::string text = options->file.empty() ? read_stdin() : read_text_file(options->file);
    std::vector<int32_t> ids = tokenizer.encode(text, !options->no_special);
    if (options->json) {
      print_json({{"ids", ids}});
    } else {
      for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
      std::cout << std::endl;
    }
    return 0;
  };
}

CommandRunner add_detokenize_command(CLI::App& app) {
  struct Options {
    std::string model_dir;
    bool skip_special = false, json = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* command = app.add_subcommand("detokenize", "token ids (stdin, spaces or a JSON array) to text");
  command->add_option("-m,--model", options->model_dir, "model folder holding tokenizer.json");
  command->add_flag("--skip-special", options->skip_special, "leave special tokens out of the text");
  command->add_flag("--json", options->json, "print {\"text\": \"...\"}");
  return [options]() {
    Tokenizer tokenizer = Tokenizer::load(model_folder(options->model_dir) / "tokenizer.json");
    std::string input = read_stdin();
    for (char& c : input) {
      if (c == '[' || c == ']' || c == ',') c = ' ';
    }
    std::istringstream stream(input);
    std::vector<int32_t> ids;
    std::string word;
    while (stream >> word) {
      size_t used = 0;
      long long value = 0;
      try {
        value = std::stoll(word, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != word.size() || value < 0 || value >= tokenizer.vocab_size()) {
        throw_error(ErrorKind::invalid_input, "detokenize: '" + word + "' is not a token id in [0, " +
                                                  std::to_string(tokenizer.vocab_size()) + ")");
      }
      ids.push_back(int32_t(value));
    }
    const std::string text = tokenizer.decode(ids, options->skip_special);
    if (options->json) {
      print_json({{"text", text}});
    } else {
      std::cout << text << std::endl;
    }
    return 0;
  };
}

}  // namespace louiskv::cli
