#include "engine/journal.h"

#include "absl/strings/str_cat.h"

namespace taskwal::engine {

absl::StatusOr<uint64_t> MemoryJournal::Append(const Transition& record) {
  absl::MutexLock l(&mu_);
  if (closed_) return absl::FailedPreconditionError("journal is closed");
  records_.push_back(record.SerializeAsString());
  return records_.size();
}

absl::Status MemoryJournal::Sync(uint64_t lsn) {
  absl::MutexLock l(&mu_);
  if (closed_) return absl::FailedPreconditionError("journal is closed");
  if (lsn > records_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sync to LSN ", lsn, " past the last record ",
                     records_.size()));
  }
  return absl::OkStatus();
}

absl::Status MemoryJournal::SyncAll() {
  absl::MutexLock l(&mu_);
  if (closed_) return absl::FailedPreconditionError("journal is closed");
  return absl::OkStatus();
}

absl::Status MemoryJournal::Close() {
  absl::MutexLock l(&mu_);
  closed_ = true;
  return absl::OkStatus();
}

std::vector<std::string> MemoryJournal::Records() const {
  absl::MutexLock l(&mu_);
  return records_;
}

}  // namespace taskwal::engine
