#ifndef TASKWAL_ENGINE_HISTORY_LOG_H_
#define TASKWAL_ENGINE_HISTORY_LOG_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "api/task.pb.h"

namespace taskwal::engine {

// A task's audit trail, kept compact because every live task carries one:
// the entries serialized back to back, each preceded by its length as a
// varint, in one string (a fresh task's single entry fits in the string
// itself, with no allocation). Decoded only when History() or a snapshot
// asks. Not thread-safe; guarded like the task it belongs to.
class HistoryLog {
 public:
  // Appends e; when that makes more than max_entries, drops the oldest.
  // max_entries 0 keeps nothing.
  void Append(const HistoryEntry& e, size_t max_entries);

  // The entries, oldest first.
  std::vector<HistoryEntry> Entries() const;

  size_t size() const { return count_; }

 private:
  // Removes the n oldest entries.
  void DropOldest(size_t n);

  std::string bytes_;
  uint32_t count_ = 0;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_HISTORY_LOG_H_
