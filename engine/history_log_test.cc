#include "engine/history_log.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

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

class HistoryLogTest : public ::testing::Test {
 protected:
  HistoryLog log_;
};

TEST_F(HistoryLogTest, EntriesComeBackInOrderAndIntact) {
  const std::string long_worker(300, 'x');  // A multi-byte length.
  log_.Append(Event(1, "w"), 10);
  log_.Append(Event(2, long_worker), 10);
  log_.Append(Event(3), 10);
  std::vector<HistoryEntry> e = log_.Entries();
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(log_.size(), 3u);
  EXPECT_EQ(e[0].SerializeAsString(), ToProto(Event(1, "w")).SerializeAsString());
  EXPECT_EQ(e[1].worker_id(), long_worker);
  EXPECT_EQ(e[2].time_micros(), 3);
}

// The direct encoding is byte for byte what protobuf writes for the same
// HistoryEntry, at defaults, extremes and every event and status.
TEST_F(HistoryLogTest, EncodingIsExactlyProtobufs) {
  const std::string big(200, 'e');
  std::vector<HistoryEvent> cases;
  for (int64_t time : {int64_t{0}, int64_t{1}, int64_t{-1}, int64_t{127},
                       int64_t{128}, int64_t{1700000000000000},
                       std::numeric_limits<int64_t>::min(),
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
  for (const HistoryEvent& e : cases) log_.Append(e, cases.size());
  std::vector<std::string> encoded;
  log_.ForEachSerialized(
      [&](absl::string_view entry) { encoded.emplace_back(entry); });
  ASSERT_EQ(encoded.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(encoded[i], ToProto(cases[i]).SerializeAsString());
  }
}

TEST_F(HistoryLogTest, SerializedEntriesRoundTrip) {
  log_.Append(Event(1, "a"), 10);
  log_.Append(Event(2, "b"), 10);
  HistoryLog copy;
  log_.ForEachSerialized(
      [&](absl::string_view entry) { copy.AppendSerialized(entry, 10); });
  ASSERT_EQ(copy.size(), 2u);
  std::vector<HistoryEntry> a = log_.Entries();
  std::vector<HistoryEntry> b = copy.Entries();
  ASSERT_EQ(b.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(a[i].SerializeAsString(), b[i].SerializeAsString());
  }
  // The bound applies to serialized appends too.
  copy.AppendSerialized(ToProto(Event(3)).SerializeAsString(), 2);
  b = copy.Entries();
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].time_micros(), 2);
  EXPECT_EQ(b[1].time_micros(), 3);
}

TEST_F(HistoryLogTest, OldestEntriesAreDroppedPastTheBound) {
  std::vector<std::string> workers;
  for (int i = 1; i <= 10; ++i) workers.push_back(std::string(i * 20, 'w'));
  for (int i = 1; i <= 10; ++i) log_.Append(Event(i, workers[i - 1]), 4);
  std::vector<HistoryEntry> e = log_.Entries();
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(log_.size(), 4u);
  EXPECT_EQ(e.front().time_micros(), 7);
  EXPECT_EQ(e.back().time_micros(), 10);
  // A smaller bound later (another owner's options) cuts more at once.
  log_.Append(Event(11), 2);
  e = log_.Entries();
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e.front().time_micros(), 10);
}

TEST_F(HistoryLogTest, ZeroBoundKeepsNothing) {
  log_.Append(Event(1), 0);
  log_.AppendSerialized("x", 0);
  EXPECT_EQ(log_.size(), 0u);
  EXPECT_TRUE(log_.Entries().empty());
}

}  // namespace
}  // namespace taskwal::engine
