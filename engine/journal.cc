#include "engine/journal.h"

#include "absl/strings/str_cat.h"

namespace taskwal::engine {

namespace {

absl::Status Closed() {
  return absl::FailedPreconditionError("journal is closed");
}

}  // namespace

absl::StatusOr<uint64_t> MemoryJournal::Append(uint32_t partition,
                                               const Transition& record) {
  absl::MutexLock l(&mu_);
  if (closed_) return Closed();
  if (partition >= records_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("partition ", partition, " is out of range"));
  }
  records_[partition].push_back(record.SerializeAsString());
  return records_[partition].size();
}

absl::Status MemoryJournal::AppendGroup(
    absl::Span<const uint32_t> partitions,
    absl::Span<const Transition* const> records, uint64_t* lsns) {
  absl::MutexLock l(&mu_);
  if (closed_) return Closed();
  if (partitions.size() != records.size() || partitions.size() < 2) {
    return absl::InvalidArgumentError("a group needs two or more records");
  }
  for (size_t i = 0; i < partitions.size(); ++i) {
    if (partitions[i] >= records_.size() ||
        (i > 0 && partitions[i] <= partitions[i - 1])) {
      return absl::InvalidArgumentError(
          "group partitions must ascend and be in range");
    }
  }
  for (size_t i = 0; i < partitions.size(); ++i) {
    records_[partitions[i]].push_back(records[i]->SerializeAsString());
    lsns[i] = records_[partitions[i]].size();
  }
  return absl::OkStatus();
}

absl::Status MemoryJournal::Sync(absl::Span<const PartitionLsn> records) {
  absl::MutexLock l(&mu_);
  if (closed_) return Closed();
  for (const PartitionLsn& r : records) {
    if (r.partition >= records_.size() ||
        r.lsn > records_[r.partition].size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sync to LSN ", r.lsn, " of partition ", r.partition,
                       ", which has not been appended"));
    }
  }
  return absl::OkStatus();
}

absl::Status MemoryJournal::SyncAll() {
  absl::MutexLock l(&mu_);
  if (closed_) return Closed();
  return absl::OkStatus();
}

uint64_t MemoryJournal::records() const {
  absl::MutexLock l(&mu_);
  uint64_t n = 0;
  for (const auto& partition : records_) n += partition.size();
  return n;
}

absl::Status MemoryJournal::Close() {
  absl::MutexLock l(&mu_);
  closed_ = true;
  return absl::OkStatus();
}

std::vector<std::string> MemoryJournal::Records(uint32_t partition) const {
  absl::MutexLock l(&mu_);
  if (partition >= records_.size()) return {};
  return records_[partition];
}

}  // namespace taskwal::engine
