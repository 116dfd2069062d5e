#include "engine/jetstream_snapshots.h"

#include <nats/nats.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/jetstream.pb.h"
#include "engine/jetstream_format.h"
#include "engine/snapshot.h"
#include "taskwal/fault_injection_env.h"
#include "wal/crc32c.h"
#include "wal/status_macros.h"

namespace taskwal::engine::jetstream {
namespace {

constexpr size_t kChunkBytes = 256 << 10;

// Calls f until it succeeds, fails for good, or `deadline` passes (a stream
// just created or between leaders answers with timeouts for a while).
// f sets *jerr.
template <typename F>
natsStatus WithRetries(absl::Time deadline, jsErrCode* jerr, F f) {
  absl::Duration backoff = absl::Milliseconds(50);
  while (true) {
    *jerr = static_cast<jsErrCode>(0);
    const natsStatus s = f();
    if (s == NATS_OK || !Retryable(s, *jerr) ||
        absl::Now() + backoff > deadline) {
      return s;
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
}

absl::Status NatsFailure(absl::string_view what, natsStatus s, jsErrCode jerr) {
  return absl::UnavailableError(absl::StrCat(
      what, ": ", natsStatus_GetText(s), jerr != 0 ? " (JetStream error " : "",
      jerr != 0 ? absl::StrCat(jerr) : "", jerr != 0 ? ")" : ""));
}

// The manifest stored at seq of the journal's stream. kNotFound: purged.
absl::StatusOr<SnapshotManifest> ReadManifest(Connection& conn,
                                              const Config& config,
                                              uint64_t seq) {
  natsMsg* msg = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const std::string stream = StreamName(config.cluster);
  const natsStatus s = WithRetries(absl::Now() + config.retry_for, &jerr, [&] {
    return js_GetMsg(&msg, conn.js(), stream.c_str(), seq, nullptr, &jerr);
  });
  if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
    return absl::NotFoundError(absl::StrCat("manifest ", seq, " is gone"));
  }
  if (s != NATS_OK) return NatsFailure("reading a manifest", s, jerr);
  FrameAssembler assembler;
  bool complete = false;
  std::string body;
  absl::Status st = assembler.Add(
      seq,
      absl::string_view(natsMsg_GetData(msg),
                        static_cast<size_t>(natsMsg_GetDataLength(msg))),
      &complete, &body);
  natsMsg_Destroy(msg);
  TASKWAL_RETURN_IF_ERROR(st);
  SnapshotManifest manifest;
  if (!complete || !manifest.ParseFromString(body)) {
    return absl::DataLossError(
        absl::StrCat("message ", seq, " is not a snapshot manifest"));
  }
  return manifest;
}

// Loads every part of `manifest` into `states`.
absl::Status LoadParts(Connection& conn, const Config& config,
                       uint64_t manifest_seq, const SnapshotManifest& manifest,
                       std::vector<std::unique_ptr<StateMachine>>& states) {
  if (static_cast<size_t>(manifest.parts_size()) != states.size()) {
    return absl::DataLossError(absl::StrCat(
        "it has ", manifest.parts_size(), " partitions, not ", states.size()));
  }
  const std::string stream = SnapshotStreamName(config.cluster);
  for (int p = 0; p < manifest.parts_size(); ++p) {
    const SnapshotPart& part = manifest.parts(p);
    std::string contents;
    contents.reserve(part.bytes());
    for (uint64_t seq : part.chunk_seqs()) {
      natsMsg* msg = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      const natsStatus s =
          WithRetries(absl::Now() + config.retry_for, &jerr, [&] {
            return js_GetMsg(&msg, conn.js(), stream.c_str(), seq, nullptr,
                             &jerr);
          });
      if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
        return absl::DataLossError(absl::StrCat(
            "chunk ", seq, " of partition ", p, " is gone (",
            natsStatus_GetText(s), ", JetStream error ", jerr, ")"));
      }
      if (s != NATS_OK) return NatsFailure("reading a snapshot", s, jerr);
      contents.append(natsMsg_GetData(msg),
                      static_cast<size_t>(natsMsg_GetDataLength(msg)));
      natsMsg_Destroy(msg);
    }
    if (contents.size() != part.bytes() ||
        wal::crc32c::Value(contents.data(), contents.size()) != part.crc32c()) {
      return absl::DataLossError(absl::StrCat(
          "partition ", p, "'s snapshot fails its length or checksum"));
    }
    TASKWAL_ASSIGN_OR_RETURN(
        const SnapshotMeta meta,
        LoadSnapshotContents(contents,
                             absl::StrCat("snapshot of manifest ", manifest_seq,
                                          ", partition ", p),
                             states[p].get()));
    if (meta.lsn() != part.lsn()) {
      return absl::DataLossError(
          absl::StrCat("partition ", p, "'s snapshot holds LSN ", meta.lsn(),
                       ", not ", part.lsn()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint64_t> NewestManifestSeq(Connection& conn,
                                           const Config& config) {
  natsMsg* msg = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const std::string stream = StreamName(config.cluster);
  const std::string subject = ManifestSubject(config.cluster);
  const natsStatus s = WithRetries(absl::Now() + config.retry_for, &jerr, [&] {
    return js_GetLastMsg(&msg, conn.js(), stream.c_str(), subject.c_str(),
                         nullptr, &jerr);
  });
  if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) return 0;
  if (s != NATS_OK) return NatsFailure("finding the newest snapshot", s, jerr);
  const uint64_t seq = natsMsg_GetSequence(msg);
  natsMsg_Destroy(msg);
  return seq;
}

namespace {

// LoadNewestSnapshot from the manifest at `seq` (0: none) back.
absl::StatusOr<LoadedSnapshot> LoadFrom(
    Connection& conn, const Config& config, uint64_t seq,
    uint64_t log_first_seq,
    absl::FunctionRef<std::vector<std::unique_ptr<StateMachine>>()>
        fresh_states,
    std::vector<std::unique_ptr<StateMachine>>* states) {
  LoadedSnapshot out;
  while (seq != 0) {
    absl::StatusOr<SnapshotManifest> manifest = ReadManifest(conn, config, seq);
    if (absl::IsUnavailable(manifest.status())) return manifest.status();
    if (!manifest.ok()) {
      out.notes.push_back(
          absl::StrCat("snapshot manifest ", seq,
                       " passed over: ", manifest.status().message()));
      break;  // Purged, or damaged: nothing before it can be reached.
    }
    if (manifest->first_segment() >= log_first_seq) {
      *states = fresh_states();
      absl::Status loaded = LoadParts(conn, config, seq, *manifest, *states);
      if (absl::IsUnavailable(loaded)) return loaded;
      if (loaded.ok()) {
        out.found = true;
        out.manifest_seq = seq;
        out.first_segment = manifest->first_segment();
        for (const SnapshotPart& part : manifest->parts()) {
          out.lsn.push_back(part.lsn());
        }
        return out;
      }
      out.notes.push_back(absl::StrCat("snapshot of manifest ", seq,
                                       " does not load: ", loaded.message()));
    } else {
      out.notes.push_back(
          absl::StrCat("snapshot of manifest ", seq, " needs the journal from ",
                       manifest->first_segment(), ", which was purged"));
    }
    seq = manifest->previous_manifest_seq();
  }
  *states = fresh_states();
  if (log_first_seq > 1) {
    std::string notes;
    for (const std::string& note : out.notes)
      absl::StrAppend(&notes, "; ", note);
    return absl::DataLossError(
        absl::StrCat("the journal stream ", StreamName(config.cluster),
                     " begins at message ", log_first_seq,
                     " and no snapshot before it loads", notes));
  }
  out.lsn.assign(states->size(), 0);
  return out;
}

}  // namespace

absl::StatusOr<LoadedSnapshot> LoadNewestSnapshot(
    Connection& conn, const Config& config, uint64_t log_first_seq,
    absl::FunctionRef<std::vector<std::unique_ptr<StateMachine>>()>
        fresh_states,
    std::vector<std::unique_ptr<StateMachine>>* states) {
  // A writer that commits two snapshots while this one loads prunes what
  // it was loading: then it is no loss, and the newest snapshot is there.
  constexpr int kAttempts = 3;
  TASKWAL_ASSIGN_OR_RETURN(uint64_t newest, NewestManifestSeq(conn, config));
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<LoadedSnapshot> loaded =
        LoadFrom(conn, config, newest, log_first_seq, fresh_states, states);
    if (!absl::IsDataLoss(loaded.status()) || attempt == kAttempts) {
      return loaded;
    }
    TASKWAL_ASSIGN_OR_RETURN(const uint64_t now,
                             NewestManifestSeq(conn, config));
    if (now == newest) return loaded;
    newest = now;
  }
}

absl::Status JetStreamSnapshotStore::Write(
    absl::Span<const SnapshotMeta> metas, absl::Span<TaskTable* const> tables) {
  const uint32_t n = static_cast<uint32_t>(metas.size());
  const std::string stream = SnapshotStreamName(config_.cluster);
  const std::string subject = SnapshotSubject(config_.cluster);
  SnapshotManifest manifest;
  manifest.set_first_segment(metas.empty() ? 1 : metas[0].first_segment());
  manifest.set_previous_manifest_seq(manifest_seq_);
  // Each partition's file is made in memory (the same bytes as in a data
  // directory), then sent in chunks.
  FaultInjectionEnv env(/*seed=*/1);
  auto write_part = [&](uint32_t i) -> absl::Status {
    // WriteSnapshot ends partition i's view, on error too.
    TASKWAL_RETURN_IF_ERROR(
        WriteSnapshot(&env, "/snapshot", metas[i], tables[i]));
    const std::string path = absl::StrCat(
        "/snapshot/", SnapshotFileName(metas[i].first_segment(), i));
    TASKWAL_ASSIGN_OR_RETURN(const std::string contents,
                             env.ReadFileToString(path));
    env.RemoveFile(path).IgnoreError();
    SnapshotPart* part = manifest.add_parts();
    part->set_lsn(metas[i].lsn());
    part->set_bytes(contents.size());
    part->set_crc32c(wal::crc32c::Value(contents.data(), contents.size()));
    size_t pos = 0;
    do {
      const size_t len = std::min(kChunkBytes, contents.size() - pos);
      jsPubAck* ack = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      const natsStatus ps =
          js_Publish(&ack, conn_->js(), subject.c_str(), contents.data() + pos,
                     static_cast<int>(len), nullptr, &jerr);
      if (ps != NATS_OK) {
        return NatsFailure(absl::StrCat("writing a snapshot chunk to ", stream),
                           ps, jerr);
      }
      part->add_chunk_seqs(ack->Sequence);
      jsPubAck_Destroy(ack);
      pos += len;
    } while (pos < contents.size());
    return absl::OkStatus();
  };
  uint32_t ended = 0;  // Partitions whose view has ended.
  absl::Status s = env.CreateDir("/snapshot");
  for (uint32_t i = 0; i < n && s.ok(); ++i) {
    s = write_part(i);
    ended = i + 1;
  }
  // The partitions not reached keep no snapshot view.
  for (uint32_t j = ended; j < n; ++j) {
    for (size_t shard = 0; shard < tables[j]->num_shards(); ++shard) {
      tables[j]->EndSnapshot(shard);
    }
  }
  TASKWAL_RETURN_IF_ERROR(s);
  // The commit: fenced like any journal message.
  TASKWAL_ASSIGN_OR_RETURN(
      const uint64_t seq,
      journal_->CommitManifest(manifest.SerializeAsString()));
  previous_manifest_seq_ = manifest_seq_;
  manifest_seq_ = seq;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> JetStreamSnapshotStore::Prune() {
  if (previous_manifest_seq_ == 0) return 0;
  // Keep the snapshot before the newest, and what it needs.
  absl::StatusOr<SnapshotManifest> previous =
      ReadManifest(*conn_, config_, previous_manifest_seq_);
  if (absl::IsNotFound(previous.status())) return 0;
  TASKWAL_RETURN_IF_ERROR(previous.status());
  uint64_t first_chunk = UINT64_MAX;
  for (const SnapshotPart& part : previous->parts()) {
    for (uint64_t seq : part.chunk_seqs()) {
      first_chunk = std::min(first_chunk, seq);
    }
  }
  // A purge "before 1" must not be sent: cnats 3.4.1 then purges the
  // whole stream.
  if (first_chunk != UINT64_MAX && first_chunk > 1) {
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Sequence = first_chunk;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const std::string stream = SnapshotStreamName(config_.cluster);
    const natsStatus s = js_PurgeStream(conn_->js(), stream.c_str(), &o, &jerr);
    if (s != NATS_OK) {
      return NatsFailure(absl::StrCat("purging ", stream), s, jerr);
    }
  }
  return previous->first_segment();
}

}  // namespace taskwal::engine::jetstream
