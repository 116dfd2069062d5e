#include "engine/jetstream_format.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "wal/status_matchers.h"

namespace taskwal::engine::jetstream {
namespace {

using ::taskwal::wal::IsOk;
using ::taskwal::wal::StatusIs;

struct Rec {
  uint32_t partition;
  uint64_t lsn;
  std::string bytes;
  bool operator==(const Rec& o) const {
    return partition == o.partition && lsn == o.lsn && bytes == o.bytes;
  }
};

std::vector<Rec> Records(absl::string_view frame) {
  std::vector<Rec> out;
  EXPECT_THAT(
      ForEachRecord(frame,
                    [&](uint32_t p, uint64_t lsn, absl::string_view bytes) {
                      out.push_back(Rec{p, lsn, std::string(bytes)});
                      return absl::OkStatus();
                    }),
      IsOk());
  return out;
}

// Feeds pieces to an assembler and returns the frames completed.
std::vector<std::string> Assemble(FrameAssembler& a,
                                  const std::vector<std::string>& pieces,
                                  uint64_t first_seq = 1) {
  std::vector<std::string> frames;
  for (size_t i = 0; i < pieces.size(); ++i) {
    bool complete = false;
    std::string frame;
    EXPECT_THAT(a.Add(first_seq + i, pieces[i], &complete, &frame), IsOk());
    if (complete) frames.push_back(frame);
  }
  return frames;
}

TEST(JetStreamFormatTest, RecordsRoundTripThroughPiecesOfEverySize) {
  std::string frame;
  std::vector<Rec> want;
  for (uint32_t i = 0; i < 50; ++i) {
    Rec r{i % 7, 100 + i, std::string(i * 37, static_cast<char>('a' + i % 26))};
    AppendRecord(&frame, r.partition, r.lsn, r.bytes);
    want.push_back(r);
  }
  for (size_t max : {size_t{6}, size_t{7}, size_t{64}, size_t{1000},
                     frame.size() + kPieceHeaderBytes, size_t{1} << 20}) {
    SCOPED_TRACE(max);
    std::vector<std::string> pieces = SplitFrame(frame, max);
    for (const std::string& p : pieces) EXPECT_LE(p.size(), max);
    FrameAssembler a;
    std::vector<std::string> frames = Assemble(a, pieces);
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(Records(frames[0]), want);
    EXPECT_FALSE(a.partial());
  }
}

TEST(JetStreamFormatTest, AnEmptyFrameIsOnePieceWithNoRecords) {
  std::vector<std::string> pieces = SplitFrame("", 64);
  ASSERT_EQ(pieces.size(), 1u);
  FrameAssembler a;
  std::vector<std::string> frames = Assemble(a, pieces);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_TRUE(Records(frames[0]).empty());
}

TEST(JetStreamFormatTest, AFrameCutShortIsDroppedWhenTheNextBegins) {
  std::string big;
  AppendRecord(&big, 1, 1, std::string(500, 'x'));
  std::string small;
  AppendRecord(&small, 2, 9, "y");
  std::vector<std::string> first = SplitFrame(big, 100);
  ASSERT_GT(first.size(), 2u);
  first.resize(2);  // Its writer died after two pieces.
  std::vector<std::string> pieces = first;
  for (std::string& p : SplitFrame(small, 100)) pieces.push_back(p);
  FrameAssembler a;
  std::vector<std::string> frames = Assemble(a, pieces);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(Records(frames[0]), (std::vector<Rec>{{2, 9, "y"}}));
  EXPECT_EQ(a.dropped(), 1u);
  // A cut-short frame at the end is simply not there.
  FrameAssembler b;
  EXPECT_TRUE(Assemble(b, first).empty());
  EXPECT_TRUE(b.partial());
}

TEST(JetStreamFormatTest, DamageIsDataLoss) {
  std::string frame;
  AppendRecord(&frame, 0, 1, "hello");
  std::string piece = SplitFrame(frame, 1024)[0];
  bool complete = false;
  std::string out;
  for (size_t i = 0; i < piece.size(); ++i) {
    std::string bad = piece;
    bad[i] ^= 0x10;
    FrameAssembler a;
    EXPECT_THAT(a.Add(7, bad, &complete, &out),
                StatusIs(absl::StatusCode::kDataLoss))
        << "byte " << i;
  }
  FrameAssembler a;
  EXPECT_THAT(a.Add(7, "abc", &complete, &out),
              StatusIs(absl::StatusCode::kDataLoss));
  // A middle piece with no frame begun.
  std::string big;
  AppendRecord(&big, 0, 1, std::string(300, 'z'));
  std::vector<std::string> pieces = SplitFrame(big, 100);
  FrameAssembler c;
  EXPECT_THAT(c.Add(3, pieces[1], &complete, &out),
              StatusIs(absl::StatusCode::kDataLoss));
  // Records that run past the frame.
  std::string cut = frame.substr(0, frame.size() - 1);
  EXPECT_THAT(
      ForEachRecord(cut, [](uint32_t, uint64_t,
                            absl::string_view) { return absl::OkStatus(); }),
      StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(ForEachRecord(frame.substr(0, 5),
                            [](uint32_t, uint64_t, absl::string_view) {
                              return absl::OkStatus();
                            }),
              StatusIs(absl::StatusCode::kDataLoss));
}

}  // namespace
}  // namespace taskwal::engine::jetstream
