// JetStreamLease (api/jetstream.h) on a JetStream key-value bucket.

#include <nats/nats.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "engine/jetstream_journal.h"
#include "engine/jetstream_testing.h"
#include "taskwal/jetstream.h"
#include "wal/status_macros.h"

namespace taskwal {
namespace engine::jetstream {

namespace {

constexpr char kLeaseKey[] = "leader";

// RefusedLeaseRenewalsForTesting: renewals left to answer as refused.
std::atomic<int> g_refused_renewals{0};

// Takes one of the renewals a test asked to be refused, if any is left.
bool TakeRefusedRenewal() {
  int left = g_refused_renewals.load();
  while (left > 0 &&
         !g_refused_renewals.compare_exchange_weak(left, left - 1)) {
  }
  return left > 0;
}

std::string BucketName(absl::string_view cluster) {
  return absl::StrCat("TASKWAL_", cluster, "_LEASE");
}

class KvLease final : public JetStreamLease {
 public:
  KvLease(std::unique_ptr<Connection> conn, kvStore* kv, std::string holder,
          absl::Duration ttl, uint64_t revision)
      : conn_(std::move(conn)),
        kv_(kv),
        holder_(std::move(holder)),
        ttl_(ttl),
        revision_(revision),
        renewed_(absl::Now()) {
    renewer_ = std::thread([this] { RenewLoop(); });
  }

  ~KvLease() override {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    renewer_.join();
    kvStore_Destroy(kv_);
  }

  // Not past its ttl since the last renewal began, whatever the renewer
  // thread is waiting for.
  bool held() const override {
    absl::MutexLock lock(&mu_);
    return held_ && absl::Now() - renewed_ < ttl_;
  }

  bool WaitLost(absl::Duration timeout) const override {
    absl::MutexLock lock(&mu_);
    auto lost = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !held_; };
    mu_.AwaitWithTimeout(absl::Condition(&lost),
                         std::min(timeout, renewed_ + ttl_ - absl::Now()));
    return held_ && absl::Now() - renewed_ < ttl_;
  }

  absl::Status Release() override {
    {
      absl::MutexLock lock(&mu_);
      if (!held_) return absl::OkStatus();
      held_ = false;
      stop_ = true;
    }
    // Only the holder's own revision is deleted: a successor's key stays.
    uint64_t revision = 0;
    const natsStatus s =
        kvStore_Update(&revision, kv_, kLeaseKey, "", 0, CurrentRevision());
    if (s != NATS_OK) return absl::OkStatus();  // Expires on its own.
    if (kvStore_Delete(kv_, kLeaseKey) != NATS_OK) {
      return absl::UnavailableError(
          "the lease was given up but not deleted; it expires after its ttl");
    }
    return absl::OkStatus();
  }

 private:
  uint64_t CurrentRevision() const {
    absl::MutexLock lock(&mu_);
    return revision_;
  }

  void RenewLoop() {
    absl::MutexLock lock(&mu_);
    while (true) {
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
      mu_.AwaitWithTimeout(absl::Condition(&stop), ttl_ / 3);
      if (stop_ || !held_) return;
      // Not renewed for a whole ttl (calls that took long): lost, even if
      // the expired key were still there to renew (held() never becomes
      // true again).
      if (absl::Now() - renewed_ >= ttl_) {
        held_ = false;
        return;
      }
      const uint64_t revision = revision_;
      const absl::Time attempt = absl::Now();  // The key lives ttl from here.
      const absl::Time valid_until = renewed_ + ttl_;
      mu_.Unlock();
      uint64_t next = 0;
      const natsStatus s =
          TakeRefusedRenewal()
              ? NATS_ERR
              : kvStore_Update(&next, kv_, kLeaseKey, holder_.data(),
                               static_cast<int>(holder_.size()), revision);
      // NATS_ERR: JetStream refused the update. The key may have another
      // revision (taken, or expired), or the bucket's stream could not
      // take it just then (electing a leader, say): only the key tells.
      // (Past the ttl it is lost anyway: no need to ask.)
      const bool taken =
          s == NATS_ERR && absl::Now() < valid_until && !StillOurs(revision);
      mu_.Lock();
      if (s == NATS_OK) {
        revision_ = next;
        renewed_ = attempt;
      } else if (taken || absl::Now() - renewed_ >= ttl_) {
        held_ = false;
        return;
      }
    }
  }

