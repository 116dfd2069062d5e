#include "engine/history_log.h"

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "google/protobuf/stubs/logging.h"
#include "gtest/gtest.h"

namespace taskwal::engine {
namespace {

HistoryEvent Event(int64_t time, absl::string_view worker = "") {
  HistoryEvent h;
  h.time_micros = time;
  h.event = HistoryEntry::CLAIMED;
  h.worker_id = worker;
  h.attempt = static_cast<uint32_t>(time);
  return h;
}

HistoryEntry ToProto(const HistoryEvent& e) {
  HistoryEntry h;
  h.set_time_micros(e.time_micros);
  h.set_event(e.event);
  h.set_from(e.from);
  h.set_to(e.to);
  h.set_worker_id(std::string(e.worker_id));
  h.set_attempt(e.attempt);
  h.set_error(std::string(e.error));
  return h;
}

HistoryEvent At(int64_t time, HistoryEntry::Event event, TaskStatus from,
                TaskStatus to, uint32_t attempt, absl::string_view worker) {
  return HistoryEvent{time, event, from, to, attempt, worker, {}};
}

class HistoryLogTest : public ::testing::Test {
 protected:
  HistoryLog log_;
};

TEST_F(HistoryLogTest, EntriesComeBackInOrderAndIntact) {
  const std::string long_worker(300, 'x');  // A multi-byte length.
  log_.Append(Event(1, "w"), 10, 0);
  log_.Append(Event(2, long_worker), 10, 0);
  log_.Append(Event(3), 10, 0);
  std::vector<HistoryEntry> e = log_.Entries(0);
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(log_.size(), 3u);
  EXPECT_EQ(e[0].SerializeAsString(),
            ToProto(Event(1, "w")).SerializeAsString());
  EXPECT_EQ(e[1].worker_id(), long_worker);
  EXPECT_EQ(e[2].time_micros(), 3);
}

// The direct encoding is byte for byte what protobuf writes for the same
// HistoryEntry, at defaults, extremes and every event and status.
TEST_F(HistoryLogTest, EncodingIsExactlyProtobufs) {
  const std::string big(200, 'e');
  std::vector<HistoryEvent> cases;
  for (int64_t time :
       {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{127}, int64_t{128},
        int64_t{1700000000000000}, std::numeric_limits<int64_t>::min(),
        std::numeric_limits<int64_t>::max()}) {
    for (int ev = 0; ev <= 8; ++ev) {
      HistoryEvent e;
      e.time_micros = time;
      e.event = static_cast<HistoryEntry::Event>(ev);
      e.from = static_cast<TaskStatus>(ev % 6);
      e.to = static_cast<TaskStatus>((ev + 3) % 6);
      e.attempt = ev == 8 ? std::numeric_limits<uint32_t>::max()
                          : static_cast<uint32_t>(ev * 100);
      e.worker_id = ev % 2 == 0 ? "" : "worker-17";
      e.error = ev % 3 == 0 ? absl::string_view() : absl::string_view(big);
      cases.push_back(e);
    }
  }
  for (const HistoryEvent& e : cases) log_.Append(e, cases.size(), 0);
  std::vector<std::string> encoded;
  log_.ForEachSerialized(
      0, [&](absl::string_view entry) { encoded.emplace_back(entry); });
  ASSERT_EQ(encoded.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(encoded[i], ToProto(cases[i]).SerializeAsString());
  }
}

// The entries of a snapshot (wire format) replace a log's entries; the
// extra bytes stay, and one that does not parse changes nothing.
TEST_F(HistoryLogTest, SerializedEntriesRoundTrip) {
  log_.Append(Event(1, "a"), 10, 0);
  log_.Append(Event(2, "b"), 10, 0);
  std::vector<std::string> wire;
  log_.ForEachSerialized(
      0, [&](absl::string_view entry) { wire.emplace_back(entry); });
  HistoryLog copy;
  copy.SetExtra({"strings"}, 0);
  copy.Append(Event(9), 10, 0);  // Replaced.
  size_t bad = 99;
  ASSERT_TRUE(copy.AssignSerialized(std::vector<std::string>{wire[0], wire[1]},
                                    0, &bad));
  EXPECT_EQ(copy.extra(), "strings");
  std::vector<HistoryEntry> a = log_.Entries(0);
  std::vector<HistoryEntry> b = copy.Entries(0);
  ASSERT_EQ(b.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(a[i].SerializeAsString(), b[i].SerializeAsString());
  }
  EXPECT_FALSE(copy.AssignSerialized(
      std::vector<std::string>{wire[0], "\x08", wire[1]}, 0, &bad));
  EXPECT_EQ(bad, 1u);
  EXPECT_EQ(copy.size(), 2u);
  EXPECT_EQ(copy.extra(), "strings");
}

// A restored submission takes no block, as a live one does; a long
// history is restored whole.
TEST_F(HistoryLogTest, AssignedEntriesLiveInlineWhenSmall) {
  const HistoryEvent submitted =
      At(50, HistoryEntry::SUBMITTED, TASK_STATUS_UNSPECIFIED, PENDING, 0, "");
  const std::string wire = ToProto(submitted).SerializeAsString();
  size_t bad = 0;
  ASSERT_TRUE(log_.AssignSerialized(std::vector<std::string>{wire},
                                    /*base_micros=*/50, &bad));
  EXPECT_FALSE(log_.allocated());
  EXPECT_EQ(log_.entry_bytes(), 4u);
  ASSERT_EQ(log_.Entries(50).size(), 1u);
  EXPECT_EQ(log_.Entries(50)[0].SerializeAsString(), wire);

  std::vector<std::string> many;
  for (int i = 0; i < 20000; ++i) {
    many.push_back(ToProto(Event(i, i % 2 ? "w" : "")).SerializeAsString());
  }
  const std::vector<absl::string_view> views(many.begin(), many.end());
  ASSERT_TRUE(log_.AssignSerialized(views, 50, &bad));
  const std::vector<HistoryEntry> e = log_.Entries(50);
  ASSERT_EQ(e.size(), many.size());
  EXPECT_EQ(e.back().SerializeAsString(), many.back());
}

// Append says how many entries it dropped, so that the owner can count
// them (Task::history_dropped).
TEST_F(HistoryLogTest, OldestEntriesAreDroppedPastTheBound) {
  std::vector<std::string> workers;
  for (int i = 1; i <= 10; ++i) workers.push_back(std::string(i * 20, 'w'));
  for (int i = 1; i <= 10; ++i) {
    EXPECT_EQ(log_.Append(Event(i, workers[i - 1]), 4, 0), i <= 4 ? 0u : 1u)
        << i;
  }
  std::vector<HistoryEntry> e = log_.Entries(0);
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(log_.size(), 4u);
  EXPECT_EQ(e.front().time_micros(), 7);
  EXPECT_EQ(e.back().time_micros(), 10);
  // A smaller bound later (another owner's options) cuts more at once.
  EXPECT_EQ(log_.Append(Event(11), 2, 0), 3u);
  e = log_.Entries(0);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e.front().time_micros(), 10);
  // A larger one drops nothing.
  EXPECT_EQ(log_.Append(Event(12), 8, 0), 0u);
  EXPECT_EQ(log_.size(), 3u);
}

// Inline entries (no block) are dropped and counted the same way.
TEST_F(HistoryLogTest, InlineEntriesAreDroppedAndCounted) {
  EXPECT_EQ(log_.Append(Event(1), 1, 0), 0u);
  EXPECT_FALSE(log_.allocated());
  EXPECT_EQ(log_.Append(Event(2), 1, 0), 1u);
  EXPECT_EQ(log_.Append(Event(3), 1, 0), 1u);
  std::vector<HistoryEntry> e = log_.Entries(0);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e.front().time_micros(), 3);
}

