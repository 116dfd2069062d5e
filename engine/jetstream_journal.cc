#include "engine/jetstream_journal.h"

#include <nats/nats.h>

#include <algorithm>
#include <cstdio>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "engine/jetstream.pb.h"
#include "engine/jetstream_testing.h"
#include "google/protobuf/util/json_util.h"
#include "wal/format.h"
#include "wal/status_macros.h"

namespace taskwal::engine::jetstream {
namespace {

constexpr char kWriterHeader[] = "Taskwal-Writer";
constexpr char kExpectedLastSeqHeader[] = "Nats-Expected-Last-Sequence";
constexpr char kDescriptionPrefix[] = "taskwal journal v2 partitions=";
constexpr char kShardsField[] = "shards=";
// Room left in a message for its headers.
constexpr int64_t kHeaderRoom = 1024;
constexpr size_t kMaxPieceBytes = 1 << 20;

// Test hooks (LostJournalReplyForTesting).
std::atomic<bool> g_lose_reply{false};
std::atomic<int> g_stale_reads{0};
std::atomic<uint64_t> g_stale_by{0};

int64_t Millis(absl::Duration d) {
  return std::max<int64_t>(1, absl::ToInt64Milliseconds(d));
}

absl::Status NatsError(absl::string_view what, natsStatus s,
                       jsErrCode jerr = static_cast<jsErrCode>(0)) {
  std::string text = absl::StrCat(what, ": ", natsStatus_GetText(s));
  if (jerr != 0) absl::StrAppend(&text, " (JetStream error ", jerr, ")");
  const char* last = nats_GetLastError(nullptr);
  if (last != nullptr && *last != '\0' &&
      std::string(last) != natsStatus_GetText(s)) {
    absl::StrAppend(&text, ": ", last);
  }
  switch (s) {
    case NATS_TIMEOUT:
    case NATS_NO_RESPONDERS:
    case NATS_CONNECTION_CLOSED:
    case NATS_NO_SERVER:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_STALE_CONNECTION:
    case NATS_IO_ERROR:
      return absl::UnavailableError(text);
    default:
      return absl::InternalError(text);
  }
}

}  // namespace

LostJournalReplyForTesting::LostJournalReplyForTesting(int stale_reads,
                                                       uint64_t behind) {
  g_stale_by.store(behind);
  g_stale_reads.store(stale_reads);
  g_lose_reply.store(true);
}

bool LostJournalReplyForTesting::reply_dropped() const {
  return !g_lose_reply.load();
}

int LostJournalReplyForTesting::stale_reads_left() const {
  return g_stale_reads.load();
}

LostJournalReplyForTesting::~LostJournalReplyForTesting() {
  g_lose_reply.store(false);
  g_stale_reads.store(0);
}

bool Retryable(int status, int jetstream_error) {
  const natsStatus s = static_cast<natsStatus>(status);
  return s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS ||
         s == NATS_CONNECTION_DISCONNECTED || s == NATS_STALE_CONNECTION ||
         s == NATS_IO_ERROR || s == NATS_NO_SERVER ||
         jetstream_error == JSClusterNotAvailErr;
}

namespace {

std::string RandomWriterId() {
  absl::BitGen gen;
  char buf[33];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx",
                static_cast<unsigned long long>(absl::Uniform<uint64_t>(gen)),
                static_cast<unsigned long long>(absl::Uniform<uint64_t>(gen)));
  return buf;
}

// A message's writer header ("" without one); valid while msg is.
absl::string_view WriterOf(natsMsg* msg) {
  const char* value = nullptr;
  if (natsMsgHeader_Get(msg, kWriterHeader, &value) != NATS_OK ||
      value == nullptr) {
    return "";
  }
  return value;
}

absl::StatusOr<PubAck> ParseAck(natsMsg* msg) {
  if (natsMsg_IsNoResponders(msg)) {
    return absl::UnavailableError("no responders (no stream leader)");
  }
  PubAck ack;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const absl::string_view body(natsMsg_GetData(msg),
                               static_cast<size_t>(natsMsg_GetDataLength(msg)));
  if (!google::protobuf::util::JsonStringToMessage(std::string(body), &ack,
                                                   options)
           .ok()) {
    return absl::InternalError(
        absl::StrCat("JetStream sent an unreadable publish reply of ",
                     body.size(), " bytes"));
  }
  return ack;
}

// Stream info with retries for retryable errors until `deadline`.
absl::StatusOr<jsStreamInfo*> StreamInfo(Connection& conn,
                                         const std::string& stream,
                                         absl::Time deadline,
                                         jsErrCode* jerr_out = nullptr) {
  absl::Duration backoff = absl::Milliseconds(50);
  while (true) {
    jsStreamInfo* si = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const natsStatus s =
        js_GetStreamInfo(&si, conn.js(), stream.c_str(), nullptr, &jerr);
    if (s == NATS_OK) return si;
    if (jerr_out != nullptr) *jerr_out = jerr;
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
      return absl::NotFoundError(absl::StrCat("no stream ", stream));
    }
    if (!Retryable(s, jerr) || absl::Now() + backoff > deadline) {
      return NatsError(absl::StrCat("reading stream ", stream, "'s state"), s,
                       jerr);
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
}

// The message stored at seq, with retries as StreamInfo.
absl::StatusOr<natsMsg*> GetMessage(Connection& conn, const std::string& stream,
                                    uint64_t seq, absl::Time deadline) {
  absl::Duration backoff = absl::Milliseconds(50);
  while (true) {
    natsMsg* msg = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const natsStatus s =
        js_GetMsg(&msg, conn.js(), stream.c_str(), seq, nullptr, &jerr);
    if (s == NATS_OK) return msg;
    if (!Retryable(s, jerr) || absl::Now() + backoff > deadline) {
      return NatsError(
          absl::StrCat("reading message ", seq, " of stream ", stream), s,
          jerr);
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
}

}  // namespace

absl::Status ValidateClusterName(absl::string_view cluster) {
  if (cluster.empty() || cluster.size() > 32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a cluster name has 1 to 32 characters, not ", cluster.size()));
  }
  for (char c : cluster) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' &&
        c != '-') {
      return absl::InvalidArgumentError(
          "a cluster name may hold only letters, digits, '_' and '-'");
    }
  }
  return absl::OkStatus();
}

std::string StreamName(absl::string_view cluster) {
  return absl::StrCat("TASKWAL_", cluster);
}

std::string LogSubject(absl::string_view cluster) {
  return absl::StrCat("taskwal.", cluster, ".log");
}

std::string WriterSubject(absl::string_view cluster, absl::string_view writer) {
  return absl::StrCat(LogSubject(cluster), ".", writer);
}

std::string ManifestSubject(absl::string_view cluster) {
  return absl::StrCat("taskwal.", cluster, ".manifest");
}

std::string SnapshotStreamName(absl::string_view cluster) {
  return absl::StrCat("TASKWAL_", cluster, "_SNAP");
}

std::string SnapshotSubject(absl::string_view cluster) {
  // Outside taskwal.<cluster>.>, which the journal's stream holds.
  return absl::StrCat("taskwal-snap.", cluster);
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Connect(
    const Config& config, absl::string_view name) {
  std::vector<std::string> urls =
      absl::StrSplit(config.servers, ',', absl::SkipWhitespace());
  if (urls.empty()) {
    return absl::InvalidArgumentError("no NATS server URL given");
  }
  std::vector<const char*> url_ptrs;
  for (std::string& url : urls) {
    url = std::string(absl::StripAsciiWhitespace(url));
    url_ptrs.push_back(url.c_str());
  }
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) {
    s = natsOptions_SetServers(opts, url_ptrs.data(),
                               static_cast<int>(url_ptrs.size()));
  }
  const std::string conn_name(name);
  if (s == NATS_OK) s = natsOptions_SetName(opts, conn_name.c_str());
  if (s == NATS_OK) {
    s = natsOptions_SetTimeout(opts, Millis(config.connect_timeout));
  }
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts, true);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 100);
  // A publish goes out at once instead of waiting for the library's
  // flusher (about a millisecond per call otherwise).
  if (s == NATS_OK) s = natsOptions_SetSendAsap(opts, true);
  if (s != NATS_OK) {
    natsOptions_Destroy(opts);
    return absl::InvalidArgumentError(
        absl::StrCat("NATS options refused (servers \"", config.servers,
                     "\"): ", natsStatus_GetText(s)));
  }
  natsConnection* nc = nullptr;
  s = natsConnection_Connect(&nc, opts);
  natsOptions_Destroy(opts);
  if (s != NATS_OK) {
    return absl::UnavailableError(absl::StrCat("cannot connect to NATS at ",
                                               config.servers, ": ",
                                               natsStatus_GetText(s)));
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = Millis(config.ack_timeout);
  jsCtx* js = nullptr;
  s = natsConnection_JetStream(&js, nc, &jo);
  if (s != NATS_OK) {
    natsConnection_Destroy(nc);
    return NatsError("opening a JetStream context", s);
  }
  return std::unique_ptr<Connection>(new Connection(nc, js, config.servers));
}

