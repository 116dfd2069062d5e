#ifndef TASKWAL_ENGINE_JETSTREAM_JOURNAL_H_
#define TASKWAL_ENGINE_JETSTREAM_JOURNAL_H_

// The engine's journal on a NATS JetStream stream, replicated by the NATS
// servers (api/jetstream.h is the public side).
//
// One stream per taskwal cluster, TASKWAL_<cluster>, holds every
// partition's records in frames (engine/jetstream_format.h), each writer's
// on a subject of its own, taskwal.<cluster>.log.<writer id>. One process
// writes it at a time. Safety rests on fencing alone: every message names
// the stream's last sequence it must follow (Nats-Expected-Last-Sequence),
// and a writer has one message in flight at a time: its next is sent once
// the last is stored. A new writer first appends its fence; the older
// writer's next message then finds another last sequence and is refused,
// and the older writer stops acknowledging. (With several messages in
// flight a fence could take the place of one of them and the later ones
// would still match; Nats-Expected-Last-Subject-Sequence would catch that,
// but NATS 2.9 checks it against what its replicas have applied, refusing
// a message whose predecessor is still being replicated.) A lease
// (JetStreamLease) only keeps two writers from fighting.
//
// Writing: Append stages records into the frame being built; a publisher
// thread sends what is staged whenever no message is in flight, so under
// load a frame holds every record staged during the last round trip
// (batched). Sync waits until the acknowledgement of the frame holding the
// record came back. When a message is refused or its acknowledgement does
// not come within ack_timeout (a stream leader's election, a lost
// connection), the publisher reads the stream's last sequence, counts the
// message as stored if it is its own, and sends the rest again, for up to
// retry_for; a message of another writer there means this one was deposed.
// A stream that ends before what was acknowledged is read again (a stream
// leader just elected reports what it has applied, which can lag what its
// predecessor acknowledged); still short after retry_for, it is kDataLoss.

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/jetstream_format.h"
#include "engine/journal.h"

struct __natsConnection;
struct __jsCtx;
struct __natsSubscription;
struct __natsMsg;

namespace taskwal {
struct JetStreamOptions;
}  // namespace taskwal

namespace taskwal::engine::jetstream {

struct Config {
  std::string servers;  // Comma-separated nats:// URLs.
  std::string cluster;  // See ValidateClusterName.
  int replicas = 3;     // For a new stream.
  absl::Duration connect_timeout = absl::Seconds(5);
  absl::Duration ack_timeout = absl::Seconds(5);
  absl::Duration retry_for = absl::Seconds(60);
  // Wait for acknowledgements in Sync (false: the engine's kNone mode).
  bool wait_for_acks = true;
  // Appends wait while this many bytes are staged or unacknowledged.
  size_t max_buffered_bytes = size_t{256} << 20;
  // This cluster is shard <n> of <base>-<n>, a cluster of this many shards
  // (JetStreamOptions::shard_of); 0: not a shard.
  int shard_of = 0;
};

// The cluster a shard's cluster name <base>-<n> belongs to: <base>.
std::optional<std::string> ShardBase(absl::string_view cluster);

// The public options as a Config; kInvalidArgument names a bad one.
Config MakeConfig(const JetStreamOptions& options);
absl::Status ValidateJetStreamOptions(const JetStreamOptions& options);
// As ValidateJetStreamOptions, and shards == 1.
absl::Status ValidateOneShard(const JetStreamOptions& options);

// A NATS status (natsStatus) worth retrying: a timeout, no responders (a
// stream between leaders), a connection being re-established; or a
// JetStream API error (jsErrCode, 0 for none) that says so: "JetStream
// system temporarily unavailable", which servers answer for a stream
// without a leader.
bool Retryable(int status, int jetstream_error = 0);

// kInvalidArgument unless 1 to 32 of [A-Za-z0-9_-].
absl::Status ValidateClusterName(absl::string_view cluster);
std::string StreamName(absl::string_view cluster);
// The journal's frames: each writer publishes on a subject of its own,
// <LogSubject>.<writer id>.
std::string LogSubject(absl::string_view cluster);
std::string WriterSubject(absl::string_view cluster, absl::string_view writer);
// Snapshot manifests (jetstream.proto), in the same stream and fenced the
// same way: only the writer that leads can commit a snapshot.
std::string ManifestSubject(absl::string_view cluster);
// Snapshot contents, in chunks, in a stream of their own.
std::string SnapshotStreamName(absl::string_view cluster);
std::string SnapshotSubject(absl::string_view cluster);

// A connection and its JetStream context. Closing destroys both.
class Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Connect(
      const Config& config, absl::string_view name);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  __natsConnection* nc() const { return nc_; }
  __jsCtx* js() const { return js_; }
  const std::string& servers() const { return servers_; }

