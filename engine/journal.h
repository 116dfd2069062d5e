#ifndef TASKWAL_ENGINE_JOURNAL_H_
#define TASKWAL_ENGINE_JOURNAL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/transition.pb.h"

namespace taskwal::engine {

// Where the engine records transitions before acknowledging them. The engine
// calls Append under its commit lock, in the order it applies records, so
// LSN order is apply order; it calls Sync after releasing that lock, so
// concurrent callers can share one sync (group commit).
class Journal {
 public:
  virtual ~Journal() = default;

  // Assigns the next LSN (the first is 1) and stages the record. Not yet
  // durable. REQUIRES: calls are serialized by the caller.
  virtual absl::StatusOr<uint64_t> Append(const Transition& record) = 0;

  // Returns once every record through `lsn` is as durable as the journal
  // promises. Safe for concurrent use. An error is sticky: every later
  // Append and Sync fails with it.
  virtual absl::Status Sync(uint64_t lsn) = 0;

  // Makes every staged record durable (written and fdatasynced), whatever
  // the journal's sync mode. Errors are sticky as for Sync.
  virtual absl::Status SyncAll() = 0;

  // Flushes what was staged. Later calls fail with kFailedPrecondition.
  virtual absl::Status Close() = 0;
};

// A journal that keeps serialized records in memory: the engine's journal
// when it has no data directory, and a recorder that tests replay from.
// Safe for concurrent use.
class MemoryJournal final : public Journal {
 public:
  absl::StatusOr<uint64_t> Append(const Transition& record) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Sync(uint64_t lsn) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status SyncAll() override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Close() override ABSL_LOCKS_EXCLUDED(mu_);

  // Serialized records, LSN i at index i - 1.
  std::vector<std::string> Records() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> records_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_JOURNAL_H_