Connection::~Connection() {
  jsCtx_Destroy(js_);
  natsConnection_Close(nc_);
  natsConnection_Destroy(nc_);
}

std::optional<std::string> ShardBase(absl::string_view cluster) {
  const size_t dash = cluster.rfind('-');
  if (dash == absl::string_view::npos || dash == 0) return std::nullopt;
  int shard = 0;
  if (!absl::SimpleAtoi(cluster.substr(dash + 1), &shard) || shard < 0 ||
      absl::StrCat(shard) != cluster.substr(dash + 1)) {
    return std::nullopt;
  }
  return std::string(cluster.substr(0, dash));
}

namespace {

// A journal stream's description: "taskwal journal v2 partitions=<P>
// shards=<N>", N the shard count of its cluster (1: not sharded); streams
// made before counts were recorded have no " shards=".
struct Description {
  uint32_t partitions = 0;
  int shards = 0;  // 0: none recorded (made before they were).
};

// The shard count a new stream records: 1 for a cluster of its own.
int ShardCount(const Config& config) {
  return config.shard_of == 0 ? 1 : config.shard_of;
}

std::optional<Description> ParseDescription(absl::string_view text) {
  Description d;
  if (!absl::ConsumePrefix(&text, kDescriptionPrefix)) return std::nullopt;
  const std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(text, absl::MaxSplits(' ', 1));
  if (!absl::SimpleAtoi(parts.first, &d.partitions) || d.partitions < 1) {
    return std::nullopt;
  }
  absl::string_view rest = parts.second;
  if (!rest.empty() &&
      (!absl::ConsumePrefix(&rest, kShardsField) ||
       !absl::SimpleAtoi(rest, &d.shards) || d.shards < 1 || d.shards > 64)) {
    return std::nullopt;
  }
  return d;
}

// A journal stream as found, or kNotFound; kFailedPrecondition if taskwal
// did not make it.
struct Found {
  StreamState state;
  Description description;
};
absl::StatusOr<Found> Find(Connection& conn, absl::string_view cluster,
                           absl::Time deadline) {
  const std::string stream = StreamName(cluster);
  TASKWAL_ASSIGN_OR_RETURN(jsStreamInfo * si,
                           StreamInfo(conn, stream, deadline));
  Found found;
  found.state.first_seq = si->State.FirstSeq;
  found.state.last_seq = si->State.LastSeq;
  found.state.messages = si->State.Msgs;
  found.state.bytes = si->State.Bytes;
  const std::string description =
      si->Config->Description != nullptr ? si->Config->Description : "";
  jsStreamInfo_Destroy(si);
  const std::optional<Description> d = ParseDescription(description);
  if (!d.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "stream ", stream, " was not made by this version of taskwal ",
        "(its description is \"", absl::CHexEscape(description), "\")"));
  }
  found.description = *d;
  found.state.partitions = d->partitions;
  return found;
}

