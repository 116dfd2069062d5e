#ifndef TASKWAL_WAL_CODING_H_
#define TASKWAL_WAL_CODING_H_

// Fixed-width little-endian integer encoding for the on-disk format
// (wal/format.h). Written byte by byte so the result does not depend on the
// host's byte order; compilers turn each into a single load or store.

#include <cstdint>
#include <string>

namespace taskwal::wal {

inline void EncodeFixed16(char* dst, uint16_t value) {
  for (int i = 0; i < 2; ++i) dst[i] = static_cast<char>(value >> (8 * i));
}

inline void EncodeFixed32(char* dst, uint32_t value) {
  for (int i = 0; i < 4; ++i) dst[i] = static_cast<char>(value >> (8 * i));
}

inline void EncodeFixed64(char* dst, uint64_t value) {
  for (int i = 0; i < 8; ++i) dst[i] = static_cast<char>(value >> (8 * i));
}

inline void PutFixed32(std::string* dst, uint32_t value) {
  char buf[4];
  EncodeFixed32(buf, value);
  dst->append(buf, sizeof(buf));
}

inline void PutFixed64(std::string* dst, uint64_t value) {
  char buf[8];
  EncodeFixed64(buf, value);
  dst->append(buf, sizeof(buf));
}

// REQUIRES: `src` points at 2 (resp. 4, 8) readable bytes.
inline uint16_t DecodeFixed16(const char* src) {
  const auto* p = reinterpret_cast<const unsigned char*>(src);
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

inline uint32_t DecodeFixed32(const char* src) {
  const auto* p = reinterpret_cast<const unsigned char*>(src);
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

inline uint64_t DecodeFixed64(const char* src) {
  const auto* p = reinterpret_cast<const unsigned char*>(src);
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

}  // namespace taskwal::wal

#endif  // TASKWAL_WAL_CODING_H_
