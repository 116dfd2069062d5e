// The engine on NATS JetStream against a real 3-server nats-server cluster
// (tests/nats_cluster.h): exact replay, large records, fencing of an older
// writer, a stream leader killed under load, the lease, bad input.

#include "taskwal/jetstream.h"

#include <nats/nats.h>

#include <atomic>
#include <csignal>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/jetstream_journal.h"
#include "engine/jetstream_snapshots.h"
#include "engine/jetstream_testing.h"
#include "engine/recovery.h"
#include "engine/state_machine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "tests/engine_dump.h"
#include "tests/nats_cluster.h"
#include "wal/status_matchers.h"

namespace taskwal {
namespace {

using ::taskwal::testing::NatsCluster;
using ::taskwal::wal::IsOk;
using ::taskwal::wal::StatusIs;
using ::testing::HasSubstr;

// Ends a wait that would otherwise hang the test; never asserted as timing.
constexpr absl::Duration kBound = absl::Seconds(120);

// A connection of the test's own to the servers of `js`.
absl::StatusOr<std::unique_ptr<engine::jetstream::Connection>> TestConnection(
    const JetStreamOptions& js) {
  engine::jetstream::Config config;
  config.servers = js.servers;
  config.cluster = js.cluster;
  return engine::jetstream::Connection::Connect(config, "test");
}

class JetStreamTest : public ::testing::TestWithParam<int> {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<NatsCluster>> cluster =
        NatsCluster::Start(3, absl::StrCat(::testing::TempDir(), "/nats"));
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = cluster->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    nats_CloseAndWait(5000);
  }

  // A test that stopped half-way (a failed assertion) leaves no server
  // killed or paused behind for the tests after it.
  void TearDown() override {
    if (cluster_ == nullptr) return;
    for (int i = 0; i < cluster_->size(); ++i) {
      if (cluster_->pid(i) == 0) {
        EXPECT_THAT(cluster_->Restart(i), IsOk());
      } else {
        cluster_->Stop(i, SIGCONT).IgnoreError();  // Runs, or exited.
      }
    }
  }

  // Options for a cluster of this test's own (a stream of its own).
  JetStreamOptions Options(absl::string_view name) const {
    JetStreamOptions js;
    js.servers = cluster_->urls();
    js.cluster = absl::StrCat(name, "_r", GetParam());
    js.replicas = GetParam();
    return js;
  }

  static EngineOptions Engine(uint32_t partitions = 4) {
    EngineOptions options;
    options.partitions = partitions;
    options.maintenance_interval = absl::ZeroDuration();
    return options;
  }

  static std::unique_ptr<taskwal::Engine> MustOpen(const EngineOptions& o,
                                                   const JetStreamOptions& js) {
    absl::StatusOr<std::unique_ptr<taskwal::Engine>> engine =
        OpenJetStreamEngine(o, js);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? *std::move(engine) : nullptr;
  }

  // An engine on the cluster `name`, served by a JetStreamServer, and a
  // client of it that tries for retry_for. With one_server, all of them
  // connect to server 0 alone: that a server stopped serving is then known
  // at once where the client's requests arrive (between servers it takes
  // a moment, during which a request may be lost instead of refused).
  struct Served {
    std::unique_ptr<taskwal::Engine> engine;
    std::unique_ptr<JetStreamServer> server;
    std::unique_ptr<taskwal::Engine> client;
  };
  Served Serve(absl::string_view name, absl::Duration retry_for,
               bool one_server = false) const {
    Served s;
    JetStreamOptions js = Options(name);
    if (one_server) js.servers = cluster_->url(0);
    s.engine = MustOpen(Engine(), js);
    if (s.engine == nullptr) return s;
    absl::StatusOr<std::unique_ptr<JetStreamServer>> server =
        JetStreamServer::Start(s.engine.get(), js, JetStreamServer::Options());
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return s;
    s.server = *std::move(server);
    JetStreamOptions client_js = js;
    client_js.retry_for = retry_for;
    absl::StatusOr<std::unique_ptr<taskwal::Engine>> client =
        ConnectJetStreamEngine(client_js);
    EXPECT_TRUE(client.ok()) << client.status();
    if (client.ok()) s.client = *std::move(client);
    return s;
  }

  // The index of the server leading `stream`, once one does (until
  // deadline).
  static absl::StatusOr<int> StreamLeader(const JetStreamOptions& js,
                                          const std::string& stream,
                                          absl::Time deadline) {
    absl::StatusOr<std::unique_ptr<engine::jetstream::Connection>> conn =
        TestConnection(js);
    if (!conn.ok()) return conn.status();
    absl::StatusOr<int> leader = absl::UnavailableError("not asked yet");
    while (!leader.ok() && absl::Now() < deadline) {
      jsStreamInfo* si = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      if (js_GetStreamInfo(&si, (*conn)->js(), stream.c_str(), nullptr,
                           &jerr) == NATS_OK) {
        if (si->Cluster != nullptr && si->Cluster->Leader != nullptr) {
          leader = cluster_->IndexOf(si->Cluster->Leader);
        }
        jsStreamInfo_Destroy(si);
      }
      if (!leader.ok()) absl::SleepFor(absl::Milliseconds(100));
    }
    return leader;
  }

