#include "engine/history_log.h"

#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <utility>

#include "engine/utf8.h"

namespace taskwal::engine {

// The dense encoding of one entry:
//
//   flags   1 byte: the event in the low 4 bits (15: see below), then
//           kWorkerFollows, kSameWorker, kErrorFollows
//   status  1 byte: from in the low 4 bits, to in the high 4 bits
//           -- or, when the event bits are 15 (an event above 14 or a
//           status above 15, which only a crafted snapshot holds): event,
//           from and to as three varints of their uint32 bits
//   time    varint: zigzag of the difference from the previous entry's
//           time (the first entry's: from the owner's base time), with
//           two's complement wrapping
//   attempt varint
//   worker  varint length, bytes; only with kWorkerFollows. kSameWorker
//           means the worker of the previous entry; neither means none.
//   error   varint length, bytes; only with kErrorFollows.
//
// Dropping old entries re-encodes the ones kept, so that the first one
// depends on nothing before it. A submission at the task's creation time
// takes 4 bytes (flags, statuses, delta 0, attempt 0), and fits inline.

namespace {

constexpr uint8_t kEventBits = 0x0f;
constexpr uint8_t kEscape = 0x0f;
constexpr uint8_t kWorkerFollows = 0x10;
constexpr uint8_t kSameWorker = 0x20;
constexpr uint8_t kErrorFollows = 0x40;

// Room left for one entry when SetExtra creates a block (a claim's entry
// with its worker id is about 16 bytes).
constexpr size_t kFirstBlockSlack = 16;

// The most a block holds, header included, so that its counts fit 32 bits.
constexpr size_t kMaxBlockBytes = std::numeric_limits<uint32_t>::max();

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

// Reads a varint from the front of *src; false if it ends first or runs
// past 10 bytes.
bool GetVarint(absl::string_view* src, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && !src->empty(); shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(src->front());
    src->remove_prefix(1);
    *v |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

bool GetBytes(absl::string_view* src, absl::string_view* out) {
  uint64_t n = 0;
  if (!GetVarint(src, &n) || n > src->size()) return false;
  *out = src->substr(0, n);
  src->remove_prefix(n);
  return true;
}

uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
int64_t UnZigZag(uint64_t u) {
  return static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
}
uint64_t TimeDelta(int64_t time, int64_t prev) {
  return ZigZag(static_cast<int64_t>(static_cast<uint64_t>(time) -
                                     static_cast<uint64_t>(prev)));
}

uint32_t Bits(int32_t v) { return static_cast<uint32_t>(v); }
bool FitsNibble(int32_t v) { return v >= 0 && v < 16; }
bool Compact(const HistoryEvent& e) {
  return e.event >= 0 && e.event < kEscape && FitsNibble(e.from) &&
         FitsNibble(e.to);
}
bool SameWorker(const HistoryEvent& e, absl::string_view prev_worker) {
  return !e.worker_id.empty() && e.worker_id == prev_worker;
}

// Block sizes follow glibc's malloc, whose chunks of 32, 48, 64... bytes
// hold 24, 40, 56... usable bytes: asking for more than that wastes nothing
// and saves a reallocation later.
size_t BlockSize(size_t used) {
  return used <= 24 ? 24 : 24 + (used - 24 + 15) / 16 * 16;
}

char* Allocate(size_t used) {
  char* block = static_cast<char*>(std::malloc(BlockSize(used)));
  if (block == nullptr) throw std::bad_alloc();
  return block;
}

// Protobuf wire format: a field's key is (number << 3) | wire type; proto3
// omits fields at their default value; our field numbers are < 16, so each
// key is one byte.
constexpr uint8_t kVarint = 0;
constexpr uint8_t kFixed64 = 1;
constexpr uint8_t kLengthDelimited = 2;
constexpr uint8_t kFixed32 = 5;

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
// int32 and enum fields are varints of their sign-extended value.
uint64_t Int32Field(int32_t v) {
  return static_cast<uint64_t>(static_cast<int64_t>(v));
}

}  // namespace

HistoryLog::HistoryLog(const HistoryLog& other) : word_(other.word_) {
  if (other.allocated()) {
    char* block = Allocate(other.used());
    std::memcpy(block, other.block(), other.used());
    SetBlock(block);
  }
}

HistoryLog& HistoryLog::operator=(HistoryLog&& other) noexcept {
  if (this != &other) {
    Reset();
    word_ = std::exchange(other.word_, 0);
  }
  return *this;
}

HistoryLog::~HistoryLog() { Reset(); }

void HistoryLog::Reset() {
  if (allocated()) std::free(block());
  word_ = 0;
}

absl::string_view HistoryLog::entries(char (&scratch)[kInlineBytes]) const {
  if (allocated()) {
    return absl::string_view(block() + sizeof(Header) + header().extra_bytes,
                             header().entry_bytes);
  }
  const size_t n = (word_ & 0xff) >> 1;  // 0 when empty.
  for (size_t i = 0; i < n; ++i) {
    scratch[i] = static_cast<char>(word_ >> (8 * (i + 1)));
  }
  return absl::string_view(scratch, n);
}

uintptr_t HistoryLog::InlineWord(const char* bytes, size_t n) {
  if (n == 0) return 0;  // Empty.
  uintptr_t word = (n << 1) | kInlineTag;
  for (size_t i = 0; i < n; ++i) {
    word |= static_cast<uintptr_t>(static_cast<uint8_t>(bytes[i]))
            << (8 * (i + 1));
  }
  return word;
}

size_t HistoryLog::entry_bytes() const {
  if (allocated()) return header().entry_bytes;
  return (word_ & 0xff) >> 1;
}

void HistoryLog::MoveToBlock() {
  if (allocated()) return;
  char scratch[kInlineBytes];
  const absl::string_view inline_entries = entries(scratch);
  char* block = Allocate(sizeof(Header) + inline_entries.size());
  *reinterpret_cast<Header*>(block) =
      Header{0, static_cast<uint32_t>(inline_entries.size())};
  if (!inline_entries.empty()) {
    std::memcpy(block + sizeof(Header), inline_entries.data(),
                inline_entries.size());
  }
  SetBlock(block);
}

bool HistoryLog::Reader::Next(HistoryEvent* e) {
  if (rest_.empty()) return false;
  const uint8_t flags = static_cast<uint8_t>(rest_.front());
  rest_.remove_prefix(1);
  uint64_t v[3];
  bool ok = true;
  if ((flags & kEventBits) == kEscape) {
    for (uint64_t& x : v) ok = ok && GetVarint(&rest_, &x);
  } else if (!rest_.empty()) {
    const uint8_t statuses = static_cast<uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    v[0] = flags & kEventBits;
    v[1] = statuses & 0x0f;
    v[2] = statuses >> 4;
  } else {
    ok = false;
  }
  uint64_t delta = 0;
  uint64_t attempt = 0;
  ok = ok && GetVarint(&rest_, &delta) && GetVarint(&rest_, &attempt);
  absl::string_view worker;
  if (flags & kWorkerFollows) {
    ok = ok && GetBytes(&rest_, &worker);
  } else if (flags & kSameWorker) {
    worker = prev_worker_;
  }
  absl::string_view error;
  if (flags & kErrorFollows) ok = ok && GetBytes(&rest_, &error);
  if (!ok) {
    rest_ = absl::string_view();
    return false;
  }
  e->event = static_cast<HistoryEntry::Event>(static_cast<int32_t>(v[0]));
  e->from = static_cast<TaskStatus>(static_cast<int32_t>(v[1]));
  e->to = static_cast<TaskStatus>(static_cast<int32_t>(v[2]));
  e->time_micros = static_cast<int64_t>(static_cast<uint64_t>(prev_time_) +
                                        static_cast<uint64_t>(UnZigZag(delta)));
  e->attempt = static_cast<uint32_t>(attempt);
  e->worker_id = worker;
  e->error = error;
  prev_time_ = e->time_micros;
  prev_worker_ = worker;
  return true;
}

size_t HistoryLog::EncodedSize(const HistoryEvent& e, int64_t prev_time,
                               absl::string_view prev_worker) {
  size_t n = 1;
  n += Compact(e) ? 1
                  : VarintSize(Bits(e.event)) + VarintSize(Bits(e.from)) +
                        VarintSize(Bits(e.to));
  n += VarintSize(TimeDelta(e.time_micros, prev_time));
  n += VarintSize(e.attempt);
  if (!e.worker_id.empty() && !SameWorker(e, prev_worker)) {
    n += VarintSize(e.worker_id.size()) + e.worker_id.size();
  }
  if (!e.error.empty()) n += VarintSize(e.error.size()) + e.error.size();
  return n;
}

char* HistoryLog::Encode(const HistoryEvent& e, int64_t prev_time,
                         absl::string_view prev_worker, char* dst) {
  const bool compact = Compact(e);
  const bool same = SameWorker(e, prev_worker);
  uint8_t flags = compact ? static_cast<uint8_t>(e.event) : kEscape;
  if (same) {
    flags |= kSameWorker;
  } else if (!e.worker_id.empty()) {
    flags |= kWorkerFollows;
  }
  if (!e.error.empty()) flags |= kErrorFollows;
  *dst++ = static_cast<char>(flags);
  if (compact) {
    *dst++ = static_cast<char>(e.from | (e.to << 4));
  } else {
    dst = PutVarint(Bits(e.event), dst);
    dst = PutVarint(Bits(e.from), dst);
    dst = PutVarint(Bits(e.to), dst);
  }
  dst = PutVarint(TimeDelta(e.time_micros, prev_time), dst);
  dst = PutVarint(e.attempt, dst);
  for (absl::string_view s :
       {same ? absl::string_view() : e.worker_id, e.error}) {
    if (s.empty()) continue;
    dst = PutVarint(s.size(), dst);
    std::memcpy(dst, s.data(), s.size());
    dst += s.size();
  }
  return dst;
}

size_t HistoryLog::Append(const HistoryEvent& e, size_t max_entries,
                          int64_t base_micros) {
  if (max_entries == 0) {  // History kept off: drop what there is, and e.
    const size_t dropped = size() + 1;
    if (entry_bytes() > 0) {
      MoveToBlock();
      Rebuild({}, nullptr, base_micros);
    }
    return dropped;
  }
  char scratch[kInlineBytes];
  const absl::string_view current = entries(scratch);
  size_t count = 0;
  int64_t last_time = base_micros;
  absl::string_view last_worker;  // May point into scratch.
  {
    Reader reader(current, base_micros);
    HistoryEvent cur;
    while (reader.Next(&cur)) {
      ++count;
      last_time = cur.time_micros;
      last_worker = cur.worker_id;
    }
  }
  const size_t size = EncodedSize(e, last_time, last_worker);
  if (count < max_entries && !allocated() &&
      current.size() + size <= kInlineBytes) {
    // Still fits in the pointer's bytes.
    char bytes[kInlineBytes];
    std::memcpy(bytes, current.data(), current.size());
    Encode(e, last_time, last_worker, bytes + current.size());
    const size_t n = current.size() + size;
    word_ = InlineWord(bytes, n);
    return 0;
  }
  // Event strings never point into inline entries; last_worker may point
  // into scratch, which outlives this call's use of it.
  MoveToBlock();
  const size_t old_used = used();
  if (count < max_entries && size <= kMaxBlockBytes - old_used) {
    // The common case: add at the end, growing the block if needed. The
    // old block is freed only after the encoding, which may read from it.
    const size_t new_used = old_used + size;
    char* grown = block();
    if (new_used > malloc_usable_size(block())) {
      grown = Allocate(new_used);
      std::memcpy(grown, block(), old_used);
    }
    Encode(e, last_time, last_worker, grown + old_used);
    reinterpret_cast<Header*>(grown)->entry_bytes +=
        static_cast<uint32_t>(size);
    if (grown != block()) {
      std::free(block());
      SetBlock(grown);
    }
    return 0;
  }
  // Old entries go: re-encode the ones kept.
  std::vector<HistoryEvent> all;
  ForEach(base_micros, [&](const HistoryEvent& h) { all.push_back(h); });
  const size_t extra_bytes = extra().size();
  size_t first = all.size() >= max_entries ? all.size() - max_entries + 1 : 0;
  while (first < all.size() && BlockBytes(extra_bytes, all, first, &e,
                                          base_micros) > kMaxBlockBytes) {
    ++first;
  }
  if (BlockBytes(extra_bytes, all, first, &e, base_micros) > kMaxBlockBytes) {
    return 1;  // Does not fit even alone: the log stays as it was.
  }
  Rebuild(absl::MakeConstSpan(all).subspan(first), &e, base_micros);
  return first;
}

size_t HistoryLog::BlockBytes(size_t extra_bytes,
                              absl::Span<const HistoryEvent> events,
                              size_t first, const HistoryEvent* add,
                              int64_t base_micros) {
  size_t n = sizeof(Header) + extra_bytes;
  int64_t prev_time = base_micros;
  absl::string_view prev_worker;
  for (size_t i = first; i < events.size(); ++i) {
    n += EncodedSize(events[i], prev_time, prev_worker);
    prev_time = events[i].time_micros;
    prev_worker = events[i].worker_id;
  }
  if (add != nullptr) n += EncodedSize(*add, prev_time, prev_worker);
  return n;
}

void HistoryLog::AssignEvents(absl::Span<const HistoryEvent> events,
                              int64_t base_micros) {
  const size_t extra_bytes = extra().size();
  size_t first = 0;
  size_t bytes = BlockBytes(extra_bytes, events, first, nullptr, base_micros);
  while (first < events.size() && bytes > kMaxBlockBytes) {
    ++first;  // Only past 4 GiB: quadratic there, linear otherwise.
    bytes = BlockBytes(extra_bytes, events, first, nullptr, base_micros);
  }
  const size_t entry_bytes = bytes - sizeof(Header) - extra_bytes;
  if (extra_bytes == 0 && entry_bytes <= kInlineBytes) {
    // Inline, as Append would have kept them (a restored submission).
    char buf[kInlineBytes];
    char* dst = buf;
    int64_t prev_time = base_micros;
    absl::string_view prev_worker;
    for (size_t i = first; i < events.size(); ++i) {
      dst = Encode(events[i], prev_time, prev_worker, dst);
      prev_time = events[i].time_micros;
      prev_worker = events[i].worker_id;
    }
    Reset();
    word_ = InlineWord(buf, entry_bytes);
    return;
  }
  MoveToBlock();  // Rebuild keeps the extra of a block.
  Rebuild(events.subspan(first), nullptr, base_micros);
}

void HistoryLog::Rebuild(absl::Span<const HistoryEvent> keep,
                         const HistoryEvent* add, int64_t base_micros) {
  const absl::string_view old_extra = extra();
  if (old_extra.empty() && keep.empty() && add == nullptr) {
    Reset();
    return;
  }
  const size_t n = BlockBytes(old_extra.size(), keep, 0, add, base_micros);
  char* fresh = Allocate(n);
  *reinterpret_cast<Header*>(fresh) =
      Header{static_cast<uint32_t>(old_extra.size()),
             static_cast<uint32_t>(n - sizeof(Header) - old_extra.size())};
  char* dst = fresh + sizeof(Header);
  if (!old_extra.empty()) std::memcpy(dst, old_extra.data(), old_extra.size());
  dst += old_extra.size();
  int64_t prev_time = base_micros;
  absl::string_view prev_worker;
  for (const HistoryEvent& h : keep) {
    dst = Encode(h, prev_time, prev_worker, dst);
    prev_time = h.time_micros;
    prev_worker = h.worker_id;
  }
  if (add != nullptr) Encode(*add, prev_time, prev_worker, dst);
  Reset();  // Only now: the events may point into the old block.
  SetBlock(fresh);
}

void HistoryLog::SetExtra(std::initializer_list<absl::string_view> parts,
                          int64_t base_micros) {
  size_t extra_bytes = 0;
  for (absl::string_view p : parts) extra_bytes += p.size();
  if (extra_bytes == 0 && extra().empty()) return;
  if (extra_bytes > kMaxBlockBytes - sizeof(Header)) {
    // Strings come from records of at most 64 MiB each.
    throw std::length_error("history log extra bytes over 4 GiB");
  }
  char scratch[kInlineBytes];
  const absl::string_view old_entries = entries(scratch);
  if (extra_bytes == 0 && old_entries.empty()) {
    Reset();
    return;
  }
  if (sizeof(Header) + extra_bytes + old_entries.size() > kMaxBlockBytes) {
    MoveToBlock();  // So that the events below point into the block.
    // Only possible with huge histories: keep the newest entries that fit.
    std::vector<HistoryEvent> all;
    ForEach(base_micros, [&](const HistoryEvent& h) { all.push_back(h); });
    size_t first = 0;
    while (first < all.size() && BlockBytes(extra_bytes, all, first, nullptr,
                                            base_micros) > kMaxBlockBytes) {
      ++first;
    }
    HistoryLog kept;
    kept.Rebuild(absl::MakeConstSpan(all).subspan(first), nullptr, base_micros);
    // `parts` may point into this block: build the new one from `kept`.
    kept.SetExtra(parts, base_micros);
    *this = std::move(kept);
    return;
  }
  // A new block: the parts may point into the old one. A log that gets its
  // first extra bytes (a task being claimed) gets an entry right after:
  // leave room for a typical one.
  const size_t n = sizeof(Header) + extra_bytes + old_entries.size();
  char* fresh = Allocate(allocated() ? n : n + kFirstBlockSlack);
  *reinterpret_cast<Header*>(fresh) =
      Header{static_cast<uint32_t>(extra_bytes),
             static_cast<uint32_t>(old_entries.size())};
  char* dst = fresh + sizeof(Header);
  for (absl::string_view p : parts) {
    if (!p.empty()) std::memcpy(dst, p.data(), p.size());
    dst += p.size();
  }
  if (!old_entries.empty()) {
    std::memcpy(dst, old_entries.data(), old_entries.size());
  }
  Reset();
  SetBlock(fresh);
}

size_t HistoryLog::size() const {
  size_t n = 0;
  ForEach(0, [&](const HistoryEvent&) { ++n; });
  return n;
}

std::vector<HistoryEntry> HistoryLog::Entries(int64_t base_micros) const {
  std::vector<HistoryEntry> out;
  ForEach(base_micros, [&](const HistoryEvent& e) {
    HistoryEntry& h = out.emplace_back();
    h.set_time_micros(e.time_micros);
    h.set_event(e.event);
    h.set_from(e.from);
    h.set_to(e.to);
    h.set_worker_id(e.worker_id.data(), e.worker_id.size());
    h.set_attempt(e.attempt);
    h.set_error(e.error.data(), e.error.size());
  });
  return out;
}

void HistoryLog::AppendWireFormat(const HistoryEvent& e, std::string* out) {
  // Field numbers and order as in HistoryEntry (api/task.proto).
  const uint64_t time = static_cast<uint64_t>(e.time_micros);
  const uint64_t event = Int32Field(e.event);
  const uint64_t from = Int32Field(e.from);
  const uint64_t to = Int32Field(e.to);
  const size_t size = VarintFieldSize(time) + VarintFieldSize(event) +
                      VarintFieldSize(from) + VarintFieldSize(to) +
                      BytesFieldSize(e.worker_id) + VarintFieldSize(e.attempt) +
                      BytesFieldSize(e.error);
  const size_t start = out->size();
  out->resize(start + size);
  char* dst = &(*out)[start];
  dst = PutVarintField(1, time, dst);
  dst = PutVarintField(2, event, dst);
  dst = PutVarintField(3, from, dst);
  dst = PutVarintField(4, to, dst);
  dst = PutBytesField(5, e.worker_id, dst);
  dst = PutVarintField(6, e.attempt, dst);
  PutBytesField(7, e.error, dst);
}

namespace {

// Protobuf's limits: a tag or a length is a varint of at most 5 bytes (a
// tag keeps its low 32 bits), a length is below 2^31, groups nest at most
// 100 deep.
constexpr int kMaxGroupDepth = 100;

bool GetTag(absl::string_view* src, uint32_t* tag) {
  uint64_t v = 0;
  for (int i = 0; i < 5; ++i) {
    if (src->empty()) return false;
    const uint8_t byte = static_cast<uint8_t>(src->front());
    src->remove_prefix(1);
    v |= static_cast<uint64_t>(byte & 0x7f) << (7 * i);
    if ((byte & 0x80) == 0) {
      *tag = static_cast<uint32_t>(v);
      return true;
    }
  }
  return false;
}

bool GetLengthDelimited(absl::string_view* src, absl::string_view* out) {
  uint32_t n = 0;
  if (!GetTag(src, &n) || n >= (1u << 31) || n > src->size()) return false;
  *out = src->substr(0, n);
  src->remove_prefix(n);
  return true;
}

// Skips the value of a field with this tag, an unknown one or one of an
// unexpected wire type; `depth` groups enclose it.
bool SkipField(absl::string_view* src, uint32_t tag, int depth) {
  uint64_t v = 0;
  absl::string_view s;
  switch (tag & 7) {
    case kVarint:
      return GetVarint(src, &v);
    case kFixed64:
      if (src->size() < 8) return false;
      src->remove_prefix(8);
      return true;
    case kLengthDelimited:
      return GetLengthDelimited(src, &s);
    case kFixed32:
      if (src->size() < 4) return false;
      src->remove_prefix(4);
      return true;
    case 3: {  // Start of a group: fields up to the matching end.
      if (depth >= kMaxGroupDepth) return false;
      while (true) {
        uint32_t inner = 0;
        if (!GetTag(src, &inner) || (inner >> 3) == 0) return false;
        if ((inner & 7) == 4) return inner == (tag & ~7u) + 4;
        if (!SkipField(src, inner, depth + 1)) return false;
      }
    }
    default:
      return false;  // An end of group with no start, or wire type 6 or 7.
  }
}

}  // namespace

bool HistoryLog::ParseWireFormat(absl::string_view bytes, HistoryEvent* e) {
  *e = HistoryEvent();
  while (!bytes.empty()) {
    uint32_t tag = 0;
    if (!GetTag(&bytes, &tag) || (tag >> 3) == 0) return false;
    const uint32_t number = tag >> 3;
    const uint32_t wire_type = tag & 7;
    uint64_t v = 0;
    absl::string_view s;
    if (wire_type == kVarint && (number <= 4 || number == 6)) {
      if (!GetVarint(&bytes, &v)) return false;
      // As protobuf does: int32 and enum fields take the low 32 bits.
      switch (number) {
        case 1:
          e->time_micros = static_cast<int64_t>(v);
          break;
        case 2:
          e->event = static_cast<HistoryEntry::Event>(static_cast<int32_t>(v));
          break;
        case 3:
          e->from = static_cast<TaskStatus>(static_cast<int32_t>(v));
          break;
        case 4:
          e->to = static_cast<TaskStatus>(static_cast<int32_t>(v));
          break;
        default:
          e->attempt = static_cast<uint32_t>(v);
          break;
      }
    } else if (wire_type == kLengthDelimited && (number == 5 || number == 7)) {
      // proto3 `string` fields: protobuf rejects a message whose string is
      // not UTF-8, even one a later occurrence of the field replaces.
      if (!GetLengthDelimited(&bytes, &s) || !IsValidUtf8(s)) return false;
      (number == 5 ? e->worker_id : e->error) = s;
    } else if (!SkipField(&bytes, tag, 0)) {
      return false;
    }
  }
  return true;
}

}  // namespace taskwal::engine
