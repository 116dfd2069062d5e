#include "engine/wal_journal.h"

#include <vector>

#include "absl/container/inlined_vector.h"

namespace taskwal::engine {

namespace {

void Serialize(const Transition& record, char* dst) {
  record.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(dst));
}

}  // namespace

absl::StatusOr<uint64_t> WalJournal::Append(uint32_t partition,
                                            const Transition& record) {
  const size_t size = record.ByteSizeLong();
  return wal_->Append(partition, size,
                      [&record](char* dst) { Serialize(record, dst); });
}

absl::Status WalJournal::AppendGroup(
    absl::Span<const uint32_t> partitions,
    absl::Span<const Transition* const> records, uint64_t* lsns) {
  if (partitions.size() != records.size()) {
    return absl::InvalidArgumentError("one record per partition");
  }
  std::vector<std::function<void(char*)>> fills;
  fills.reserve(records.size());
  std::vector<wal::Wal::GroupPiece> pieces;
  pieces.reserve(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const Transition* record = records[i];
    fills.emplace_back([record](char* dst) { Serialize(*record, dst); });
  }
  for (size_t i = 0; i < records.size(); ++i) {
    pieces.push_back(wal::Wal::GroupPiece{
        partitions[i], records[i]->ByteSizeLong(), fills[i]});
  }
  return wal_->AppendGroup(pieces, lsns);
}

JournalStats WalJournal::stats() const {
  const wal::WalStats& w = wal_->stats();
  JournalStats s;
  s.fsyncs = w.fsyncs.load(std::memory_order_relaxed);
  s.bytes_written = w.bytes_written.load(std::memory_order_relaxed);
  s.flushes = w.flushes.load(std::memory_order_relaxed);
  s.records_flushed = w.records_flushed.load(std::memory_order_relaxed);
  return s;
}

}  // namespace taskwal::engine
