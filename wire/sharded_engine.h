#ifndef TASKWAL_WIRE_SHARDED_ENGINE_H_
#define TASKWAL_WIRE_SHARDED_ENGINE_H_

// One Engine over several independent engines, "shards", each holding the
// tasks whose idempotency keys hash to it; on JetStream each shard is a
// cluster of its own (a stream, a lease, a leader), so shards are led by
// different processes on different machines (api/jetstream.h,
// JetStreamOptions::shards).
//
// A task's id names its shard: the shard's id times the shard count plus
// the shard's index. Calls on a task (Get, Claim, Complete, Retry, ...)
// go to its shard; Submit to its key's. Where the contract spans tasks, the
// differences from one engine are:
// - SubmitBatch is all or nothing per shard: the specs of each shard are
//   one batch there, sent shard by shard; if one fails, those of earlier
//   shards stay submitted (the error says which). Submitting the same
//   batch again is safe (keys deduplicate) and completes it.
// - depends_on must name keys of the same shard (kInvalidArgument if not).
// - ClaimNext asks every shard, from a rotating start, and while waiting
//   asks them in turn (a wait of up to 50 ms each) rather than sleeping.
//   A shard that is kUnavailable (no leader) is passed over: kNotFound
//   (saying which shard was away) unless no shard answered at all, then
//   kUnavailable.
// - The bulk calls run shard by shard, sharing `limit`; the ids changed are
//   the lowest of each shard, not necessarily the lowest overall.
// - Pause, Resume, Snapshot and RunMaintenance go to every shard (the
//   first error is returned); a schedule lives in the shard of its name.
// - List merges the shards' pages in ascending id order; Stats and
//   Recovery add the shards' figures up (partitions too).

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/strings/string_view.h"
#include "taskwal/engine.h"

namespace taskwal::wire {

// The shard of a key (or a schedule name) of `shards`. Stable: part of a
// sharded cluster's layout.
uint32_t ShardOfKey(absl::string_view key, uint32_t shards);

// REQUIRES: at least one shard.
std::unique_ptr<Engine> NewShardedEngine(
    std::vector<std::unique_ptr<Engine>> shards);

}  // namespace taskwal::wire

#endif  // TASKWAL_WIRE_SHARDED_ENGINE_H_