  static NatsCluster* cluster_;
};

NatsCluster* JetStreamTest::cluster_ = nullptr;

TaskSpec Spec(absl::string_view key, absl::string_view type = "t",
              std::string payload = "p") {
  TaskSpec spec;
  spec.idempotency_key = std::string(key);
  spec.type = std::string(type);
  spec.payload = std::move(payload);
  return spec;
}

TEST_P(JetStreamTest, ReplaysExactlyAfterReopen) {
  const JetStreamOptions js = Options("replay");
  std::string before;
  {
    std::unique_ptr<taskwal::Engine> engine = MustOpen(Engine(), js);
    ASSERT_NE(engine, nullptr);
    // Batches span partitions: one group each.
    for (int b = 0; b < 10; ++b) {
      std::vector<TaskSpec> specs;
      for (int i = 0; i < 20; ++i) {
        specs.push_back(
            Spec(absl::StrCat("k", b, "-", i), i % 2 == 0 ? "even" : "odd"));
      }
      ASSERT_THAT(engine->SubmitBatch(specs).status(), IsOk());
    }
    ASSERT_THAT(engine->Pause("odd"), IsOk());
    for (int i = 0; i < 60; ++i) {
      absl::StatusOr<ClaimedTask> claim = engine->ClaimNext("w", {});
      ASSERT_TRUE(claim.ok()) << claim.status();
      if (i % 3 == 0) {
        ASSERT_THAT(engine->Fail(claim->claim, "boom"), IsOk());
      } else if (i % 3 == 1) {
        ASSERT_THAT(engine->Complete(claim->claim, "done"), IsOk());
      } else {
        ASSERT_TRUE(engine->Heartbeat(claim->claim, absl::Minutes(5)).ok());
      }
    }
    ASSERT_THAT(engine->Resume("odd"), IsOk());
    before = test_util::Dump(engine.get());
    ASSERT_THAT(engine->Close(), IsOk());
  }
  std::unique_ptr<taskwal::Engine> engine = MustOpen(Engine(0), js);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(test_util::Dump(engine.get()), before);
  // It goes on from there, and again replays exactly.
  ASSERT_TRUE(engine->Submit(Spec("after")).ok());
  const std::string after = test_util::Dump(engine.get());
  ASSERT_THAT(engine->Close(), IsOk());
  engine = MustOpen(Engine(), js);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(test_util::Dump(engine.get()), after);
}

TEST_P(JetStreamTest, RecordsLargerThanAMessageSpanSeveral) {
  const JetStreamOptions js = Options("large");
  std::string payload(3 << 20, '\0');
  for (size_t i = 0; i < payload.size(); ++i) {
    payload[i] = static_cast<char>(i * 7919 % 251);
  }
  EngineOptions options = Engine();
  options.max_payload_bytes = 8 << 20;
  {
    std::unique_ptr<taskwal::Engine> engine = MustOpen(options, js);
    ASSERT_NE(engine, nullptr);
    ASSERT_TRUE(engine->Submit(Spec("big", "t", payload)).ok());
    ASSERT_TRUE(engine->Submit(Spec("small")).ok());
    ASSERT_THAT(engine->Close(), IsOk());
  }
  std::unique_ptr<taskwal::Engine> engine = MustOpen(options, js);
  ASSERT_NE(engine, nullptr);
  absl::StatusOr<Task> big = engine->GetByIdempotencyKey("big");
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_TRUE(big->payload() == payload);
  EXPECT_TRUE(engine->GetByIdempotencyKey("small").ok());
}

TEST_P(JetStreamTest, ANewWriterDeposesTheOldOne) {
  const JetStreamOptions js = Options("fence");
  std::unique_ptr<taskwal::Engine> old_engine = MustOpen(Engine(), js);
  ASSERT_NE(old_engine, nullptr);
  ASSERT_TRUE(old_engine->Submit(Spec("before")).ok());
  // A second engine takes over without asking anyone (no lease): its fence
  // alone must stop the first.
  std::unique_ptr<taskwal::Engine> new_engine = MustOpen(Engine(), js);
  ASSERT_NE(new_engine, nullptr);
  EXPECT_TRUE(new_engine->GetByIdempotencyKey("before").ok());
  // The engine's sticky error: no more writes, reads go on.
  EXPECT_THAT(
      old_engine->Submit(Spec("late")).status(),
      StatusIs(absl::StatusCode::kInternal, HasSubstr("no longer leads")));
  EXPECT_THAT(
      old_engine->Submit(Spec("later")).status(),
      StatusIs(absl::StatusCode::kInternal, HasSubstr("no longer leads")));
  EXPECT_TRUE(old_engine->GetByIdempotencyKey("before").ok());
  EXPECT_FALSE(old_engine->Health().ok());
  ASSERT_TRUE(new_engine->Submit(Spec("after")).ok());
  old_engine.reset();
  ASSERT_THAT(new_engine->Close(), IsOk());
  std::unique_ptr<taskwal::Engine> engine = MustOpen(Engine(), js);
  ASSERT_NE(engine, nullptr);
  EXPECT_TRUE(engine->GetByIdempotencyKey("before").ok());
  EXPECT_TRUE(engine->GetByIdempotencyKey("after").ok());
  EXPECT_THAT(engine->GetByIdempotencyKey("late").status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(engine->GetByIdempotencyKey("later").status(),
              StatusIs(absl::StatusCode::kNotFound));
}

// The stream's state, through a connection of the test's own.
struct StreamFacts {
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
};
StreamFacts Facts(const JetStreamOptions& js, const std::string& stream) {
  absl::StatusOr<std::unique_ptr<engine::jetstream::Connection>> conn =
      TestConnection(js);
  EXPECT_TRUE(conn.ok()) << conn.status();
  StreamFacts facts;
  if (!conn.ok()) return facts;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  EXPECT_EQ(
      js_GetStreamInfo(&si, (*conn)->js(), stream.c_str(), nullptr, &jerr),
      NATS_OK);
  if (si == nullptr) return facts;
  facts.first_seq = si->State.FirstSeq;
  facts.last_seq = si->State.LastSeq;
  jsStreamInfo_Destroy(si);
  return facts;
}

// Removes message `seq` of `stream` behind taskwal's back (damage).
void DeleteMessage(const JetStreamOptions& js, const std::string& stream,
                   uint64_t seq) {
  absl::StatusOr<std::unique_ptr<engine::jetstream::Connection>> conn =
      TestConnection(js);
  ASSERT_TRUE(conn.ok()) << conn.status();
  jsErrCode jerr = static_cast<jsErrCode>(0);
  ASSERT_EQ(js_DeleteMsg((*conn)->js(), stream.c_str(), seq, nullptr, &jerr),
            NATS_OK);
}

void DeleteStream(const JetStreamOptions& js, const std::string& stream) {
  absl::StatusOr<std::unique_ptr<engine::jetstream::Connection>> conn =
      TestConnection(js);
  ASSERT_TRUE(conn.ok()) << conn.status();
  jsErrCode jerr = static_cast<jsErrCode>(0);
  ASSERT_EQ(js_DeleteStream((*conn)->js(), stream.c_str(), nullptr, &jerr),
            NATS_OK);
}

void Work(taskwal::Engine& engine, absl::string_view prefix, int n) {
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<SubmitResult> r =
        engine.Submit(Spec(absl::StrCat(prefix, i), i % 3 == 0 ? "a" : "b"));
    ASSERT_TRUE(r.ok()) << r.status();
    if (i % 2 == 0) {
      absl::StatusOr<ClaimedTask> claim = engine.Claim(r->task_id, "w", {});
      ASSERT_TRUE(claim.ok()) << claim.status();
      ASSERT_THAT(engine.Complete(claim->claim, "r"), IsOk());
    }
  }
}

TEST_P(JetStreamTest, SnapshotsBoundTheReplayAndPurgeTheStream) {
  const JetStreamOptions js = Options("snap");
  EngineOptions options = Engine();
  options.snapshot_every_records = 0;  // By hand only.
  std::string want;
  uint64_t records = 0;
  {
    std::unique_ptr<taskwal::Engine> engine = MustOpen(options, js);
    ASSERT_NE(engine, nullptr);
    Work(*engine, "a", 200);
    ASSERT_THAT(engine->Snapshot(), IsOk());
    Work(*engine, "b", 200);
    ASSERT_THAT(engine->Snapshot(), IsOk());
    // The journal before the first snapshot is gone; the first snapshot
    // and the journal after it stay as the way back.
    EXPECT_GT(Facts(js, engine::jetstream::StreamName(js.cluster)).first_seq,
              1u);
    Work(*engine, "c", 50);
    want = test_util::Dump(engine.get());
    absl::StatusOr<EngineStats> stats = engine->Stats();
    ASSERT_TRUE(stats.ok());
    records = stats->last_lsn;
    ASSERT_THAT(engine->Close(), IsOk());
  }
  std::unique_ptr<taskwal::Engine> engine = MustOpen(options, js);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(test_util::Dump(engine.get()), want);
  const RecoveryReport report = engine->Recovery();
  EXPECT_GT(report.snapshot_lsn, 0u);
  EXPECT_LT(report.records_replayed, records / 2);
  EXPECT_EQ(report.last_lsn, records);
  // A snapshot of nothing new changes nothing.
  ASSERT_THAT(engine->Snapshot(), IsOk());
}

TEST_P(JetStreamTest, ADamagedNewestSnapshotFallsBackToTheOneBefore) {
  const JetStreamOptions js = Options("snapdamage");
  EngineOptions options = Engine();
  options.snapshot_every_records = 0;
  std::string want;
  {
    std::unique_ptr<taskwal::Engine> engine = MustOpen(options, js);
    ASSERT_NE(engine, nullptr);
    Work(*engine, "a", 100);
    ASSERT_THAT(engine->Snapshot(), IsOk());
    Work(*engine, "b", 100);
    ASSERT_THAT(engine->Snapshot(), IsOk());
    Work(*engine, "c", 20);
    want = test_util::Dump(engine.get());
    ASSERT_THAT(engine->Close(), IsOk());
  }
  // Lose the newest snapshot's last chunk.
  const std::string snaps = engine::jetstream::SnapshotStreamName(js.cluster);
  const StreamFacts facts = Facts(js, snaps);
  DeleteMessage(js, snaps, facts.last_seq);
  if (HasFatalFailure()) return;
  std::unique_ptr<taskwal::Engine> engine = MustOpen(options, js);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(test_util::Dump(engine.get()), want);
  const RecoveryReport report = engine->Recovery();
  ASSERT_FALSE(report.notes.empty());
  EXPECT_THAT(report.notes[0], HasSubstr("does not load"));
}

// A snapshot loaded while its writer commits two more (and so prunes the
// one being loaded) is no loss: the load starts again from the newest.
TEST_P(JetStreamTest, ALoadOutrunByTwoSnapshotsStartsAgainFromTheNewest) {
  const JetStreamOptions js = Options("loadrace");
  EngineOptions options = Engine();
  options.snapshot_every_records = 0;
  std::unique_ptr<taskwal::Engine> leader = MustOpen(options, js);
  ASSERT_NE(leader, nullptr);
  Work(*leader, "a", 100);
  ASSERT_THAT(leader->Snapshot(), IsOk());
  Work(*leader, "b", 100);
  ASSERT_THAT(leader->Snapshot(), IsOk());
  engine::jetstream::Config config;
  config.servers = js.servers;
  config.cluster = js.cluster;
  absl::StatusOr<std::unique_ptr<engine::jetstream::Connection>> conn =
      engine::jetstream::Connection::Connect(config, "test");
  ASSERT_TRUE(conn.ok()) << conn.status();
  absl::StatusOr<uint64_t> newest_before =
      engine::jetstream::NewestManifestSeq(**conn, config);
  ASSERT_TRUE(newest_before.ok()) << newest_before.status();
  const uint64_t log_first =
      Facts(js, engine::jetstream::StreamName(js.cluster)).first_seq;
  int loads = 0;
  // Called before each snapshot is loaded: the first time, the writer
  // commits two snapshots, pruning the one about to be loaded.
  auto fresh = [&] {
    if (loads++ == 0) {
      Work(*leader, "c", 50);
      EXPECT_THAT(leader->Snapshot(), IsOk());
      Work(*leader, "d", 50);
      EXPECT_THAT(leader->Snapshot(), IsOk());
    }
    std::vector<std::unique_ptr<engine::StateMachine>> states;
    for (uint32_t p = 0; p < 4; ++p) {
      states.push_back(engine::NewPartitionState(options, p, 4));
    }
    return states;
  };
  std::vector<std::unique_ptr<engine::StateMachine>> states;
  absl::StatusOr<engine::jetstream::LoadedSnapshot> loaded =
      engine::jetstream::LoadNewestSnapshot(**conn, config, log_first, fresh,
                                            &states);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->found);
  EXPECT_GT(loaded->manifest_seq, *newest_before);
  EXPECT_GE(loads, 2);
}

