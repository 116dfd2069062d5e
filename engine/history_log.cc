#include "engine/history_log.h"

#include <algorithm>
#include <cstring>

namespace taskwal::engine {

namespace {

// Protobuf wire format: a field's key is (number << 3) | wire type.
constexpr uint8_t kVarint = 0;
constexpr uint8_t kLengthDelimited = 2;

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

char* PutVarint(uint64_t v, char* dst) {
  while (v >= 0x80) {
    *dst++ = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  *dst++ = static_cast<char>(v);
  return dst;
}

void PutVarint(uint64_t v, std::string* dst) {
  char buf[10];
  dst->append(buf, PutVarint(v, buf) - buf);
}

// proto3 omits fields at their default value; field numbers are < 16, so
// each key is one byte.
size_t VarintFieldSize(uint64_t v) { return v == 0 ? 0 : 1 + VarintSize(v); }
size_t BytesFieldSize(absl::string_view s) {
  return s.empty() ? 0 : 1 + VarintSize(s.size()) + s.size();
}
char* PutVarintField(int number, uint64_t v, char* dst) {
  if (v == 0) return dst;
  *dst++ = static_cast<char>((number << 3) | kVarint);
  return PutVarint(v, dst);
}
char* PutBytesField(int number, absl::string_view s, char* dst) {
  if (s.empty()) return dst;
  *dst++ = static_cast<char>((number << 3) | kLengthDelimited);
  dst = PutVarint(s.size(), dst);
  std::memcpy(dst, s.data(), s.size());
  return dst + s.size();
}

}  // namespace

bool HistoryLog::GetVarint(const std::string& src, size_t* pos, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *pos < src.size(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(src[(*pos)++]);
    *v |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

void HistoryLog::MakeRoom(size_t max_entries) {
  if (count_ >= max_entries) DropOldest(count_ - max_entries + 1);
}

void HistoryLog::Append(const HistoryEvent& e, size_t max_entries) {
  if (max_entries == 0) return;
  MakeRoom(max_entries);
  // Field numbers and order as in HistoryEntry (api/task.proto); int64 and
  // enums are varints of their two's complement.
  const uint64_t time = static_cast<uint64_t>(e.time_micros);
  const uint64_t event = static_cast<uint64_t>(static_cast<int64_t>(e.event));
  const uint64_t from = static_cast<uint64_t>(static_cast<int64_t>(e.from));
  const uint64_t to = static_cast<uint64_t>(static_cast<int64_t>(e.to));
  const size_t size = VarintFieldSize(time) + VarintFieldSize(event) +
                      VarintFieldSize(from) + VarintFieldSize(to) +
                      BytesFieldSize(e.worker_id) +
                      VarintFieldSize(e.attempt) + BytesFieldSize(e.error);
  const size_t offset = bytes_.size();
  bytes_.resize(offset + VarintSize(size) + size);
  char* dst = PutVarint(size, &bytes_[offset]);
  dst = PutVarintField(1, time, dst);
  dst = PutVarintField(2, event, dst);
  dst = PutVarintField(3, from, dst);
  dst = PutVarintField(4, to, dst);
  dst = PutBytesField(5, e.worker_id, dst);
  dst = PutVarintField(6, e.attempt, dst);
  PutBytesField(7, e.error, dst);
  ++count_;
}

void HistoryLog::AppendSerialized(absl::string_view entry,
                                  size_t max_entries) {
  if (max_entries == 0) return;
  MakeRoom(max_entries);
  PutVarint(entry.size(), &bytes_);
  bytes_.append(entry.data(), entry.size());
  ++count_;
}

std::vector<HistoryEntry> HistoryLog::Entries() const {
  std::vector<HistoryEntry> entries;
  entries.reserve(count_);
  ForEachSerialized([&](absl::string_view entry) {
    entries.emplace_back();
    entries.back().ParseFromArray(entry.data(), static_cast<int>(entry.size()));
  });
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