TEST_F(HistoryLogTest, ZeroBoundKeepsNothing) {
  EXPECT_EQ(log_.Append(Event(1), 0, 0), 1u);  // The new entry itself.
  EXPECT_EQ(log_.size(), 0u);
  EXPECT_TRUE(log_.Entries(0).empty());
  // A bound of 0 later empties a log that has entries.
  EXPECT_EQ(log_.Append(Event(3), 5, 0), 0u);
  EXPECT_EQ(log_.Append(Event(4), 5, 0), 0u);
  EXPECT_EQ(log_.Append(Event(5), 0, 0), 3u);
  EXPECT_EQ(log_.size(), 0u);
}

// A submit-claim-complete history in today's microseconds, claimed 5 s
// after submission and completed 20 ms later, takes well under half the
// bytes of its wire format; the submission alone fits inline.
TEST_F(HistoryLogTest, LifecycleIsDense) {
  const int64_t t0 = 1'790'000'000'000'000;
  const std::vector<HistoryEvent> lifecycle = {
      At(t0, HistoryEntry::SUBMITTED, TASK_STATUS_UNSPECIFIED, PENDING, 0, ""),
      At(t0 + 5'000'000, HistoryEntry::CLAIMED, PENDING, CLAIMED, 1,
         "worker-1"),
      At(t0 + 5'020'000, HistoryEntry::COMPLETED, CLAIMED, COMPLETED, 1,
         "worker-1")};
  size_t wire = 0;
  for (const HistoryEvent& e : lifecycle) {
    log_.Append(e, 32, t0);
    wire += ToProto(e).ByteSizeLong() + 1;  // With a length prefix.
    if (&e == &lifecycle[0]) {
      EXPECT_EQ(log_.entry_bytes(), 4u);
      EXPECT_FALSE(log_.allocated());
    }
  }
  EXPECT_TRUE(log_.allocated());
  EXPECT_LE(log_.entry_bytes(), 28u);
  EXPECT_LT(log_.entry_bytes() * 2, wire);
  const std::vector<HistoryEntry> e = log_.Entries(t0);
  ASSERT_EQ(e.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(e[i].SerializeAsString(),
              ToProto(lifecycle[i]).SerializeAsString());
  }
}

