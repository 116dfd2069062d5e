#include "engine/history_log.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <utility>

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

// Block sizes follow glibc's malloc, whose chunks of 32, 48, 64... bytes
// hold 24, 40, 56... usable bytes: asking for more than that wastes nothing
// and saves a reallocation later.
size_t BlockSize(size_t used) {
  return used <= 24 ? 24 : 24 + (used - 24 + 15) / 16 * 16;
}

// The most a log holds, header included, so that its counts fit 32 bits.
constexpr size_t kMaxBlockBytes = std::numeric_limits<uint32_t>::max();

}  // namespace

HistoryLog::HistoryLog(const HistoryLog& other) {
  if (other.block_ == nullptr) return;
  const size_t used = sizeof(Header) + other.header().bytes;
  block_ = static_cast<char*>(std::malloc(BlockSize(used)));
  if (block_ == nullptr) throw std::bad_alloc();
  std::memcpy(block_, other.block_, used);
}

HistoryLog& HistoryLog::operator=(HistoryLog&& other) noexcept {
  if (this != &other) {
    std::free(block_);
    block_ = std::exchange(other.block_, nullptr);
  }
  return *this;
}

HistoryLog::~HistoryLog() { std::free(block_); }

bool HistoryLog::GetVarint(absl::string_view src, size_t* pos, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *pos < src.size(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(src[(*pos)++]);
    *v |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

char* HistoryLog::AppendSpace(size_t size, size_t max_entries) {
  if (max_entries == 0 || size > kMaxBlockBytes - sizeof(Header)) {
    return nullptr;
  }
  size_t old_used = 0;
  if (block_ != nullptr) {
    if (header().count >= max_entries) {
      DropOldest(header().count - max_entries + 1);
    }
    while (header().count > 0 &&
           sizeof(Header) + header().bytes + size > kMaxBlockBytes) {
      DropOldest(1);
    }
    old_used = sizeof(Header) + header().bytes;
  }
  const size_t new_used =
      (block_ == nullptr ? sizeof(Header) : old_used) + size;
  if (block_ == nullptr || BlockSize(new_used) > BlockSize(old_used)) {
    // The block always holds at least BlockSize(used) bytes: it only
    // shrinks in use (DropOldest), never in size.
    char* grown =
        static_cast<char*>(std::realloc(block_, BlockSize(new_used)));
    if (grown == nullptr) throw std::bad_alloc();
    if (block_ == nullptr) {
      *reinterpret_cast<Header*>(grown) = Header{0, 0};
    }
    block_ = grown;
  }
  Header& h = header();
  char* dst = block_ + sizeof(Header) + h.bytes;
  h.bytes += static_cast<uint32_t>(size);
  ++h.count;
  return dst;
}

void HistoryLog::Append(const HistoryEvent& e, size_t max_entries) {
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
  char* dst = AppendSpace(VarintSize(size) + size, max_entries);
  if (dst == nullptr) return;
  dst = PutVarint(size, dst);
  dst = PutVarintField(1, time, dst);
  dst = PutVarintField(2, event, dst);
  dst = PutVarintField(3, from, dst);
  dst = PutVarintField(4, to, dst);
  dst = PutBytesField(5, e.worker_id, dst);
  dst = PutVarintField(6, e.attempt, dst);
  PutBytesField(7, e.error, dst);
}

void HistoryLog::AppendSerialized(absl::string_view entry,
                                  size_t max_entries) {
  char* dst =
      AppendSpace(VarintSize(entry.size()) + entry.size(), max_entries);
  if (dst == nullptr) return;
  dst = PutVarint(entry.size(), dst);
  if (!entry.empty()) std::memcpy(dst, entry.data(), entry.size());
}

std::vector<HistoryEntry> HistoryLog::Entries() const {
  std::vector<HistoryEntry> entries;
  entries.reserve(size());
  ForEachSerialized([&](absl::string_view entry) {
    entries.emplace_back();
    entries.back().ParseFromArray(entry.data(), static_cast<int>(entry.size()));
  });
  return entries;
}

void HistoryLog::DropOldest(size_t n) {
  const absl::string_view all = bytes();
  size_t pos = 0;
  uint64_t size = 0;
  for (size_t i = 0; i < n && pos < all.size(); ++i) {
    if (!GetVarint(all, &pos, &size)) break;
    pos += size;
  }
  pos = std::min(pos, all.size());
  Header& h = header();
  std::memmove(block_ + sizeof(Header), block_ + sizeof(Header) + pos,
               all.size() - pos);
  h.bytes -= static_cast<uint32_t>(pos);
  h.count = n >= h.count ? 0 : h.count - static_cast<uint32_t>(n);
}

}  // namespace taskwal::engine
