#ifndef TASKWAL_ENGINE_HISTORY_LOG_H_
#define TASKWAL_ENGINE_HISTORY_LOG_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "api/task.pb.h"

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

// A task's audit trail, kept compact because every live task carries one:
// the entries in HistoryEntry's protobuf wire format, back to back, each
// preceded by its length as a varint, in one heap block that starts with
// the byte and entry counts. An empty log holds no block; the block grows
// in steps of 16 bytes (the granularity of glibc's malloc), so a lifecycle's
// few appends reallocate it only when they cross a step. Decoded only when
// History() asks; a snapshot copies the encoded entries as they are. Not
// thread-safe; guarded like the task it belongs to.
class HistoryLog {
 public:
  HistoryLog() = default;
  HistoryLog(const HistoryLog& other);
  HistoryLog& operator=(const HistoryLog&) = delete;
  HistoryLog(HistoryLog&& other) noexcept : block_(other.block_) {
    other.block_ = nullptr;
  }
  HistoryLog& operator=(HistoryLog&& other) noexcept;
  ~HistoryLog();

  // Appends the entry (encoded directly, exactly as HistoryEntry would
  // serialize it); when that makes more than max_entries, drops the oldest.
  // max_entries 0 keeps nothing. Entries are also dropped, oldest first, to
  // keep the log under 2^32 - 1 bytes; an entry larger than that alone is
  // not kept.
  void Append(const HistoryEvent& e, size_t max_entries);

  // Appends an entry already in HistoryEntry's wire format (from a
  // snapshot), as Append does.
  void AppendSerialized(absl::string_view entry, size_t max_entries);

  // The entries, oldest first. An entry that does not parse (only a
  // crafted snapshot can hold one) comes back as far as it parsed.
  std::vector<HistoryEntry> Entries() const;

  // Calls fn(entry bytes) for each entry in wire format, oldest first.
  template <typename Fn>
  void ForEachSerialized(Fn fn) const {
    const absl::string_view all = bytes();
    size_t pos = 0;
    uint64_t size = 0;
    while (pos < all.size() && GetVarint(all, &pos, &size) &&
           size <= all.size() - pos) {
      fn(all.substr(pos, size));
      pos += size;
    }
  }

  size_t size() const { return block_ == nullptr ? 0 : header().count; }

 private:
  struct Header {
    uint32_t bytes;  // Encoded entries that follow the header.
    uint32_t count;  // Entries among them.
  };

  // Reads a varint at *pos; false if the bytes end first. The bytes are
  // only ever written by this class, so this is a consistency check, not
  // input validation.
  static bool GetVarint(absl::string_view src, size_t* pos, uint64_t* v);
  // Makes room for one more entry of `size` encoded bytes under
  // max_entries and the byte limit, and returns where to write it, with
  // the counts already updated; nullptr if it cannot be kept.
  char* AppendSpace(size_t size, size_t max_entries);
  // Removes the n oldest entries.
  void DropOldest(size_t n);

  const Header& header() const { return *reinterpret_cast<Header*>(block_); }
  Header& header() { return *reinterpret_cast<Header*>(block_); }
  absl::string_view bytes() const {
    return block_ == nullptr
               ? absl::string_view()
               : absl::string_view(block_ + sizeof(Header), header().bytes);
  }

  char* block_ = nullptr;  // malloc'd: Header, then the entries.
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_HISTORY_LOG_H_
