#include "benchmarks/compare_runs.h"

#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "benchmarks/bench_util.h"
#include "benchmarks/jetstream_queue.h"
#include "benchmarks/raw_log.h"
#include "benchmarks/taskwal_queue.h"
#include "benchmarks/workloads.h"
#include "taskwal/engine.h"

namespace taskwal::bench {
namespace {

constexpr uint64_t kBatch = 10000;  // EngineOptions::max_batch_size default.

void Progress(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

uint64_t TasksFor(const CompareConfig& config, const SystemSpec& spec) {
  // On NATS, calls that wait for the servers' acknowledgement run at a
  // fraction of the local rates; those that do not, at local rates.
  if (spec.on_nats && spec.durability != Durability::kBuffered) {
    return config.jetstream_tasks;
  }
  return spec.durability == Durability::kFsyncPerCall ? config.durable_tasks
                                                      : config.fast_tasks;
}

// Runs fn(system) on a fresh instance of spec in a fresh directory, then
// closes it. Errors are recorded in results and returned.
template <typename Fn>
absl::Status WithSystem(const CompareConfig& config, const SystemSpec& spec,
                        Results* results, absl::string_view what, Fn fn) {
  absl::Status status = [&]() -> absl::Status {
    absl::StatusOr<TempDir> dir =
        TempDir::Create(config.scratch, absl::StrCat(spec.name, "-"));
    if (!dir.ok()) return dir.status();
    absl::StatusOr<std::unique_ptr<QueueSystem>> system =
        spec.open(dir->path());
    if (!system.ok()) return system.status();
    absl::Status s = fn(system->get());
    absl::Status c = (*system)->Close();
    return s.ok() ? c : s;
  }();
  if (!status.ok()) {
    const std::string error =
        absl::StrCat(what, " ", spec.name, ": ", status.ToString());
    Progress(absl::StrCat("ERROR ", error));
    results->AddError(error);
  }
  return status;
}

std::string CappedNote(bool capped) {
  return capped ? " capped (hit --max_phase_seconds; rate from the part done)"
                : "";
}

absl::StatusOr<RawLogResult> RawRun(const CompareConfig& config,
                                    int records_per_sync, bool latency,
                                    bool overwrite = false) {
  absl::StatusOr<TempDir> dir = TempDir::Create(config.scratch, "disk-");
  if (!dir.ok()) return dir.status();
  RawLogOptions o;
  o.path = dir->Sub("log");
  o.record_bytes = config.raw_record_bytes;
  o.records_per_sync = records_per_sync;
  o.max_records = UINT64_MAX;
  o.max_time = config.raw_time;
  o.record_latency = latency;
  o.overwrite = overwrite;
  return RunRawLog(o);
}

void AddRawError(Results* results, absl::string_view what,
                 const absl::Status& s) {
  const std::string error = absl::StrCat(what, ": ", s.ToString());
  Progress(absl::StrCat("ERROR ", error));
  results->AddError(error);
}

}  // namespace

absl::Status RunBatchWorkload(const CompareConfig& config, Results* results) {
  for (int threads : config.threads) {
    for (const SystemSpec& spec : config.systems) {
      const uint64_t tasks = TasksFor(config, spec);
      WithSystem(config, spec, results, "batch", [&](QueueSystem* system) {
        if (!system->batches()) return absl::OkStatus();
        LifecycleOptions o;
        o.threads = threads;
        o.tasks = tasks;
        o.payload_bytes = config.payload_bytes;
        o.max_phase_time = config.max_phase_time;
        o.batch = config.batch_size;
        absl::StatusOr<LifecycleResult> r = RunLifecycle(system, o);
        if (!r.ok()) return r.status();
        const std::string params =
            absl::StrCat("tasks=", tasks, " payload=", config.payload_bytes,
                         "B batch=", config.batch_size, CappedNote(r->capped));
        auto add = [&](const char* metric, double v, const char* unit) {
          results->Add(
              {"batch", spec.name, "", threads, metric, v, unit, params});
        };
        add("lifecycles_per_s", r->lifecycles_per_second, "lifecycles/s");
        const double cpu_us =
            r->completed > 0 ? r->cpu_seconds * 1e6 / r->completed : 0;
        add("cpu_us_per_lifecycle", cpu_us, "us");
        Progress(absl::StrFormat(
            "[batch]     %-17s threads=%-3d %12.0f lifecycles/s  (batches of "
            "%d; submit %.0f/s, claim+complete %.0f/s, %.1f us CPU each)%s",
            spec.name, threads, r->lifecycles_per_second,
            static_cast<int>(config.batch_size), r->submits_per_second,
            r->claim_completes_per_second, cpu_us, CappedNote(r->capped)));
        return absl::OkStatus();
      }).IgnoreError();  // Recorded in results.
    }
  }
  return absl::OkStatus();
}

absl::Status RunLifecycleWorkload(const CompareConfig& config,
                                  Results* results) {
  std::optional<RawLogResult> raw_sync, raw_overwrite, raw_append;
  if (config.raw) {
    absl::StatusOr<RawLogResult> r = RawRun(config, 1, false);
    if (r.ok())
      raw_sync = *r;
    else
      AddRawError(results, "disk-fdatasync", r.status());
    r = RawRun(config, 1, false, /*overwrite=*/true);
    if (r.ok())
      raw_overwrite = *r;
    else
      AddRawError(results, kRawOverwrite, r.status());
    r = RawRun(config, 0, false);
    if (r.ok())
      raw_append = *r;
    else
      AddRawError(results, "disk-append", r.status());
  }
  for (int threads : config.threads) {
    for (const SystemSpec& spec : config.systems) {
      const uint64_t tasks = TasksFor(config, spec);
      WithSystem(config, spec, results, "lifecycle", [&](QueueSystem* system) {
        LifecycleOptions o;
        o.threads = threads;
        o.tasks = tasks;
        o.payload_bytes = config.payload_bytes;
        o.max_phase_time = config.max_phase_time;
        absl::StatusOr<LifecycleResult> r = RunLifecycle(system, o);
        if (!r.ok()) return r.status();
        const std::string params =
            absl::StrCat("tasks=", tasks, " payload=", config.payload_bytes,
                         "B", CappedNote(r->capped));
        auto add = [&](const char* metric, double v, const char* unit) {
          results->Add(
              {"lifecycle", spec.name, "", threads, metric, v, unit, params});
        };
        add("lifecycles_per_s", r->lifecycles_per_second, "lifecycles/s");
        add("submits_per_s", r->submits_per_second, "calls/s");
        add("claim_completes_per_s", r->claim_completes_per_second, "pairs/s");
        add("seconds", r->submit_seconds + r->drain_seconds, "s");
        const double cpu_us =
            r->completed > 0 ? r->cpu_seconds * 1e6 / r->completed : 0;
        add("cpu_us_per_lifecycle", cpu_us, "us");
        const std::string diagnostics = system->Diagnostics();
        Progress(absl::StrFormat(
            "[lifecycle] %-17s threads=%-3d %12.0f lifecycles/s  (submit "
            "%.0f/s, claim+complete %.0f/s, %.2fs, %.1f us CPU each)%s%s",
            spec.name, threads, r->lifecycles_per_second, r->submits_per_second,
            r->claim_completes_per_second, r->submit_seconds + r->drain_seconds,
            cpu_us, CappedNote(r->capped),
            diagnostics.empty() ? "" : absl::StrCat(" [", diagnostics, "]")));
        return absl::OkStatus();
      }).IgnoreError();  // Recorded in results.
    }
    if (!config.raw) continue;
    auto add_raw = [&](const char* system, const RawLogResult& r,
                       const std::string& params) {
      results->Add({"lifecycle", system, "", threads, "lifecycles_per_s",
                    r.records_per_second / kRecordsPerLifecycle, "lifecycles/s",
                    params});
      results->Add({"lifecycle", system, "", threads, "records_per_s",
                    r.records_per_second, "records/s", params});
    };
    const std::string rec = absl::StrCat(config.raw_record_bytes, "B records");
    if (raw_sync.has_value()) {
      add_raw(kRawSync, *raw_sync,
              absl::StrCat(rec, ", 1 writer, fdatasync each; measured once"));
    }
    if (raw_overwrite.has_value()) {
      add_raw(kRawOverwrite, *raw_overwrite,
              absl::StrCat(rec,
                           ", 1 writer, fdatasync each, over a "
                           "pre-zeroed file; measured once"));
    }
    absl::StatusOr<RawLogResult> group = RawRun(config, threads, false);
    if (group.ok()) {
      add_raw(kRawGroup, *group,
              absl::StrCat(rec, ", ", threads, " per fdatasync"));
      Progress(absl::StrFormat(
          "[lifecycle] %-17s threads=%-3d %12.0f lifecycles/s  (%.0f "
          "records/s, %d per fdatasync)",
          kRawGroup, threads, group->records_per_second / 3,
          group->records_per_second, threads));
    } else {
      AddRawError(results, kRawGroup, group.status());
    }
    {
      absl::StatusOr<TempDir> dir = TempDir::Create(config.scratch, "disk-");
      absl::StatusOr<RawLogResult> clients =
          absl::UnknownError("no scratch directory");
      if (dir.ok()) {
        RawLogOptions o;
        o.path = dir->Sub("log");
        o.record_bytes = config.raw_record_bytes;
        o.max_records = UINT64_MAX;
        o.max_time = config.raw_time;
        clients = RunRawClients(o, threads);
      } else {
        clients = dir.status();
      }
      if (clients.ok()) {
        add_raw(kRawClients, *clients,
                absl::StrCat(rec, ", ", threads,
                             " blocking client threads, a flusher thread"));
        Progress(absl::StrFormat(
            "[lifecycle] %-17s threads=%-3d %12.0f lifecycles/s  (%.0f "
            "records/s, %.1f per fdatasync)",
            kRawClients, threads, clients->records_per_second / 3,
            clients->records_per_second,
            clients->syncs > 0 ? static_cast<double>(clients->records) /
                                     static_cast<double>(clients->syncs)
                               : 0.0));
      } else {
        AddRawError(results, kRawClients, clients.status());
      }
    }
    if (raw_append.has_value()) {
      add_raw(kRawNoSync, *raw_append,
              absl::StrCat(rec, ", 1 writer, no fdatasync; measured once"));
    }
  }
  return absl::OkStatus();
}

absl::Status RunDedupWorkload(const CompareConfig& config, Results* results) {
  for (int threads : config.threads) {
    for (const SystemSpec& spec : config.systems) {
      const uint64_t submits = TasksFor(config, spec);
      WithSystem(config, spec, results, "dedup", [&](QueueSystem* system) {
        absl::StatusOr<DedupResult> r =
            RunDedup(system, threads, submits, config.payload_bytes,
                     config.max_phase_time);
        if (!r.ok()) return r.status();
        results->Add({"dedup", spec.name, "", threads, "submits_per_s",
                      r->submits_per_second, "calls/s",
                      absl::StrCat("submits=", r->submits, " deduplicated=",
                                   r->deduplicated, CappedNote(r->capped))});
        Progress(absl::StrFormat(
            "[dedup]     %-17s threads=%-3d %12.0f submits/s (%d of %d "
            "deduplicated)%s",
            spec.name, threads, r->submits_per_second, r->deduplicated,
            r->submits, CappedNote(r->capped)));
        return absl::OkStatus();
      }).IgnoreError();
    }
  }
  return absl::OkStatus();
}

absl::Status RunLatencyWorkload(const CompareConfig& config, Results* results) {
  if (config.raw) {
    absl::StatusOr<RawLogResult> raw = RawRun(config, 1, /*latency=*/true);
    if (raw.ok()) {
      const LatencySummary& l = raw->batch_latency;
      const std::string params = absl::StrCat(
          config.raw_record_bytes, "B append + fdatasync, n=", l.count);
      for (int threads : config.latency_threads) {
        for (auto [metric, v] :
             {std::pair<const char*, double>{"fdatasync_p50_us", l.p50_us},
              {"fdatasync_p90_us", l.p90_us},
              {"fdatasync_p99_us", l.p99_us},
              {"fdatasync_p999_us", l.p999_us},
              {"fdatasync_max_us", l.max_us}}) {
          results->Add(
              {"latency", kRawSync, "", threads, metric, v, "us", params});
        }
      }
      Progress(absl::StrFormat(
          "[latency]   %-17s append+fdatasync p50 %.0f us, p99 %.0f us, "
          "p999 %.0f us (n=%d)",
          kRawSync, l.p50_us, l.p99_us, l.p999_us, l.count));
    } else {
      AddRawError(results, "latency disk-fdatasync", raw.status());
    }
  }
  for (int threads : config.latency_threads) {
    for (const SystemSpec& spec : config.systems) {
      if (!MeasuresLatency(spec)) continue;
      WithSystem(config, spec, results, "latency", [&](QueueSystem* system) {
        LifecycleOptions o;
        o.threads = threads;
        o.tasks = config.latency_tasks;
        o.payload_bytes = config.payload_bytes;
        o.max_phase_time = config.max_phase_time;
        o.record_latency = true;
        absl::StatusOr<LifecycleResult> r = RunLifecycle(system, o);
        if (!r.ok()) return r.status();
        const std::string params =
            absl::StrCat("tasks=", config.latency_tasks, CappedNote(r->capped));
        for (auto [op, l] : {std::pair<const char*, const LatencySummary*>{
                                 "submit", &r->submit_latency},
                             {"claim", &r->claim_latency},
                             {"complete", &r->complete_latency}}) {
          for (auto [q, v] : {std::pair<const char*, double>{"p50", l->p50_us},
                              {"p90", l->p90_us},
                              {"p99", l->p99_us},
                              {"p999", l->p999_us},
                              {"max", l->max_us}}) {
            results->Add({"latency", spec.name, "", threads,
                          absl::StrCat(op, "_", q, "_us"), v, "us", params});
          }
        }
        Progress(absl::StrFormat(
            "[latency]   %-17s threads=%-3d submit p50/p99/p999 %.0f/%.0f/%.0f "
            "us, complete %.0f/%.0f/%.0f us%s",
            spec.name, threads, r->submit_latency.p50_us,
            r->submit_latency.p99_us, r->submit_latency.p999_us,
            r->complete_latency.p50_us, r->complete_latency.p99_us,
            r->complete_latency.p999_us, CappedNote(r->capped)));
        return absl::OkStatus();
      }).IgnoreError();
    }
  }
  return absl::OkStatus();
}

namespace {

EngineOptions RecoveryOptions(const std::string& dir) {
  EngineOptions options = CompareOptions(SyncMode::kNone);
  options.data_dir = dir;
  // Only the snapshots the workload takes itself.
  options.snapshot_every_records = 0;
  options.maintenance_interval = absl::ZeroDuration();
  return options;
}

// Appends `transitions` records: lifecycles (submit, claim, complete), or
// submits only.
absl::Status BuildLog(Engine* engine, uint64_t transitions, bool lifecycles,
                      size_t payload_bytes) {
  TaskSpec spec;
  spec.type = "bench";
  spec.payload = std::string(payload_bytes, 'p');
  const uint64_t tasks =
      lifecycles ? transitions / kRecordsPerLifecycle : transitions;
  for (uint64_t i = 0; i < tasks; ++i) {
    spec.idempotency_key = absl::StrCat("task-", i);
    absl::StatusOr<SubmitResult> r = engine->Submit(spec);
    if (!r.ok()) return r.status();
    if (!lifecycles) continue;
    absl::StatusOr<ClaimedTask> c = engine->ClaimNext("worker", {});
    if (!c.ok()) return c.status();
    absl::Status s = engine->Complete(c->claim, "ok");
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

struct OpenTiming {
  double seconds = 0;
  RecoveryReport report;
  uint64_t tasks = 0;
};

// Times open(), which opens an engine, and reads its recovery report.
template <typename OpenFn>
absl::StatusOr<std::pair<std::unique_ptr<Engine>, OpenTiming>> TimedOpenWith(
    OpenFn open) {
  const int64_t t0 = NowNanos();
  absl::StatusOr<std::unique_ptr<Engine>> engine = open();
  const int64_t t1 = NowNanos();
  if (!engine.ok()) return engine.status();
  OpenTiming t;
  t.seconds = static_cast<double>(t1 - t0) / 1e9;
  t.report = (*engine)->Recovery();
  absl::StatusOr<EngineStats> stats = (*engine)->Stats();
  if (!stats.ok()) return stats.status();
  t.tasks = stats->tasks;
  return std::make_pair(*std::move(engine), t);
}

absl::StatusOr<std::pair<std::unique_ptr<Engine>, OpenTiming>> TimedOpen(
    const std::string& dir) {
  return TimedOpenWith([&] { return Engine::Open(RecoveryOptions(dir)); });
}

// The options of a timed JetStream open: RecoveryOptions without a
// directory.
EngineOptions JetStreamRecoveryOptions() { return RecoveryOptions(""); }

// data_bytes: what the data takes on disk, unknown for a stream.
void AddOpen(Results* results, const std::string& label, const OpenTiming& t,
             std::optional<uint64_t> data_bytes,
             const char* params = "warm page cache") {
  auto add = [&](const char* metric, double v, const char* unit) {
    results->Add({"recovery", "taskwal", label, 0, metric, v, unit, params});
  };
  add("open_s", t.seconds, "s");
  add("records_replayed", static_cast<double>(t.report.records_replayed),
      "records");
  add("records_per_s",
      t.seconds > 0 ? t.report.records_replayed / t.seconds : 0, "records/s");
  add("tasks", static_cast<double>(t.tasks), "tasks");
  add("tasks_per_s", t.seconds > 0 ? t.tasks / t.seconds : 0, "tasks/s");
  if (data_bytes.has_value()) {
    add("data_bytes", static_cast<double>(*data_bytes), "bytes");
  }
  add("snapshot_lsn", static_cast<double>(t.report.snapshot_lsn), "lsn");
  Progress(absl::StrFormat(
      "[recovery]  %-44s open %.3f s: %d records replayed, %d tasks, "
      "snapshot lsn %d%s",
      label, t.seconds, t.report.records_replayed, t.tasks,
      t.report.snapshot_lsn,
      data_bytes.has_value()
          ? absl::StrFormat(", %.0f MB on disk", *data_bytes / 1e6)
          : std::string()));
}

// Times an Open in a fresh child process (this binary with `args`:
// --internal_child=open or open_jetstream), as a daemon opens once at its
// start: an Open in this process would inherit the heap (and glibc's
// per-thread arenas) that earlier, larger runs left behind.
absl::StatusOr<OpenTiming> ChildTimedOpenArgs(const CompareConfig& config,
                                              const std::string& args) {
  const std::string command = absl::StrCat("'", config.self_path, "' ", args);
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("popen failed");
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), pipe)) out.append(buf, n);
  const int rc = pclose(pipe);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("open child exited with ", rc, ": ", out));
  }
  std::map<std::string, double> v;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, '=');
    double d = 0;
    if (absl::SimpleAtod(kv.second, &d)) v[kv.first] = d;
  }
  if (v.count("seconds") == 0) {
    return absl::InternalError(absl::StrCat("open child printed: ", out));
  }
  OpenTiming t;
  t.seconds = v["seconds"];
  t.report.records_replayed = static_cast<uint64_t>(v["records_replayed"]);
  t.report.snapshot_lsn = static_cast<uint64_t>(v["snapshot_lsn"]);
  t.tasks = static_cast<uint64_t>(v["tasks"]);
  return t;
}