// The state of the stream named in config, or kNotFound; checked against
// `partitions` (unless 0) and config.shard_of.
absl::StatusOr<StreamState> ReadStream(Connection& conn, const Config& config,
                                       uint32_t partitions,
                                       absl::Time deadline) {
  const std::string stream = StreamName(config.cluster);
  TASKWAL_ASSIGN_OR_RETURN(Found found, Find(conn, config.cluster, deadline));
  const Description& d = found.description;
  if (partitions != 0 && partitions != d.partitions) {
    return absl::FailedPreconditionError(
        absl::StrCat("stream ", stream, " has ", d.partitions,
                     " partitions, not ", partitions));
  }
  // A stream made before shard counts were recorded records none.
  if (d.shards != 0 && d.shards != ShardCount(config)) {
    if (d.shards == 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "stream ", stream, " is a cluster of its own, not a shard of a ",
          "cluster of ", config.shard_of, " shards"));
    }
    if (config.shard_of == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "stream ", stream, " is a shard of a cluster of ", d.shards,
          " shards: name that cluster (without the \"-<shard>\") with "
          "JetStreamOptions::shards = ",
          d.shards));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "stream ", stream, " is a shard of a cluster of ", d.shards,
        " shards, not ", config.shard_of,
        ": every node and client of a cluster must give it the same "
        "JetStreamOptions::shards (keys would hash to other shards)"));
  }
  return found.state;
}

