// Microbenchmarks of taskwal's API and of the pieces under it (record
// encoding, CRC32C, replay, snapshots).
//
//   bazel build --config=opt //benchmarks:engine_benchmark
//   bazel-bin/benchmarks/engine_benchmark [--benchmark_filter=Submit]
//
// Engines live in a fresh directory under $TMPDIR (default /tmp), on the
// real disk, removed after each run. Every API benchmark reports items/s
// over wall time (UseRealTime), since in kAlways mode a thread mostly waits
// for fdatasync and CPU time would overstate the rate. `/always`,
// `/interval` and `/none` name the SyncMode; `/threads:N` is the number of
// client threads sharing one engine. Automatic snapshots are off
// (snapshot_every_records = 0) so that a run measures only what it names.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "benchmarks/bench_util.h"
#include "engine/transition.pb.h"
#include "taskwal/engine.h"
#include "wal/crc32c.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/log_writer.h"
#include "wal/wal.h"

namespace taskwal::bench {
namespace {

constexpr size_t kPayloadBytes = 128;
constexpr size_t kBatch = 10000;  // EngineOptions::max_batch_size default.

[[noreturn]] void Die(absl::string_view what, const absl::Status& status) {
  std::fprintf(stderr, "engine_benchmark: %.*s: %s\n",
               static_cast<int>(what.size()), what.data(),
               status.ToString().c_str());
  std::abort();
}

template <typename T>
T ValueOrDie(absl::StatusOr<T> v, absl::string_view what) {
  if (!v.ok()) Die(what, v.status());
  return *std::move(v);
}

void CheckOk(const absl::Status& s, absl::string_view what) {
  if (!s.ok()) Die(what, s);
}

std::string Payload() { return std::string(kPayloadBytes, 'p'); }

TaskSpec Spec(std::string key) {
  TaskSpec spec;
  spec.idempotency_key = std::move(key);
  spec.type = "bench";
  spec.payload = Payload();
  return spec;
}

EngineOptions Options(const std::string& dir, SyncMode mode) {
  EngineOptions options;
  options.data_dir = dir;
  options.sync_mode = mode;
  options.snapshot_every_records = 0;
  return options;
}

// Submits `count` tasks with keys <prefix><i> in batches.
// Submits `count` tasks; returns their ids, ascending (with partitions,
// ids are not 1..count).
std::vector<uint64_t> Prefill(Engine* engine, absl::string_view prefix,
                              uint64_t count, const TaskSpec& base) {
  std::vector<TaskSpec> batch;
  std::vector<uint64_t> ids;
  for (uint64_t i = 0; i < count; ++i) {
    TaskSpec spec = base;
    spec.idempotency_key = absl::StrCat(prefix, i);
    batch.push_back(std::move(spec));
    if (batch.size() == kBatch || i + 1 == count) {
      for (const SubmitResult& r :
           ValueOrDie(engine->SubmitBatch(batch), "prefill")) {
        ids.push_back(r.task_id);
      }
      batch.clear();
    }
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

// The engine shared by all threads of one benchmark run. Thread 0 opens it
// before the loop and closes it after; Google Benchmark's start and stop
// barriers order that against the other threads' loops.
struct Shared {
  std::optional<TempDir> dir;
  std::unique_ptr<Engine> engine;
  std::atomic<uint64_t> next_key{0};
  std::vector<uint64_t> ids;  // Of the prefilled tasks, ascending.
};
Shared* shared = nullptr;

void OpenShared(benchmark::State& state, SyncMode mode) {
  if (state.thread_index() != 0) return;
  shared = new Shared;
  shared->dir.emplace(
      ValueOrDie(TempDir::Create(ScratchRoot(), "taskwal-bench-"), "tmpdir"));
  shared->engine = ValueOrDie(
      Engine::Open(Options(shared->dir->Sub("engine"), mode)), "open");
}

void CloseShared(benchmark::State& state) {
  if (state.thread_index() != 0) return;
  CheckOk(shared->engine->Close(), "close");
  delete shared;
  shared = nullptr;
}

// Total iterations all threads of this run will do.
uint64_t TotalIterations(const benchmark::State& state) {
  return static_cast<uint64_t>(state.max_iterations) *
         static_cast<uint64_t>(state.threads());
}

// --- API, per sync mode and thread count ---------------------------------

void BM_SubmitNewKey(benchmark::State& state, SyncMode mode) {
  OpenShared(state, mode);
  TaskSpec spec = Spec("");
  const std::string prefix = absl::StrCat("t", state.thread_index(), "-");
  uint64_t i = 0;
  for (auto _ : state) {
    spec.idempotency_key = absl::StrCat(prefix, i++);
    auto r = shared->engine->Submit(spec);
    if (!r.ok() || r->deduplicated) Die("submit", r.status());
  }
  state.SetItemsProcessed(state.iterations());
  CloseShared(state);
}

void BM_SubmitDuplicateKey(benchmark::State& state, SyncMode mode) {
  OpenShared(state, mode);
  if (state.thread_index() == 0)
    Prefill(shared->engine.get(), "dup-", 1024, Spec(""));
  // Wait for the prefill: the loop's start barrier orders it.
  TaskSpec spec = Spec("");
  uint64_t i = static_cast<uint64_t>(state.thread_index());
  for (auto _ : state) {
    spec.idempotency_key = absl::StrCat("dup-", i++ % 1024);
    auto r = shared->engine->Submit(spec);
    if (!r.ok() || !r->deduplicated) Die("duplicate submit", r.status());
  }
  state.SetItemsProcessed(state.iterations());
  CloseShared(state);
}

void BM_ClaimNextComplete(benchmark::State& state, SyncMode mode) {
  OpenShared(state, mode);
  if (state.thread_index() == 0) {
    Prefill(shared->engine.get(), "c-", TotalIterations(state), Spec(""));
  }
  const std::string worker = absl::StrCat("w", state.thread_index());
  for (auto _ : state) {
    auto c = ValueOrDie(shared->engine->ClaimNext(worker, {}), "claim");
    CheckOk(shared->engine->Complete(c.claim, "ok"), "complete");
  }
  state.SetItemsProcessed(state.iterations());
  CloseShared(state);
}

void BM_Lifecycle(benchmark::State& state, SyncMode mode) {
  OpenShared(state, mode);
  TaskSpec spec = Spec("");
  const std::string prefix = absl::StrCat("t", state.thread_index(), "-");
  const std::string worker = absl::StrCat("w", state.thread_index());
  uint64_t i = 0;
  for (auto _ : state) {
    spec.idempotency_key = absl::StrCat(prefix, i++);
    ValueOrDie(shared->engine->Submit(spec), "submit");
    // Every thread has submitted at least as many tasks as it claimed, so a
    // task is ready; it may be another thread's.
    auto c = ValueOrDie(shared->engine->ClaimNext(worker, {}), "claim");
    CheckOk(shared->engine->Complete(c.claim, "ok"), "complete");
  }
  state.SetItemsProcessed(state.iterations());
  CloseShared(state);
}

// Claim, then Fail with attempts left: the task goes back to PENDING at once
// (zero backoff) and is claimed again later. One item = claim + fail.
void BM_FailRetry(benchmark::State& state, SyncMode mode) {
  OpenShared(state, mode);
  if (state.thread_index() == 0) {
    TaskSpec base = Spec("");
    base.max_attempts = 1000;
    RetryPolicy no_backoff;
    no_backoff.set_multiplier(1.0);
    base.retry_policy = no_backoff;
    Prefill(shared->engine.get(), "f-",
            TotalIterations(state) / 500 + 16 * state.threads() + 16, base);
  }
  const std::string worker = absl::StrCat("w", state.thread_index());
  for (auto _ : state) {
    auto c = ValueOrDie(shared->engine->ClaimNext(worker, {}), "claim");
    CheckOk(shared->engine->Fail(c.claim, "err"), "fail");
  }
  state.SetItemsProcessed(state.iterations());
  CloseShared(state);
}

constexpr uint64_t kReadTasks = 100000;

void BM_Get(benchmark::State& state) {
  OpenShared(state, SyncMode::kNone);
  if (state.thread_index() == 0) {
    shared->ids = Prefill(shared->engine.get(), "g-", kReadTasks, Spec(""));
  }
  uint64_t x = 0x9e3779b97f4a7c15ull * (state.thread_index() + 1);
  for (auto _ : state) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    auto t = shared->engine->Get(shared->ids[x % kReadTasks]);
    if (!t.ok()) Die("get", t.status());
    benchmark::DoNotOptimize(t->payload().data());
  }
  state.SetItemsProcessed(state.iterations());
  CloseShared(state);
}

constexpr uint64_t kListTasks = 10000;

void BM_ListPage100(benchmark::State& state) {
  OpenShared(state, SyncMode::kNone);
  if (state.thread_index() == 0) {
    shared->ids = Prefill(shared->engine.get(), "l-", kListTasks, Spec(""));
  }
  uint64_t x = 0x9e3779b97f4a7c15ull * (state.thread_index() + 1);
  ListFilter filter;
  filter.limit = 100;
  for (auto _ : state) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    filter.after_id = shared->ids[x % (kListTasks - filter.limit)];
    auto page = shared->engine->List(filter);
    if (!page.ok() || page->tasks.size() != filter.limit) {
      Die("list", page.status());
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("items = pages of 100 tasks");
  CloseShared(state);
}

#define TASKWAL_THREADS ->Threads(1)->Threads(4)->Threads(16)->Threads(64)
#define TASKWAL_SYNC_MODES(fn)                         \
  BENCHMARK_CAPTURE(fn, always, SyncMode::kAlways)     \
  TASKWAL_THREADS->UseRealTime();                      \
  BENCHMARK_CAPTURE(fn, interval, SyncMode::kInterval) \
  TASKWAL_THREADS->UseRealTime();                      \
  BENCHMARK_CAPTURE(fn, none, SyncMode::kNone) TASKWAL_THREADS->UseRealTime()

TASKWAL_SYNC_MODES(BM_SubmitNewKey);
TASKWAL_SYNC_MODES(BM_SubmitDuplicateKey);
TASKWAL_SYNC_MODES(BM_ClaimNextComplete);
TASKWAL_SYNC_MODES(BM_Lifecycle);
TASKWAL_SYNC_MODES(BM_FailRetry);
BENCHMARK(BM_Get) TASKWAL_THREADS->UseRealTime();
BENCHMARK(BM_ListPage100) TASKWAL_THREADS->UseRealTime();

// --- Record encoding: Transition protobuf and log framing ----------------

engine::Transition SampleTransition(absl::string_view kind) {
  engine::Transition t;
  t.set_time_micros(1700000000000000);
  if (kind == "submit") {
    Task* task = t.mutable_submit()->add_tasks();
    task->set_id(123456);
    task->set_idempotency_key("order-0000123456");
    task->set_type("bench");
    task->set_payload(Payload());
    task->set_status(PENDING);
    task->set_max_attempts(3);
    task->set_created_micros(1700000000000000);
    *task->mutable_retry_policy() = EngineOptions::DefaultRetryPolicy();
  } else if (kind == "claim") {
    engine::ClaimRecord* c = t.mutable_claim();
    c->set_task_id(123456);
    c->set_worker_id("worker-17");
    c->set_claim_token(987654);
    c->set_lease_deadline_micros(1700000030000000);
  } else {
    t.mutable_complete()->set_task_id(123456);
    t.mutable_complete()->set_result("ok");
  }
  return t;
}

void BM_TransitionSerialize(benchmark::State& state, const char* kind) {
  const engine::Transition t = SampleTransition(kind);
  std::string buffer(t.ByteSizeLong() + 64, '\0');
  size_t bytes = 0;
  for (auto _ : state) {
    const size_t size = t.ByteSizeLong();
    t.SerializeWithCachedSizesToArray(
        reinterpret_cast<uint8_t*>(buffer.data()));
    benchmark::DoNotOptimize(buffer.data());
    bytes += size;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}

void BM_TransitionParse(benchmark::State& state, const char* kind) {
  const std::string bytes = SampleTransition(kind).SerializeAsString();
  engine::Transition t;
  for (auto _ : state) {
    if (!t.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      Die("parse", absl::DataLossError(kind));
    }
    benchmark::DoNotOptimize(t.time_micros());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * bytes.size()));
}

BENCHMARK_CAPTURE(BM_TransitionSerialize, submit, "submit");
BENCHMARK_CAPTURE(BM_TransitionSerialize, claim, "claim");
BENCHMARK_CAPTURE(BM_TransitionSerialize, complete, "complete");
BENCHMARK_CAPTURE(BM_TransitionParse, submit, "submit");
BENCHMARK_CAPTURE(BM_TransitionParse, claim, "claim");
BENCHMARK_CAPTURE(BM_TransitionParse, complete, "complete");

// AppendRecord: header, copy and CRC of one serialized submit record.
void BM_WalAppendRecord(benchmark::State& state) {
  const std::string payload = SampleTransition("submit").SerializeAsString();
  std::string buffer;
  buffer.reserve(4096 * (payload.size() + wal::kRecordHeaderSize));
  uint64_t lsn = 0;
  for (auto _ : state) {
    if (buffer.size() > 4000 * (payload.size() + wal::kRecordHeaderSize)) {
      buffer.clear();
    }
    wal::AppendRecord(wal::RecordType::kTransition, 0, ++lsn, payload, &buffer);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(
      state.iterations() * (payload.size() + wal::kRecordHeaderSize)));
}
BENCHMARK(BM_WalAppendRecord);

// Wal::Append + Wal::Sync per iteration: the log alone, one 128-byte record
// per call, with N client threads sharing the group commit, each appending
// to a partition of its own (as clients of different engine partitions
// do). In kAlways mode this is the ceiling for the engine's durable calls:
// everything above it is the engine's own work.
struct SharedWal {
  std::optional<TempDir> dir;
  std::unique_ptr<wal::Wal> log;
};
SharedWal* shared_wal = nullptr;

void BM_WalAppendSync(benchmark::State& state, wal::WalSync mode) {
  if (state.thread_index() == 0) {
    shared_wal = new SharedWal;
    shared_wal->dir.emplace(
        ValueOrDie(TempDir::Create(ScratchRoot(), "taskwal-bench-"), "tmpdir"));
    wal::WalOptions options;
    options.env = Env::Default();
    options.dir = shared_wal->dir->Sub("wal");
    options.sync = mode;
    options.partitions = static_cast<uint32_t>(state.threads());
    CheckOk(options.env->CreateDir(options.dir), "mkdir");
    shared_wal->log = ValueOrDie(
        wal::Wal::Open(options, {},
                       std::vector<uint64_t>(options.partitions, 0), 1),
        "wal open");
  }
  const std::string payload = Payload();
  const auto lane = static_cast<uint32_t>(state.thread_index());
  for (auto _ : state) {
    const uint64_t lsn =
        ValueOrDie(shared_wal->log->Append(lane, payload.size(),
                                           [&](char* dst) {
                                             std::memcpy(dst, payload.data(),
                                                         payload.size());
                                           }),
                   "append");
    CheckOk(shared_wal->log->Sync(lane, lsn), "sync");
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    CheckOk(shared_wal->log->Close(), "wal close");
    delete shared_wal;
    shared_wal = nullptr;
  }
}
BENCHMARK_CAPTURE(BM_WalAppendSync, always, wal::WalSync::kAlways)
TASKWAL_THREADS->UseRealTime();
BENCHMARK_CAPTURE(BM_WalAppendSync, interval, wal::WalSync::kInterval)
TASKWAL_THREADS->UseRealTime();

// LogReader::Read over an in-memory segment of submit, claim and complete
// records; one item = one record framed and CRC-checked (not parsed).
void BM_LogReaderRead(benchmark::State& state) {
  constexpr int kRecords = 30000;
  std::string contents = wal::EncodeFileHeader(wal::kSegmentMagic, 1);
  const std::string kinds[3] = {
      SampleTransition("submit").SerializeAsString(),
      SampleTransition("claim").SerializeAsString(),
      SampleTransition("complete").SerializeAsString()};
  for (int i = 0; i < kRecords; ++i) {
    wal::AppendRecord(wal::RecordType::kTransition, 0, i + 1, kinds[i % 3],
                      &contents);
  }
  for (auto _ : state) {
    wal::LogReader reader(contents, "bench");
    wal::LogReader::Record record;
    int n = 0;
    while (true) {
      absl::StatusOr<bool> more = reader.Read(&record);
      if (!more.ok()) Die("read", more.status());
      if (!*more) break;
      ++n;
    }
    if (n != kRecords) Die("read", absl::DataLossError("record count"));
  }
  state.SetItemsProcessed(state.iterations() * kRecords);
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * contents.size()));
}
BENCHMARK(BM_LogReaderRead);

// --- CRC32C ---------------------------------------------------------------

void BM_Crc32cHardware(benchmark::State& state) {
  const std::string data(static_cast<size_t>(state.range(0)), 'x');
  uint32_t crc = 0;
  for (auto _ : state) {
    crc = wal::crc32c::Extend(crc, data.data(), data.size());
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * data.size()));
  state.SetItemsProcessed(state.iterations());
  if (!wal::crc32c::IsHardwareAccelerated()) {
    state.SetLabel("no SSE4.2: this is the portable path");
  }
}

void BM_Crc32cPortable(benchmark::State& state) {
  const std::string data(static_cast<size_t>(state.range(0)), 'x');
  uint32_t crc = 0;
  for (auto _ : state) {
    crc = wal::crc32c::ExtendPortable(crc, data.data(), data.size());
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(
      static_cast<int64_t>(state.iterations() * data.size()));
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_Crc32cHardware)
    ->Arg(64)
    ->Arg(256)
    ->Arg(4096)
    ->Arg(65536)
    ->Arg(1 << 20);
BENCHMARK(BM_Crc32cPortable)
    ->Arg(64)
    ->Arg(256)
    ->Arg(4096)
    ->Arg(65536)
    ->Arg(1 << 20);

// --- Recovery ---------------------------------------------------------------

// A data directory built once per process, removed at exit.
struct BuiltDir {
  TempDir dir;
  uint64_t records = 0;
  uint64_t tasks = 0;
};

// kNone engine: `lifecycles` tasks submitted, claimed and completed, three
// records each; with snapshot, then Snapshot(), one more task, Snapshot()
// again, so the log the older snapshot covers is discarded as in a
// long-running engine.
std::unique_ptr<BuiltDir> BuildDir(uint64_t lifecycles, bool snapshot) {
  auto built = std::make_unique<BuiltDir>(BuiltDir{
      ValueOrDie(TempDir::Create(ScratchRoot(), "taskwal-bench-"), "tmpdir")});
  auto engine = ValueOrDie(
      Engine::Open(Options(built->dir.Sub("engine"), SyncMode::kNone)), "open");
  TaskSpec spec = Spec("");
  for (uint64_t i = 0; i < lifecycles; ++i) {
    spec.idempotency_key = absl::StrCat("r-", i);
    ValueOrDie(engine->Submit(spec), "submit");
    auto c = ValueOrDie(engine->ClaimNext("w", {}), "claim");
    CheckOk(engine->Complete(c.claim, "ok"), "complete");
  }
  built->records = 3 * lifecycles;
  built->tasks = lifecycles;
  if (snapshot) {
    CheckOk(engine->Snapshot(), "snapshot");
    spec.idempotency_key = "r-last";
    ValueOrDie(engine->Submit(spec), "submit");
    CheckOk(engine->Snapshot(), "snapshot");
    built->records += 1;
    built->tasks += 1;
  }
  CheckOk(engine->Close(), "close");
  return built;
}

EngineOptions RecoveryOptions(const BuiltDir& built) {
  EngineOptions options = Options(built.dir.Sub("engine"), SyncMode::kNone);
  options.maintenance_interval = absl::ZeroDuration();
  return options;
}

// Engine::Open of a log with no snapshot; one item = one record replayed
// (read, CRC-checked, parsed, applied).
void BM_ReplayPerRecord(benchmark::State& state) {
  static const std::unique_ptr<BuiltDir> built =
      BuildDir(100000, /*snapshot=*/false);
  for (auto _ : state) {
    auto engine = ValueOrDie(Engine::Open(RecoveryOptions(*built)), "open");
    if (engine->Recovery().records_replayed != built->records) {
      Die("replay", absl::InternalError("wrong number of records replayed"));
    }
    state.PauseTiming();
    CheckOk(engine->Close(), "close");
    engine.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * built->records);
  state.SetLabel(absl::StrCat(built->records, " records per open"));
}
BENCHMARK(BM_ReplayPerRecord)->Unit(benchmark::kMillisecond)->UseRealTime();

constexpr uint64_t kSnapshotTasks = 100000;

// Engine::Snapshot() of 100k pending tasks; one item = one task written
// (including the fdatasync, rename and directory sync). One untimed submit
// before each call: Snapshot() with nothing new since the last one is a
// no-op.
void BM_SnapshotWrite(benchmark::State& state) {
  TempDir dir =
      ValueOrDie(TempDir::Create(ScratchRoot(), "taskwal-bench-"), "tmpdir");
  auto engine = ValueOrDie(
      Engine::Open(Options(dir.Sub("engine"), SyncMode::kNone)), "open");
  Prefill(engine.get(), "s-", kSnapshotTasks, Spec(""));
  uint64_t i = 0;
  for (auto _ : state) {
    state.PauseTiming();
    ValueOrDie(engine->Submit(Spec(absl::StrCat("more-", i++))), "submit");
    state.ResumeTiming();
    CheckOk(engine->Snapshot(), "snapshot");
  }
  state.SetItemsProcessed(state.iterations() * kSnapshotTasks);
  CheckOk(engine->Close(), "close");
}
BENCHMARK(BM_SnapshotWrite)->Unit(benchmark::kMillisecond)->UseRealTime();

// Engine::Open from a snapshot of 100k tasks (and the short log after it);
// one item = one task loaded.
void BM_SnapshotLoad(benchmark::State& state) {
  static const std::unique_ptr<BuiltDir> built =
      BuildDir(kSnapshotTasks, /*snapshot=*/true);
  for (auto _ : state) {
    auto engine = ValueOrDie(Engine::Open(RecoveryOptions(*built)), "open");
    if (engine->Recovery().snapshot_lsn == 0) {
      Die("snapshot load", absl::InternalError("no snapshot was used"));
    }
    state.PauseTiming();
    CheckOk(engine->Close(), "close");
    engine.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * built->tasks);
  state.SetLabel(absl::StrCat(built->tasks, " tasks per open"));
}
BENCHMARK(BM_SnapshotLoad)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace taskwal::bench
