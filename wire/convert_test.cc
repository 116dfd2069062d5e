#include "wire/convert.h"

#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "wire/engine.pb.h"

namespace taskwal::wire {
namespace {

// Stats cross the wire as bytes; what comes out is what went in.
taskwal::EngineStats RoundTrip(const taskwal::EngineStats& stats) {
  StatsResponse parsed;
  EXPECT_TRUE(parsed.ParseFromString(ToWire(stats).SerializeAsString()));
  return FromWire(parsed);
}

TEST(ConvertTest, StatsByTypeRoundTrip) {
  taskwal::EngineStats stats;
  stats.pending = 3;
  stats.completed = 2;
  stats.failed = 1;
  stats.tasks = 6;
  taskwal::TypeStats& mail = stats.by_type["mail"];
  mail.pending = 2;
  mail.claimed = 0;
  mail.completed = 2;
  mail.oldest_ready = absl::FromUnixMicros(1700000000123456);
  taskwal::TypeStats& odd = stats.by_type["a\"b\n caf\u00e9"];
  odd.pending = 1;  // None ready.
  odd.failed = 1;
  odd.cancelled = 0;

  const StatsResponse wire = ToWire(stats);
  ASSERT_EQ(wire.types_size(), 2);
  EXPECT_EQ(wire.types(0).type(), "a\"b\n caf\u00e9");  // Sorted by type.
  EXPECT_EQ(wire.types(0).oldest_ready_micros(), 0);    // None ready.
  EXPECT_EQ(wire.types(1).type(), "mail");
  EXPECT_EQ(wire.types(1).oldest_ready_micros(), 1700000000123456);

  const taskwal::EngineStats back = RoundTrip(stats);
  EXPECT_EQ(back.pending, 3u);
  EXPECT_EQ(back.tasks, 6u);
  ASSERT_EQ(back.by_type.size(), 2u);
  for (const auto& [type, want] : stats.by_type) {
    SCOPED_TRACE(type);
    auto it = back.by_type.find(type);
    ASSERT_NE(it, back.by_type.end());
    const taskwal::TypeStats& got = it->second;
    EXPECT_EQ(got.pending, want.pending);
    EXPECT_EQ(got.claimed, want.claimed);
    EXPECT_EQ(got.completed, want.completed);
    EXPECT_EQ(got.failed, want.failed);
    EXPECT_EQ(got.cancelled, want.cancelled);
    EXPECT_EQ(got.oldest_ready, want.oldest_ready);
  }
}

TEST(ConvertTest, StatsWithoutTypesHaveAnEmptyMap) {
  taskwal::EngineStats stats;
  stats.submitted = 4;
  const taskwal::EngineStats back = RoundTrip(stats);
  EXPECT_EQ(back.submitted, 4u);
  EXPECT_TRUE(back.by_type.empty());
  EXPECT_EQ(ToWire(stats).types_size(), 0);
}

}  // namespace
}  // namespace taskwal::wire