absl::StatusOr<OpenTiming> ChildTimedOpen(const CompareConfig& config,
                                          const std::string& dir) {
  return ChildTimedOpenArgs(
      config, absl::StrCat("--internal_child=open --open_dir='", dir, "'"));
}

// Builds the log, times Open from the log alone, then takes two snapshots
// (with one submit between, so the log the older one covers is discarded)
// and times Open from the snapshot.
absl::Status RecoveryCase(const CompareConfig& config, uint64_t transitions,
                          bool lifecycles, Results* results) {
  absl::StatusOr<TempDir> tmp = TempDir::Create(config.scratch, "recovery-");
  if (!tmp.ok()) return tmp.status();
  const std::string dir = tmp->Sub("engine");
  {
    absl::StatusOr<std::unique_ptr<Engine>> engine =
        Engine::Open(RecoveryOptions(dir));
    if (!engine.ok()) return engine.status();
    const int64_t t0 = NowNanos();
    absl::Status s =
        BuildLog(engine->get(), transitions, lifecycles, config.payload_bytes);
    if (s.ok()) s = (*engine)->Close();
    if (!s.ok()) return s;
    Progress(absl::StrFormat("[recovery]  built %d transitions in %.1f s",
                             transitions, (NowNanos() - t0) / 1e9));
  }
  const std::string what = absl::StrCat(
      transitions, lifecycles ? " transitions (lifecycles of " : " submits (",
      lifecycles ? transitions / kRecordsPerLifecycle : transitions, " tasks)");
  {
    const uint64_t bytes = TreeBytes(dir);
    absl::StatusOr<OpenTiming> timed = ChildTimedOpen(config, dir);
    if (!timed.ok()) return timed.status();
    AddOpen(results, absl::StrCat(what, ", log only"), *timed, bytes);
    auto opened = TimedOpen(dir);  // To take the snapshots; not reported.
    if (!opened.ok()) return opened.status();
    Engine* engine = opened->first.get();
    TaskSpec spec;
    spec.idempotency_key = "one-more";
    spec.type = "bench";
    absl::Status s = engine->Snapshot();
    if (s.ok()) s = engine->Submit(spec).status();
    if (s.ok()) s = engine->Snapshot();
    if (s.ok()) s = engine->Close();
    if (!s.ok()) return s;
  }
  const uint64_t bytes = TreeBytes(dir);
  absl::StatusOr<OpenTiming> timed = ChildTimedOpen(config, dir);
  if (!timed.ok()) return timed.status();
  AddOpen(results, absl::StrCat(what, ", snapshot"), *timed, bytes);
  return absl::OkStatus();
}

