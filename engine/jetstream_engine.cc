// OpenJetStreamEngine and JetStreamStandby (api/jetstream.h): an
// EngineImpl over a JetStreamJournal, its state rebuilt from the newest
// snapshot and the stream after it.

#include <atomic>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine_impl.h"
#include "engine/jetstream_journal.h"
#include "engine/jetstream_snapshots.h"
#include "engine/jetstream_testing.h"
#include "engine/recovery.h"
#include "engine/transition.pb.h"
#include "taskwal/jetstream.h"
#include "wal/status_macros.h"

namespace taskwal {
namespace engine::jetstream {

Config MakeConfig(const JetStreamOptions& options) {
  Config config;
  config.servers = options.servers;
  config.cluster = options.cluster;
  config.replicas = options.replicas;
  config.ack_timeout = options.ack_timeout;
  config.retry_for = options.retry_for;
  config.max_buffered_bytes = options.max_unacknowledged_bytes;
  config.shard_of = options.shard_of;
  return config;
}

absl::Status ValidateJetStreamOptions(const JetStreamOptions& options) {
  if (options.shards < 1 || options.shards > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        "JetStreamOptions.shards is ", options.shards, ", not 1 to 64"));
  }
  TASKWAL_RETURN_IF_ERROR(ValidateClusterName(
      options.shards == 1
          ? options.cluster
          : absl::StrCat(options.cluster, "-", options.shards - 1)));
  if (options.shard_of != 0 &&
      (options.shard_of < 2 || options.shard_of > 64 || options.shards != 1 ||
       !ShardBase(options.cluster).has_value())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "JetStreamOptions.shard_of is ", options.shard_of,
        ": only JetStreamShard sets it (2 to 64, with shards 1 and a cluster "
        "named <cluster>-<shard>)"));
  }
  if (options.servers.empty()) {
    return absl::InvalidArgumentError("JetStreamOptions.servers is empty");
  }
  if (options.replicas < 1 || options.replicas > 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "JetStreamOptions.replicas is ", options.replicas, ", not 1 to 5"));
  }
  if (options.ack_timeout < absl::Milliseconds(10) ||
      options.retry_for < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "JetStreamOptions.ack_timeout must be at least 10 ms and retry_for "
        "not negative");
  }
  if (options.max_unacknowledged_bytes < (size_t{1} << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("JetStreamOptions.max_unacknowledged_bytes is ",
                     options.max_unacknowledged_bytes, ", less than 1 MiB"));
  }
  return absl::OkStatus();
}

absl::Status ValidateOneShard(const JetStreamOptions& options) {
  TASKWAL_RETURN_IF_ERROR(ValidateJetStreamOptions(options));
  if (options.shards != 1) {
    return absl::InvalidArgumentError(
        "this call takes the options of one shard: JetStreamShard(options, "
        "shard)");
  }
  return absl::OkStatus();
}

namespace {

// A cluster's state as read from its stream: the newest snapshot, then the
// records after it, applied in order. Not thread-safe.
class Follower {
 public:
  Follower(const EngineOptions& options, const Config& config, uint32_t n)
      : options_(options), config_(config), n_(n) {}

  // Loads the newest snapshot the journal (starting at log_first_seq)
  // still has the records after, or starts empty.
  absl::Status Load(Connection& conn, uint64_t log_first_seq) {
    TASKWAL_ASSIGN_OR_RETURN(snapshot_,
                             LoadNewestSnapshot(
                                 conn, config_, log_first_seq,
                                 [this] { return FreshStates(); }, &states_));
    last_lsn_ = snapshot_.lsn;
    replayed_ = 0;
    return absl::OkStatus();
  }

  // Where reading the journal starts after Load.
  uint64_t first_segment() const { return snapshot_.first_segment; }

  absl::Status Apply(uint32_t p, uint64_t lsn, absl::string_view bytes) {
    if (p < n_ && lsn <= snapshot_.lsn[p]) return absl::OkStatus();
    if (p >= n_ || lsn != last_lsn_[p] + 1) {
      return absl::DataLossError(
          absl::StrCat("stream ", StreamName(config_.cluster), " holds record ",
                       lsn, " of partition ", p, " where ",
                       p < n_ ? absl::StrCat("LSN ", last_lsn_[p] + 1)
                              : absl::StrCat("partitions 0 to ", n_ - 1),
                       " was due"));
    }
    if (!record_.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      return absl::DataLossError(absl::StrCat("record ", lsn, " of partition ",
                                              p, " is not a transition"));
    }
    absl::Status s = states_[p]->Apply(record_, lsn);
    if (!s.ok()) {
      return absl::DataLossError(
          absl::StrCat("record ", lsn, " of partition ", p,
                       " does not replay: ", s.message()));
    }
    last_lsn_[p] = lsn;
    ++replayed_;
    return absl::OkStatus();
  }

