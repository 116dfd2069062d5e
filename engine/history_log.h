#ifndef TASKWAL_ENGINE_HISTORY_LOG_H_
#define TASKWAL_ENGINE_HISTORY_LOG_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "taskwal/task.pb.h"

namespace taskwal::engine {

// One history entry as the state machine produces it: the fields of a
// HistoryEntry, without building the message.
struct HistoryEvent {
  int64_t time_micros = 0;
  HistoryEntry::Event event = HistoryEntry::EVENT_UNSPECIFIED;
  TaskStatus from = TASK_STATUS_UNSPECIFIED;
  TaskStatus to = TASK_STATUS_UNSPECIFIED;
  uint32_t attempt = 0;
  absl::string_view worker_id;
  absl::string_view error;
};

// A task's audit trail, kept compact because every live task carries one.
//
// Entries are stored in a dense encoding (see history_log.cc): event and
// statuses in one or two bytes, the time as a delta from the entry before
// (the first one's from a base time the owner passes to every call: the
// task's creation time), the worker id written once and referred to by the
// entries that follow. A submit-claim-complete history takes about 25
// bytes, a lone submission 4. Entries become HistoryEntry messages, or their
// protobuf wire format (snapshots), only when asked.
//
// Up to 7 bytes of entries live inline, in the space of the block pointer:
// a pending task's log allocates nothing. Beyond that, one heap block holds
// a header (two uint32 byte counts), then a few bytes the owner keeps there
// to save an allocation of its own (the "extra"; TaskEntry keeps its
// transition strings in it), then the entries. Block sizes follow glibc's
// malloc chunks, so a lifecycle's few appends rarely reallocate.
//
// Not thread-safe; guarded like the task it belongs to.
class HistoryLog {
 public:
  HistoryLog() = default;
  HistoryLog(const HistoryLog& other);
  HistoryLog& operator=(const HistoryLog&) = delete;
  HistoryLog(HistoryLog&& other) noexcept : word_(other.word_) {
    other.word_ = 0;
  }
  HistoryLog& operator=(HistoryLog&& other) noexcept;
  ~HistoryLog();

  // Appends the entry; when that makes more than max_entries, drops the
  // oldest. max_entries 0 keeps no entries. Entries are also dropped,
  // oldest first, to keep the block under 2^32 - 1 bytes; an entry that does
  // not fit alone is not kept. Returns how many entries this dropped, the
  // new one included if it was not kept: the entries kept plus those
  // dropped over the log's life are all the entries appended. The event's
  // strings may point into this log's extra. `base_micros` must be the same
  // in every call on one log.
  size_t Append(const HistoryEvent& e, size_t max_entries, int64_t base_micros);

  // Replaces the entries by `entries`, each in HistoryEntry's protobuf wire
  // format (a snapshot's), in time linear in their size; the extra bytes
  // stay. Fields protobuf would skip (unknown numbers, unexpected wire
  // types) are skipped. If one is not a well-formed message: false, its
  // index in *bad_index, and the log unchanged. The oldest are dropped if
  // they would take the block past 2^32 - 1 bytes.
  template <typename Range>  // Of std::string or absl::string_view.
  bool AssignSerialized(const Range& entries, int64_t base_micros,
                        size_t* bad_index) {
    absl::InlinedVector<HistoryEvent, 4> events(entries.size());
    size_t i = 0;
    for (const auto& entry : entries) {
      if (!ParseWireFormat(entry, &events[i])) {
        *bad_index = i;
        return false;
      }
      ++i;
    }
    AssignEvents(events, base_micros);
    return true;
  }

  // The entries, oldest first.
  std::vector<HistoryEntry> Entries(int64_t base_micros) const;

  // Calls fn(const HistoryEvent&) for each entry, oldest first. The event's
  // strings are valid during the call only.
  template <typename Fn>
  void ForEach(int64_t base_micros, Fn fn) const {
    char scratch[kInlineBytes];
    Reader reader(entries(scratch), base_micros);
    HistoryEvent e;
    while (reader.Next(&e)) fn(static_cast<const HistoryEvent&>(e));
  }

  // Calls fn(absl::string_view) with each entry in HistoryEntry's wire
  // format (exactly what protobuf serializes), oldest first. The bytes are
  // valid during the call only.
  template <typename Fn>
  void ForEachSerialized(int64_t base_micros, Fn fn) const {
    std::string wire;
    ForEach(base_micros, [&](const HistoryEvent& e) {
      wire.clear();
      AppendWireFormat(e, &wire);
      fn(absl::string_view(wire));
    });
  }

