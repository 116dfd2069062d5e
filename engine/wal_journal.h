#ifndef TASKWAL_ENGINE_WAL_JOURNAL_H_
#define TASKWAL_ENGINE_WAL_JOURNAL_H_

#include <cstdint>
#include <memory>

#include "engine/journal.h"
#include "wal/wal.h"

namespace taskwal::engine {

// The durable journal: transition records serialized straight into the
// write-ahead log's staging buffer. Thread safety as Journal.
class WalJournal final : public Journal {
 public:
  explicit WalJournal(std::unique_ptr<wal::Wal> wal) : wal_(std::move(wal)) {}

  // kInvalidArgument (not sticky, nothing staged): the record exceeds the
  // log's record size limit.
  absl::StatusOr<uint64_t> Append(const Transition& record) override;
  absl::Status Sync(uint64_t lsn) override { return wal_->Sync(lsn); }
  absl::Status SyncAll() override { return wal_->SyncAll(); }
  absl::Status Close() override { return wal_->Close(); }

  wal::Wal& wal() { return *wal_; }

 private:
  const std::unique_ptr<wal::Wal> wal_;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_WAL_JOURNAL_H_