  auto ApplyFn() {
    return [this](uint32_t p, uint64_t lsn, absl::string_view bytes) {
      return Apply(p, lsn, bytes);
    };
  }

  const std::vector<uint64_t>& last_lsn() const { return last_lsn_; }

  // The engine, over `journal`, with what was read; the follower is spent.
  std::unique_ptr<Engine> MakeEngine(std::unique_ptr<JetStreamJournal> journal,
                                     std::unique_ptr<Connection> snapshot_conn,
                                     uint64_t newest_manifest,
                                     absl::Duration took) {
    RecoveryReport report;
    for (uint32_t p = 0; p < n_; ++p) {
      report.snapshot_lsn += snapshot_.lsn[p];
      report.last_lsn += last_lsn_[p];
    }
    report.records_replayed = replayed_;
    report.notes = snapshot_.notes;
    report.duration = took;
    auto storage = std::make_unique<Storage>();
    storage->snapshots = std::make_unique<JetStreamSnapshotStore>(
        config_, std::move(snapshot_conn), journal.get(), newest_manifest);
    storage->snapshot_records = report.snapshot_lsn;
    storage->recovery = std::move(report);
    return std::make_unique<EngineImpl>(options_, std::move(journal),
                                        std::move(states_), std::move(storage));
  }

 private:
  std::vector<std::unique_ptr<StateMachine>> FreshStates() const {
    std::vector<std::unique_ptr<StateMachine>> states;
    for (uint32_t i = 0; i < n_; ++i) {
      states.push_back(NewPartitionState(options_, i, n_));
    }
    return states;
  }