  // After a refused renewal: whether the key still holds this holder's
  // revision. No key, or another revision or holder, means the lease is
  // gone; no answer tells nothing (the next renewal tries again, and the
  // lease counts as held only until its ttl ran out).
  bool StillOurs(uint64_t revision) const {
    kvEntry* entry = nullptr;
    const natsStatus s = kvStore_Get(&entry, kv_, kLeaseKey);
    if (s == NATS_NOT_FOUND) return false;
    if (s != NATS_OK) return true;
    const bool ours =
        kvEntry_Revision(entry) == revision &&
        static_cast<size_t>(kvEntry_ValueLen(entry)) == holder_.size() &&
        std::memcmp(kvEntry_Value(entry), holder_.data(), holder_.size()) == 0;
    kvEntry_Destroy(entry);
    return ours;
  }

  const std::unique_ptr<Connection> conn_;
  kvStore* const kv_;
  const std::string holder_;
  const absl::Duration ttl_;
  mutable absl::Mutex mu_;
  uint64_t revision_ ABSL_GUARDED_BY(mu_);
  absl::Time renewed_ ABSL_GUARDED_BY(mu_);
  bool held_ ABSL_GUARDED_BY(mu_) = true;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread renewer_;
};

}  // namespace

RefusedLeaseRenewalsForTesting::RefusedLeaseRenewalsForTesting(int renewals) {
  g_refused_renewals.store(renewals);
}

RefusedLeaseRenewalsForTesting::~RefusedLeaseRenewalsForTesting() {
  g_refused_renewals.store(0);
}

int RefusedLeaseRenewalsForTesting::left() const {
  return g_refused_renewals.load();
}

}  // namespace engine::jetstream

absl::StatusOr<std::unique_ptr<JetStreamLease>> JetStreamLease::Acquire(
    const JetStreamOptions& jetstream, absl::string_view holder,
    const Options& options) {
  namespace js = engine::jetstream;
  TASKWAL_RETURN_IF_ERROR(js::ValidateOneShard(jetstream));
  if (options.ttl < absl::Milliseconds(100) || options.ttl > absl::Hours(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a lease's ttl is 100 ms to 1 hour, not ",
                     absl::FormatDuration(options.ttl)));
  }
  if (holder.empty() || holder.size() > 256) {
    return absl::InvalidArgumentError("a lease holder has 1 to 256 bytes");
  }
  const js::Config config = js::MakeConfig(jetstream);
  TASKWAL_ASSIGN_OR_RETURN(
      std::unique_ptr<js::Connection> conn,
      js::Connection::Connect(config,
                              absl::StrCat("taskwal lease ", config.cluster)));
  const std::string bucket = js::BucketName(config.cluster);
  kvStore* kv = nullptr;
  natsStatus s = js_KeyValue(&kv, conn->js(), bucket.c_str());
  if (s != NATS_OK) {
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = bucket.c_str();
    cfg.History = 1;
    cfg.TTL = absl::ToInt64Nanoseconds(options.ttl);
    cfg.StorageType = js_FileStorage;
    cfg.Replicas = config.replicas;
    s = js_CreateKeyValue(&kv, conn->js(), &cfg);
    if (s != NATS_OK) {
      // Someone else made it meanwhile?
      s = js_KeyValue(&kv, conn->js(), bucket.c_str());
    }
    if (s != NATS_OK) {
      return absl::UnavailableError(
          absl::StrCat("cannot open or create the lease bucket ", bucket, ": ",
                       natsStatus_GetText(s)));
    }
  }
  // An existing bucket keeps the ttl it was made with: a different one
  // would make takeovers wait for the other.
  kvStatus* status = nullptr;
  if (kvStore_Status(&status, kv) == NATS_OK) {
    const int64_t ttl_ns = kvStatus_TTL(status);
    kvStatus_Destroy(status);
    if (ttl_ns != absl::ToInt64Nanoseconds(options.ttl)) {
      kvStore_Destroy(kv);
      return absl::InvalidArgumentError(absl::StrCat(
          "the lease bucket ", bucket, " was made with a ttl of ",
          absl::FormatDuration(absl::Nanoseconds(ttl_ns)), ", not ",
          absl::FormatDuration(options.ttl),
          ": use that ttl, or delete the bucket while no one leads"));
    }
  }
  const std::string value(holder);
  absl::Duration wait = std::min(options.ttl / 4, absl::Milliseconds(250));
  while (true) {
    uint64_t revision = 0;
    s = kvStore_Create(&revision, kv, js::kLeaseKey, value.data(),
                       static_cast<int>(value.size()));
    if (s == NATS_OK) {
      return std::unique_ptr<JetStreamLease>(std::make_unique<js::KvLease>(
          std::move(conn), kv, value, options.ttl, revision));
    }
    if (absl::Now() + wait > options.deadline) {
      kvStore_Destroy(kv);
      return absl::DeadlineExceededError(
          absl::StrCat("the lease of cluster ", config.cluster,
                       " stayed held by another process (last answer: ",
                       natsStatus_GetText(s), ")"));
    }
    absl::SleepFor(wait);
  }
}

}  // namespace taskwal