// The names of the streams on the servers (empty if they cannot be
// listed: the check that needs them is then skipped).
std::vector<std::string> StreamNames(Connection& conn, absl::Time deadline) {
  absl::Duration backoff = absl::Milliseconds(50);
  while (true) {
    jsStreamNamesList* list = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const natsStatus s = js_StreamNames(&list, conn.js(), nullptr, &jerr);
    if (s == NATS_OK) {
      std::vector<std::string> names(list->List, list->List + list->Count);
      jsStreamNamesList_Destroy(list);
      return names;
    }
    if (s == NATS_NOT_FOUND) return {};  // No stream at all.
    if (!Retryable(s, jerr) || absl::Now() + backoff > deadline) return {};
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
}

// Before a cluster's stream is made: kFailedPrecondition if the cluster
// exists with another shard count (a cluster's shard count cannot change).
// Looks at the streams that exist of those the cluster could have,
// <base> and <base>-0 to <base>-63; one that cannot be read (its servers
// away) is passed over: only a count recorded is a reason to refuse.
absl::Status CheckNotResharded(Connection& conn, const Config& config,
                               absl::Time deadline) {
  const int count = ShardCount(config);
  const std::string base =
      config.shard_of == 0 ? config.cluster
                           : ShardBase(config.cluster).value_or(config.cluster);
  const std::string base_stream = StreamName(base);
  const std::string own = StreamName(config.cluster);
  for (const std::string& name : StreamNames(conn, deadline)) {
    absl::string_view rest = name;
    if (name == own || !absl::ConsumePrefix(&rest, base_stream)) {
      continue;
    }
    int shard = -1;  // <base> itself.
    if (!rest.empty() &&
        (!absl::ConsumePrefix(&rest, "-") || !absl::SimpleAtoi(rest, &shard) ||
         shard < 0 || shard > 63 || absl::StrCat(shard) != rest)) {
      continue;  // Another cluster's stream (its snapshots, say).
    }
    const std::string other = shard < 0 ? base : absl::StrCat(base, "-", shard);
    absl::StatusOr<Found> found =
        Find(conn, other, std::min(deadline, absl::Now() + config.ack_timeout));
    if (!found.ok()) continue;
    const int recorded = found->description.shards;
    if (shard < 0 && recorded <= 1 && count != 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cluster ", base, " exists without shards (stream ", base_stream,
          "): a cluster's shard count cannot change"));
    }
    // <base>-<n> recording 1 (or nothing) is a cluster of its own.
    if (shard >= 0 && recorded >= 2 && recorded != count) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cluster ", base, " has ", recorded, " shards (stream ", name,
          " is its shard ", shard, "), not ", count,
          ": every node and client of a cluster must give it the same "
          "JetStreamOptions::shards"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<StreamState> FindStream(Connection& conn, const Config& config) {
  TASKWAL_RETURN_IF_ERROR(ValidateClusterName(config.cluster));
  absl::StatusOr<StreamState> state =
      ReadStream(conn, config, 0, absl::Now() + config.retry_for);
  if (absl::IsNotFound(state.status())) {
    return absl::NotFoundError(absl::StrCat(
        "no taskwal cluster named ", config.cluster,
        " on these NATS servers (stream ", StreamName(config.cluster),
        " does not exist): check the cluster name and shard count, or start "
        "a node of it first"));
  }
  return state;
}

absl::StatusOr<StreamState> OpenStream(Connection& conn, const Config& config,
                                       uint32_t partitions) {
  TASKWAL_RETURN_IF_ERROR(ValidateClusterName(config.cluster));
  const std::string stream = StreamName(config.cluster);
  const absl::Time deadline = absl::Now() + config.retry_for;
  // Creates a stream unless it exists (two processes may race; the loser
  // reads the winner's).
  auto create = [&](const std::string& name, std::vector<std::string> subjects,
                    const std::string& description) -> absl::Status {
    std::vector<const char*> subject_ptrs;
    for (const std::string& subject : subjects) {
      subject_ptrs.push_back(subject.c_str());
    }
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name.c_str();
    cfg.Description = description.c_str();
    cfg.Subjects = subject_ptrs.data();
    cfg.SubjectsLen = static_cast<int>(subject_ptrs.size());
    cfg.Storage = js_FileStorage;
    cfg.Replicas = config.replicas;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s;
    absl::Duration backoff = absl::Milliseconds(50);
    // Creating a replicated stream can time out while its servers elect a
    // leader (or another process creates it): try again.
    while (true) {
      jsStreamInfo* si = nullptr;
      jerr = static_cast<jsErrCode>(0);
      s = js_AddStream(&si, conn.js(), &cfg, nullptr, &jerr);
      if (si != nullptr) jsStreamInfo_Destroy(si);
      if (s == NATS_OK || jerr == JSStreamNameExistErr || !Retryable(s, jerr) ||
          absl::Now() + backoff > deadline) {
        break;
      }
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, absl::Seconds(1));
    }
    if (s != NATS_OK && jerr != JSStreamNameExistErr) {
      return NatsError(
          absl::StrCat("creating stream ", name, " (R", config.replicas, ")"),
          s, jerr);
    }
    return absl::OkStatus();
  };
  const std::string snapshots = SnapshotStreamName(config.cluster);
  absl::StatusOr<jsStreamInfo*> snap_info =
      StreamInfo(conn, snapshots, deadline);
  if (snap_info.ok()) {
    jsStreamInfo_Destroy(*snap_info);
  } else if (absl::IsNotFound(snap_info.status())) {
    TASKWAL_RETURN_IF_ERROR(CheckNotResharded(conn, config, deadline));
    TASKWAL_RETURN_IF_ERROR(create(snapshots, {SnapshotSubject(config.cluster)},
                                   "taskwal snapshots v1"));
  } else {
    return snap_info.status();
  }
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<StreamState> state =
        ReadStream(conn, config, partitions, deadline);
    if (!absl::IsNotFound(state.status()) || attempt > 0) return state;
    TASKWAL_RETURN_IF_ERROR(CheckNotResharded(conn, config, deadline));
    const std::string description =
        absl::StrCat(kDescriptionPrefix, partitions != 0 ? partitions : 16, " ",
                     kShardsField, ShardCount(config));
    // Its subjects are the writers' and the manifests' alone: what else is
    // published under taskwal.<cluster>. does not land in it.
    TASKWAL_RETURN_IF_ERROR(
        create(stream,
               {absl::StrCat(LogSubject(config.cluster), ".*"),
                ManifestSubject(config.cluster)},
               description));
  }
}

absl::StatusOr<std::unique_ptr<StreamReader>> StreamReader::Open(
    Connection& conn, const Config& config, uint64_t first_seq) {
  const std::string stream = StreamName(config.cluster);
  const std::string subject = absl::StrCat("taskwal.", config.cluster, ".>");
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Ordered = true;
  so.Config.DeliverPolicy = js_DeliverByStartSequence;
  so.Config.OptStartSeq = std::max<uint64_t>(first_seq, 1);
  natsSubscription* sub = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const absl::Time deadline = absl::Now() + config.retry_for;
  absl::Duration backoff = absl::Milliseconds(50);
  natsStatus s;
  // A stream just created, or between leaders, times out for a while.
  while ((s = js_SubscribeSync(&sub, conn.js(), subject.c_str(), nullptr, &so,
                               &jerr)) != NATS_OK &&
         Retryable(s, jerr) && absl::Now() + backoff < deadline) {
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
  }
  if (s != NATS_OK) {
    return NatsError(absl::StrCat("reading stream ", stream), s, jerr);
  }
  natsSubscription_SetPendingLimits(sub, 1 << 20, 1 << 30);
  return std::unique_ptr<StreamReader>(
      new StreamReader(sub, stream, ManifestSubject(config.cluster),
                       std::max<uint64_t>(first_seq, 1)));
}

StreamReader::~StreamReader() {
  natsSubscription_Unsubscribe(sub_);
  natsSubscription_Destroy(sub_);
}

absl::Status StreamReader::Next(
    absl::Duration timeout,
    absl::FunctionRef<absl::Status(uint32_t, uint64_t, absl::string_view)> fn,
    bool* got) {
  *got = false;
  natsMsg* msg = nullptr;
  const natsStatus s = natsSubscription_NextMsg(&msg, sub_, Millis(timeout));
  if (s == NATS_TIMEOUT) return absl::OkStatus();
  if (s != NATS_OK) {
    return NatsError(
        absl::StrCat("reading stream ", stream_, " at message ", next_seq_), s);
  }
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
    natsMsg_Destroy(msg);
    return absl::OkStatus();  // Not a stream message.
  }
  const uint64_t seq = meta->Sequence.Stream;
  jsMsgMetaData_Destroy(meta);
  absl::Status result;
  if (seq != next_seq_) {
    // An ordered consumer delivers every message once, in order: a jump
    // means the messages between were purged.
    result = absl::OutOfRangeError(absl::StrCat(
        "stream ", stream_, " delivered message ", seq, " where ", next_seq_,
        " was due: the messages between were purged while it was read"));
  } else {
    *got = true;
    // Every message a taskwal writer sends names it: one that does not was
    // published by something else onto the stream's subjects, and holds no
    // records (its writer, if it leads, took it for another writer's and
    // stepped down).
    if (!WriterOf(msg).empty() && manifests_ != natsMsg_GetSubject(msg)) {
      const absl::string_view piece(
          natsMsg_GetData(msg),
          static_cast<size_t>(natsMsg_GetDataLength(msg)));
      // Reading from the middle (after a snapshot): the rest of a frame
      // that began before the first message read belongs to records the
      // snapshot holds.
      const bool skip = !started_ && first_seq_ > 1 &&
                        piece.size() >= kPieceHeaderBytes &&
                        (piece[4] & kFirstPiece) == 0;
      if (!skip) {
        started_ = true;
        bool complete = false;
        result = assembler_.Add(seq, piece, &complete, &frame_);
        if (result.ok() && complete) result = ForEachRecord(frame_, fn);
      }
    }
    if (result.ok()) {
      ++next_seq_;
      if (!assembler_.partial()) frame_end_ = seq;
    }
  }
  natsMsg_Destroy(msg);
  return result;
}

