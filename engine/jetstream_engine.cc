// OpenJetStreamEngine (api/jetstream.h): an EngineImpl over a
// JetStreamJournal, its state replayed from the stream.

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/engine_impl.h"
#include "engine/jetstream_journal.h"
#include "engine/jetstream_snapshots.h"
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
  config.max_in_flight = options.max_in_flight;
  return config;
}

absl::Status ValidateJetStreamOptions(const JetStreamOptions& options) {
  TASKWAL_RETURN_IF_ERROR(ValidateClusterName(options.cluster));
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
  if (options.max_in_flight < 1 || options.max_in_flight > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("JetStreamOptions.max_in_flight is ",
                     options.max_in_flight, ", not 1 to 65536"));
  }
  return absl::OkStatus();
}

}  // namespace engine::jetstream

absl::StatusOr<std::unique_ptr<Engine>> OpenJetStreamEngine(
    const EngineOptions& options, const JetStreamOptions& jetstream) {
  namespace js = engine::jetstream;
  TASKWAL_RETURN_IF_ERROR(engine::ValidateOptions(options));
  TASKWAL_RETURN_IF_ERROR(js::ValidateJetStreamOptions(jetstream));
  if (!options.data_dir.empty() || options.read_only) {
    return absl::InvalidArgumentError(
        "an engine on JetStream has no data directory and cannot be "
        "read-only");
  }
  js::Config config = js::MakeConfig(jetstream);
  config.wait_for_acks = options.sync_mode != SyncMode::kNone;
  TASKWAL_ASSIGN_OR_RETURN(
      std::unique_ptr<js::Connection> conn,
      js::Connection::Connect(config,
                              absl::StrCat("taskwal engine ", config.cluster)));
  TASKWAL_ASSIGN_OR_RETURN(const js::StreamState stream,
                           js::OpenStream(*conn, config, options.partitions));
  const uint32_t n = stream.partitions;
  const absl::Time start = absl::Now();
  auto fresh_states = [&] {
    std::vector<std::unique_ptr<engine::StateMachine>> states;
    for (uint32_t i = 0; i < n; ++i) {
      states.push_back(engine::NewPartitionState(options, i, n));
    }
    return states;
  };
  std::vector<std::unique_ptr<engine::StateMachine>> states;
  js::LoadedSnapshot snapshot;
  RecoveryReport report;
  // Runs once this writer's fence is in: the snapshot, then the journal
  // after it up to the fence.
  auto replay =
      [&](js::Connection& c,
          uint64_t last_seq) -> absl::StatusOr<std::vector<uint64_t>> {
    TASKWAL_ASSIGN_OR_RETURN(snapshot,
                             js::LoadNewestSnapshot(c, config, stream.first_seq,
                                                    fresh_states, &states));
    std::vector<uint64_t> last_lsn = snapshot.lsn;
    engine::Transition record;
    uint64_t replayed = 0;
    TASKWAL_RETURN_IF_ERROR(js::ReadStream(
        c, config, snapshot.first_segment, last_seq,
        [&](uint32_t p, uint64_t lsn, absl::string_view bytes) -> absl::Status {
          if (p < n && lsn <= snapshot.lsn[p]) return absl::OkStatus();
          if (p >= n || lsn != last_lsn[p] + 1) {
            return absl::DataLossError(absl::StrCat(
                "stream ", js::StreamName(config.cluster), " holds record ",
                lsn, " of partition ", p, " where ",
                p < n ? absl::StrCat("LSN ", last_lsn[p] + 1)
                      : absl::StrCat("partitions 0 to ", n - 1),
                " was due"));
          }
          if (!record.ParseFromArray(bytes.data(),
                                     static_cast<int>(bytes.size()))) {
            return absl::DataLossError(absl::StrCat(
                "record ", lsn, " of partition ", p, " is not a transition"));
          }
          absl::Status s = states[p]->Apply(record, lsn);
          if (!s.ok()) {
            return absl::DataLossError(
                absl::StrCat("record ", lsn, " of partition ", p,
                             " does not replay: ", s.message()));
          }
          last_lsn[p] = lsn;
          ++replayed;
          return absl::OkStatus();
        }));
    for (uint32_t p = 0; p < n; ++p) {
      report.snapshot_lsn += snapshot.lsn[p];
      report.last_lsn += last_lsn[p];
    }
    report.records_replayed = replayed;
    report.notes = snapshot.notes;
    return last_lsn;
  };
  TASKWAL_ASSIGN_OR_RETURN(
      std::unique_ptr<js::JetStreamJournal> journal,
      js::JetStreamJournal::Open(config, std::move(conn), n, replay));
  report.duration = absl::Now() - start;
  // Snapshots go out on a connection of their own.
  TASKWAL_ASSIGN_OR_RETURN(
      std::unique_ptr<js::Connection> snapshot_conn,
      js::Connection::Connect(
          config, absl::StrCat("taskwal snapshots ", config.cluster)));
  auto storage = std::make_unique<engine::Storage>();
  storage->snapshots = std::make_unique<js::JetStreamSnapshotStore>(
      config, std::move(snapshot_conn), journal.get(), snapshot.manifest_seq);
  storage->snapshot_records = report.snapshot_lsn;
  storage->recovery = std::move(report);
  return std::unique_ptr<Engine>(std::make_unique<engine::EngineImpl>(
      options, std::move(journal), std::move(states), std::move(storage)));
}

}  // namespace taskwal