// Entries small enough to live inline behave as those in a block: they
// are bounded, copied, moved to a block when the log grows or gets extra
// bytes, and the base time shifts every time the same way.
TEST_F(HistoryLogTest, InlineEntriesBehaveLikeBlockEntries) {
  const int64_t base = -5;
  log_.Append(
      At(-5, HistoryEntry::SUBMITTED, TASK_STATUS_UNSPECIFIED, PENDING, 0, ""),
      3, base);
  EXPECT_FALSE(log_.allocated());
  EXPECT_EQ(log_.size(), 1u);
  HistoryLog copy(log_);
  EXPECT_FALSE(copy.allocated());
  // The bound applies to inline entries too.
  log_.Append(At(-3, HistoryEntry::CANCELLED, PENDING, CANCELLED, 0, ""), 1,
              base);
  std::vector<HistoryEntry> e = log_.Entries(base);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].time_micros(), -3);
  EXPECT_EQ(e[0].event(), HistoryEntry::CANCELLED);
  // A second entry does not fit in 7 bytes: the entries move to a block.
  copy.Append(At(-4, HistoryEntry::CANCELLED, PENDING, CANCELLED, 0, ""), 3,
              base);
  EXPECT_TRUE(copy.allocated());
  e = copy.Entries(base);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].time_micros(), -5);
  EXPECT_EQ(e[1].time_micros(), -4);
  EXPECT_EQ(e[1].to(), CANCELLED);
  // So do they when the log gets extra bytes.
  HistoryLog single;
  single.Append(
      At(7, HistoryEntry::SUBMITTED, TASK_STATUS_UNSPECIFIED, PENDING, 0, ""),
      3, base);
  EXPECT_FALSE(single.allocated());
  single.SetExtra({"strings"}, base);
  EXPECT_TRUE(single.allocated());
  EXPECT_EQ(single.extra(), "strings");
  HistoryLog moved(std::move(single));
  moved.SetExtra({}, base);
  EXPECT_EQ(moved.extra(), "");
  moved.Append(
      At(1'000'000'000, HistoryEntry::CLAIMED, PENDING, CLAIMED, 1, "w"), 3,
      base);
  e = moved.Entries(base);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].time_micros(), 7);
  EXPECT_EQ(e[1].time_micros(), 1'000'000'000);
  EXPECT_EQ(e[1].worker_id(), "w");
}

// Events and statuses past the one-byte encoding (only a crafted snapshot
// holds them) come back as they went in.
TEST_F(HistoryLogTest, OutOfRangeEnumsRoundTrip) {
  std::vector<HistoryEvent> cases;
  for (int32_t v : {15, 16, 99, -1, std::numeric_limits<int32_t>::min(),
                    std::numeric_limits<int32_t>::max()}) {
    cases.push_back(
        At(v, static_cast<HistoryEntry::Event>(v), PENDING, CLAIMED, 1, "w"));
    cases.push_back(At(v, HistoryEntry::CLAIMED, static_cast<TaskStatus>(v),
                       PENDING, 2, "w"));
    cases.push_back(At(v, HistoryEntry::FAILED, CLAIMED,
                       static_cast<TaskStatus>(v), 3, ""));
  }
  for (const HistoryEvent& e : cases) log_.Append(e, cases.size(), 0);
  const std::vector<HistoryEntry> e = log_.Entries(0);
  ASSERT_EQ(e.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(e[i].SerializeAsString(), ToProto(cases[i]).SerializeAsString());
  }
}