absl::Status ReadStream(
    Connection& conn, const Config& config, uint64_t first_seq,
    uint64_t last_seq,
    absl::FunctionRef<absl::Status(uint32_t, uint64_t, absl::string_view)> fn) {
  if (last_seq < first_seq) return absl::OkStatus();
  TASKWAL_ASSIGN_OR_RETURN(std::unique_ptr<StreamReader> reader,
                           StreamReader::Open(conn, config, first_seq));
  const absl::Duration timeout =
      std::max(config.ack_timeout, absl::Seconds(10));
  while (reader->next_seq() <= last_seq) {
    bool got = false;
    absl::Status s = reader->Next(timeout, fn, &got);
    if (absl::IsOutOfRange(s)) {
      // A jump: messages from next_seq() on are gone. Purged from the front
      // (a snapshot made them unneeded) only if the stream now starts after
      // them; taskwal never removes messages from the middle.
      absl::StatusOr<jsStreamInfo*> info = StreamInfo(
          conn, StreamName(config.cluster), absl::Now() + config.retry_for);
      if (info.ok()) {
        const uint64_t stream_first = (*info)->State.FirstSeq;
        jsStreamInfo_Destroy(*info);
        if (stream_first <= reader->next_seq()) {
          return absl::DataLossError(absl::StrCat(
              "stream ", StreamName(config.cluster), " lacks message ",
              reader->next_seq(), " though it starts at ", stream_first, ": ",
              s.message()));
        }
      }
    }
    TASKWAL_RETURN_IF_ERROR(s);
    if (!got) {
      return absl::UnavailableError(absl::StrCat(
          "stream ", StreamName(config.cluster), " sent nothing for ",
          absl::FormatDuration(timeout), " at message ", reader->next_seq()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<JetStreamJournal>> JetStreamJournal::Open(
    const Config& config, std::unique_ptr<Connection> conn, uint32_t partitions,
    absl::FunctionRef<absl::StatusOr<std::vector<uint64_t>>(Connection&,
                                                            uint64_t)>
        replay) {
  const std::string stream = StreamName(config.cluster);
  const std::string writer = RandomWriterId();
  const std::string subject = WriterSubject(config.cluster, writer);
  const absl::Time deadline = absl::Now() + config.retry_for;
  // The fence: an empty frame right after the stream's last message.
  const std::string fence = SplitFrame("", 64)[0];
  uint64_t fence_seq = 0;
  while (fence_seq == 0) {
    TASKWAL_ASSIGN_OR_RETURN(jsStreamInfo * si,
                             StreamInfo(*conn, stream, deadline));
    const uint64_t last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    if (last > 0) {
      // A fence of ours whose reply was lost is there already.
      TASKWAL_ASSIGN_OR_RETURN(natsMsg * msg,
                               GetMessage(*conn, stream, last, deadline));
      const bool ours = WriterOf(msg) == writer;
      natsMsg_Destroy(msg);
      if (ours) {
        fence_seq = last;
        break;
      }
    }
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, subject.c_str(), nullptr, fence.data(),
                                  static_cast<int>(fence.size()));
    const std::string expected = absl::StrCat(last);
    if (s == NATS_OK) {
      s = natsMsgHeader_Set(msg, kExpectedLastSeqHeader, expected.c_str());
    }
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, kWriterHeader, writer.c_str());
    natsMsg* reply = nullptr;
    if (s == NATS_OK) {
      s = natsConnection_RequestMsg(&reply, conn->nc(), msg,
                                    Millis(config.ack_timeout));
    }
    natsMsg_Destroy(msg);
    if (s == NATS_OK) {
      absl::StatusOr<PubAck> ack = ParseAck(reply);
      natsMsg_Destroy(reply);
      if (ack.ok() && ack->error().code() == 0 && ack->seq() == last + 1) {
        fence_seq = last + 1;
        break;
      }
      if (ack.ok() && ack->error().code() != 0 &&
          ack->error().err_code() != JSStreamWrongLastSequenceErr &&
          ack->error().code() != 503) {
        return absl::InternalError(
            absl::StrCat("JetStream refused this writer's fence on stream ",
                         stream, ": ", ack->error().description()));
      }
    } else if (!Retryable(s)) {
      return NatsError(absl::StrCat("fencing stream ", stream), s);
    }
    // Another writer appended meanwhile, or no leader: read again.
    if (absl::Now() > deadline) {
      return absl::UnavailableError(
          absl::StrCat("could not fence stream ", stream, " within ",
                       absl::FormatDuration(config.retry_for)));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  TASKWAL_ASSIGN_OR_RETURN(std::vector<uint64_t> last_lsn,
                           replay(*conn, fence_seq - 1));
  if (last_lsn.size() != partitions) {
    return absl::InternalError("replay returned the wrong partition count");
  }
  natsInbox* inbox = nullptr;
  if (natsInbox_Create(&inbox) != NATS_OK) {
    return absl::InternalError("cannot make a NATS inbox");
  }
  const std::string inbox_name = inbox;
  natsInbox_Destroy(inbox);
  std::unique_ptr<JetStreamJournal> journal(
      new JetStreamJournal(config, std::move(conn), partitions, writer,
                           inbox_name, fence_seq, std::move(last_lsn)));
  const std::string replies = absl::StrCat(inbox_name, ".>");
  const natsStatus s =
      natsConnection_Subscribe(&journal->sub_, journal->conn_->nc(),
                               replies.c_str(), &OnReply, journal.get());
  if (s != NATS_OK) {
    return NatsError("subscribing to publish replies", s);
  }
  natsSubscription_SetPendingLimits(journal->sub_, 1 << 20, 1 << 30);
  journal->publisher_ =
      std::thread([j = journal.get()] { j->PublisherLoop(); });
  return journal;
}

JetStreamJournal::JetStreamJournal(const Config& config,
                                   std::unique_ptr<Connection> conn,
                                   uint32_t partitions, std::string writer,
                                   std::string inbox, uint64_t fence_seq,
                                   std::vector<uint64_t> last_lsn)
    : config_(config),
      conn_(std::move(conn)),
      partitions_(partitions),
      writer_(std::move(writer)),
      inbox_(std::move(inbox)),
      subject_(WriterSubject(config.cluster, writer_)),
      manifest_subject_(ManifestSubject(config.cluster)),
      stream_(StreamName(config.cluster)),
      next_lsn_(last_lsn),
      durable_lsn_(std::move(last_lsn)),
      next_seq_(fence_seq + 1),
      acked_through_(fence_seq) {
  for (uint64_t lsn : next_lsn_) records_ += lsn;
  const int64_t max_payload = natsConnection_GetMaxPayload(conn_->nc());
  max_piece_bytes_ = static_cast<size_t>(std::clamp<int64_t>(
      max_payload - kHeaderRoom, 4096, static_cast<int64_t>(kMaxPieceBytes)));
}

JetStreamJournal::~JetStreamJournal() {
  Close().IgnoreError();
  if (sub_ != nullptr) {
    // Drain: the reply callback has returned for every message delivered
    // before the subscription (and this object) goes.
    natsSubscription_Drain(sub_);
    natsSubscription_WaitForDrainCompletion(sub_, 10000);
    natsSubscription_Destroy(sub_);
  }
}

void JetStreamJournal::OnReply(natsConnection*, natsSubscription*, natsMsg* msg,
                               void* closure) {
  auto* journal = static_cast<JetStreamJournal*>(closure);
  journal->HandleReply(natsMsg_GetSubject(msg), msg);
  natsMsg_Destroy(msg);
}

void JetStreamJournal::HandleReply(absl::string_view subject, natsMsg* msg) {
  // <inbox>.<epoch>.<seq>
  if (!absl::ConsumePrefix(&subject, inbox_) ||
      !absl::ConsumePrefix(&subject, ".")) {
    return;
  }
  const std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(subject, absl::MaxSplits('.', 1));
  uint64_t epoch = 0;
  uint64_t seq = 0;
  if (!absl::SimpleAtoi(parts.first, &epoch) ||
      !absl::SimpleAtoi(parts.second, &seq)) {
    return;
  }
  absl::StatusOr<PubAck> ack = ParseAck(msg);
  absl::MutexLock lock(&mu_);
  if (epoch != epoch_ || queue_.empty() || seq < queue_.front().seq ||
      seq - queue_.front().seq >= queue_.size()) {
    return;  // A reply from before a resync, or for a piece gone.
  }
  Piece& piece = queue_[seq - queue_.front().seq];
  if (!piece.sent || piece.acked) return;
  if (g_lose_reply.load(std::memory_order_relaxed) &&
      g_lose_reply.exchange(false)) {
    return;
  }
  std::string trouble;
  if (!ack.ok()) {
    trouble = std::string(ack.status().message());
  } else if (ack->error().code() != 0) {
    trouble =
        absl::StrCat("message ", seq, " refused: ", ack->error().description(),
                     " (JetStream error ", ack->error().err_code(), ")");
  } else if (ack->seq() != seq) {
    trouble = absl::StrCat("message meant for sequence ", seq,
                           " was stored at ", ack->seq());
  } else {
    piece.acked = true;
    --in_flight_;
    AdvanceLocked();
  }
  if (!trouble.empty() && trouble_.empty()) trouble_ = std::move(trouble);
  // The publisher has work whatever the reply said: the next message, or a
  // resync. Signalled after the Sync callers AdvanceLocked woke: a CondVar
  // signalled under mu_ queues its waiter on mu_, so they take mu_ before
  // the publisher does, and more is staged when it cuts the next message
  // (at 64 clients, 36 records a message against 30 the other way round).
  publisher_cv_.Signal();
}

void JetStreamJournal::AdvanceLocked() {
  bool advanced = false;
  while (!queue_.empty() && queue_.front().acked) {
    for (const PartitionLsn& r : queue_.front().durable) {
      durable_lsn_[r.partition] = std::max(durable_lsn_[r.partition], r.lsn);
    }
    acked_through_ = queue_.front().seq;
    queued_bytes_ -= queue_.front().body.size();
    queue_.pop_front();
    advanced = true;
  }
  if (advanced) WakeSyncersLocked();
}

void JetStreamJournal::WakeSyncersLocked() {
  const bool all = !failure_.ok() || closed_;
  size_t kept = 0;
  for (Syncer* syncer : syncers_) {
    if (all || DurableLocked(syncer->records)) {
      syncer->done = true;
      syncer->cv.Signal();
    } else {
      syncers_[kept++] = syncer;
    }
  }
  syncers_.resize(kept);
}

void JetStreamJournal::TakeStagedLocked() {
  std::vector<std::string> pieces = SplitFrame(staged_, max_piece_bytes_);
  for (size_t i = 0; i < pieces.size(); ++i) {
    Piece piece;
    piece.seq = next_seq_++;
    piece.body = std::move(pieces[i]);
    if (i + 1 == pieces.size()) piece.durable = std::move(staged_lsns_);
    queued_bytes_ += piece.body.size();
    queue_.push_back(std::move(piece));
  }
  staged_.clear();
  staged_lsns_.clear();
}

void JetStreamJournal::SendLocked() {
  // Messages are built under the lock and published by this thread alone,
  // in sequence order.
  std::vector<natsMsg*> out;
  const absl::Time now = absl::Now();
  for (Piece& piece : queue_) {
    if (piece.sent) {
      // Nothing goes out behind a manifest until it is stored (below).
      if (!piece.acked && piece.manifest) break;
      continue;
    }
    if (in_flight_ > 0) break;  // One message at a time (see the header).
    // A manifest is fenced by the stream's last sequence alone, which only
    // proves that no other writer came in between if everything before it
    // is stored: it waits for the pieces before it, and they for it.
    if (piece.manifest && in_flight_ > 0) break;
    natsMsg* msg = nullptr;
    const std::string reply = absl::StrCat(inbox_, ".", epoch_, ".", piece.seq);
    const std::string expected = absl::StrCat(piece.seq - 1);
    natsStatus s = natsMsg_Create(
        &msg, (piece.manifest ? manifest_subject_ : subject_).c_str(),
        reply.c_str(), piece.body.data(), static_cast<int>(piece.body.size()));
    if (s == NATS_OK) {
      s = natsMsgHeader_Set(msg, kExpectedLastSeqHeader, expected.c_str());
    }
    if (s == NATS_OK) {
      s = natsMsgHeader_Set(msg, kWriterHeader, writer_.c_str());
    }
    if (s != NATS_OK) {
      natsMsg_Destroy(msg);
      FailLocked(NatsError("building a journal message", s));
      break;
    }
    piece.sent = true;
    piece.sent_at = now;
    ++in_flight_;
    ++messages_;
    bytes_sent_ += piece.body.size();
    out.push_back(msg);
    if (piece.manifest) break;
  }
  if (out.empty()) return;
  mu_.Unlock();
  for (natsMsg* msg : out) {
    // A failure here shows as a missing reply (ack_timeout).
    natsConnection_PublishMsg(conn_->nc(), msg);
    natsMsg_Destroy(msg);
  }
  mu_.Lock();
}

void JetStreamJournal::FailLocked(absl::Status s) {
  if (failure_.ok()) failure_ = std::move(s);
  failed_.store(true, std::memory_order_release);
  publisher_cv_.Signal();
  WakeSyncersLocked();
}

absl::Status JetStreamJournal::Resync() {
  const absl::Time deadline = absl::Now() + config_.retry_for;
  absl::Duration backoff = absl::Milliseconds(50);
  std::string trouble;
  {
    absl::MutexLock lock(&mu_);
    ++epoch_;  // Replies to what was sent so far no longer count.
    trouble = trouble_;
  }
  while (true) {
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(1));
    absl::StatusOr<jsStreamInfo*> info = StreamInfo(*conn_, stream_, deadline);
    if (!info.ok()) {
      return absl::UnavailableError(
          absl::StrCat("the journal stream stopped answering (", trouble,
                       "); then: ", info.status().message()));
    }
    uint64_t last = (*info)->State.LastSeq;
    jsStreamInfo_Destroy(*info);
    int stale = g_stale_reads.load();
    while (stale > 0 &&
           !g_stale_reads.compare_exchange_weak(stale, stale - 1)) {
    }
    if (stale > 0) last -= std::min(last, g_stale_by.load());
    uint64_t first_unacked = 0;
    uint64_t highest = 0;
    {
      absl::MutexLock lock(&mu_);
      if (queue_.empty()) {
        trouble_.clear();
        return absl::OkStatus();
      }
      first_unacked = queue_.front().seq;
      highest = next_seq_ - 1;
    }
    if (last + 1 < first_unacked) {
      // A stream leader just elected answers from what it has applied,
      // which can lag what its predecessor acknowledged (committed on a
      // majority, so in the new leader's log): read again until it caught
      // up. Only a stream still short at the deadline lost records.
      if (absl::Now() < deadline) continue;
      return absl::DataLossError(absl::StrCat(
          "stream ", stream_, " ends at ", last,
          " though it acknowledged this writer's messages through ",
          first_unacked - 1, " (still after ",
          absl::FormatDuration(config_.retry_for), ")"));
    }
    // The last message acknowledged to this writer must still be its own: a
    // stream that lost it (a majority of its servers crashed within NATS's
    // sync interval) may have been filled again by another writer since.
    absl::StatusOr<natsMsg*> mine =
        GetMessage(*conn_, stream_, first_unacked - 1, deadline);
    if (!mine.ok()) {
      if (absl::Now() < deadline) continue;
      return mine.status();
    }
    const bool still_mine = WriterOf(*mine) == writer_;
    natsMsg_Destroy(*mine);
    if (!still_mine) {
      return absl::DataLossError(absl::StrCat(
          "message ", first_unacked - 1, " of stream ", stream_,
          ", acknowledged to this writer, now holds another writer's: the "
          "stream lost acknowledged records"));
    }
    if (last >= first_unacked) {
      absl::StatusOr<natsMsg*> msg =
          GetMessage(*conn_, stream_, last, deadline);
      if (!msg.ok()) {
        if (absl::Now() < deadline) continue;
        return msg.status();
      }
      const bool ours = WriterOf(*msg) == writer_;
      natsMsg_Destroy(*msg);
      if (!ours || last > highest) {
        absl::Status deposed = absl::AbortedError(absl::StrCat(
            "another writer appended to stream ", stream_, " (message ", last,
            "): this engine no longer leads the cluster's journal"));
        deposed.SetPayload(kNotLeaderPayload, absl::Cord(stream_));
        return deposed;
      }
    }
    absl::MutexLock lock(&mu_);
    for (Piece& piece : queue_) {
      if (piece.seq <= last) {
        piece.acked = true;
      } else {
        piece.sent = false;
      }
    }
    in_flight_ = 0;
    AdvanceLocked();
    trouble_.clear();
    return absl::OkStatus();
  }
}

void JetStreamJournal::PublisherLoop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      const bool room = in_flight_ == 0;
      // Pieces go out in order: if any is unsent, the last one is.
      const bool unsent = !queue_.empty() && !queue_.back().sent;
      // Closing: done once everything is acknowledged (until then, the
      // replies need the lock; waking for nothing would starve them).
      return !failure_.ok() || !trouble_.empty() ||
             (closing_ && staged_.empty() && queue_.empty()) ||
             (room && (!staged_.empty() || unsent));
    };
    // A CondVar, not Mutex::AwaitWithTimeout: the latter's condition would
    // be evaluated by every unlock of mu_. The timeout checks for overdue
    // replies.
    if (!ready()) publisher_cv_.WaitWithTimeout(&mu_, absl::Milliseconds(100));
    if (!failure_.ok()) break;
    // A piece whose reply is overdue.
    if (trouble_.empty() && !queue_.empty()) {
      for (const Piece& piece : queue_) {
        if (piece.sent && !piece.acked &&
            absl::Now() - piece.sent_at > config_.ack_timeout) {
          trouble_ =
              absl::StrCat("no reply for message ", piece.seq, " within ",
                           absl::FormatDuration(config_.ack_timeout));
          break;
        }
        if (!piece.sent) break;
      }
    }
    if (!trouble_.empty()) {
      mu_.Unlock();
      absl::Status s = Resync();
      mu_.Lock();
      if (!s.ok()) {
        FailLocked(std::move(s));
        break;
      }
      continue;
    }
    if (!staged_.empty() && in_flight_ == 0) {
      TakeStagedLocked();
    }
    SendLocked();
    if (closing_ && staged_.empty() && queue_.empty()) break;
  }
}

void JetStreamJournal::WaitForRoomLocked() {
  auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return staged_.size() + queued_bytes_ < config_.max_buffered_bytes ||
           !failure_.ok() || closing_;
  };
  mu_.Await(absl::Condition(&room));
}