// A message missing from the middle of the journal is data loss, not a
// purge to start again after: Open says so and writes nothing.
TEST_P(JetStreamTest, AMessageMissingMidStreamIsDataLoss) {
  const JetStreamOptions js = Options("hole");
  EngineOptions options = Engine();
  options.snapshot_every_records = 0;
  {
    std::unique_ptr<taskwal::Engine> engine = MustOpen(options, js);
    ASSERT_NE(engine, nullptr);
    Work(*engine, "a", 60);
    ASSERT_THAT(engine->Close(), IsOk());
  }
  const std::string stream = engine::jetstream::StreamName(js.cluster);
  const StreamFacts before = Facts(js, stream);
  ASSERT_GT(before.last_seq, before.first_seq + 4);
  DeleteMessage(js, stream, (before.first_seq + before.last_seq) / 2);
  if (HasFatalFailure()) return;
  const StreamFacts holed = Facts(js, stream);
  EXPECT_THAT(
      OpenJetStreamEngine(options, js).status(),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("lacks message")));
  // Refused before anything was read past the hole: at most a fence more.
  EXPECT_LE(Facts(js, stream).last_seq, holed.last_seq + 1);
}

// A stream leader just elected reports the stream as far as it has applied
// it, which can be short of what its predecessor acknowledged: the journal
// reads again instead of calling that data loss.
TEST_P(JetStreamTest, AStreamLeaderStillApplyingIsWaitedFor) {
  JetStreamOptions js = Options("applying");
  js.ack_timeout = absl::Milliseconds(300);
  std::string want;
  {
    std::unique_ptr<taskwal::Engine> engine = MustOpen(Engine(), js);
    ASSERT_NE(engine, nullptr);
    Work(*engine, "a", 20);
    {
      // Three reads see the stream two messages short: one short of what
      // was acknowledged.
      engine::jetstream::LostJournalReplyForTesting lost(3, 2);
      Work(*engine, "b", 20);
      EXPECT_TRUE(lost.reply_dropped());
      EXPECT_EQ(lost.stale_reads_left(), 0);
    }
    want = test_util::Dump(engine.get());
    ASSERT_THAT(engine->Close(), IsOk());
  }
  std::unique_ptr<taskwal::Engine> reopened = MustOpen(Engine(), js);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(test_util::Dump(reopened.get()), want);
}

// A stream that stays short of what it acknowledged lost records: the
// engine says so once retry_for has passed, and takes no more writes.
TEST_P(JetStreamTest, AStreamShortOfWhatItAcknowledgedIsDataLoss) {
  JetStreamOptions js = Options("short");
  {
    // Creating the streams may take longer than the retry_for below.
    std::unique_ptr<taskwal::Engine> engine = MustOpen(Engine(), js);
    ASSERT_NE(engine, nullptr);
    ASSERT_THAT(engine->Close(), IsOk());
  }
  js.ack_timeout = absl::Milliseconds(300);
  js.retry_for = absl::Seconds(2);
  std::unique_ptr<taskwal::Engine> engine = MustOpen(Engine(), js);
  ASSERT_NE(engine, nullptr);
  Work(*engine, "a", 20);
  engine::jetstream::LostJournalReplyForTesting lost(1 << 20, 2);
  const absl::Status failed = engine->Submit(Spec("lost")).status();
  EXPECT_THAT(failed,
              StatusIs(absl::StatusCode::kInternal, HasSubstr("DATA_LOSS")));
  EXPECT_THAT(failed, StatusIs(absl::StatusCode::kInternal,
                               HasSubstr("acknowledged this writer's")));
  // Only once the stream stayed short for retry_for.
  EXPECT_THAT(failed, StatusIs(absl::StatusCode::kInternal,
                               HasSubstr("still after 2s")));
  EXPECT_THAT(engine->Submit(Spec("after")).status(),
              StatusIs(absl::StatusCode::kInternal));
}

// The stream loses what it acknowledged (deleted here; in life, a majority
// of servers crashed within NATS's sync interval) and another writer fills
// it again past that point: the first writer's next append is refused, and
// it reports the loss, not merely that another writer leads.
TEST_P(JetStreamTest, AcknowledgedRecordsWrittenOverAreDataLoss) {
  const JetStreamOptions js = Options("refill");
  EngineOptions options = Engine();
  options.snapshot_every_records = 0;
  std::unique_ptr<taskwal::Engine> first = MustOpen(options, js);
  ASSERT_NE(first, nullptr);
  Work(*first, "a", 10);
  const std::string stream = engine::jetstream::StreamName(js.cluster);
  const uint64_t acked = Facts(js, stream).last_seq;
  DeleteStream(js, stream);
  if (HasFatalFailure()) return;
  std::unique_ptr<taskwal::Engine> second = MustOpen(options, js);
  ASSERT_NE(second, nullptr);
  for (int round = 0; Facts(js, stream).last_seq <= acked + 1; ++round) {
    ASSERT_LT(round, 100);
    Work(*second, absl::StrCat("b", round, "-"), 4);
  }
  const absl::Status lost = first->Submit(Spec("late")).status();
  EXPECT_THAT(lost,
              StatusIs(absl::StatusCode::kInternal, HasSubstr("DATA_LOSS")));
  EXPECT_THAT(lost, StatusIs(absl::StatusCode::kInternal,
                             HasSubstr("acknowledged to this writer")));
  // A stream made again under its old name can keep a restarted NATS
  // 2.9.10 server from being current (failing /healthz for the tests after
  // this one), so it goes.
  first.reset();
  ASSERT_THAT(second->Close(), IsOk());
  second.reset();
  DeleteStream(js, stream);
  DeleteStream(js, engine::jetstream::SnapshotStreamName(js.cluster));
}

TEST_P(JetStreamTest, ADeposedWriterCannotCommitASnapshot) {
  const JetStreamOptions js = Options("snapfence");
  EngineOptions options = Engine();
  options.snapshot_every_records = 0;
  std::unique_ptr<taskwal::Engine> old_engine = MustOpen(options, js);
  ASSERT_NE(old_engine, nullptr);
  Work(*old_engine, "a", 50);
  std::unique_ptr<taskwal::Engine> new_engine = MustOpen(options, js);
  ASSERT_NE(new_engine, nullptr);
  Work(*new_engine, "b", 50);
  // Everything the old one holds was acknowledged, but its manifest is
  // refused: no snapshot of it counts.
  EXPECT_FALSE(old_engine->Snapshot().ok());
  EXPECT_THAT(old_engine->Submit(Spec("late")).status(),
              StatusIs(absl::StatusCode::kInternal));
  old_engine.reset();
  const std::string want = test_util::Dump(new_engine.get());
  ASSERT_THAT(new_engine->Close(), IsOk());
  std::unique_ptr<taskwal::Engine> engine = MustOpen(options, js);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->Recovery().snapshot_lsn, 0u);
  EXPECT_EQ(test_util::Dump(engine.get()), want);
}