// Builds a JetStream stream of `transitions` records (lifecycles) for a
// cluster of its own, times OpenJetStreamEngine's replay of it in a child
// process, and deletes the streams.
absl::Status JetStreamRecoveryCase(const CompareConfig& config, int replicas,
                                   uint64_t transitions, Results* results) {
  const std::string& servers = config.nats_servers;
  const std::string cluster = UniqueClusterName();
  absl::Status status = [&]() -> absl::Status {
    absl::StatusOr<std::unique_ptr<Engine>> engine = OpenBenchJetStreamEngine(
        servers, cluster, replicas, JetStreamRecoveryOptions());
    if (!engine.ok()) return engine.status();
    const int64_t t0 = NowNanos();
    absl::Status s =
        BuildLog(engine->get(), transitions, true, config.payload_bytes);
    absl::Status c = (*engine)->Close();
    if (!s.ok()) return s;
    if (!c.ok()) return c;
    Progress(absl::StrFormat(
        "[recovery]  built a JetStream R%d stream of %d transitions in %.1f s",
        replicas, transitions, (NowNanos() - t0) / 1e9));
    absl::StatusOr<OpenTiming> timed = ChildTimedOpenArgs(
        config, absl::StrCat("--internal_child=open_jetstream --nats='",
                             servers, "' --open_cluster='", cluster, "'"));
    if (!timed.ok()) return timed.status();
    AddOpen(results,
            absl::StrCat("JetStream R", replicas, " stream, ", transitions,
                         " transitions (lifecycles of ",
                         transitions / kRecordsPerLifecycle,
                         " tasks), replay of the whole stream"),
            *timed, std::nullopt,
            "local NATS servers; OpenJetStreamEngine reads the stream with "
            "an ordered consumer");
    return absl::OkStatus();
  }();
  absl::Status deleted = DeleteJetStreamCluster(servers, cluster);
  return status.ok() ? deleted : status;
}

}  // namespace