absl::StatusOr<uint64_t> JetStreamJournal::Append(uint32_t partition,
                                                  const Transition& record) {
  std::string bytes;
  record.SerializeToString(&bytes);
  if (bytes.size() > wal::kMaxRecordBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a journal record of ", bytes.size(),
                     " bytes exceeds the limit of ", wal::kMaxRecordBytes));
  }
  absl::MutexLock lock(&mu_);
  WaitForRoomLocked();
  if (!failure_.ok()) return failure_;
  if (closing_) return absl::FailedPreconditionError("the journal is closed");
  const uint64_t lsn = ++next_lsn_[partition];
  const bool first = staged_.empty();
  AppendRecord(&staged_, partition, lsn, bytes);
  staged_lsns_.push_back(PartitionLsn{partition, lsn});
  if (first && in_flight_ == 0) publisher_cv_.Signal();
  ++records_;
  ++records_sent_;
  return lsn;
}

absl::Status JetStreamJournal::AppendGroup(
    absl::Span<const uint32_t> partitions,
    absl::Span<const Transition* const> records, uint64_t* lsns) {
  std::vector<std::string> bytes(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    records[i]->SerializeToString(&bytes[i]);
    if (bytes[i].size() > wal::kMaxRecordBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("a journal record of ", bytes[i].size(),
                       " bytes exceeds the limit of ", wal::kMaxRecordBytes));
    }
  }
  absl::MutexLock lock(&mu_);
  WaitForRoomLocked();
  if (!failure_.ok()) return failure_;
  if (closing_) return absl::FailedPreconditionError("the journal is closed");
  if (staged_.empty() && in_flight_ == 0) publisher_cv_.Signal();
  // Staged together, they go out in one frame: all or none.
  for (size_t i = 0; i < records.size(); ++i) {
    const uint32_t p = partitions[i];
    lsns[i] = ++next_lsn_[p];
    AppendRecord(&staged_, p, lsns[i], bytes[i]);
    staged_lsns_.push_back(PartitionLsn{p, lsns[i]});
    ++records_;
    ++records_sent_;
  }
  return absl::OkStatus();
}