 private:
  Connection(__natsConnection* nc, __jsCtx* js, std::string servers)
      : nc_(nc), js_(js), servers_(std::move(servers)) {}
  __natsConnection* const nc_;
  __jsCtx* const js_;
  const std::string servers_;
};

// The stream's partition count and last sequence; creates the stream
// (recording `partitions` and its cluster's shard count, config.shard_of
// or 1, in its description) when there is none.
// kFailedPrecondition: the stream was not made by taskwal, or by a newer
// format, or `partitions` is nonzero and differs, or it records another
// shard count; or there is none and another stream of the cluster that
// exists records another count (<base> unsharded, or <base>-<n>).
struct StreamState {
  uint32_t partitions = 0;
  uint64_t first_seq = 0;  // Messages before it were purged.
  uint64_t last_seq = 0;
  uint64_t messages = 0;
  uint64_t bytes = 0;
};
absl::StatusOr<StreamState> OpenStream(Connection& conn, const Config& config,
                                       uint32_t partitions);
// As OpenStream, but never creates it: kNotFound when there is none.
absl::StatusOr<StreamState> FindStream(Connection& conn, const Config& config);

// Reads the journal stream in order from a sequence on, with an ordered
// consumer: puts frames together and calls fn for each record (manifests
// are skipped, and messages without a writer, which taskwal did not
// publish; so are continuation pieces before the first frame begins,
// when reading from the middle). Not thread-safe.
class StreamReader {
 public:
  static absl::StatusOr<std::unique_ptr<StreamReader>> Open(
      Connection& conn, const Config& config, uint64_t first_seq);
  ~StreamReader();
  StreamReader(const StreamReader&) = delete;
  StreamReader& operator=(const StreamReader&) = delete;

  // Takes the next message if one comes within `timeout` (*got tells).
  // kDataLoss: a damaged message or frame; kOutOfRange: messages were
  // purged under the reader (read again from a newer snapshot);
  // kUnavailable: NATS failed; fn's errors as they are.
  absl::Status Next(
      absl::Duration timeout,
      absl::FunctionRef<absl::Status(uint32_t partition, uint64_t lsn,
                                     absl::string_view record)>
          fn,
      bool* got);

  // The sequence of the next message to read.
  uint64_t next_seq() const { return next_seq_; }
  // The last message read after which no frame is open (0: none yet):
  // reading again from frame_end() + 1 misses and repeats nothing.
  uint64_t frame_end() const { return frame_end_; }

 private:
  StreamReader(__natsSubscription* sub, std::string stream,
               std::string manifests, uint64_t first_seq)
      : sub_(sub),
        stream_(std::move(stream)),
        manifests_(std::move(manifests)),
        first_seq_(first_seq),
        next_seq_(first_seq) {}

  __natsSubscription* const sub_;
  const std::string stream_;
  const std::string manifests_;
  const uint64_t first_seq_;
  uint64_t next_seq_;
  uint64_t frame_end_ = 0;
  bool started_ = false;
  FrameAssembler assembler_;
  std::string frame_;
};

// Reads messages first_seq..last_seq with a StreamReader. kUnavailable
// also when the stream sends nothing for a while.
absl::Status ReadStream(
    Connection& conn, const Config& config, uint64_t first_seq,
    uint64_t last_seq,
    absl::FunctionRef<absl::Status(uint32_t partition, uint64_t lsn,
                                   absl::string_view record)>
        fn);

class JetStreamJournal final : public Journal {
 public:
  // Takes over the stream: publishes this writer's fence (an empty frame)
  // right after the stream's last message, retrying while others append,
  // so that no earlier writer can append after it. Then
  // `replay(conn, fence_seq - 1)` must read the stream up to the fence (it runs
  // before the journal accepts records) and return the last LSN of each
  // partition. REQUIRES: partitions >= 1.
  static absl::StatusOr<std::unique_ptr<JetStreamJournal>> Open(
      const Config& config, std::unique_ptr<Connection> conn,
      uint32_t partitions,
      absl::FunctionRef<absl::StatusOr<std::vector<uint64_t>>(Connection&,
                                                              uint64_t)>
          replay);
  ~JetStreamJournal() override;

  uint32_t partitions() const override { return partitions_; }
  absl::StatusOr<uint64_t> Append(uint32_t partition,
                                  const Transition& record) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status AppendGroup(absl::Span<const uint32_t> partitions,
                           absl::Span<const Transition* const> records,
                           uint64_t* lsns) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Sync(absl::Span<const PartitionLsn> records) override
      ABSL_LOCKS_EXCLUDED(mu_);
  using Journal::Sync;
  absl::Status SyncAll() override ABSL_LOCKS_EXCLUDED(mu_);
  // The stream sequence of the next frame: records appended from now on
  // lie there or later.
  absl::StatusOr<uint64_t> StartSegment() override ABSL_LOCKS_EXCLUDED(mu_);
  // Purges the stream's messages before first_seq.
  absl::Status DiscardBefore(uint64_t first_seq) override;
  uint64_t records() const override ABSL_LOCKS_EXCLUDED(mu_);
  JournalStats stats() const override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Failure() const override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Close() override ABSL_LOCKS_EXCLUDED(mu_);