absl::Status RunRecoveryWorkload(const CompareConfig& config,
                                 Results* results) {
  auto run = [&](uint64_t n, bool lifecycles) {
    absl::Status s = RecoveryCase(config, n, lifecycles, results);
    if (!s.ok()) {
      AddRawError(results, absl::StrCat("recovery ", n), s);
    }
  };
  for (uint64_t n : config.recovery_transitions) run(n, true);
  for (uint64_t n : config.snapshot_tasks) run(n, false);
  if (config.nats_servers.empty()) return absl::OkStatus();
  for (int replicas : config.jetstream_replicas) {
    for (uint64_t n : config.jetstream_recovery_transitions) {
      absl::Status s = JetStreamRecoveryCase(config, replicas, n, results);
      if (!s.ok()) {
        AddRawError(results,
                    absl::StrCat("recovery JetStream R", replicas, " ", n), s);
      }
    }
  }
  return absl::OkStatus();
}

namespace {

// Prints an open's timing as key=value lines for ChildTimedOpenArgs.
int PrintOpened(
    absl::StatusOr<std::pair<std::unique_ptr<Engine>, OpenTiming>> opened) {
  if (!opened.ok()) {
    std::fprintf(stderr, "%s\n", opened.status().ToString().c_str());
    return 1;
  }
  const OpenTiming& t = opened->second;
  absl::Status s = opened->first->Close();
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  std::printf(
      "seconds=%.9f\nrecords_replayed=%llu\nsnapshot_lsn=%llu\n"
      "tasks=%llu\n",
      t.seconds, static_cast<unsigned long long>(t.report.records_replayed),
      static_cast<unsigned long long>(t.report.snapshot_lsn),
      static_cast<unsigned long long>(t.tasks));
  return 0;
}

}  // namespace