bool JetStreamJournal::DurableLocked(
    absl::Span<const PartitionLsn> records) const {
  for (const PartitionLsn& r : records) {
    if (durable_lsn_[r.partition] < r.lsn) return false;
  }
  return true;
}

absl::Status JetStreamJournal::Sync(absl::Span<const PartitionLsn> records) {
  absl::MutexLock lock(&mu_);
  if (!config_.wait_for_acks) return failure_;
  return WaitDurableLocked(records);
}

absl::Status JetStreamJournal::SyncAll() {
  absl::MutexLock lock(&mu_);
  std::vector<PartitionLsn> all;
  for (uint32_t p = 0; p < partitions_; ++p) {
    all.push_back(PartitionLsn{p, next_lsn_[p]});
  }
  return WaitDurableLocked(all);
}

absl::Status JetStreamJournal::WaitDurableLocked(
    absl::Span<const PartitionLsn> records) {
  if (!DurableLocked(records) && failure_.ok() && !closed_) {
    Syncer syncer;
    syncer.records = records;
    syncers_.push_back(&syncer);
    // Whoever sets done also takes it out of syncers_.
    while (!syncer.done) syncer.cv.Wait(&mu_);
  }
  if (DurableLocked(records)) return absl::OkStatus();
  if (!failure_.ok()) return failure_;
  return absl::FailedPreconditionError("the journal closed before the sync");
}