  // Appends a snapshot manifest after everything staged, fenced like every
  // message, and waits for its acknowledgement: the snapshot it names is
  // committed. Returns its stream sequence. Errors as Sync (sticky).
  absl::StatusOr<uint64_t> CommitManifest(absl::string_view manifest)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // One stream message of this writer, sent or waiting to be.
  struct Piece {
    uint64_t seq;  // The sequence it must be stored at.
    std::string body;
    bool manifest = false;  // On the manifest subject.
    bool sent = false;
    bool acked = false;
    absl::Time sent_at;
    // When the piece ends a frame: the LSNs its frame makes durable.
    std::vector<PartitionLsn> durable;
  };

  JetStreamJournal(const Config& config, std::unique_ptr<Connection> conn,
                   uint32_t partitions, std::string writer, std::string inbox,
                   uint64_t fence_seq, std::vector<uint64_t> last_lsn);

  static void OnReply(__natsConnection* nc, __natsSubscription* sub,
                      __natsMsg* msg, void* closure);
  void HandleReply(absl::string_view subject, __natsMsg* msg)
      ABSL_LOCKS_EXCLUDED(mu_);
  void PublisherLoop() ABSL_LOCKS_EXCLUDED(mu_);
  // Cuts the staged frame into pieces at the tail of the queue.
  void TakeStagedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends the next unsent piece if none is in flight.
  void SendLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Pops the acknowledged pieces at the head of the queue.
  void AdvanceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a refusal or a timeout: finds out from the stream what it holds
  // and marks every piece to be sent again. Called without mu_.
  absl::Status Resync() ABSL_LOCKS_EXCLUDED(mu_);
  void FailLocked(absl::Status s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Back-pressure: waits while max_buffered_bytes are staged or unacknowledged
  // (NATS is slow or away, or kNone mode outruns it).
  void WaitForRoomLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  bool DurableLocked(absl::Span<const PartitionLsn> records) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits until records are acknowledged, the journal failed or it closed.
  absl::Status WaitDurableLocked(absl::Span<const PartitionLsn> records)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Wakes the Sync callers whose records are durable now, or all of them
  // once the journal failed or closed.
  void WakeSyncersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // A Sync caller waiting for its records. Each waits on a CondVar of its
  // own and is signalled by whoever makes its records durable: a
  // Mutex::Await condition would be evaluated by every unlock of mu_, by
  // every caller of Append. (Signalled callers then wake one another as
  // each unlocks mu_: one wake-up each, as few as there can be.)
  struct Syncer {
    absl::Span<const PartitionLsn> records;
    absl::CondVar cv;
    bool done = false;
  };

  const Config config_;
  const std::unique_ptr<Connection> conn_;
  const uint32_t partitions_;
  const std::string writer_;  // Random; in every message's header.
  const std::string inbox_;   // Replies come to <inbox>.<epoch>.<seq>.
  const std::string subject_;
  const std::string manifest_subject_;
  const std::string stream_;
  size_t max_piece_bytes_ = 0;
  __natsSubscription* sub_ = nullptr;

  mutable absl::Mutex mu_;
  std::vector<uint64_t> next_lsn_ ABSL_GUARDED_BY(mu_);     // Last assigned.
  std::vector<uint64_t> durable_lsn_ ABSL_GUARDED_BY(mu_);  // Acknowledged.
  std::string staged_ ABSL_GUARDED_BY(mu_);  // The frame being built.
  std::vector<PartitionLsn> staged_lsns_ ABSL_GUARDED_BY(mu_);
  std::deque<Piece> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<Syncer*> syncers_ ABSL_GUARDED_BY(mu_);
  // Signalled when the publisher may have work: records staged while no
  // message is in flight, a reply, trouble, a failure, closing.
  absl::CondVar publisher_cv_;
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // Of queue_'s bodies.
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_);        // Of the next piece cut.
  uint64_t acked_through_ ABSL_GUARDED_BY(mu_);   // Every piece up to it.
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;       // Replies of older are stale.
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // A reply refused a piece or said something unexpected.
  std::string trouble_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  // !failure_.ok(), read without mu_ by Failure (on every engine write).
  std::atomic<bool> failed_{false};
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t records_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bytes_sent_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t messages_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t records_sent_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread publisher_;
};

}  // namespace taskwal::engine::jetstream

#endif  // TASKWAL_ENGINE_JETSTREAM_JOURNAL_H_