int OpenChildMain(const std::string& dir) {
  return PrintOpened(TimedOpen(dir));
}

int OpenJetStreamChildMain(const std::string& servers,
                           const std::string& cluster) {
  return PrintOpened(TimedOpenWith([&] {
    return OpenBenchJetStreamEngine(servers, cluster, /*replicas=*/1,
                                    JetStreamRecoveryOptions());
  }));
}

int MemoryChildMain(const std::string& dir, uint64_t tasks,
                    size_t payload_bytes) {
  absl::StatusOr<TempDir> tmp = TempDir::Create(dir, "memory-");
  if (!tmp.ok()) {
    std::fprintf(stderr, "%s\n", tmp.status().ToString().c_str());
    return 1;
  }
  EngineOptions options = CompareOptions(SyncMode::kNone);
  options.data_dir = tmp->Sub("engine");
  options.snapshot_every_records = 0;
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    return 1;
  }
  const uint64_t rss_before = ResidentBytes();
  TaskSpec spec;
  spec.type = "bench";
  spec.payload = std::string(payload_bytes, 'p');
  uint64_t key_bytes = 0;
  absl::Status s;
  for (uint64_t i = 0; i < tasks && s.ok(); ++i) {
    spec.idempotency_key = absl::StrCat("task-", i);
    key_bytes += spec.idempotency_key.size();
    s = (*engine)->Submit(spec).status();
  }
  const uint64_t rss_submitted = ResidentBytes();
  for (uint64_t i = 0; i < tasks && s.ok(); ++i) {
    absl::StatusOr<ClaimedTask> c = (*engine)->ClaimNext("worker-1", {});
    s = c.status();
    if (s.ok()) {
      s = (*engine)->Complete(c->claim, "ok");
    }
  }
  const uint64_t rss_completed = ResidentBytes();
  if (s.ok()) s = (*engine)->Close();
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  std::printf(
      "tasks=%llu\nkey_bytes=%llu\npayload_bytes=%llu\nrss_before=%llu\n"
      "rss_submitted=%llu\nrss_completed=%llu\n",
      static_cast<unsigned long long>(tasks),
      static_cast<unsigned long long>(key_bytes),
      static_cast<unsigned long long>(tasks * payload_bytes),
      static_cast<unsigned long long>(rss_before),
      static_cast<unsigned long long>(rss_submitted),
      static_cast<unsigned long long>(rss_completed));
  return 0;
}