absl::StatusOr<uint64_t> JetStreamJournal::StartSegment() {
  absl::MutexLock lock(&mu_);
  if (!failure_.ok()) return failure_;
  // Cut what is staged into pieces now: records appended from here on go
  // into frames at next_seq_ or after.
  if (!staged_.empty()) {
    TakeStagedLocked();
    publisher_cv_.Signal();
  }
  return next_seq_;
}

absl::Status JetStreamJournal::DiscardBefore(uint64_t first_seq) {
  // Never "before 1": cnats 3.4.1 then purges the whole stream.
  if (first_seq <= 1) return absl::OkStatus();
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Purge.Sequence = first_seq;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const natsStatus s = js_PurgeStream(conn_->js(), stream_.c_str(), &o, &jerr);
  if (s != NATS_OK) {
    return NatsError(
        absl::StrCat("purging stream ", stream_, " before ", first_seq), s,
        jerr);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> JetStreamJournal::CommitManifest(
    absl::string_view manifest) {
  if (manifest.size() + kPieceHeaderBytes > max_piece_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a snapshot manifest of ", manifest.size(),
        " bytes exceeds a message (", max_piece_bytes_, " bytes)"));
  }
  const std::string piece = SplitFrame(manifest, manifest.size() + 64)[0];
  absl::MutexLock lock(&mu_);
  if (!failure_.ok()) return failure_;
  if (closing_) return absl::FailedPreconditionError("the journal is closed");
  if (!staged_.empty()) TakeStagedLocked();
  Piece p;
  p.seq = next_seq_++;
  p.body = piece;
  p.manifest = true;
  const uint64_t seq = p.seq;
  queued_bytes_ += p.body.size();
  queue_.push_back(std::move(p));
  publisher_cv_.Signal();
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return acked_through_ >= seq || !failure_.ok() || closed_;
  };
  mu_.Await(absl::Condition(&done));
  if (acked_through_ >= seq) return seq;
  if (!failure_.ok()) return failure_;
  return absl::FailedPreconditionError("the journal closed before the commit");
}

uint64_t JetStreamJournal::records() const {
  absl::MutexLock lock(&mu_);
  return records_;
}

JournalStats JetStreamJournal::stats() const {
  absl::MutexLock lock(&mu_);
  JournalStats s;
  s.bytes_written = bytes_sent_;
  s.flushes = messages_;
  s.records_flushed = records_sent_;
  return s;
}

absl::Status JetStreamJournal::Failure() const {
  if (!failed_.load(std::memory_order_acquire)) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  return failure_;
}

absl::Status JetStreamJournal::Close() {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) {
      return absl::FailedPreconditionError("the journal is already closed");
    }
    closing_ = true;
    publisher_cv_.Signal();
  }
  if (publisher_.joinable()) publisher_.join();
  absl::MutexLock lock(&mu_);
  closed_ = true;
  WakeSyncersLocked();
  if (!failure_.ok()) return failure_;
  if (!staged_.empty() || !queue_.empty()) {
    return absl::InternalError("the journal closed with records unsent");
  }
  return absl::OkStatus();
}

}  // namespace taskwal::engine::jetstream