// An entry that names the worker of the entry before it keeps its worker
// when that entry is dropped.
TEST_F(HistoryLogTest, SharedWorkerSurvivesTheDropOfItsFirstMention) {
  log_.Append(At(10, HistoryEntry::CLAIMED, PENDING, CLAIMED, 1, "worker-7"), 8,
              0);
  log_.Append(
      At(20, HistoryEntry::COMPLETED, CLAIMED, COMPLETED, 1, "worker-7"), 8, 0);
  log_.Append(At(30, HistoryEntry::RETRIED, COMPLETED, PENDING, 0, ""), 2, 0);
  std::vector<HistoryEntry> e = log_.Entries(0);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].worker_id(), "worker-7");
  EXPECT_EQ(e[0].time_micros(), 20);
  EXPECT_EQ(e[1].time_micros(), 30);
  EXPECT_EQ(e[1].worker_id(), "");
}

TEST_F(HistoryLogTest, ExtraBytesLiveBesideTheEntries) {
  log_.SetExtra({"abc", "", "de"}, 0);
  EXPECT_EQ(log_.extra(), "abcde");
  EXPECT_EQ(log_.size(), 0u);
  for (int i = 1; i <= 6; ++i) log_.Append(Event(i, "w"), 4, 0);
  EXPECT_EQ(log_.extra(), "abcde");
  ASSERT_EQ(log_.size(), 4u);
  // New extra from parts of the old one, which SetExtra replaces.
  const absl::string_view old = log_.extra();
  log_.SetExtra({old.substr(3), std::string(100, 'x'), old.substr(0, 1)}, 0);
  EXPECT_EQ(log_.extra(), "de" + std::string(100, 'x') + "a");
  std::vector<HistoryEntry> e = log_.Entries(0);
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].time_micros(), 3);
  // An event whose strings point into the extra, appended as the block
  // grows (ASan would see a read of the freed block).
  HistoryEvent h = Event(7);
  h.worker_id = log_.extra().substr(2, 100);
  h.error = log_.extra();
  log_.Append(h, 10, 0);
  e = log_.Entries(0);
  ASSERT_EQ(e.size(), 5u);
  EXPECT_EQ(e.back().worker_id(), std::string(100, 'x'));
  EXPECT_EQ(e.back().error(), "de" + std::string(100, 'x') + "a");
  // The same when the append drops the oldest entries.
  h = Event(8);
  h.worker_id = log_.extra().substr(0, 2);
  log_.Append(h, 1, 0);
  e = log_.Entries(0);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].worker_id(), "de");
  EXPECT_EQ(log_.extra(), "de" + std::string(100, 'x') + "a");
  // A copy carries both.
  HistoryLog copy(log_);
  EXPECT_EQ(copy.extra(), log_.extra());
  EXPECT_EQ(copy.size(), 1u);
  // No extra and no entries: no block at all.
  log_.SetExtra({}, 0);
  log_.Append(Event(9), 0, 0);
  EXPECT_EQ(log_.extra(), "");
  EXPECT_EQ(log_.entry_bytes(), 0u);
}

TEST_F(HistoryLogTest, WireFormatParsesAsProtobufDoes) {
  HistoryEntry with_unknown = ToProto(Event(5, "w5"));
  with_unknown.set_error("boom");
  // Unknown fields of every wire type, and a known field with the wrong
  // wire type, are skipped as protobuf skips them.
  std::string wire = with_unknown.SerializeAsString();
  wire += std::string("\x40\x07", 2);                    // 8: varint.
  wire += std::string("\x49", 1) + std::string(8, 'f');  // 9: fixed64.
  wire += std::string("\x55", 1) + std::string(4, 'f');  // 10: fixed32.
  wire += std::string("\x5a\x02zz", 4);                  // 11: bytes.
  wire += std::string("\x0a\x01z", 3);                   // 1 as bytes.
  HistoryEvent e;
  ASSERT_TRUE(HistoryLog::ParseWireFormat(wire, &e));
  std::string back;
  HistoryLog::AppendWireFormat(e, &back);
  EXPECT_EQ(back, with_unknown.SerializeAsString());
  // What protobuf rejects, so does the parse.
  for (const std::string& bad :
       {std::string("\x08"), std::string("\x08\xff"),
        std::string("\x2a\x05") + "ab", std::string("\x00\x01", 2),
        std::string("\x0b"), std::string("\x0e\x01"),
        std::string("\x09") + "abc", std::string(11, '\xff')}) {
    SCOPED_TRACE(testing::PrintToString(bad));
    HistoryEntry parsed;
    EXPECT_FALSE(parsed.ParseFromString(bad));
    EXPECT_FALSE(HistoryLog::ParseWireFormat(bad, &e));
    size_t bad_index = 0;
    EXPECT_FALSE(
        log_.AssignSerialized(std::vector<std::string>{bad}, 0, &bad_index));
  }
  EXPECT_EQ(log_.size(), 0u);
}

