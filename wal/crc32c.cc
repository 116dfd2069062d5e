#include "wal/crc32c.h"

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TASKWAL_CRC32C_SSE42 1
#include <nmmintrin.h>
#else
#define TASKWAL_CRC32C_SSE42 0
#endif

namespace taskwal::wal::crc32c {
namespace {

constexpr uint32_t kReflectedPoly = 0x82f63b78u;

// tables[k][b] is the CRC contribution of byte b followed by k zero bytes,
// which lets the portable path fold eight input bytes per step.
struct Tables {
  uint32_t t[8][256];
};

constexpr Tables MakeTables() {
  Tables tables{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t crc = b;
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc >> 1) ^ (kReflectedPoly & (0u - (crc & 1u)));
    }
    tables.t[0][b] = crc;
  }
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t crc = tables.t[0][b];
    for (int k = 1; k < 8; ++k) {
      crc = tables.t[0][crc & 0xffu] ^ (crc >> 8);
      tables.t[k][b] = crc;
    }
  }
  return tables;
}

constexpr Tables kTables = MakeTables();

inline uint32_t LoadLittleEndian32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

#if TASKWAL_CRC32C_SSE42

__attribute__((target("sse4.2"))) uint32_t ExtendSse42(uint32_t crc,
                                                       const char* data,
                                                       size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  uint32_t l = crc ^ 0xffffffffu;
  // Byte steps up to an 8-byte boundary, so the word loads below are aligned.
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7u) != 0) {
    l = _mm_crc32_u8(l, *p++);
    --n;
  }
  uint64_t l64 = l;
  while (n >= 8) {
    uint64_t word;
    std::memcpy(&word, p, sizeof(word));
    l64 = _mm_crc32_u64(l64, word);
    p += 8;
    n -= 8;
  }
  l = static_cast<uint32_t>(l64);
  while (n > 0) {
    l = _mm_crc32_u8(l, *p++);
    --n;
  }
  return l ^ 0xffffffffu;
}

bool DetectSse42() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}

bool HasSse42() {
  static const bool has_sse42 = DetectSse42();
  return has_sse42;
}

#endif  // TASKWAL_CRC32C_SSE42

}  // namespace

uint32_t ExtendPortable(uint32_t crc, const char* data, size_t n) {
  const auto* p = reinterpret_cast<const unsigned char*>(data);
  const auto& t = kTables.t;
  uint32_t l = crc ^ 0xffffffffu;
  while (n >= 8) {
    const uint32_t lo = LoadLittleEndian32(p) ^ l;
    const uint32_t hi = LoadLittleEndian32(p + 4);
    l = t[7][lo & 0xffu] ^ t[6][(lo >> 8) & 0xffu] ^ t[5][(lo >> 16) & 0xffu] ^
        t[4][lo >> 24] ^ t[3][hi & 0xffu] ^ t[2][(hi >> 8) & 0xffu] ^
        t[1][(hi >> 16) & 0xffu] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    l = t[0][(l ^ *p++) & 0xffu] ^ (l >> 8);
    --n;
  }
  return l ^ 0xffffffffu;
}

uint32_t Extend(uint32_t crc, const char* data, size_t n) {
#if TASKWAL_CRC32C_SSE42
  if (HasSse42()) return ExtendSse42(crc, data, n);
#endif
  return ExtendPortable(crc, data, n);
}

bool IsHardwareAccelerated() {
#if TASKWAL_CRC32C_SSE42
  return HasSse42();
#else
  return false;
#endif
}

}  // namespace taskwal::wal::crc32c
