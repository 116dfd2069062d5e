#include "benchmarks/jetstream_queue.h"

#include <nats/nats.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "benchmarks/taskwal_queue.h"
#include "taskwal/jetstream.h"
#include "wire/sharded_engine.h"

namespace taskwal::bench {
namespace {

// The stream names api/jetstream.h documents for a cluster; a KV bucket B
// is the stream KV_B.
std::vector<std::string> ClusterStreams(const std::string& cluster) {
  return {absl::StrCat("TASKWAL_", cluster),
          absl::StrCat("TASKWAL_", cluster, "_SNAP"),
          absl::StrCat("KV_TASKWAL_", cluster, "_LEASE")};
}

struct Variant {
  int replicas;
  SyncMode mode;
  uint32_t partitions;  // 0: the engine's default.
  const char* suffix;
  int shards = 1;  // Streams (wire/sharded_engine.h), all led here.
};

std::string Describe(const Variant& v) {
  std::string what = absl::StrCat(
      "taskwal on NATS JetStream, stream with ", v.replicas,
      v.replicas == 1 ? " replica" : " replicas", " (local servers), ");
  if (v.mode == SyncMode::kNone) {
    absl::StrAppend(&what,
                    "SyncMode::kNone: a call returns before the stream "
                    "acknowledges its record");
  } else {
    absl::StrAppend(&what,
                    "SyncMode::kAlways: a call returns once the stream "
                    "acknowledged its record (batched frames, one message in "
                    "flight per stream)");
  }
  if (v.partitions == 1) absl::StrAppend(&what, ", one partition");
  if (v.shards > 1) {
    absl::StrAppend(&what, ", ", v.shards,
                    " shards (streams) as one engine, all led by this "
                    "process");
  }
  return what;
}

}  // namespace

std::string UniqueClusterName() {
  static std::atomic<uint64_t> counter{0};
  const uint64_t micros =
      static_cast<uint64_t>(absl::ToUnixMicros(absl::Now()));
  // 3 + 8 + 1 + 10 + 1 + up to 8 characters: at most 31.
  return absl::StrFormat("cmp%x-%x-%x", static_cast<uint32_t>(getpid()),
                         micros & 0xffffffffffull,
                         static_cast<uint32_t>(counter.fetch_add(1)));
}

absl::Status DeleteJetStreamCluster(const std::string& servers,
                                    const std::string& cluster) {
  natsConnection* nc = nullptr;
  natsStatus s = natsConnection_ConnectTo(&nc, servers.c_str());
  if (s != NATS_OK) {
    return absl::UnavailableError(absl::StrCat(
        "cannot connect to NATS at ", servers, ": ", natsStatus_GetText(s)));
  }
  jsCtx* js = nullptr;
  s = natsConnection_JetStream(&js, nc, nullptr);
  absl::Status status;
  if (s != NATS_OK) {
    status = absl::InternalError(
        absl::StrCat("no JetStream context: ", natsStatus_GetText(s)));
  }
  for (const std::string& stream : ClusterStreams(cluster)) {
    if (js == nullptr) break;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = js_DeleteStream(js, stream.c_str(), nullptr, &jerr);
    if (s != NATS_OK && jerr != JSStreamNotFoundErr && status.ok()) {
      status = absl::InternalError(
          absl::StrCat("deleting stream ", stream, ": ", natsStatus_GetText(s),
                       jerr != 0 ? absl::StrCat(" (JetStream error ", jerr, ")")
                                 : std::string()));
    }
  }
  if (js != nullptr) jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  return status;
}

absl::StatusOr<std::unique_ptr<Engine>> OpenBenchJetStreamEngine(
    const std::string& servers, const std::string& cluster, int replicas,
    const EngineOptions& options) {
  JetStreamOptions js;
  js.servers = servers;
  js.cluster = cluster;
  js.replicas = replicas;
  if (options.sync_mode == SyncMode::kNone) {
    // Measured here (nats-server 2.9.10, cnats 3.4.1): Close of a kNone
    // engine whose last messages were still unacknowledged took
    // ack_timeout (5 s by default) every time, until the publisher read the
    // stream back. A shorter timeout keeps that out of the run's wall time.
    // Calls of a kNone engine do not wait for acknowledgements; a late one
    // only makes the publisher read the stream back sooner.
    js.ack_timeout = absl::Seconds(1);
  }
  return OpenJetStreamEngine(options, js);
}

std::vector<SystemSpec> JetStreamSystems(const std::string& servers,
                                         const std::vector<int>& replicas) {
  std::vector<Variant> variants;
  for (int r : replicas) {
    variants.push_back({r, SyncMode::kAlways, 0, ""});
  }
  if (!replicas.empty()) {
    const int most = *std::max_element(replicas.begin(), replicas.end());
    variants.push_back({most, SyncMode::kNone, 0, "-async"});
    variants.push_back({most, SyncMode::kAlways, 1, "-p1"});
    variants.push_back({most, SyncMode::kAlways, 0, "-s3", 3});
  }
  std::vector<SystemSpec> specs;
  for (const Variant& v : variants) {
    SystemSpec spec{
        absl::StrCat("taskwal-jetstream-r", v.replicas, v.suffix), Describe(v),
        v.mode == SyncMode::kNone ? Durability::kBuffered
                                  : Durability::kReplicatedMajority,
        [servers, v](const std::string& /*dir*/)
            -> absl::StatusOr<std::unique_ptr<QueueSystem>> {
          EngineOptions options = CompareOptions(v.mode);
          options.partitions = v.partitions;
          // Shard s is the cluster <base>-<s> (a name of at most 32).
          const std::string base = v.shards == 1
                                       ? UniqueClusterName()
                                       : UniqueClusterName().substr(3);
          std::vector<std::string> clusters;
          for (int s = 0; s < v.shards; ++s) {
            clusters.push_back(v.shards == 1 ? base
                                             : absl::StrCat(base, "-", s));
          }
          auto cleanup = [servers, clusters] {
            absl::Status first;
            for (const std::string& c : clusters) {
              absl::Status s = DeleteJetStreamCluster(servers, c);
              if (first.ok()) first = s;
            }
            return first;
          };
          std::vector<std::unique_ptr<Engine>> engines;
          for (const std::string& c : clusters) {
            absl::StatusOr<std::unique_ptr<Engine>> engine =
                OpenBenchJetStreamEngine(servers, c, v.replicas, options);
            if (!engine.ok()) {
              // It may have created streams before failing.
              cleanup().IgnoreError();
              return engine.status();
            }
            engines.push_back(*std::move(engine));
          }
          return std::unique_ptr<QueueSystem>(TaskwalQueue::Wrap(
              wire::NewShardedEngine(std::move(engines)), cleanup));
        }};
    spec.on_nats = true;
    specs.push_back(std::move(spec));
  }
  return specs;
}

}  // namespace taskwal::bench