// Cases where a hand-written decoder easily differs from protobuf's.
TEST_F(HistoryLogTest, WireFormatEdgesAsProtobuf) {
  const std::string hex_cases[] = {
      "2a02fffe",
      "3a0180",
      "2a03eda080",
      "2a02c080",
      "2a04f4908080",  // UTF-8
      "2a03e282ac",    // Valid UTF-8 (the euro sign).
      "0b0c",
      "5b08015c",
      "5b0b0c5c",
      "0b14",
      "0c",
      "5b0801",                  // Groups.
      "888080801001",            // A 5-byte tag, high bits dropped.
      "88808080800001",          // A 6-byte tag.
      "2a81808080800061",        // A 6-byte length.
      "2a8080808008",            // A length of 2^31.
      "08ffffffffffffffffff01",  // A 10-byte value varint.
      "0e",
      "0f01",
      "00",
      "0801",
  };
  google::protobuf::LogSilencer quiet;  // protobuf logs bad UTF-8.
  for (const std::string& hex : hex_cases) {
    const std::string bytes = absl::HexStringToBytes(hex);
    SCOPED_TRACE(hex);
    HistoryEntry parsed;
    const bool protobuf_ok = parsed.ParseFromString(bytes);
    HistoryEvent e;
    EXPECT_EQ(HistoryLog::ParseWireFormat(bytes, &e), protobuf_ok);
    if (protobuf_ok) {
      std::string ours;
      HistoryLog::AppendWireFormat(e, &ours);
      parsed.DiscardUnknownFields();  // The engine keeps none.
      EXPECT_EQ(ours, parsed.SerializeAsString());
    }
  }
  // Groups nest up to 100 deep.
  for (int depth : {100, 101}) {
    std::string nested;
    for (int i = 0; i < depth; ++i) nested += '\x5b';  // Field 11, group.
    for (int i = 0; i < depth; ++i) nested += '\x5c';
    HistoryEntry parsed;
    HistoryEvent e;
    EXPECT_EQ(HistoryLog::ParseWireFormat(nested, &e),
              parsed.ParseFromString(nested))
        << depth;
  }
}

// Random messages, well-formed and not, are accepted exactly when protobuf
// accepts them, and read as protobuf reads them.
TEST_F(HistoryLogTest, WireFormatParsesLikeProtobufOnRandomInput) {
  std::mt19937_64 rng(20261126);
  google::protobuf::LogSilencer quiet;
  auto byte = [&] { return static_cast<char>(rng() & 0xff); };
  auto varint = [&](uint64_t v, std::string* out) {
    while (v >= 0x80) {
      *out += static_cast<char>(v | 0x80);
      v >>= 7;
    }
    *out += static_cast<char>(v);
  };
  int accepted = 0;
  for (int round = 0; round < 200000; ++round) {
    std::string msg;
    const int fields = static_cast<int>(rng() % 6);
    for (int f = 0; f < fields; ++f) {
      const uint32_t number = static_cast<uint32_t>(rng() % 13);
      const uint32_t wire_type = static_cast<uint32_t>(rng() % 8);
      varint((number << 3) | wire_type, &msg);
      switch (rng() % 4) {
        case 0:
          varint(rng() >> (rng() % 64), &msg);
          break;
        case 1: {
          const size_t n = rng() % 5;
          varint(n, &msg);
          for (size_t i = 0; i < n; ++i) msg += byte();
          break;
        }
        case 2:
          for (size_t i = rng() % 9; i > 0; --i) msg += byte();
          break;
        default:
          break;
      }
    }
    if (rng() % 8 == 0 && !msg.empty()) msg.resize(rng() % msg.size());
    HistoryEntry parsed;
    const bool protobuf_ok = parsed.ParseFromString(msg);
    HistoryEvent e;
    const bool ours_ok = HistoryLog::ParseWireFormat(msg, &e);
    ASSERT_EQ(ours_ok, protobuf_ok) << absl::BytesToHexString(msg);
    if (!ours_ok) continue;
    ++accepted;
    std::string ours;
    HistoryLog::AppendWireFormat(e, &ours);
    parsed.DiscardUnknownFields();
    ASSERT_EQ(ours, parsed.SerializeAsString()) << absl::BytesToHexString(msg);
  }
  EXPECT_GT(accepted, 10000);  // The generator reaches both outcomes.
}

}  // namespace
}  // namespace taskwal::engine