absl::Status RunMemoryWorkload(const CompareConfig& config, Results* results) {
  const std::string command = absl::StrCat(
      "'", config.self_path,
      "' --internal_child=memory --memory_tasks=", config.memory_tasks,
      " --payload_bytes=", config.payload_bytes, " --tmpdir='", config.scratch,
      "'");
  Progress(absl::StrCat("[memory]    ", command));
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    AddRawError(results, "memory", absl::InternalError("popen failed"));
    return absl::OkStatus();
  }
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), pipe)) out.append(buf, n);
  const int rc = pclose(pipe);
  if (rc != 0) {
    AddRawError(results, "memory",
                absl::InternalError(absl::StrCat("child exited with ", rc)));
    return absl::OkStatus();
  }
  std::map<std::string, double> v;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, '=');
    double d = 0;
    if (absl::SimpleAtod(kv.second, &d)) v[kv.first] = d;
  }
  const double tasks = v["tasks"];
  if (tasks <= 0) {
    AddRawError(results, "memory", absl::InternalError("no figures: " + out));
    return absl::OkStatus();
  }
  const double data = (v["key_bytes"] + v["payload_bytes"]) / tasks;
  const std::string params =
      absl::StrCat(static_cast<uint64_t>(tasks), " tasks, key+payload ",
                   absl::StrFormat("%.1f", data),
                   " B/task, RSS from "
                   "/proc/self/statm in a fresh child process");
  auto add = [&](const std::string& label, const char* metric, double value,
                 const char* unit) {
    results->Add(
        {"memory", "taskwal-none", label, 0, metric, value, unit, params});
  };
  for (auto [label, key] :
       {std::pair<const char*, const char*>{"pending (after submit)",
                                            "rss_submitted"},
        {"completed (after claim+complete)", "rss_completed"}}) {
    const double per_task = (v[key] - v["rss_before"]) / tasks;
    add(label, "rss_bytes_per_task", per_task, "bytes");
    add(label, "key_payload_bytes_per_task", data, "bytes");
    add(label, "overhead_bytes_per_task", per_task - data, "bytes");
    Progress(absl::StrFormat(
        "[memory]    %-34s %.0f bytes/task resident, %.0f beyond key+payload",
        label, per_task, per_task - data));
  }
  return absl::OkStatus();
}