TEST_P(JetStreamTest, AStandbyFollowsAndTakesOverWhereItIs) {
  const JetStreamOptions js = Options("standby");
  EngineOptions options = Engine();
  options.snapshot_every_records = 0;
  std::unique_ptr<taskwal::Engine> leader = MustOpen(options, js);
  ASSERT_NE(leader, nullptr);
  Work(*leader, "a", 100);
  absl::StatusOr<std::unique_ptr<JetStreamStandby>> standby =
      JetStreamStandby::Start(options, js);
  ASSERT_TRUE(standby.ok()) << standby.status();
  // It follows what comes after it started, a snapshot included.
  Work(*leader, "b", 100);
  ASSERT_THAT(leader->Snapshot(), IsOk());
  Work(*leader, "c", 100);
  const std::string stream = engine::jetstream::StreamName(js.cluster);
  const uint64_t end = Facts(js, stream).last_seq;
  const absl::Time deadline = absl::Now() + kBound;
  while ((*standby)->position() < end && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GE((*standby)->position(), end);
  Work(*leader, "d", 10);  // Not yet read when it takes over.
  const std::string want = test_util::Dump(leader.get());
  absl::StatusOr<std::unique_ptr<taskwal::Engine>> promoted =
      (*standby)->Promote();
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  EXPECT_EQ(test_util::Dump(promoted->get()), want);
  // The old leader is fenced out; the new one writes.
  EXPECT_FALSE(leader->Submit(Spec("late")).ok());
  ASSERT_TRUE((*promoted)->Submit(Spec("new")).ok());
  EXPECT_THAT((*standby)->Promote().status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  leader.reset();
  const std::string after = test_util::Dump(promoted->get());
  ASSERT_THAT((*promoted)->Close(), IsOk());
  std::unique_ptr<taskwal::Engine> reopened = MustOpen(options, js);
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(test_util::Dump(reopened.get()), after);
}

// Back-pressure: while every NATS server is paused, a writer that does not
// wait for acknowledgements (kNone) stops once max_unacknowledged_bytes are
// outstanding, and goes on when the servers do; nothing is lost.
TEST_P(JetStreamTest, WritesWaitForRoomWhileNatsIsAway) {
  if (GetParam() != 3) GTEST_SKIP() << "pauses the whole cluster: once will do";
  JetStreamOptions js = Options("pressure");
  constexpr size_t kRoom = size_t{1} << 20;
  js.max_unacknowledged_bytes = kRoom;
  EngineOptions options = Engine();
  options.sync_mode = SyncMode::kNone;
  std::unique_ptr<taskwal::Engine> engine = MustOpen(options, js);
  ASSERT_NE(engine, nullptr);
  constexpr int kTasks = 300;
  constexpr size_t kPayload = 16 << 10;
  std::atomic<int> submitted{0};
  std::thread writer;
  // Whatever fails below, the servers go on and the writer is joined.
  bool paused = false;
  absl::Cleanup resume = [&] {
    if (paused) {
      for (int i = 0; i < cluster_->size(); ++i) {
        EXPECT_THAT(cluster_->Stop(i, SIGCONT), IsOk());
      }
    }
    if (writer.joinable()) writer.join();
  };
  for (int i = 0; i < cluster_->size(); ++i) {
    paused = true;
    ASSERT_THAT(cluster_->Stop(i, SIGSTOP), IsOk());
  }
  writer = std::thread([&] {
    for (int i = 0; i < kTasks; ++i) {
      absl::StatusOr<SubmitResult> r = engine->Submit(
          Spec(absl::StrCat("big", i), "t", std::string(kPayload, 'x')));
      if (!r.ok()) {
        ADD_FAILURE() << r.status();
        return;
      }
      submitted.fetch_add(1);
    }
  });
  // Until the room is nearly full (however slowly the writer starts), then
  // until the writer stops (for 300 ms), or is done.
  constexpr int kFits = static_cast<int>(kRoom / kPayload);
  const absl::Time deadline = absl::Now() + kBound;
  while (absl::Now() < deadline && submitted.load() < kFits - 2) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  int seen = -1;
  absl::Time since = absl::Now();
  while (absl::Now() < deadline && submitted.load() < kTasks) {
    const int now = submitted.load();
    if (now != seen) {
      seen = now;
      since = absl::Now();
    } else if (absl::Now() - since > absl::Milliseconds(300)) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  const int while_away = submitted.load();
  // It stopped because the room was full: not before, not after.
  EXPECT_GE(while_away, kFits - 2);
  EXPECT_LE(while_away, kFits + 2);
  for (int i = 0; i < cluster_->size(); ++i) {
    ASSERT_THAT(cluster_->Stop(i, SIGCONT), IsOk());
  }
  paused = false;
  writer.join();
  EXPECT_EQ(submitted.load(), kTasks);
  const std::string want = test_util::Dump(engine.get());
  ASSERT_THAT(engine->Close(), IsOk());
  engine = MustOpen(Engine(0), js);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(test_util::Dump(engine.get()), want);
}

// A standby that cannot read (its subscription lost) while the leader
// snapshots twice, so that the stream is purged past where it had read,
// takes over from the newest snapshot: whether it finds the gap when it
// reads again, or only when promoted.
TEST_P(JetStreamTest, AStandbyBehindAPurgeTakesOverFromTheNewestSnapshot) {
  for (const bool reads_again : {true, false}) {
    SCOPED_TRACE(reads_again ? "reads again" : "promoted at once");
    const JetStreamOptions js = Options(reads_again ? "behind_r" : "behind_p");
    EngineOptions options = Engine();
    options.snapshot_every_records = 0;
    std::unique_ptr<taskwal::Engine> leader = MustOpen(options, js);
    ASSERT_NE(leader, nullptr);
    Work(*leader, "a", 50);
    absl::StatusOr<std::unique_ptr<JetStreamStandby>> standby =
        JetStreamStandby::Start(options, js);
    ASSERT_TRUE(standby.ok()) << standby.status();
    const std::string stream = engine::jetstream::StreamName(js.cluster);
    engine::jetstream::SetStandbyPausedForTesting(**standby, true);
    const uint64_t read = (*standby)->position();
    Work(*leader, "b", 100);
    ASSERT_THAT(leader->Snapshot(), IsOk());
    Work(*leader, "c", 100);
    ASSERT_THAT(leader->Snapshot(), IsOk());
    ASSERT_GT(Facts(js, stream).first_seq, read + 1) << "not purged past it";
    if (reads_again) {
      engine::jetstream::SetStandbyPausedForTesting(**standby, false);
      const absl::Time deadline = absl::Now() + kBound;
      while (!engine::jetstream::StandbyFellBehindForTesting(**standby) &&
             absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(10));
      }
      ASSERT_TRUE(engine::jetstream::StandbyFellBehindForTesting(**standby))
          << "reading again, it did not find the purge";
    } else {
      EXPECT_FALSE(engine::jetstream::StandbyFellBehindForTesting(**standby));
    }
    Work(*leader, "d", 10);
    const std::string want = test_util::Dump(leader.get());
    absl::StatusOr<std::unique_ptr<taskwal::Engine>> promoted =
        (*standby)->Promote();
    ASSERT_TRUE(promoted.ok()) << promoted.status();
    EXPECT_EQ(test_util::Dump(promoted->get()), want);
    // It started before any snapshot: it loaded one to take over.
    EXPECT_GT((*promoted)->Recovery().snapshot_lsn, 0u);
    EXPECT_FALSE(leader->Submit(Spec("late")).ok());
    ASSERT_TRUE((*promoted)->Submit(Spec("new")).ok());
    ASSERT_THAT((*promoted)->Close(), IsOk());
  }
}

// A new writer fences the stream while the old one writes for eight
// threads: nothing the old one acknowledges may be missing afterwards, and
// the stream must still open. (With several messages in flight per writer
// this lost acknowledged records; engine/jetstream_journal.h says why.)
TEST_P(JetStreamTest, AFenceAmidAWriterUnderLoadLosesNothing) {
  const JetStreamOptions js = Options("fenceload");
  for (int round = 0; round < 3; ++round) {
    std::unique_ptr<taskwal::Engine> old_engine = MustOpen(Engine(), js);
    ASSERT_NE(old_engine, nullptr);
    absl::Mutex mu;
    std::vector<std::string> acked;
    std::atomic<bool> stop{false};
    std::atomic<int> ok_calls{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; !stop.load(); ++i) {
          const std::string key = absl::StrCat("r", round, "-w", t, "-", i);
          if (!old_engine->Submit(Spec(key)).ok()) return;
          ok_calls.fetch_add(1);
          absl::MutexLock l(&mu);
          acked.push_back(key);
        }
      });
    }
    // Also when an assertion returns early (a joinable thread's destructor
    // would end the whole test binary).
    absl::Cleanup join = [&] {
      stop.store(true);
      for (std::thread& t : threads) t.join();
    };
    const absl::Time deadline = absl::Now() + kBound;
    while (ok_calls.load() < 300 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    // Mid-stream, a second writer takes over.
    std::unique_ptr<taskwal::Engine> new_engine = MustOpen(Engine(), js);
    ASSERT_NE(new_engine, nullptr);
    std::move(join).Invoke();
    old_engine.reset();
    ASSERT_TRUE(new_engine->Submit(Spec(absl::StrCat("after", round))).ok());
    ASSERT_THAT(new_engine->Close(), IsOk());
    std::unique_ptr<taskwal::Engine> reopened = MustOpen(Engine(), js);
    ASSERT_NE(reopened, nullptr) << "round " << round;
    absl::MutexLock l(&mu);
    for (const std::string& key : acked) {
      ASSERT_TRUE(reopened->GetByIdempotencyKey(key).ok())
          << "acknowledged by the deposed writer, then lost: " << key;
    }
  }
}

