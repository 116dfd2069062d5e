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
// preceded by its length as a varint, in one string (a fresh task's single
// entry fits in the string itself, with no allocation). Decoded only when
// History() asks; a snapshot copies the encoded entries as they are. Not
// thread-safe; guarded like the task it belongs to.
class HistoryLog {
 public:
  // Appends the entry (encoded directly, exactly as HistoryEntry would
  // serialize it); when that makes more than max_entries, drops the oldest.
  // max_entries 0 keeps nothing.
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
    size_t pos = 0;
    uint64_t size = 0;
    while (pos < bytes_.size() && GetVarint(bytes_, &pos, &size) &&
           size <= bytes_.size() - pos) {
      fn(absl::string_view(bytes_.data() + pos, size));
      pos += size;
    }
  }

  size_t size() const { return count_; }

 private:
  // Reads a varint at *pos; false if the bytes end first. The bytes are
  // only ever written by this class, so this is a consistency check, not
  // input validation.
  static bool GetVarint(const std::string& src, size_t* pos, uint64_t* v);
  // Makes room for one more entry under max_entries.
  void MakeRoom(size_t max_entries);
  // Removes the n oldest entries.
  void DropOldest(size_t n);

  std::string bytes_;
  uint32_t count_ = 0;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_HISTORY_LOG_H_
