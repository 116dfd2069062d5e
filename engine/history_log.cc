#include "engine/history_log.h"

namespace taskwal::engine {

namespace {

void PutVarint(uint64_t v, std::string* dst) {
  while (v >= 0x80) {
    dst->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  dst->push_back(static_cast<char>(v));
}

// Reads a varint at *pos; false if the bytes end first. The bytes are only
// ever written by Append, so this is a consistency check, not input
// validation.
bool GetVarint(const std::string& src, size_t* pos, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *pos < src.size(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(src[(*pos)++]);
    *v |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

}  // namespace

void HistoryLog::Append(const HistoryEntry& e, size_t max_entries) {
  if (max_entries == 0) return;
  if (count_ >= max_entries) DropOldest(count_ - max_entries + 1);
  const size_t size = e.ByteSizeLong();
  PutVarint(size, &bytes_);
  const size_t offset = bytes_.size();
  bytes_.resize(offset + size);
  e.SerializeWithCachedSizesToArray(
      reinterpret_cast<uint8_t*>(&bytes_[offset]));
  ++count_;
}

std::vector<HistoryEntry> HistoryLog::Entries() const {
  std::vector<HistoryEntry> entries;
  entries.reserve(count_);
  size_t pos = 0;
  uint64_t size = 0;
  while (pos < bytes_.size() && GetVarint(bytes_, &pos, &size) &&
         size <= bytes_.size() - pos) {
    entries.emplace_back();
    entries.back().ParseFromArray(bytes_.data() + pos, static_cast<int>(size));
    pos += size;
  }
  return entries;
}

void HistoryLog::DropOldest(size_t n) {
  size_t pos = 0;
  uint64_t size = 0;
  for (size_t i = 0; i < n && pos < bytes_.size(); ++i) {
    if (!GetVarint(bytes_, &pos, &size)) break;
    pos += size;
  }
  bytes_.erase(0, std::min(pos, bytes_.size()));
  count_ = n >= count_ ? 0 : count_ - static_cast<uint32_t>(n);
}

}  // namespace taskwal::engine