// A server whose engine closed (its node steps down) sends its callers to
// the next leader: idempotent calls wait and try again, the others say the
// server no longer leads; none gets the closed engine's kCancelled.
TEST_P(JetStreamTest, AServerStepsDownWithNotLeader) {
  Served served = Serve("stepdown", absl::Seconds(1), /*one_server=*/true);
  ASSERT_NE(served.client, nullptr);
  taskwal::Engine& client = *served.client;
  absl::StatusOr<SubmitResult> submitted = client.Submit(Spec("a"));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  ASSERT_THAT(served.engine->Close(), IsOk());
  // Repeating Submit is harmless: it is tried again until retry_for.
  EXPECT_THAT(client.Submit(Spec("b")).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("no server answered")));
  // Retry is not repeated: the caller learns the server stepped down.
  EXPECT_THAT(
      client.Retry(submitted->task_id),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no longer leads")));
  served.server->Stop();
  // Stopped: nobody answers, and the call did not run.
  EXPECT_THAT(
      client.Retry(submitted->task_id),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("no server leads")));
}

// A ClaimNext queued behind busy server threads until its caller gave up
// never runs: it would claim a task that nobody receives, whose lease then
// runs out and costs an attempt.
TEST_P(JetStreamTest, AClaimNextWhoseCallerGaveUpDoesNotRun) {
  if (GetParam() != 1) GTEST_SKIP() << "about the server, not the stream";
  const JetStreamOptions js = Options("gaveup");
  std::unique_ptr<taskwal::Engine> engine = MustOpen(Engine(), js);
  ASSERT_NE(engine, nullptr);
  JetStreamServer::Options one_thread;
  one_thread.threads = 1;  // One ClaimNext waits at a time; others queue.
  absl::StatusOr<std::unique_ptr<JetStreamServer>> server =
      JetStreamServer::Start(engine.get(), js, one_thread);
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<std::unique_ptr<taskwal::Engine>> patient =
      ConnectJetStreamEngine(js);
  ASSERT_TRUE(patient.ok()) << patient.status();
  JetStreamOptions impatient_js = js;
  impatient_js.ack_timeout = absl::Milliseconds(100);  // Calls wait 200 ms.
  absl::StatusOr<std::unique_ptr<taskwal::Engine>> impatient =
      ConnectJetStreamEngine(impatient_js);
  ASSERT_TRUE(impatient.ok()) << impatient.status();

  // The patient worker holds the only thread for 3 s, waiting for a type
  // that never comes.
  ClaimNextOptions other;
  other.type = "other";
  other.wait = absl::Seconds(3);
  std::thread waiting([&] {
    EXPECT_THAT((*patient)->ClaimNext("patient", other).status(),
                StatusIs(absl::StatusCode::kNotFound));
  });
  absl::Cleanup join = [&] { waiting.join(); };
  absl::SleepFor(absl::Milliseconds(500));
  ClaimNextOptions t;
  t.type = "t";
  t.wait = absl::Milliseconds(300);
  // Queued behind it, the impatient worker gives up after 500 ms. (Served
  // first, were the patient call still on its way, it finds nothing and
  // asks again.)
  absl::Status impatient_status;
  for (int i = 0; i < 10; ++i) {
    impatient_status = (*impatient)->ClaimNext("impatient", t).status();
    if (!absl::IsNotFound(impatient_status)) break;
  }
  EXPECT_THAT(impatient_status, StatusIs(absl::StatusCode::kDeadlineExceeded));
  absl::StatusOr<SubmitResult> submitted = (*patient)->Submit(Spec("a"));
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  std::move(join).Invoke();
  // Calls run in the order they came: the abandoned one was next, before
  // this one, which finds the task still there.
  t.wait = absl::ZeroDuration();
  absl::StatusOr<ClaimedTask> claimed = (*patient)->ClaimNext("later", t);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  EXPECT_EQ(claimed->task.id(), submitted->task_id);
  EXPECT_EQ(claimed->attempt, 1u);
}

// ClaimNext over shards passes over a shard that nobody leads, at once
// (were it to wait for a leader, it would wait the client's retry_for,
// here 30 minutes), and claims the tasks of the others.
TEST_P(JetStreamTest, AShardWithoutALeaderDoesNotHoldUpClaimNext) {
  if (GetParam() != 1) GTEST_SKIP() << "about the client, not the stream";
  JetStreamOptions js = Options("noleader");
  js.shards = 2;
  const JetStreamOptions led = JetStreamShard(js, 0);
  std::unique_ptr<taskwal::Engine> engine = MustOpen(Engine(), led);
  ASSERT_NE(engine, nullptr);
  absl::StatusOr<std::unique_ptr<JetStreamServer>> server =
      JetStreamServer::Start(engine.get(), led, JetStreamServer::Options());
  ASSERT_TRUE(server.ok()) << server.status();
  // Shard 1 exists, and nobody serves it.
  ASSERT_NE(MustOpen(Engine(), JetStreamShard(js, 1)), nullptr);
  ASSERT_TRUE(engine->Submit(Spec("a")).ok());
  JetStreamOptions client_js = js;
  client_js.retry_for = absl::Minutes(30);
  absl::StatusOr<std::unique_ptr<taskwal::Engine>> client =
      ConnectJetStreamEngine(client_js);
  ASSERT_TRUE(client.ok()) << client.status();
  // Each call starts at another shard: both orders.
  EXPECT_THAT((*client)->ClaimNext("w", ClaimNextOptions()).status(), IsOk());
  EXPECT_THAT((*client)->ClaimNext("w", ClaimNextOptions()).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("shard 1 of 2")));
  ClaimNextOptions waiting;
  waiting.wait = absl::Milliseconds(300);
  EXPECT_THAT((*client)->ClaimNext("w", waiting).status(),
              StatusIs(absl::StatusCode::kNotFound));
  // With no shard led, it is kUnavailable.
  (*server)->Stop();
  EXPECT_THAT((*client)->ClaimNext("w", ClaimNextOptions()).status(),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT((*client)->ClaimNext("w", waiting).status(),
              StatusIs(absl::StatusCode::kUnavailable));
}

