#include "engine/wal_journal.h"

namespace taskwal::engine {

absl::StatusOr<uint64_t> WalJournal::Append(const Transition& record) {
  const size_t size = record.ByteSizeLong();
  return wal_->Append(size, [&record](char* dst) {
    record.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(dst));
  });
}

}  // namespace taskwal::engine