absl::Status RunScaleWorkload(const CompareConfig& config, Results* results) {
  for (const std::string& mode_name : config.scale_modes) {
    SyncMode mode = SyncMode::kAlways;
    if (mode_name == "interval") mode = SyncMode::kInterval;
    if (mode_name == "none") mode = SyncMode::kNone;
    const std::string system = absl::StrCat("taskwal-", SyncModeName(mode));
    const uint64_t tasks =
        mode == SyncMode::kAlways ? config.durable_tasks : config.fast_tasks;
    for (uint64_t live : config.scale_live) {
      absl::Status status = [&]() -> absl::Status {
        absl::StatusOr<TempDir> dir = TempDir::Create(config.scratch, "scale-");
        if (!dir.ok()) return dir.status();
        absl::StatusOr<std::unique_ptr<TaskwalQueue>> queue =
            TaskwalQueue::Open(dir->Sub("engine"), CompareOptions(mode));
        if (!queue.ok()) return queue.status();
        Engine* engine = (*queue)->engine();
        // The backlog: pending tasks of lower priority, so the measured
        // tasks are claimed first and the backlog stays live.
        const int64_t t0 = NowNanos();
        std::vector<TaskSpec> batch;
        TaskSpec spec;
        spec.type = "bench";
        spec.payload = std::string(config.payload_bytes, 'p');
        spec.priority = -1;
        for (uint64_t i = 0; i < live; ++i) {
          spec.idempotency_key = absl::StrCat("live-", i);
          batch.push_back(spec);
          if (batch.size() == kBatch || i + 1 == live) {
            absl::Status s = engine->SubmitBatch(batch).status();
            if (!s.ok()) return s;
            batch.clear();
          }
        }
        const double preload_s = (NowNanos() - t0) / 1e9;
        // The first ClaimNext after the preload may pay one-time work (the
        // scheduler promoting the backlog); it is timed on its own, on a
        // warm-up task, and kept out of the measured rate.
        const int64_t c0 = NowNanos();
        spec.idempotency_key = "warm-up";
        spec.priority = 0;
        absl::StatusOr<SubmitResult> warm = engine->Submit(spec);
        if (!warm.ok()) return warm.status();
        absl::StatusOr<ClaimedTask> first = engine->ClaimNext("warm-up", {});
        if (!first.ok()) return first.status();
        absl::Status done = engine->Complete(first->claim, "ok");
        if (!done.ok()) return done;
        const double first_claim_s = (NowNanos() - c0) / 1e9;
        Progress(absl::StrFormat(
            "[scale]     %-17s live=%d preloaded in %.1f s, first "
            "submit+claim+complete %.3f s; measuring",
            system, live, preload_s, first_claim_s));
        LifecycleOptions o;
        o.threads = config.scale_threads;
        o.tasks = tasks;
        o.payload_bytes = config.payload_bytes;
        o.max_phase_time = config.max_phase_time;
        o.max_claims = tasks;
        absl::StatusOr<LifecycleResult> r = RunLifecycle(queue->get(), o);
        absl::Status c = (*queue)->Close();
        if (!r.ok()) return r.status();
        if (!c.ok()) return c;
        const std::string label = absl::StrCat("live=", live);
        const std::string params =
            absl::StrCat("backlog of ", live, " pending tasks (priority -1), ",
                         tasks, " measured tasks, ", config.scale_threads,
                         " clients", CappedNote(r->capped));
        results->Add({"scale", system, label, config.scale_threads,
                      "lifecycles_per_s", r->lifecycles_per_second,
                      "lifecycles/s", params});
        results->Add({"scale", system, label, config.scale_threads, "preload_s",
                      preload_s, "s", params});
        results->Add({"scale", system, label, config.scale_threads,
                      "first_lifecycle_s", first_claim_s, "s", params});
        const double per = r->completed > 0 ? 1.0 / r->completed : 0;
        results->Add({"scale", system, label, config.scale_threads,
                      "cpu_us_per_lifecycle", r->cpu_seconds * 1e6 * per, "us",
                      params});
        results->Add({"scale", system, label, config.scale_threads,
                      "minor_faults_per_lifecycle", r->minor_faults * per,
                      "faults", params});
        Progress(absl::StrFormat(
            "[scale]     %-17s %-14s %12.0f lifecycles/s  (preload %.1f s, "
            "first lifecycle %.3f s, %.1f us CPU and %.2f page faults per "
            "lifecycle)%s",
            system, label, r->lifecycles_per_second, preload_s, first_claim_s,
            r->cpu_seconds * 1e6 * per, r->minor_faults * per,
            CappedNote(r->capped)));
        return absl::OkStatus();
      }();
      if (!status.ok()) {
        AddRawError(results, absl::StrCat("scale ", system, " live=", live),
                    status);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace taskwal::bench
