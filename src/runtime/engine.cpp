#include "runtime/engine.h"

#include <algorithm>
#include <chrono>

#include "runtime/prefilled_prompt.h"

namespace louiskv {
namespace {

using Clock = std::chrono::steady_clock;
double milliseconds_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Length of the longest suffix of `text` that is a proper prefix of some stop string: those bytes
// are held back from the stream until it is known whether a stop string follows.
size_t held_back_length(const std::string& text, const std::vector<std::string>& stops) {
  size_t longest = 0;
  for (const auto& stop : stops) {
    for (size_t length = std::min(stop.size() - 1, text.size()); length > longest; --length) {
      if (text.compare(text.size() - length, length, stop, 0, length) == 0) {
        longest = length;
        break;
      }
    }
  }
  return longest;
}

}  // namespace

Engine::Engine(const EngineOptions& options) : model_dir_(options.model_dir) {
  backend_ = make_backend(options.device, options.threads, options.dtype);
  if (options.random_weights) {
    model_ = Model::random(load_model_config(options.model_dir), *backend_, options.weight_seed);
  } else {
    model_ = Model::load(options.model_dir, *backend_);
  }
  const auto tokenizer_path = options.model_dir / "tokenizer.json";
  if (std::filesystem::is_directory(options.model_dir) && std::filesystem::exists(tokenizer_path)) tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::load(tokenizer_path));
  decoder_ = std::make_unique<Decoder>(*model_, *backend_, options.max_batch, options.prefill_chunk);
}

Engine::~Engine() = default;

const Tokenizer& Engine::tokenizer() const {
  if (!tokenizer_) {
    throw_error(ErrorKind::invalid_input, (model_dir_ / "tokenizer.json").string() + ": no tokenizer in the model folder");
  }
  return *tokenizer_;
}

KvShape Engine::kv_shape() const {
  const ModelConfig& c = model_->config();
  return {c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim};
}

std::unique_ptr<KvPolicy> Engine::make_policy(const KvConfig& config) {
  return make_kv_policy(config, kv_shape(), *backend_);
}

void Engine::check_context(int64_t tokens) const {
  const int64_t limit = model_->config().max_position_embeddings;
  if (tokens > limit) {
    throw_error(ErrorKind::invalid_input, "the prompt has " + std::to_string(tokens) +
                                              " tokens, more than the model's context of " + std::to_string(limit) +
                                              " (max_position_embeddings in config.json)");
  }
}

GenerationResult Engine::generate(std::span<const int32_t> prompt, const GenerationConfig& generation, KvPolicy& kv,
                                  const TextCallback& on_text) {
  auto fill = [&](SequenceId id, std::vector<float>& logits) {
    decoder_->prefill(id, prompt, kv, int64_t(prompt.size()) - 1, [&](int64_t, const float* row, int64_t) {
      std::copy(row, row + logits.size(), logits.begin());
    });
  };
  return generate_after(prompt, fill, generation, kv, on_text);
}

GenerationResult Engine::generate(const PrefilledPrompt& prompt, const GenerationConfig& generation, KvPolicy& kv,
                                  const TextCallback& on_text) {
  auto fill = [&](SequenceId id, std::vector<float>& logits) {
    prompt.replay(kv, id);
    std::copy(prompt.last_logits().begin(), prompt.last_logits().end(), logits.begin());
  };
  return generate_after(prompt.tokens(), fill, generation, kv, on_text);
}

PrefilledPrompt Engine::prefill(std::span<const int32_t> prompt) {
  check_context(int64_t(prompt.size()));
  return PrefilledPrompt::capture(*model_, *decoder_, *backend_, prompt);
}

GenerationResult Engine::generate_after(std::span<const int32_t> prompt, const PromptFill& fill,
                                        const GenerationConfig& generation, KvPolicy& kv, const TextCallback& on_text) {
  validate(generation.sampling);
  if (prompt.empty()) throw_error(ErrorKind::invalid_input, "the prompt is empty");
  if (generation.max_new_tokens < 0) throw_error(ErrorKind::invalid_input, "-n must be >= 0");
  check_context(int64_t(prompt.size()));
  const ModelConfig& c = model_->config();
  const int64_t context = c.max_position_embeddings;
  const int64_t capacity = std::min<int64_t>(context, int64_t(prompt.size()) + generation.max_new_tokens);

  GenerationResult result;
  result.stats.prompt_tokens = int64_t(prompt.size());
  Sampler sampler(generation.sampling);
  std::vector<int32_t> history(prompt.begin(), prompt.end());
  std::vector<float> logits(size_t(c.vocab_size));
  const SequenceId id = new_sequence_id();
  kv.add_sequence(id, std::max<int64_t>(capacity, int64_t(prompt.size())));
  struct Remove {
    KvPolicy& kv;
    SequenceId id;
    ~Remove() { kv.remove_sequence(id); }
  } remove{kv, id};

  const auto start = Clock::now();
  if (generation.max_new_tokens == 0) {
    result.stop_reason = "length";
    return result;
  }
  fill(id, logits);
  result.stats.prefill_ms = milliseconds_since(start);

  std::optional<TokenStreamDecoder> stream;
  if (tokenizer_) stream.emplace(*tokenizer_, true);
  std::string pending;  // text not yet streamed, possibly the start of a stop string
  Clock::time_point decode_start;
  int64_t position = int64_t(prompt.size());
  for (int64_t step = 0;; ++step) {
    const int32_t token = sampler.sample(logits, history);
    if (step == 0) {
      result.stats.ttft_ms = milliseconds_since(start);
      decode_start = Clock::now();
    }
    const bool is_eos = std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), token) != c.eos_token_ids.end();
    if (is_eos && !generation.ignore_eos) {
      result.stop_reason = "eos";
      break;
    }
    result.ids.push_back(token);
    history.push_back(token);
    if (stream) {
      pending += stream->push(token);
      bool stopped = false;
      for (const auto& stop : generation.stop_strings) {
        size_t at = pending.find(stop);
        if (!stop.empty() && at != std::string::npos) {
          pending.resize(at);
          stopped = true;
        }
      }
      size_t hold = stopped ? 0 : held_back_length(pending, generation.stop_strings);
      std::string ready = pending.substr(0, pending.size() - hold);
      result.text += ready;
      if (on_text && !ready.empty()) on_text(ready);
      pending.erase(0, ready.size());
      if (stopped) {
        result.stop_reason = "stop_string";
        break;
      }
    }
    if (int64_t(result.ids.size()) >= generation.max_new_tokens) {
      result.stop_reason = "length";
      break;
    }
    if (position >= capacity || position >= context) {
      result.stop_reason = "context";
      break;
    }
    const SequenceId batch[1] = {id};
    const int32_t tokens[1] = {token};
    const int64_t positions[1] = {position};
    decoder_->decode(batch, tokens, positions, kv, logits.data());
    ++position;
  }
  if (stream && result.stop_reason != "stop_string") {
    std::string rest = pending + stream->finish();
    result.text += rest;
    if (on_text && !rest.empty()) on_text(rest);
  }
  result.kv = kv.stats(id);
  result.stats.generated_tokens = int64_t(result.ids.size());
  result.stats.decode_ms = milliseconds_since(decode_start);
  if (result.ids.size() > 1 && result.stats.decode_ms > 0) {
    result.stats.tok_per_s = double(result.ids.size() - 1) / (result.stats.decode_ms / 1000.0);
  }
  if (result.stats.prefill_ms > 0) {
    result.stats.prefill_tok_per_s = double(prompt.size()) / (result.stats.prefill_ms / 1000.0);
  }
  return result;
}

}  // namespace louiskv