// A task too large for a ClaimNext answer to carry through NATS would be
// claimed and never arrive (its lease running out, again and again): it is
// refused at submit, alone or in a batch. Those that fit go through.
TEST_P(JetStreamTest, ATaskTooLargeToHandOutIsRefusedAtSubmit) {
  if (GetParam() != 1) GTEST_SKIP() << "about the server, not the stream";
  Served served = Serve("bigtask", absl::Seconds(5));
  ASSERT_NE(served.client, nullptr);
  absl::StatusOr<std::unique_ptr<engine::jetstream::Connection>> conn =
      TestConnection(Options("bigtask"));
  ASSERT_TRUE(conn.ok()) << conn.status();
  const size_t max = natsConnection_GetMaxPayload((*conn)->nc());
  ASSERT_GT(max, size_t{64} << 10);
  EXPECT_THAT(
      served.client->Submit(Spec("big", "t", std::string(max - 4096, 'x')))
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("never handed out")));
  const std::vector<TaskSpec> with_big = {
      Spec("small"), Spec("big2", "t", std::string(max - 4096, 'x'))};
  EXPECT_THAT(served.client->SubmitBatch(with_big).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("task 1 of the batch")));
  for (const char* key : {"big", "small", "big2"}) {
    EXPECT_THAT(served.engine->GetByIdempotencyKey(key).status(),
                StatusIs(absl::StatusCode::kNotFound))
        << key;
  }
  // Two halves, the batch near max_payload; and one just small enough.
  const std::vector<TaskSpec> halves = {
      Spec("half1", "t", std::string(max / 2 - 6000, 'a')),
      Spec("half2", "t", std::string(max / 2 - 6000, 'b'))};
  ASSERT_THAT(served.client->SubmitBatch(halves).status(), IsOk());
  ASSERT_THAT(
      served.client->Submit(Spec("fits", "t", std::string(max - 20000, 'c')))
          .status(),
      IsOk());
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ClaimedTask> claimed =
        served.client->ClaimNext("w", ClaimNextOptions());
    ASSERT_TRUE(claimed.ok()) << claimed.status();
    EXPECT_GE(claimed->task.payload().size(), max / 2 - 6000);
  }
}

// A server stopped and destroyed while clients call it: every call ends,
// each either done (and then in the engine) or told that nobody serves.
TEST_P(JetStreamTest, StoppingAServerUnderLoadAnswersEveryCall) {
  Served served = Serve("stopload", absl::Milliseconds(500));
  ASSERT_NE(served.client, nullptr);
  absl::Mutex mu;
  std::vector<std::string> acked;
  int refused = 0;
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; !done.load(); ++i) {
        const std::string key = absl::StrCat("t", t, "-", i);
        absl::StatusOr<SubmitResult> r = served.client->Submit(Spec(key));
        absl::MutexLock l(&mu);
        if (r.ok()) {
          acked.push_back(key);
        } else {
          EXPECT_THAT(
              r.status(),
              ::testing::AnyOf(StatusIs(absl::StatusCode::kUnavailable),
                               StatusIs(absl::StatusCode::kDeadlineExceeded)));
          ++refused;
        }
      }
    });
  }
  auto acked_count = [&] {
    absl::MutexLock l(&mu);
    return acked.size();
  };
  const absl::Time deadline = absl::Now() + kBound;
  while (acked_count() < 200 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  served.server.reset();  // Stops (draining its subscription), then is gone.
  // Calls go on against nobody for a while.
  absl::SleepFor(absl::Seconds(1));
  done.store(true);
  for (std::thread& t : threads) t.join();
  absl::MutexLock l(&mu);
  EXPECT_GE(acked.size(), 200u);
  EXPECT_GT(refused, 0);
  for (const std::string& key : acked) {
    EXPECT_TRUE(served.engine->GetByIdempotencyKey(key).ok()) << key;
  }
}

// The server leading the stream dies under load: the engine rides out the
// election, and nothing it acknowledged is lost.
TEST_P(JetStreamTest, StreamLeaderKilledUnderLoadLosesNothing) {
  if (GetParam() != 3) GTEST_SKIP() << "an R1 stream dies with its server";
  const JetStreamOptions js = Options("leaderkill");
  std::unique_ptr<taskwal::Engine> engine = MustOpen(Engine(), js);
  ASSERT_NE(engine, nullptr);

  absl::Mutex mu;
  std::vector<std::string> submitted;  // Acknowledged.
  std::vector<std::string> completed;  // Keys, acknowledged.
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        const std::string key = absl::StrCat("w", t, "-", i);
        absl::StatusOr<SubmitResult> r = engine->Submit(Spec(key));
        if (!r.ok()) {
          errors.fetch_add(1);
          break;
        }
        {
          absl::MutexLock l(&mu);
          submitted.push_back(key);
        }
        absl::StatusOr<ClaimedTask> claim = engine->Claim(r->task_id, "w", {});
        if (!claim.ok()) continue;
        if (engine->Complete(claim->claim, "ok").ok()) {
          absl::MutexLock l(&mu);
          completed.push_back(key);
        }
      }
    });
  }
  // Also when an assertion returns early (a joinable thread's destructor
  // would end the whole test binary).
  absl::Cleanup join = [&] {
    stop.store(true);
    for (std::thread& t : threads) t.join();
  };
  auto acked = [&] {
    absl::MutexLock l(&mu);
    return submitted.size();
  };
  const absl::Time deadline = absl::Now() + kBound;
  while (acked() < 200 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  // Find and kill the stream's leader.
  absl::StatusOr<int> leader =
      StreamLeader(js, engine::jetstream::StreamName(js.cluster), deadline);
  ASSERT_TRUE(leader.ok()) << leader.status();
  const size_t at_kill = acked();
  const absl::Time killed = absl::Now();
  ASSERT_THAT(cluster_->Kill(*leader), IsOk());
  // Load goes on through the election, until it has moved on well past it.
  const absl::Time moved_on_by = absl::Now() + kBound;
  while (acked() < at_kill + 300 && errors.load() == 0 &&
         absl::Now() < moved_on_by) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const absl::Duration stalled = absl::Now() - killed;
  std::move(join).Invoke();
  EXPECT_EQ(errors.load(), 0) << "the engine failed during the election";
  EXPECT_GE(acked(), at_kill + 300);
  std::printf(
      "killed stream leader n%d after %zu submits; %zu more within "
      "%s\n",
      *leader, at_kill, acked() - at_kill,
      absl::FormatDuration(stalled).c_str());
  ASSERT_THAT(engine->Close(), IsOk());
  ASSERT_THAT(cluster_->Restart(*leader), IsOk());

  std::unique_ptr<taskwal::Engine> reopened = MustOpen(Engine(), js);
  ASSERT_NE(reopened, nullptr);
  absl::MutexLock l(&mu);
  for (const std::string& key : submitted) {
    ASSERT_TRUE(reopened->GetByIdempotencyKey(key).ok()) << key;
  }
  for (const std::string& key : completed) {
    absl::StatusOr<Task> task = reopened->GetByIdempotencyKey(key);
    ASSERT_TRUE(task.ok()) << key;
    EXPECT_EQ(task->status(), COMPLETED) << key;
  }
}