  const EngineOptions options_;
  const Config config_;
  const uint32_t n_;
  LoadedSnapshot snapshot_;
  std::vector<std::unique_ptr<StateMachine>> states_;
  std::vector<uint64_t> last_lsn_;
  uint64_t replayed_ = 0;
  Transition record_;
};

struct Opening {
  Config config;
  std::unique_ptr<Connection> conn;
  StreamState stream;
};

// Connects and opens the cluster's stream (creating it on first use).
absl::StatusOr<Opening> Connect(const Config& config, uint32_t partitions,
                                absl::string_view role) {
  Opening o;
  o.config = config;
  TASKWAL_ASSIGN_OR_RETURN(
      o.conn, Connection::Connect(
                  config, absl::StrCat("taskwal ", role, " ", config.cluster)));
  TASKWAL_ASSIGN_OR_RETURN(o.stream, OpenStream(*o.conn, config, partitions));
  return o;
}

absl::StatusOr<Opening> Begin(const EngineOptions& options,
                              const JetStreamOptions& jetstream,
                              absl::string_view role) {
  TASKWAL_RETURN_IF_ERROR(ValidateOptions(options));
  TASKWAL_RETURN_IF_ERROR(ValidateOneShard(jetstream));
  if (!options.data_dir.empty() || options.read_only) {
    return absl::InvalidArgumentError(
        "an engine on JetStream has no data directory and cannot be "
        "read-only");
  }
  Config config = MakeConfig(jetstream);
  config.wait_for_acks = options.sync_mode != SyncMode::kNone;
  return Connect(config, options.partitions, role);
}

// Fences the stream, reads it from `from` to the fence into `follower`,
// and makes the engine. kOutOfRange: the writer before purged messages
// this one had still to read (it snapshotted meanwhile).
absl::StatusOr<std::unique_ptr<Engine>> TakeOverOnce(Opening o,
                                                     Follower& follower,
                                                     uint64_t from,
                                                     absl::Time start) {
  TASKWAL_ASSIGN_OR_RETURN(
      std::unique_ptr<Connection> snapshot_conn,
      Connection::Connect(
          o.config, absl::StrCat("taskwal snapshots ", o.config.cluster)));
  const Config config = o.config;
  TASKWAL_ASSIGN_OR_RETURN(
      std::unique_ptr<JetStreamJournal> journal,
      JetStreamJournal::Open(
          config, std::move(o.conn), o.stream.partitions,
          [&](Connection& c,
              uint64_t last_seq) -> absl::StatusOr<std::vector<uint64_t>> {
            TASKWAL_RETURN_IF_ERROR(
                ReadStream(c, config, from, last_seq, follower.ApplyFn()));
            return follower.last_lsn();
          }));
  // This writer's snapshots follow the newest committed one, whoever wrote
  // it (a standby may have loaded an older one long ago).
  TASKWAL_ASSIGN_OR_RETURN(const uint64_t newest,
                           NewestManifestSeq(*snapshot_conn, config));
  return follower.MakeEngine(std::move(journal), std::move(snapshot_conn),
                             newest, absl::Now() - start);
}

// TakeOverOnce, and when messages it had to read were purged (the writer
// before snapshotted meanwhile, or a standby fell that far behind), again
// from the newest snapshot. `reload` says to load the newest snapshot
// before the first attempt too. Once this writer's fence is in, the writer
// before can commit no more snapshots, so one more attempt normally does;
// a few are allowed, a moment apart.
absl::StatusOr<std::unique_ptr<Engine>> TakeOver(Opening o, Follower& follower,
                                                 uint64_t from, bool reload,
                                                 absl::Time start) {
  constexpr int kAttempts = 4;
  const Config config = o.config;
  const uint32_t partitions = o.stream.partitions;
  for (int attempt = 1;; ++attempt) {
    if (reload) {
      // From the stream's first message after the purge: o.stream was read
      // just now (by Connect, or by Promote for a stale standby).
      TASKWAL_RETURN_IF_ERROR(follower.Load(*o.conn, o.stream.first_seq));
      from = follower.first_segment();
    }
    absl::StatusOr<std::unique_ptr<Engine>> engine =
        TakeOverOnce(std::move(o), follower, from, start);
    if (!absl::IsOutOfRange(engine.status())) return engine;
    if (attempt == kAttempts) {
      return absl::UnavailableError(
          absl::StrCat(engine.status().message(), " (", kAttempts,
                       " attempts, each from the newest snapshot)"));
    }
    absl::SleepFor(absl::Milliseconds(100) * attempt);
    TASKWAL_ASSIGN_OR_RETURN(o, Connect(config, partitions, "engine"));
    reload = true;
  }
}

class Standby final : public JetStreamStandby {
 public:
  Standby(const EngineOptions& options, Opening o)
      : options_(options),
        opening_(std::move(o)),
        follower_(options, opening_.config, opening_.stream.partitions) {}

  ~Standby() override { StopTailing(); }

  // Loads, catches up to the stream's end, and starts following.
  absl::Status Start() {
    TASKWAL_RETURN_IF_ERROR(
        follower_.Load(*opening_.conn, opening_.stream.first_seq));
    resume_ = follower_.first_segment();
    TASKWAL_ASSIGN_OR_RETURN(
        reader_, StreamReader::Open(*opening_.conn, opening_.config, resume_));
    const uint64_t last = opening_.stream.last_seq;
    while (reader_->next_seq() <= last) {
      bool got = false;
      TASKWAL_RETURN_IF_ERROR(
          reader_->Next(absl::Seconds(10), follower_.ApplyFn(), &got));
      if (!got) {
        return absl::UnavailableError("the stream stopped sending");
      }
    }
    Advance();
    tail_ = std::thread([this] { Tail(); });
    return absl::OkStatus();
  }

  uint64_t position() const override {
    return position_.load(std::memory_order_acquire);
  }

  absl::StatusOr<std::unique_ptr<Engine>> Promote() override {
    absl::MutexLock lock(&promote_mu_);  // Once, whoever calls.
    const absl::Time start = absl::Now();
    StopTailing();
    if (promoted_) {
      return absl::FailedPreconditionError("the standby was promoted already");
    }
    promoted_ = true;
    reader_.reset();
    // Fell behind a purge (stale_), or does so now: start again from the
    // newest snapshot, and the stream's first message now.
    if (stale_) {
      TASKWAL_ASSIGN_OR_RETURN(opening_.stream,
                               OpenStream(*opening_.conn, opening_.config,
                                          opening_.stream.partitions));
    }
    return TakeOver(std::move(opening_), follower_, resume_, stale_, start);
  }

