// Unit: a run of tokens of one (sequence, layer, KV head), stored contiguously in the host pool
// and selected as a whole (DESIGN.md section 3). Its summary (mean key, box, sphere) lives in the
// policy's unit table, indexed like the units.
#pragma once

#include <cstdint>

namespace louiskv {

enum class UnitKind : uint8_t {
  sink,     // first tokens, always attended
  cluster,  // prompt tokens grouped by k-means
  segment,  // a closed run of generated tokens
  page,     // a fixed-size run of tokens (Quest, ArkVale)
  window,   // newest tokens, always attended, not yet closed
};

struct Unit {
  UnitKind kind = UnitKind::page;
  int64_t host_first = 0;  // first row in the host pool (this head's unit order)
  int64_t length = 0;      // tokens
};

}  // namespace louiskv