TEST_P(JetStreamTest, TheLeaseHasOneHolderAndPassesOn) {
  const JetStreamOptions js = Options("lease");
  JetStreamLease::Options lease_options;
  // Renewed every ttl/3: 2 s leaves a loaded machine room for a renewal.
  lease_options.ttl = absl::Seconds(2);
  absl::StatusOr<std::unique_ptr<JetStreamLease>> a =
      JetStreamLease::Acquire(js, "a", lease_options);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE((*a)->held());
  // Held and renewed: another cannot take it, even after several ttls.
  JetStreamLease::Options short_wait = lease_options;
  short_wait.deadline = absl::Now() + absl::Seconds(5);
  EXPECT_THAT(JetStreamLease::Acquire(js, "b", short_wait).status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE((*a)->held());
  // Given up: the next takes it at once.
  ASSERT_THAT((*a)->Release(), IsOk());
  EXPECT_FALSE((*a)->held());
  JetStreamLease::Options bounded = lease_options;
  bounded.deadline = absl::Now() + kBound;
  absl::StatusOr<std::unique_ptr<JetStreamLease>> b =
      JetStreamLease::Acquire(js, "b", bounded);
  ASSERT_TRUE(b.ok()) << b.status();
  // Its holder gone without a word (no renewals, no release): it expires.
  b->reset();
  absl::StatusOr<std::unique_ptr<JetStreamLease>> c =
      JetStreamLease::Acquire(js, "c", bounded);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE((*c)->held());
  // The bucket keeps the ttl it was made with.
  JetStreamLease::Options other = bounded;
  other.ttl = absl::Seconds(30);
  EXPECT_THAT(JetStreamLease::Acquire(js, "d", other).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ttl")));
}

// A renewal that JetStream refuses while the key is still this holder's
// (the bucket's stream electing a leader, say) does not lose the lease: the
// next renewal goes on. One refused because the key changed does.
TEST_P(JetStreamTest, ALeaseIsLostOnlyWhenItsKeyChanged) {
  if (GetParam() != 1) GTEST_SKIP() << "about the lease, not the stream";
  const JetStreamOptions js = Options("refused");
  JetStreamLease::Options lease_options;
  lease_options.ttl = absl::Seconds(2);  // Renewed every ttl/3.
  lease_options.deadline = absl::Now() + kBound;
  absl::StatusOr<std::unique_ptr<JetStreamLease>> lease =
      JetStreamLease::Acquire(js, "a", lease_options);
  ASSERT_TRUE(lease.ok()) << lease.status();
  {
    engine::jetstream::RefusedLeaseRenewalsForTesting refused(1);
    const absl::Time until = absl::Now() + kBound;
    while (refused.left() > 0 && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_EQ(refused.left(), 0);
  }
  // A ttl after the refusal it is held: renewed since (without the
  // renewal after the refused one it would be lost by then).
  absl::SleepFor(lease_options.ttl);
  EXPECT_TRUE((*lease)->held());

  // The key overwritten by another holder: the next renewal is refused and
  // the key is not this holder's any more.
  absl::StatusOr<std::unique_ptr<engine::jetstream::Connection>> conn =
      TestConnection(js);
  ASSERT_TRUE(conn.ok()) << conn.status();
  kvStore* kv = nullptr;
  ASSERT_EQ(js_KeyValue(&kv, (*conn)->js(),
                        absl::StrCat("TASKWAL_", js.cluster, "_LEASE").c_str()),
            NATS_OK);
  absl::Cleanup destroy = [kv] { kvStore_Destroy(kv); };
  ASSERT_EQ(kvStore_PutString(nullptr, kv, "leader", "b"), NATS_OK);
  EXPECT_FALSE((*lease)->WaitLost(kBound));
  EXPECT_FALSE((*lease)->held());

  // The key deleted (as an operator might): the same.
  ASSERT_EQ(kvStore_Delete(kv, "leader"), NATS_OK);
  absl::StatusOr<std::unique_ptr<JetStreamLease>> again =
      JetStreamLease::Acquire(js, "a", lease_options);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(kvStore_Delete(kv, "leader"), NATS_OK);
  EXPECT_FALSE((*again)->WaitLost(kBound));
  EXPECT_FALSE((*again)->held());
}

// A server given its process's lease answers only while the lease is held:
// a leader paused past it (here: that gave it up) serves nothing from its
// stale state, reads included, and its callers go elsewhere.
TEST_P(JetStreamTest, AServerAnswersOnlyWhileItsLeaseIsHeld) {
  if (GetParam() != 1) GTEST_SKIP() << "about the server, not the stream";
  const JetStreamOptions js = Options("leased");
  std::unique_ptr<taskwal::Engine> engine = MustOpen(Engine(), js);
  ASSERT_NE(engine, nullptr);
  JetStreamLease::Options lease_options;
  lease_options.ttl = absl::Seconds(2);
  lease_options.deadline = absl::Now() + kBound;
  absl::StatusOr<std::unique_ptr<JetStreamLease>> lease =
      JetStreamLease::Acquire(js, "me", lease_options);
  ASSERT_TRUE(lease.ok()) << lease.status();
  JetStreamServer::Options leased;
  leased.lease = lease->get();
  absl::StatusOr<std::unique_ptr<JetStreamServer>> server =
      JetStreamServer::Start(engine.get(), js, leased);
  ASSERT_TRUE(server.ok()) << server.status();
  JetStreamOptions client_js = js;
  client_js.retry_for = absl::Seconds(1);
  absl::StatusOr<std::unique_ptr<taskwal::Engine>> client =
      ConnectJetStreamEngine(client_js);
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_THAT((*client)->Submit(Spec("a")).status(), IsOk());
  EXPECT_THAT((*client)->GetByIdempotencyKey("a").status(), IsOk());
  ASSERT_THAT((*lease)->Release(), IsOk());
  EXPECT_THAT((*client)->GetByIdempotencyKey("a").status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("no server answered")));
  EXPECT_THAT((*client)->Submit(Spec("b")).status(),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(engine->GetByIdempotencyKey("b").status(),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_P(JetStreamTest, BadInputIsRefusedAndChangesNothing) {
  JetStreamOptions js = Options("bad");
  EngineOptions with_dir = Engine();
  with_dir.data_dir = ::testing::TempDir();
  EXPECT_THAT(OpenJetStreamEngine(with_dir, js).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  for (const char* name : {"", "has space", "dots.in.it", "a*", "x>",
                           "123456789012345678901234567890123"}) {
    JetStreamOptions bad = js;
    bad.cluster = name;
    EXPECT_THAT(OpenJetStreamEngine(Engine(), bad).status(),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << name;
  }
  JetStreamOptions no_servers = js;
  no_servers.servers = "";
  EXPECT_THAT(OpenJetStreamEngine(Engine(), no_servers).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  JetStreamOptions replicas = js;
  replicas.replicas = 0;
  EXPECT_THAT(OpenJetStreamEngine(Engine(), replicas).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  JetStreamOptions tiny = js;
  tiny.max_unacknowledged_bytes = 1000;
  EXPECT_THAT(OpenJetStreamEngine(Engine(), tiny).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("max_unacknowledged_bytes")));
  // Nobody listens there.
  JetStreamOptions unreachable = js;
  unreachable.servers = "nats://127.0.0.1:1";
  EXPECT_THAT(OpenJetStreamEngine(Engine(), unreachable).status(),
              StatusIs(absl::StatusCode::kUnavailable));
  // A stream of another partition count.
  {
    std::unique_ptr<taskwal::Engine> engine = MustOpen(Engine(4), js);
    ASSERT_NE(engine, nullptr);
    ASSERT_TRUE(engine->Submit(Spec("kept")).ok());
  }
  EXPECT_THAT(OpenJetStreamEngine(Engine(8), js).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("4 partitions")));
  std::unique_ptr<taskwal::Engine> engine = MustOpen(Engine(0), js);
  ASSERT_NE(engine, nullptr);
  EXPECT_TRUE(engine->GetByIdempotencyKey("kept").ok());
  engine.reset();
  // A stream of the same name that taskwal did not make.
  JetStreamOptions foreign = Options("foreign");
  absl::StatusOr<std::unique_ptr<engine::jetstream::Connection>> conn =
      TestConnection(foreign);
  ASSERT_TRUE(conn.ok()) << conn.status();
  const std::string stream = engine::jetstream::StreamName(foreign.cluster);
  const std::string subject = engine::jetstream::LogSubject(foreign.cluster);
  const char* subjects[] = {subject.c_str()};
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = stream.c_str();
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Replicas = foreign.replicas;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  ASSERT_EQ(js_AddStream(nullptr, (*conn)->js(), &cfg, nullptr, &jerr),
            NATS_OK);
  ASSERT_EQ(js_Publish(nullptr, (*conn)->js(), subject.c_str(), "junk", 4,
                       nullptr, &jerr),
            NATS_OK);
  EXPECT_THAT(OpenJetStreamEngine(Engine(), foreign).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not made by")));
}

// A cluster's shard count is recorded in its shards' streams: a node or
// client giving another count (its keys would hash to other shards, and one
// key could name two tasks) is refused, and so is a cluster that does not
// exist.
TEST_P(JetStreamTest, EveryNodeAndClientOfAClusterGivesTheSameShardCount) {
  if (GetParam() != 1) GTEST_SKIP() << "about names, not replication";
  JetStreamOptions two = Options("shardcount");
  two.shards = 2;
  std::unique_ptr<taskwal::Engine> shard0 =
      MustOpen(Engine(), JetStreamShard(two, 0));
  ASSERT_NE(shard0, nullptr);
  std::unique_ptr<taskwal::Engine> shard1 =
      MustOpen(Engine(), JetStreamShard(two, 1));
  ASSERT_NE(shard1, nullptr);
  EXPECT_THAT(ConnectJetStreamEngine(two).status(), IsOk());
  JetStreamOptions three = two;
  three.shards = 3;
  EXPECT_THAT(ConnectJetStreamEngine(three).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("cluster of 2 shards, not 3")));
  EXPECT_THAT(OpenJetStreamEngine(Engine(), JetStreamShard(three, 0)).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("cluster of 2 shards, not 3")));
  // A shard the cluster does not have is not made either.
  EXPECT_THAT(OpenJetStreamEngine(Engine(), JetStreamShard(three, 2)).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("has 2 shards")));
  JetStreamOptions one = two;
  one.shards = 1;
  EXPECT_THAT(ConnectJetStreamEngine(one).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("no taskwal cluster named")));
  EXPECT_THAT(OpenJetStreamEngine(Engine(), one).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("has 2 shards")));
  // A shard opened by its stream's name, as a cluster of its own.
  JetStreamOptions by_name = one;
  by_name.cluster = JetStreamShard(two, 1).cluster;
  EXPECT_THAT(OpenJetStreamEngine(Engine(), by_name).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("is a shard of a cluster of 2 shards")));
  // An unsharded cluster cannot gain shards.
  const JetStreamOptions plain = Options("plain");
  ASSERT_NE(MustOpen(Engine(), plain), nullptr);
  JetStreamOptions plain_two = plain;
  plain_two.shards = 2;
  EXPECT_THAT(
      OpenJetStreamEngine(Engine(), JetStreamShard(plain_two, 1)).status(),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("exists without shards")));
  EXPECT_THAT(ConnectJetStreamEngine(plain_two).status(),
              StatusIs(absl::StatusCode::kNotFound));
  // A cluster of its own named like a shard is not taken for one.
  JetStreamOptions own = Options("own");
  own.shards = 2;
  JetStreamOptions own_named = own;
  own_named.shards = 1;
  own_named.cluster = JetStreamShard(own, 0).cluster;
  ASSERT_NE(MustOpen(Engine(), own_named), nullptr);
  EXPECT_THAT(OpenJetStreamEngine(Engine(), JetStreamShard(own, 0)).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("a cluster of its own")));
  // Shard 1 made first records the count for shard 0 to be checked.
  JetStreamOptions late = Options("late");
  late.shards = 2;
  ASSERT_NE(MustOpen(Engine(), JetStreamShard(late, 1)), nullptr);
  JetStreamOptions late_three = late;
  late_three.shards = 3;
  EXPECT_THAT(
      OpenJetStreamEngine(Engine(), JetStreamShard(late_three, 0)).status(),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("has 2 shards")));
  // Set by hand, shard_of must look like JetStreamShard's.
  JetStreamOptions forged = plain;
  forged.shard_of = 2;
  EXPECT_THAT(OpenJetStreamEngine(Engine(), forged).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Nothing was made by the refused calls.
  EXPECT_THAT(ConnectJetStreamEngine(three).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  absl::StatusOr<std::unique_ptr<engine::jetstream::Connection>> conn =
      TestConnection(two);
  ASSERT_TRUE(conn.ok()) << conn.status();
  for (const std::string& cluster :
       {JetStreamShard(three, 2).cluster, one.cluster,
        JetStreamShard(plain_two, 1).cluster,
        JetStreamShard(late_three, 0).cluster}) {
    engine::jetstream::Config config;
    config.cluster = cluster;
    config.retry_for = absl::Seconds(5);
    EXPECT_THAT(engine::jetstream::FindStream(**conn, config).status(),
                StatusIs(absl::StatusCode::kNotFound))
        << cluster;
  }
}

// Messages that taskwal did not publish: outside the writers' and
// manifests' subjects they do not land in the stream; on a writer's subject
// (no Taskwal-Writer header) the leader takes them for another writer's
// and steps down, and the next engine passes over them.
TEST_P(JetStreamTest, MessagesNotFromTaskwalAreKeptOutOrPassedOver) {
  JetStreamOptions js = Options("foreignmsg");
  js.retry_for = absl::Seconds(5);
  std::unique_ptr<taskwal::Engine> engine = MustOpen(Engine(), js);
  ASSERT_NE(engine, nullptr);
  ASSERT_TRUE(engine->Submit(Spec("a")).ok());
  absl::StatusOr<std::unique_ptr<engine::jetstream::Connection>> conn =
      TestConnection(js);
  ASSERT_TRUE(conn.ok()) << conn.status();
  // Under the cluster's prefix, but no subject of the stream: no stream
  // takes it (NATS answers that nobody listens).
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const std::string elsewhere = absl::StrCat("taskwal.", js.cluster, ".x");
  EXPECT_NE(js_Publish(nullptr, (*conn)->js(), elsewhere.c_str(), "hi", 2,
                       nullptr, &jerr),
            NATS_OK);
  ASSERT_TRUE(engine->Submit(Spec("b")).ok()) << "the stream took it";
  // On a writer's subject it is stored.
  const std::string log =
      engine::jetstream::WriterSubject(js.cluster, "someone");
  ASSERT_EQ(
      js_Publish(nullptr, (*conn)->js(), log.c_str(), "hi", 2, nullptr, &jerr),
      NATS_OK);
  EXPECT_THAT(
      engine->Submit(Spec("c")).status(),
      StatusIs(absl::StatusCode::kInternal, HasSubstr("no longer leads")));
  engine.reset();
  engine = MustOpen(Engine(), js);
  ASSERT_NE(engine, nullptr);
  EXPECT_TRUE(engine->GetByIdempotencyKey("a").ok());
  EXPECT_TRUE(engine->GetByIdempotencyKey("b").ok());
  ASSERT_TRUE(engine->Submit(Spec("d")).ok());
  const std::string before = test_util::Dump(engine.get());
  engine.reset();
  engine = MustOpen(Engine(), js);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(test_util::Dump(engine.get()), before);
}

// Two of three servers away, the one left not leading the journal stream:
// it answers reads of the stream's messages with error 10008 ("JetStream
// system temporarily unavailable"), which Open waits out (for retry_for)
// like a timeout.
TEST_P(JetStreamTest, OpeningWithoutAQuorumWaitsForIt) {
  if (GetParam() != 3) GTEST_SKIP() << "needs a quorum to lose";
  JetStreamOptions js = Options("quorum");
  {
    std::unique_ptr<taskwal::Engine> engine = MustOpen(Engine(), js);
    ASSERT_NE(engine, nullptr);
    Work(*engine, "a", 20);
    ASSERT_THAT(engine->Snapshot(), IsOk());
    Work(*engine, "b", 20);
    ASSERT_THAT(engine->Close(), IsOk());
  }
  absl::StatusOr<int> leader = StreamLeader(
      js, engine::jetstream::StreamName(js.cluster), absl::Now() + kBound);
  ASSERT_TRUE(leader.ok()) << leader.status();
  const int kept = (*leader + 1) % cluster_->size();
  js.servers = cluster_->url(kept);
  absl::Notification opened;
  absl::StatusOr<std::unique_ptr<taskwal::Engine>> engine;
  std::thread opener;
  absl::Cleanup resume = [&] {
    for (int i = 0; i < cluster_->size(); ++i) {
      if (i != kept) cluster_->Stop(i, SIGCONT).IgnoreError();
    }
    if (opener.joinable()) opener.join();
  };
  for (int i = 0; i < cluster_->size(); ++i) {
    if (i != kept) {
      ASSERT_THAT(cluster_->Stop(i, SIGSTOP), IsOk());
    }
  }
  opener = std::thread([&] {
    engine = OpenJetStreamEngine(Engine(), js);
    opened.Notify();
  });
  // Without a quorum it cannot open (its fence needs one): it must still be
  // trying after 8 s, past a request's 5 s timeout, by when the server left
  // answers with error 10008 (an Open that gave up on it failed here).
  EXPECT_FALSE(opened.WaitForNotificationWithTimeout(absl::Seconds(8)));
  std::move(resume).Invoke();
  ASSERT_TRUE(engine.ok()) << engine.status();
  for (int i = 0; i < 20; ++i) {
    EXPECT_TRUE((*engine)->GetByIdempotencyKey(absl::StrCat("b", i)).ok());
  }
}

INSTANTIATE_TEST_SUITE_P(Replicas, JetStreamTest, ::testing::Values(1, 3),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return absl::StrCat("R", info.param);
                         });

}  // namespace
}  // namespace taskwal