  bool fell_behind() const {
    return fell_behind_.load(std::memory_order_acquire);
  }

  void SetPaused(bool paused) {
    absl::MutexLock lock(&promote_mu_);
    if (promoted_) return;
    if (paused) {
      StopTailing();
      reader_.reset();
      return;
    }
    if (tail_.joinable() || stale_) return;  // Not paused, or done.
    stop_.store(false, std::memory_order_release);
    tail_ = std::thread([this] { Tail(); });
  }

 private:
  // Records where reading may resume: after the last whole frame.
  void Advance() {
    if (reader_->frame_end() >= resume_) resume_ = reader_->frame_end() + 1;
    position_.store(resume_ - 1, std::memory_order_release);
  }

  void Tail() {
    while (!stop_.load(std::memory_order_acquire)) {
      if (reader_ == nullptr) {
        // Subscribe again from the last whole frame.
        absl::StatusOr<std::unique_ptr<StreamReader>> reader =
            StreamReader::Open(*opening_.conn, opening_.config, resume_);
        if (!reader.ok()) {
          absl::SleepFor(absl::Milliseconds(200));
          continue;
        }
        reader_ = *std::move(reader);
      }
      bool got = false;
      absl::Status s =
          reader_->Next(absl::Milliseconds(100), follower_.ApplyFn(), &got);
      if (s.ok()) {
        if (got) Advance();
        continue;
      }
      if (absl::IsUnavailable(s)) {
        // NATS trouble: read again from the last whole frame, later.
        absl::SleepFor(absl::Milliseconds(200));
        reader_.reset();
        continue;
      }
      // Purged under it, or damage: Promote starts over.
      stale_ = true;
      fell_behind_.store(true, std::memory_order_release);
      return;
    }
  }

  void StopTailing() {
    stop_.store(true, std::memory_order_release);
    if (tail_.joinable()) tail_.join();
  }

  const EngineOptions options_;
  Opening opening_;
  // Owned by the tail thread while it runs; by Promote after.
  Follower follower_;
  std::unique_ptr<StreamReader> reader_;
  uint64_t resume_ = 1;
  bool stale_ = false;
  bool promoted_ = false;
  std::atomic<uint64_t> position_{0};
  std::atomic<bool> fell_behind_{false};  // stale_, for other threads.
  std::atomic<bool> stop_{false};
  std::thread tail_;
  absl::Mutex promote_mu_;
};

}  // namespace

void SetStandbyPausedForTesting(JetStreamStandby& standby, bool paused) {
  dynamic_cast<Standby&>(standby).SetPaused(paused);
}

bool StandbyFellBehindForTesting(JetStreamStandby& standby) {
  return dynamic_cast<Standby&>(standby).fell_behind();
}

}  // namespace engine::jetstream

JetStreamOptions JetStreamShard(const JetStreamOptions& jetstream, int shard) {
  JetStreamOptions one = jetstream;
  if (jetstream.shards > 1) {
    one.cluster = absl::StrCat(jetstream.cluster, "-", shard);
    one.shards = 1;
    one.shard_of = jetstream.shards;
  }
  return one;
}

absl::StatusOr<std::unique_ptr<Engine>> OpenJetStreamEngine(
    const EngineOptions& options, const JetStreamOptions& jetstream) {
  namespace js = engine::jetstream;
  const absl::Time start = absl::Now();
  TASKWAL_ASSIGN_OR_RETURN(js::Opening o,
                           js::Begin(options, jetstream, "engine"));
  js::Follower follower(options, o.config, o.stream.partitions);
  return js::TakeOver(std::move(o), follower, /*from=*/1, /*reload=*/true,
                      start);
}

absl::StatusOr<std::unique_ptr<JetStreamStandby>> JetStreamStandby::Start(
    const EngineOptions& options, const JetStreamOptions& jetstream) {
  namespace js = engine::jetstream;
  TASKWAL_ASSIGN_OR_RETURN(js::Opening o,
                           js::Begin(options, jetstream, "standby"));
  auto standby = std::make_unique<js::Standby>(options, std::move(o));
  TASKWAL_RETURN_IF_ERROR(standby->Start());
  return std::unique_ptr<JetStreamStandby>(std::move(standby));
}

}  // namespace taskwal
