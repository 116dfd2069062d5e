#ifndef TASKWAL_ENGINE_JETSTREAM_FORMAT_H_
#define TASKWAL_ENGINE_JETSTREAM_FORMAT_H_

// How journal records lie in a NATS JetStream stream (wal/log_format.md,
// "JetStream journal"). Pure encoding; engine/jetstream_journal.h talks to
// NATS.
//
// The writer stages records into a frame: records of any partitions, each
// as fixed32 partition, fixed64 LSN, fixed32 length, then the serialized
// Transition. A frame is the unit of atomicity (an AppendGroup's records
// always share one). A frame is sent as one or more pieces, one stream
// message each:
//   fixed32  masked CRC32C of everything after it
//   byte     flags: kFirstPiece | kLastPiece
//   bytes    the next part of the frame
// A reader applies a frame once its last piece arrives. A frame whose last
// piece never came (its writer died) is dropped when the next frame's first
// piece arrives, or is simply the end of the stream.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace taskwal::engine::jetstream {

inline constexpr uint8_t kFirstPiece = 1;
inline constexpr uint8_t kLastPiece = 2;
inline constexpr size_t kPieceHeaderBytes = 5;
inline constexpr size_t kRecordHeaderBytes = 16;

// Appends one record to a frame being built.
void AppendRecord(std::string* frame, uint32_t partition, uint64_t lsn,
                  absl::string_view record);

// Splits a frame into pieces of at most max_piece_bytes (header included;
// REQUIRES: max_piece_bytes > kPieceHeaderBytes). An empty frame is one
// piece (a writer's fence).
std::vector<std::string> SplitFrame(absl::string_view frame,
                                    size_t max_piece_bytes);

// Calls fn for each record of a whole frame, in order. kDataLoss: the frame
// is malformed; fn's error is returned as is.
absl::Status ForEachRecord(
    absl::string_view frame,
    absl::FunctionRef<absl::Status(uint32_t partition, uint64_t lsn,
                                   absl::string_view record)>
        fn);

// Puts pieces back together, in stream order.
class FrameAssembler {
 public:
  // Takes the piece stored at stream sequence `seq`. Returns true, and
  // the whole frame in *frame, when the piece ended a frame. kDataLoss
  // (naming seq): the piece fails its checksum, or is a middle piece with
  // no frame begun.
  absl::Status Add(uint64_t seq, absl::string_view piece, bool* complete,
                   std::string* frame);

  // Frames begun and dropped because a new one began first.
  uint64_t dropped() const { return dropped_; }
  // A frame is begun and not yet ended.
  bool partial() const { return in_frame_; }

 private:
  std::string buffer_;
  bool in_frame_ = false;
  uint64_t dropped_ = 0;
};

}  // namespace taskwal::engine::jetstream

#endif  // TASKWAL_ENGINE_JETSTREAM_FORMAT_H_
