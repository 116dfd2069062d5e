#ifndef TASKWAL_WAL_LOG_TEST_UTIL_H_
#define TASKWAL_WAL_LOG_TEST_UTIL_H_

// Helpers shared by the log's tests (wal_test, log_recovery_test): durable
// files written by hand, and RecoverLog run into a plain result. For tests
// only; every function reports failures through gtest and Status.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"
#include "taskwal/env.h"
#include "wal/data_dir.h"
#include "wal/log_recovery.h"
#include "wal/status_matchers.h"

namespace taskwal::wal {

// One record as RecoverLog passed it to apply.
struct RecoveredRecord {
  uint32_t partition = 0;
  uint64_t lsn = 0;
  std::string transition;

  friend bool operator==(const RecoveredRecord& a, const RecoveredRecord& b) {
    return a.partition == b.partition && a.lsn == b.lsn &&
           a.transition == b.transition;
  }
  friend std::ostream& operator<<(std::ostream& os, const RecoveredRecord& r) {
    return os << "{partition " << r.partition << ", LSN " << r.lsn << ", \""
              << r.transition << "\"}";
  }
};

using LsnPayload = std::pair<uint64_t, std::string>;

struct Recovered {
  RecoveryResult result;
  std::vector<RecoveredRecord> records;  // In the order apply saw them.

  // (LSN, transition) of one partition's records, in the order apply saw
  // them.
  std::vector<LsnPayload> Of(uint32_t partition) const {
    std::vector<LsnPayload> out;
    for (const RecoveredRecord& r : records) {
      if (r.partition == partition) out.emplace_back(r.lsn, r.transition);
    }
    return out;
  }
};

// Distinct payloads of varying length, so that a record read at the wrong
// place, under the wrong LSN or in the wrong partition is noticed.
inline std::string Payload(uint64_t lsn, uint32_t partition = 0) {
  return absl::StrCat("p", partition, "-payload-", lsn, "-",
                      std::string(lsn % 23, static_cast<char>('a' + lsn % 26)));
}

// The records [first, last] of a partition as Payload() makes them.
inline std::vector<LsnPayload> Expected(uint64_t first, uint64_t last,
                                        uint32_t partition = 0) {
  std::vector<LsnPayload> records;
  for (uint64_t lsn = first; lsn <= last; ++lsn) {
    records.emplace_back(lsn, Payload(lsn, partition));
  }
  return records;
}

// Runs RecoverLog on dir; before_change counts its calls in
// *before_change_calls when given.
inline absl::StatusOr<Recovered> RecoverDir(
    Env* env, const std::string& dir, const LogRecoveryOptions& options,
    int* before_change_calls = nullptr) {
  Recovered out;
  absl::StatusOr<RecoveryResult> result = RecoverLog(
      env, dir, options,
      [&](uint32_t partition, uint64_t lsn, absl::string_view transition,
          const std::shared_ptr<const std::string>& buffer) {
        // The view lies in the buffer handed along with it.
        EXPECT_NE(buffer, nullptr);
        if (buffer != nullptr) {
          EXPECT_GE(transition.data(), buffer->data());
          EXPECT_LE(transition.data() + transition.size(),
                    buffer->data() + buffer->size());
        }
        out.records.push_back(
            RecoveredRecord{partition, lsn, std::string(transition)});
        return absl::OkStatus();
      },
      [&] {
        if (before_change_calls != nullptr) ++*before_change_calls;
        return absl::OkStatus();
      });
  if (!result.ok()) return result.status();
  out.result = std::move(*result);
  return out;
}

// Writes a file whose contents and name are durable.
inline void WriteDurableFile(Env* env, const std::string& dir,
                             absl::string_view name,
                             absl::string_view contents) {
  const std::string path = JoinPath(dir, name);
  auto file = env->NewWritableFile(path);
  ASSERT_THAT(file, IsOk());
  ASSERT_THAT((*file)->Append(contents), IsOk());
  ASSERT_THAT((*file)->Sync(), IsOk());
  ASSERT_THAT((*file)->Close(), IsOk());
  ASSERT_THAT(env->SyncDir(dir), IsOk());
}

// Sequence numbers of the segment files in dir, ascending.
inline std::vector<uint64_t> SegmentSeqs(Env* env, const std::string& dir) {
  std::vector<uint64_t> seqs;
  absl::StatusOr<DirectoryListing> listing = ListDirectory(env, dir);
  EXPECT_THAT(listing, IsOk());
  if (!listing.ok()) return seqs;
  for (const SegmentFile& s : listing->segments) seqs.push_back(s.seq);
  return seqs;
}

inline std::vector<uint64_t> SeqsOf(const std::vector<SegmentFile>& segments) {
  std::vector<uint64_t> seqs;
  for (const SegmentFile& s : segments) seqs.push_back(s.seq);
  return seqs;
}

}  // namespace taskwal::wal

#endif  // TASKWAL_WAL_LOG_TEST_UTIL_H_
