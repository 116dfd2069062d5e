#ifndef TASKWAL_API_JETSTREAM_H_
#define TASKWAL_API_JETSTREAM_H_

// taskwal on NATS JetStream: the engine's journal is a stream that the NATS
// servers replicate (R3: three servers, any one may die), so the tasks
// outlive the machine of the process that runs the engine, and another
// process, on another machine, takes over when it dies.
//
//   taskwal::JetStreamOptions js;
//   js.servers = "nats://10.0.0.1:4222,nats://10.0.0.2:4222";
//   js.cluster = "billing";
//   // Wait to lead the cluster, then replay its stream.
//   auto lease = taskwal::JetStreamLease::Acquire(js, "host-a", {});
//   auto engine = taskwal::OpenJetStreamEngine(taskwal::EngineOptions(), js);
//   ... while (*lease)->held(): serve ...
//
// What is promised (README, "Running on several machines"):
// - An acknowledged transition is in the stream, stored by a majority of
//   its servers. NATS 2.9 writes its store to disk every 60 s, not per
//   message: a record survives any one server's crash (R3), not a power
//   loss of the whole NATS cluster in the same minute.
// - At most one engine writes a cluster's stream. Every message names the
//   sequence it must follow (Nats-Expected-Last-Sequence); a new engine
//   first appends a fence, after which every message of an older one is
//   refused, and that engine takes no more writes: the sticky kInternal
//   of api/engine.h, its message saying it "no longer leads" (do not
//   reopen it before holding the lease again). The lease
//   only keeps engines from taking turns needlessly; safety never depends
//   on it or on clocks.
// - A failed append (a stream leader's election, a lost connection) is
//   retried against what the stream really holds for retry_for; only then
//   does the engine fail.
// Snapshots (Engine::Snapshot, and snapshot_every_records) go to the
// stream TASKWAL_<cluster>_SNAP and are committed through the journal, so
// Open loads the newest and replays only the records after it; the journal
// before the snapshot preceding it is purged.

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "taskwal/engine.h"

namespace taskwal {

struct JetStreamOptions {
  // NATS server URLs, comma-separated ("nats://127.0.0.1:4222,...").
  std::string servers;
  // The cluster's name: 1 to 32 of [A-Za-z0-9_-]. Its stream is
  // TASKWAL_<cluster> (subjects taskwal.<cluster>.>), its lease bucket
  // TASKWAL_<cluster>_LEASE.
  std::string cluster;
  // Copies the NATS servers keep, when the stream or bucket is created
  // (1 to 5; at most the number of servers).
  int replicas = 3;
  // A publish not acknowledged within this is checked against the stream.
  absl::Duration ack_timeout = absl::Seconds(5);
  // How long failed appends are retried before the engine fails; covers a
  // stream leader's election (4-8 s in NATS 2.9).
  absl::Duration retry_for = absl::Seconds(60);
  // Back-pressure: while this many bytes of records are staged or sent and
  // not yet acknowledged (NATS is slow or away, or SyncMode::kNone outruns
  // it), writes wait for room. At least 1 MiB.
  size_t max_unacknowledged_bytes = size_t{256} << 20;
  // Shards: independent clusters <cluster>-0, <cluster>-1, ... (each its
  // own stream, lease and leader), which different processes on different
  // machines can lead. A task lives in the shard of its key's hash. 1 (the
  // default): the cluster is one shard, named <cluster>. Only
  // ConnectJetStreamEngine spans shards; the other calls take the options
  // of one shard (JetStreamShard). 1 to 64; the cluster name with its
  // "-<shard>" suffix must stay within 32 characters. Every node and
  // client of a cluster must give the same count: its streams record it
  // when they are made; opening a stream with another count, or making
  // one for a cluster that has another, is kFailedPrecondition (keys would
  // hash to other shards), and ConnectJetStreamEngine refuses too.
  int shards = 1;
  // Set by JetStreamShard (leave it 0 otherwise): these are the options of
  // one shard of a cluster of this many shards (2 to 64). 0: a cluster that
  // is not sharded.
  int shard_of = 0;
};

// The options of shard `shard` of a sharded cluster: cluster named
// <cluster>-<shard>, shards 1, shard_of jetstream.shards. With
// shards == 1, the options as they are.
// REQUIRES: 0 <= shard < jetstream.shards.
JetStreamOptions JetStreamShard(const JetStreamOptions& jetstream, int shard);

// Opens the engine whose journal is the cluster's stream (creating the
// stream on first use, with options.partitions or kDefaultPartitions
// partitions) and replays it. options.data_dir must be empty and
// options.read_only false; options.sync_mode kNone acknowledges before
// the stream does, the other modes after. Call it once this process holds
// the cluster's lease. If the writer before it purges records it has still
// to read (that writer snapshotted meanwhile), it starts again from the
// newer snapshot (up to 4 times).
//   kInvalidArgument: bad options.
//   kUnavailable: no NATS server answered, or the stream did not within
//     retry_for; or it was purged under every attempt.
//   kFailedPrecondition: the stream is not taskwal's, or has another
//     partition count than options.partitions, or another shard count
//     than jetstream.shard_of; or the cluster exists with another shard
//     count.
//   kDataLoss: the stream holds a damaged or out-of-order record, or lacks
//     one from its middle.
absl::StatusOr<std::unique_ptr<Engine>> OpenJetStreamEngine(
    const EngineOptions& options, const JetStreamOptions& jetstream);

// A hot standby: the cluster's state in this process, following the
// stream as the leader appends to it, so that taking over costs only what
// it has not read yet (plus the lease's ttl). Thread-safe.
//
//   auto standby = taskwal::JetStreamStandby::Start(options, js);
//   auto lease = taskwal::JetStreamLease::Acquire(js, "host-b", {});
//   auto engine = (*standby)->Promote();
class JetStreamStandby {
 public:
  // Loads the newest snapshot, reads the stream to its end, then follows
  // it in the background. Errors as OpenJetStreamEngine's.
  static absl::StatusOr<std::unique_ptr<JetStreamStandby>> Start(
      const EngineOptions& options, const JetStreamOptions& jetstream);

