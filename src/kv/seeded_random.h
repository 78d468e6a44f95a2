// SeededRandom: a small reproducible generator (splitmix64) for k-means initialisation. The
// standard distributions are implementation-defined, so the same seed could give different
// clusters on two standard libraries; this one gives the same numbers everywhere.
#pragma once

#include <cstdint>

namespace louiskv {

class SeededRandom {
 public:
  explicit SeededRandom(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1).
  double unit() { return double(next() >> 11) * 0x1.0p-53; }
  // Uniform in [0, bound) for bound > 0 (the modulo bias is below 2^-40 for any bound we use).
  uint64_t below(uint64_t bound) { return next() % bound; }

 private:
  uint64_t state_;
};

// Mixes several values into one seed, so that each (layer, KV head) gets its own stream.
inline uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b = 0) {
  SeededRandom random(seed ^ (a * 0xd1342543de82ef95ull) ^ (b * 0x2545f4914f6cdd1dull));
  return random.next();
}

}  // namespace louiskv
