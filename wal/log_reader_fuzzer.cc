// libFuzzer target for DecodeFileHeader and LogReader. Build and run with
// tools/fuzz.sh (clang + ASan/UBSan); not part of `bazel test //...`.
//
// Each input is used twice:
//  1. as raw file contents: the header is decoded and the records are read
//     until end or error; the reader must stay within the input and keep its
//     documented invariants, whatever the bytes;
//  2. as a recipe: a well-formed log is built from the input and one kind of
//     damage is applied to it; records before the damage must come back
//     unchanged, and a single flipped bit must be reported at its record.
// Raw bytes rarely carry valid CRCs, so (2) is what reaches the success
// paths.

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/log_writer.h"

namespace taskwal::wal {
namespace {

#define FUZZ_CHECK(condition)                                               \
  do {                                                                      \
    if (!(condition)) {                                                     \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                   #condition);                                             \
      std::abort();                                                         \
    }                                                                       \
  } while (0)

// Reads `contents` from `start` to the end or the first error, checking the
// reader's invariants. Returns the records read and the final outcome.
absl::StatusOr<bool> Drain(absl::string_view contents, uint64_t start,
                           std::vector<LogReader::Record>* records) {
  LogReader reader(contents, "fuzz", start);
  const char* begin = contents.data();
  const char* end = contents.data() + contents.size();
  absl::StatusOr<bool> outcome;
  while (true) {
    const uint64_t before = reader.valid_end();
    LogReader::Record record;
    outcome = reader.Read(&record);
    FUZZ_CHECK(reader.valid_end() <= contents.size());
    if (!outcome.ok() || !*outcome) {
      FUZZ_CHECK(reader.valid_end() == before);
      break;
    }
    FUZZ_CHECK(record.offset == before);
    FUZZ_CHECK(record.payload.data() >= begin);
    FUZZ_CHECK(record.payload.data() + record.payload.size() <= end);
    FUZZ_CHECK(record.payload.size() <= kMaxRecordBytes);
    FUZZ_CHECK(reader.valid_end() ==
               record.offset + kRecordHeaderSize + record.payload.size());
    FUZZ_CHECK(IsValidRecordType(static_cast<uint8_t>(record.type)));
    // Two bytes on disk.
    FUZZ_CHECK(record.partition <= 0xffff);
    records->push_back(record);
  }
  if (outcome.ok()) {
    FUZZ_CHECK(reader.valid_end() == contents.size());
    FUZZ_CHECK(!reader.ValidRecordFollows());
  } else if (start > contents.size()) {
    FUZZ_CHECK(absl::IsInvalidArgument(outcome.status()));
  } else {
    FUZZ_CHECK(absl::IsDataLoss(outcome.status()));
    FUZZ_CHECK(reader.valid_end() < contents.size());
    reader.ValidRecordFollows();
  }
  // Errors are sticky, clean ends stay clean.
  LogReader::Record again;
  const absl::StatusOr<bool> repeat = reader.Read(&again);
  FUZZ_CHECK(repeat.status() == outcome.status());
  return outcome;
}

void FuzzRawFile(absl::string_view input) {
  std::vector<LogReader::Record> records;
  const absl::StatusOr<uint64_t> lsn =
      DecodeFileHeader(input, kSegmentMagic, "fuzz");
  if (lsn.ok()) {
    FUZZ_CHECK(input.size() >= kFileHeaderSize);
    Drain(input, kFileHeaderSize, &records).IgnoreError();
  } else {
    FUZZ_CHECK(absl::IsDataLoss(lsn.status()) ||
               absl::IsFailedPrecondition(lsn.status()));
  }
  records.clear();
  Drain(input, 0, &records).IgnoreError();
}

struct Expected {
  RecordType type;
  uint32_t partition;
  uint64_t lsn;
  std::string payload;
  uint64_t offset;
  uint64_t end;
};

enum class DamageKind {
  kNone,
  kTruncate,
  kFlipBit,
  kOverwrite,
  kAppend,
  kMaxValue = kAppend,  // for FuzzedDataProvider::ConsumeEnum
};

void FuzzBuiltLog(FuzzedDataProvider& fdp) {
  std::string log = EncodeFileHeader(kSegmentMagic, 1);
  std::vector<Expected> expected;
  const int count = fdp.ConsumeIntegralInRange<int>(0, 16);
  for (int i = 0; i < count; ++i) {
    const auto type = static_cast<RecordType>(
        fdp.ConsumeIntegralInRange<uint8_t>(kMinRecordType, kMaxRecordType));
    const uint32_t partition =
        fdp.ConsumeIntegralInRange<uint32_t>(0, kMaxPartitions - 1);
    const uint64_t lsn = fdp.ConsumeIntegral<uint64_t>();
    std::string payload = fdp.ConsumeRandomLengthString(512);
    const uint64_t offset = log.size();
    AppendRecord(type, partition, lsn, payload, &log);
    expected.push_back(
        {type, partition, lsn, std::move(payload), offset, log.size()});
  }

  const auto kind = fdp.ConsumeEnum<DamageKind>();
  // First offset whose byte differs from the well-formed log.
  uint64_t damage = log.size();
  switch (kind) {
    case DamageKind::kNone:
      break;
    case DamageKind::kTruncate:
      damage = fdp.ConsumeIntegralInRange<uint64_t>(0, log.size());
      log.resize(damage);
      break;
    case DamageKind::kFlipBit: {
      damage = fdp.ConsumeIntegralInRange<uint64_t>(0, log.size() - 1);
      const int bit = fdp.ConsumeIntegralInRange<int>(0, 7);
      log[damage] = static_cast<char>(log[damage] ^ (1 << bit));
      break;
    }
    case DamageKind::kOverwrite: {
      damage = fdp.ConsumeIntegralInRange<uint64_t>(0, log.size() - 1);
      const std::string bytes = fdp.ConsumeRandomLengthString(64);
      for (size_t i = 0; i < bytes.size() && damage + i < log.size(); ++i) {
        log[damage + i] = bytes[i];
      }
      break;
    }
    case DamageKind::kAppend:
      log += fdp.ConsumeRemainingBytesAsString();
      break;
  }

  const bool header_intact = damage >= kFileHeaderSize;
  const absl::StatusOr<uint64_t> header =
      DecodeFileHeader(log, kSegmentMagic, "fuzz");
  if (header_intact) FUZZ_CHECK(header.ok() && *header == 1);
  if (kind == DamageKind::kFlipBit && !header_intact) {
    FUZZ_CHECK(absl::IsDataLoss(header.status()));
  }
  if (log.size() < kFileHeaderSize) return;

  std::vector<LogReader::Record> records;
  const absl::StatusOr<bool> outcome = Drain(log, kFileHeaderSize, &records);
  // Every record that ends before the damage comes back unchanged.
  size_t intact = 0;
  while (intact < expected.size() && expected[intact].end <= damage) ++intact;
  FUZZ_CHECK(records.size() >= intact);
  for (size_t i = 0; i < intact && i < records.size(); ++i) {
    FUZZ_CHECK(records[i].type == expected[i].type);
    FUZZ_CHECK(records[i].partition == expected[i].partition);
    FUZZ_CHECK(records[i].lsn == expected[i].lsn);
    FUZZ_CHECK(records[i].offset == expected[i].offset);
    FUZZ_CHECK(records[i].payload == expected[i].payload);
  }
  if (kind == DamageKind::kNone) {
    FUZZ_CHECK(outcome.ok() && !*outcome);
    FUZZ_CHECK(records.size() == expected.size());
  }
  if (kind == DamageKind::kFlipBit && header_intact) {
    // A CRC detects every single-bit error: damage at the hit record only.
    FUZZ_CHECK(absl::IsDataLoss(outcome.status()));
    FUZZ_CHECK(records.size() == intact);
  }
}

}  // namespace
}  // namespace taskwal::wal

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  taskwal::wal::FuzzRawFile(input);
  FuzzedDataProvider fdp(data, size);
  taskwal::wal::FuzzBuiltLog(fdp);
  return 0;
}
