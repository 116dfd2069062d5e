#include "engine/jetstream_format.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "wal/coding.h"
#include "wal/crc32c.h"

namespace taskwal::engine::jetstream {

void AppendRecord(std::string* frame, uint32_t partition, uint64_t lsn,
                  absl::string_view record) {
  wal::PutFixed32(frame, partition);
  wal::PutFixed64(frame, lsn);
  wal::PutFixed32(frame, static_cast<uint32_t>(record.size()));
  frame->append(record.data(), record.size());
}

std::vector<std::string> SplitFrame(absl::string_view frame,
                                    size_t max_piece_bytes) {
  const size_t room = max_piece_bytes - kPieceHeaderBytes;
  std::vector<std::string> pieces;
  size_t pos = 0;
  do {
    const size_t n = std::min(room, frame.size() - pos);
    uint8_t flags = 0;
    if (pos == 0) flags |= kFirstPiece;
    if (pos + n == frame.size()) flags |= kLastPiece;
    std::string piece(kPieceHeaderBytes, '\0');
    piece[4] = static_cast<char>(flags);
    piece.append(frame.data() + pos, n);
    wal::EncodeFixed32(piece.data(), wal::crc32c::Mask(wal::crc32c::Value(
                                         piece.data() + 4, piece.size() - 4)));
    pieces.push_back(std::move(piece));
    pos += n;
  } while (pos < frame.size());
  return pieces;
}

absl::Status ForEachRecord(
    absl::string_view frame,
    absl::FunctionRef<absl::Status(uint32_t, uint64_t, absl::string_view)> fn) {
  size_t pos = 0;
  while (pos < frame.size()) {
    if (frame.size() - pos < kRecordHeaderBytes) {
      return absl::DataLossError(
          absl::StrCat("a journal frame ends inside a record header at byte ",
                       pos, " of ", frame.size()));
    }
    const uint32_t partition = wal::DecodeFixed32(frame.data() + pos);
    const uint64_t lsn = wal::DecodeFixed64(frame.data() + pos + 4);
    const uint32_t size = wal::DecodeFixed32(frame.data() + pos + 12);
    pos += kRecordHeaderBytes;
    if (size > frame.size() - pos) {
      return absl::DataLossError(absl::StrCat(
          "a journal frame's record of ", size, " bytes at byte ", pos,
          " runs past the frame's end (", frame.size(), " bytes)"));
    }
    if (absl::Status s = fn(partition, lsn, frame.substr(pos, size)); !s.ok()) {
      return s;
    }
    pos += size;
  }
  return absl::OkStatus();
}

absl::Status FrameAssembler::Add(uint64_t seq, absl::string_view piece,
                                 bool* complete, std::string* frame) {
  *complete = false;
  if (piece.size() < kPieceHeaderBytes) {
    return absl::DataLossError(absl::StrCat("journal message ", seq, " has ",
                                            piece.size(),
                                            " bytes, too short for a piece"));
  }
  const uint32_t expected =
      wal::crc32c::Unmask(wal::DecodeFixed32(piece.data()));
  if (wal::crc32c::Value(piece.data() + 4, piece.size() - 4) != expected) {
    return absl::DataLossError(
        absl::StrCat("journal message ", seq, " fails its checksum"));
  }
  const uint8_t flags = static_cast<uint8_t>(piece[4]);
  if ((flags & ~(kFirstPiece | kLastPiece)) != 0) {
    return absl::DataLossError(absl::StrCat("journal message ", seq,
                                            " has unknown flags ", int{flags}));
  }
  if ((flags & kFirstPiece) != 0) {
    if (in_frame_) ++dropped_;
    buffer_.clear();
    in_frame_ = true;
  } else if (!in_frame_) {
    return absl::DataLossError(absl::StrCat(
        "journal message ", seq, " continues a frame that never began"));
  }
  piece.remove_prefix(kPieceHeaderBytes);
  buffer_.append(piece.data(), piece.size());
  if ((flags & kLastPiece) != 0) {
    in_frame_ = false;
    frame->swap(buffer_);
    buffer_.clear();
    *complete = true;
  }
  return absl::OkStatus();
}

}  // namespace taskwal::engine::jetstream
