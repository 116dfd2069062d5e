#ifndef TASKWAL_WAL_CRC32C_H_
#define TASKWAL_WAL_CRC32C_H_

// CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected 0x82F63B78), the
// checksum of every file header and record (wal/format.h). Uses the SSE4.2
// `crc32` instruction when the CPU has it (detected at run time, so the
// build needs no -msse4.2) and a slicing-by-8 table otherwise.
//
// All functions are pure and safe for concurrent use.

#include <cstddef>
#include <cstdint>

namespace taskwal::wal::crc32c {

// Returns the CRC-32C of concat(A, data[0, n)), where `crc` is the CRC-32C of
// some string A. Extend(0, data, n) == Value(data, n).
uint32_t Extend(uint32_t crc, const char* data, size_t n);

// Returns the CRC-32C of data[0, n).
inline uint32_t Value(const char* data, size_t n) { return Extend(0, data, n); }

// Computing the CRC of a string that contains embedded CRCs is problematic
// (LevelDB's reasoning), so stored CRCs are masked: rotated right by 15 bits
// plus a constant. Unmask(Mask(x)) == x.
inline constexpr uint32_t kMaskDelta = 0xa282ead8u;

inline uint32_t Mask(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + kMaskDelta;
}

inline uint32_t Unmask(uint32_t masked_crc) {
  const uint32_t rot = masked_crc - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

// True if Extend uses the SSE4.2 instruction on this CPU.
bool IsHardwareAccelerated();

// The table-driven implementation Extend falls back to. Exposed so tests can
// compare both paths on a machine that has SSE4.2; production code calls
// Extend.
uint32_t ExtendPortable(uint32_t crc, const char* data, size_t n);

}  // namespace taskwal::wal::crc32c

#endif  // TASKWAL_WAL_CRC32C_H_
