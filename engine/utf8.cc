#include "engine/utf8.h"

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace taskwal::engine {

namespace {
constexpr uint64_t kHighBits = 0x8080808080808080ull;
}  // namespace

bool IsValidUtf8(absl::string_view s) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const uint8_t* const end = p + s.size();
  while (p < end) {
    // ASCII, the common case, eight bytes at a time.
    uint64_t word;
    if (end - p >= 8 && (std::memcpy(&word, p, 8), (word & kHighBits) == 0)) {
      p += 8;
      continue;
    }
    const uint8_t b = *p;
    if (b < 0x80) {
      ++p;
      continue;
    }
    // Lead byte: the sequence length and the range of the second byte,
    // which rules out overlong forms, surrogates and values past U+10FFFF
    // (Unicode 15, table 3-7).
    size_t n = 0;
    uint8_t lo = 0x80;
    uint8_t hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) {
      n = 2;
    } else if (b == 0xe0) {
      n = 3;
      lo = 0xa0;
    } else if ((b >= 0xe1 && b <= 0xec) || b == 0xee || b == 0xef) {
      n = 3;
    } else if (b == 0xed) {
      n = 3;
      hi = 0x9f;
    } else if (b == 0xf0) {
      n = 4;
      lo = 0x90;
    } else if (b >= 0xf1 && b <= 0xf3) {
      n = 4;
    } else if (b == 0xf4) {
      n = 4;
      hi = 0x8f;
    } else {
      return false;  // A continuation byte, 0xc0, 0xc1 or 0xf5 and up.
    }
    if (static_cast<size_t>(end - p) < n) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (size_t i = 2; i < n; ++i) {
      if (p[i] < 0x80 || p[i] > 0xbf) return false;
    }
    p += n;
  }
  return true;
}

}  // namespace taskwal::engine
