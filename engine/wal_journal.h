#ifndef TASKWAL_ENGINE_WAL_JOURNAL_H_
#define TASKWAL_ENGINE_WAL_JOURNAL_H_

#include <cstdint>
#include <memory>

#include "engine/journal.h"
#include "wal/wal.h"

namespace taskwal::engine {

// The durable journal: transition records serialized straight into the
// write-ahead log's staging buffers, one lane per partition. Thread safety
// as Journal.
class WalJournal final : public Journal {
 public:
  explicit WalJournal(std::unique_ptr<wal::Wal> wal) : wal_(std::move(wal)) {}

  uint32_t partitions() const override { return wal_->partitions(); }
  // kInvalidArgument (not sticky, nothing staged): the record exceeds the
  // log's record size limit.
  absl::StatusOr<uint64_t> Append(uint32_t partition,
                                  const Transition& record) override;
  absl::Status AppendGroup(absl::Span<const uint32_t> partitions,
                           absl::Span<const Transition* const> records,
                           uint64_t* lsns) override;
  absl::Status Sync(absl::Span<const PartitionLsn> records) override {
    return wal_->Sync(records);
  }
  using Journal::Sync;
  absl::Status SyncAll() override { return wal_->SyncAll(); }
  absl::StatusOr<uint64_t> StartSegment() override { return wal_->Rotate(); }
  absl::Status DiscardBefore(uint64_t first_segment) override {
    return wal_->DiscardBefore(first_segment);
  }
  uint64_t records() const override { return wal_->records(); }
  JournalStats stats() const override;
  absl::Status Failure() const override { return wal_->Failure(); }
  absl::Status Close() override { return wal_->Close(); }

 private:
  const std::unique_ptr<wal::Wal> wal_;
};

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_WAL_JOURNAL_H_