  virtual ~JetStreamStandby() = default;

  // The stream sequence read and applied so far.
  virtual uint64_t position() const = 0;

  // Takes over from where the standby is, as OpenJetStreamEngine does:
  // fences the stream, applies what is left and returns the engine. A
  // standby that fell behind a purge (the leader snapshotted twice while it
  // could not read) starts again from the newest snapshot. Once only:
  // kFailedPrecondition after. Errors as OpenJetStreamEngine's.
  virtual absl::StatusOr<std::unique_ptr<Engine>> Promote() = 0;
};

class JetStreamLease;

// The same API from any process: the process that leads a cluster serves
// its engine over NATS request/reply (subjects taskwal-rpc.<cluster>.<call>,
// protobuf messages of wire/engine.proto), and ConnectJetStreamEngine
// returns an Engine whose calls go there. Thread-safe.
class JetStreamServer {
 public:
  struct Options {
    int threads = 32;  // Calls run at once; a waiting ClaimNext holds one.
    // The longest a ClaimNext waits, whatever the caller asks.
    absl::Duration max_claim_wait = absl::Seconds(30);
    // Calls received and not yet running, at most; more are answered
    // kResourceExhausted.
    int max_queued = 10000;
    // The lease this process leads by, if any (it must outlive the
    // server): calls are served only while it is held(), so that a leader
    // that was paused past its lease answers nothing, not even a read from
    // its stale state, until it has stepped down. Without one, a deposed
    // leader finds out at its next write.
    const JetStreamLease* lease = nullptr;
  };

  // Serves `engine` (which must outlive the server) to the cluster's
  // clients. Start it once the engine is open on the cluster's stream;
  // stop it when the lease is lost. kUnavailable: NATS is unreachable.
  static absl::StatusOr<std::unique_ptr<JetStreamServer>> Start(
      Engine* engine, const JetStreamOptions& jetstream,
      const Options& options);

  // Stops.
  virtual ~JetStreamServer() = default;

  // Takes no more calls and waits for those running (close the engine
  // first to end waiting ClaimNext calls at once).
  virtual void Stop() = 0;
};

// An Engine in this process whose calls run on the cluster's leader,
// whichever process that is; with several shards, on each shard's leader
// (wire/sharded_engine.h says how calls spanning shards behave). While no
// process leads (a failover), a call waits and tries again for
// jetstream.retry_for (no server took it, so it did not run); a ClaimNext
// only within its wait (then kUnavailable), so that over several shards it
// passes over one that nobody leads. A call whose
// answer was lost (a timeout), or whose server stepped down while running
// it, may have run: it is sent again only if repeating it is harmless
// (Submit, SubmitBatch, Complete, Heartbeat, reads, Pause, ...); otherwise
// (Claim, ClaimNext, Fail, Retry, Cancel, Delete, the bulk calls) it
// returns kDeadlineExceeded or kUnavailable, and may or may not have run.
// A claim's answer stays within the NATS servers' max_payload: a last
// error too long for it (an engine with a raised max_error_bytes) is cut
// in the answer, a worker id over 4 KiB is refused (kInvalidArgument), and
// a task that fits no answer (stored before max_payload was lowered) is
// failed for good, its last error saying why (Retry revives it; its
// dependents see it FAILED): that Claim or ClaimNext returns
// kResourceExhausted, rather than a claim nobody receives.
// Close closes only the client. kInvalidArgument: bad options;
// kUnavailable: NATS is unreachable; kNotFound: the cluster (a shard's
// stream, with jetstream.shards) does not exist, or no node has started
// it yet; kFailedPrecondition: a shard's stream records another shard
// count. (A client without the right to ask JetStream about the streams
// skips these checks after ack_timeout.)
absl::StatusOr<std::unique_ptr<Engine>> ConnectJetStreamEngine(
    const JetStreamOptions& jetstream);

// Leadership of a cluster: a key in a JetStream key-value bucket whose
// entries expire after `ttl`, created by the leader (kvStore_Create, which
// only one caller wins) and renewed every ttl / 3. Thread-safe.
class JetStreamLease {
 public:
  struct Options {
    absl::Duration ttl = absl::Seconds(5);  // 100 ms to 1 hour.
    // Acquire gives up then (kDeadlineExceeded); infinite by default.
    absl::Time deadline = absl::InfiniteFuture();
  };

  // Waits until `holder` (a name for people: host and process) holds the
  // cluster's lease; then renews it in the background until Release or
  // destruction. kInvalidArgument: bad options; kUnavailable: NATS is
  // unreachable; kDeadlineExceeded: another holder kept it past deadline.
  static absl::StatusOr<std::unique_ptr<JetStreamLease>> Acquire(
      const JetStreamOptions& jetstream, absl::string_view holder,
      const Options& options);

  virtual ~JetStreamLease() = default;

  // False once a renewal found the lease taken (its key deleted, expired or
  // of another revision; a renewal refused while the key is still this
  // holder's is tried again) or could not renew it for a whole ttl; it
  // never becomes true again (acquire a new lease).
  virtual bool held() const = 0;
  // Blocks until held() is false or `timeout` passes; returns held().
  virtual bool WaitLost(absl::Duration timeout) const = 0;
  // Gives the lease up at once (a standby need not wait for it to expire).
  virtual absl::Status Release() = 0;
};

}  // namespace taskwal

#endif  // TASKWAL_API_JETSTREAM_H_