  // Number of entries (counted: the log keeps no count).
  size_t size() const;
  // Bytes the entries take, encoded.
  size_t entry_bytes() const;
  // Whether the log holds a heap block.
  bool allocated() const { return word_ != 0 && (word_ & kInlineTag) == 0; }

  // The owner's extra bytes, and their replacement by the concatenation of
  // `parts` (which may point into the current extra). Setting extra bytes
  // moves inline entries to a heap block, which stays while there are
  // entries.
  absl::string_view extra() const {
    return allocated() ? absl::string_view(block() + sizeof(Header),
                                           header().extra_bytes)
                       : absl::string_view();
  }
  void SetExtra(std::initializer_list<absl::string_view> parts,
                int64_t base_micros);

  // HistoryEntry's wire format for `e`, appended to *out.
  static void AppendWireFormat(const HistoryEvent& e, std::string* out);
  // Parses HistoryEntry's wire format; the strings of *e point into
  // `bytes`. False if `bytes` is not a well-formed message.
  static bool ParseWireFormat(absl::string_view bytes, HistoryEvent* e);

 private:
  struct Header {
    uint32_t extra_bytes;
    uint32_t entry_bytes;
  };

  // word_ is 0 (empty), a malloc'd block (whose low bit is 0), or inline
  // entries: the low byte is (length << 1) | kInlineTag, the next bytes up
  // hold up to kInlineBytes bytes of entries.
  static constexpr uintptr_t kInlineTag = 1;
  static constexpr size_t kInlineBytes = sizeof(uintptr_t) - 1;
  static_assert(sizeof(uintptr_t) == 8, "the inline encoding needs 64 bits");

  // Decodes entries in order; the encoding is written only by this class,
  // so a failure to decode is a bug, and it ends the iteration.
  class Reader {
   public:
    Reader(absl::string_view entries, int64_t base_micros)
        : rest_(entries), prev_time_(base_micros) {}
    // The next entry, or false at the end.
    bool Next(HistoryEvent* e);

   private:
    absl::string_view rest_;
    int64_t prev_time_;
    absl::string_view prev_worker_;
  };

  // Encoded size of e after an entry with `prev_time` and `prev_worker`
  // (the first entry follows the base time and no worker), and the
  // encoding.
  static size_t EncodedSize(const HistoryEvent& e, int64_t prev_time,
                            absl::string_view prev_worker);
  static char* Encode(const HistoryEvent& e, int64_t prev_time,
                      absl::string_view prev_worker, char* dst);

  // Bytes of a block holding `extra_bytes`, then events[first..] (as a log
  // of their own), then `add` if non-null.
  static size_t BlockBytes(size_t extra_bytes,
                           absl::Span<const HistoryEvent> events, size_t first,
                           const HistoryEvent* add, int64_t base_micros);
  // Replaces the entries by `events`, inline if they fit.
  void AssignEvents(absl::Span<const HistoryEvent> events, int64_t base_micros);
  // Replaces the storage by a block that holds the extra, the entries of
  // `keep` (re-encoded as a log of their own) and then `add` if non-null;
  // frees the old block only at the end, so the events may point into it.
  void Rebuild(absl::Span<const HistoryEvent> keep, const HistoryEvent* add,
               int64_t base_micros);
  // Moves inline entries to a heap block.
  void MoveToBlock();
  // The word that holds these n <= kInlineBytes bytes of entries inline.
  static uintptr_t InlineWord(const char* bytes, size_t n);
  // The entries' bytes: in the block, or inline, copied to `scratch`.
  absl::string_view entries(char (&scratch)[kInlineBytes]) const;

  char* block() const { return reinterpret_cast<char*>(word_); }
  const Header& header() const { return *reinterpret_cast<Header*>(block()); }
  Header& header() { return *reinterpret_cast<Header*>(block()); }
  size_t used() const {
    return sizeof(Header) + header().extra_bytes + header().entry_bytes;
  }
  void SetBlock(char* block) { word_ = reinterpret_cast<uintptr_t>(block); }
  // Frees the block if there is one and makes the log empty.
  void Reset();

  uintptr_t word_ = 0;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_HISTORY_LOG_H_
