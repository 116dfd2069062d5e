#include "benchmarks/compare_tables.h"

#include <algorithm>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "benchmarks/raw_log.h"

namespace taskwal::bench {
namespace {

const char* DurabilityText(Durability d) {
  switch (d) {
    case Durability::kFsyncPerCall:
      return "fdatasync per call (power-loss safe when it returns)";
    case Durability::kOsPerCall:
      return "written to the OS per call (kill -9 safe)";
    case Durability::kBuffered:
      return "buffered in process memory";
    case Durability::kReplicatedMajority:
      return "acknowledged once a majority of NATS servers hold it (in "
             "memory; NATS 2.9 fsyncs every 60 s)";
  }
  return "";
}

std::vector<std::string> RowSystems(const CompareConfig& config,
                                    bool with_raw) {
  std::vector<std::string> names;
  for (const SystemSpec& s : config.systems) names.push_back(s.name);
  if (with_raw && config.raw) {
    names.insert(names.end(),
                 {kRawSync, kRawOverwrite, kRawGroup, kRawClients, kRawNoSync});
  }
  return names;
}

std::string ClientsHeader(int threads) {
  return absl::StrCat(threads, threads == 1 ? " client" : " clients");
}

// "12,345 (0.52x)": the figure and its ratio to the reference.
std::string Cell(const Results& results, absl::string_view workload,
                 absl::string_view system, absl::string_view label, int threads,
                 absl::string_view metric) {
  const Measurement* m =
      results.FindMeasurement(workload, system, label, threads, metric);
  if (m == nullptr) return "-";
  std::string cell = FormatNumber(m->value);
  std::optional<double> ref =
      results.Find(workload, kReference, label, threads, metric);
  if (ref.has_value() && *ref > 0) {
    absl::StrAppend(&cell, " (", FormatRatio(m->value / *ref), ")");
  }
  if (absl::StrContains(m->params, "capped")) cell += " c";
  return cell;
}

Table SystemsTable(const CompareConfig& config) {
  Table t;
  t.title = "Systems";
  t.header = {"system", "durability when a call returns", "what it is"};
  for (const SystemSpec& s : config.systems) {
    t.rows.push_back({s.name, DurabilityText(s.durability), s.description});
  }
  if (config.raw) {
    const std::string rec = absl::StrCat(config.raw_record_bytes, "-byte");
    t.rows.push_back({kRawSync, "fdatasync per record",
                      absl::StrCat("physical limit: one writer, ", rec,
                                   " write(2) + fdatasync(2) per record")});
    t.rows.push_back(
        {kRawOverwrite, "fdatasync per record",
         absl::StrCat("as disk-fdatasync, but writing over a file filled "
                      "with zeros and fdatasynced beforehand (",
                      kOverwriteBytes >> 20,
                      " MiB, wrapping around): fdatasync updates no file "
                      "size or extents, as with preallocated log segments")});
    t.rows.push_back(
        {kRawGroup, "fdatasync per N records",
         absl::StrCat("physical limit of a perfect group commit: N ", rec,
                      " records per fdatasync for N clients")});
    t.rows.push_back(
        {kRawClients, "fdatasync per call (N blocking clients)",
         absl::StrCat("physical limit of N client threads that each block "
                      "until an fdatasync covers their ",
                      rec,
                      " record: a dedicated flusher writes + fdatasyncs "
                      "back to back, one futex wake per flush for all it "
                      "covered; only the disk and the thread wake-ups")});
    t.rows.push_back({kRawNoSync, "none",
                      absl::StrCat("physical limit without durability: ", rec,
                                   " write(2) appends, never synced")});
  }
  t.notes = {absl::StrCat(
      "Reference for every ratio: ", kReference,
      " (taskwal, SyncMode::kAlways). A ratio is the row's figure divided by "
      "the reference's figure in the same column: above 1x means more than "
      "taskwal-always (faster for rates, slower for latencies).")};
  bool on_nats = false;
  for (const SystemSpec& s : config.systems) on_nats = on_nats || s.on_nats;
  if (on_nats) {
    t.notes.push_back(absl::StrCat(
        "taskwal-jetstream-*: the engine's journal is a NATS JetStream "
        "stream on the servers of --nats (",
        config.nats_servers,
        "), on this machine, over loopback: the servers share its cores "
        "with the clients. Each run uses a cluster (stream) of its own, "
        "deleted afterwards. -async is SyncMode::kNone "
        "(acknowledged before the stream has the record); -p1 has one "
        "partition. They have no memory or scale rows: those workloads "
        "measure the local engine's in-memory structures, which are the "
        "same on JetStream."));
  }
  if (!config.jetstream_skipped.empty()) {
    t.notes.push_back(config.jetstream_skipped);
  }
  return t;
}

Table RateTable(const CompareConfig& config, const Results& results,
                const char* workload, const char* metric, std::string title,
                std::vector<std::string> notes, bool with_raw) {
  Table t;
  t.title = std::move(title);
  t.header = {"system"};
  for (int n : config.threads) t.header.push_back(ClientsHeader(n));
  for (const std::string& system : RowSystems(config, with_raw)) {
    std::vector<std::string> row = {system};
    for (int n : config.threads) {
      row.push_back(Cell(results, workload, system, "", n, metric));
    }
    t.rows.push_back(std::move(row));
  }
  t.notes = std::move(notes);
  return t;
}

// The batch workload beside the same system's single calls.
Table BatchTable(const CompareConfig& config, const Results& results) {
  Table t;
  t.title = absl::StrCat("Lifecycle throughput with batched calls of ",
                         config.batch_size,
                         " tasks: tasks fully processed per second");
  t.header = {"system"};
  for (int n : config.threads) t.header.push_back(ClientsHeader(n));
  for (const std::string& system : RowSystems(config, false)) {
    std::vector<std::string> row = {system};
    bool any = false;
    for (int n : config.threads) {
      const Measurement* m =
          results.FindMeasurement("batch", system, "", n, "lifecycles_per_s");
      if (m == nullptr) {
        row.push_back("-");
        continue;
      }
      any = true;
      std::string cell = FormatNumber(m->value);
      std::optional<double> single =
          results.Find("lifecycle", system, "", n, "lifecycles_per_s");
      if (single.has_value() && *single > 0) {
        absl::StrAppend(&cell, " (", FormatRatio(m->value / *single), ")");
      }
      if (absl::StrContains(m->params, "capped")) cell += " c";
      row.push_back(std::move(cell));
    }
    if (any) t.rows.push_back(std::move(row));
  }
  t.notes = {
      absl::StrCat(
          "The lifecycle workload (same tasks, same clients) with each call "
          "taking ",
          config.batch_size,
          " tasks: SubmitBatch, then ClaimNextBatch + CompleteBatch until "
          "drained; a batch waits for the journal (fdatasync or the stream's "
          "acknowledgement) once. Each task still goes through three "
          "transitions (submitted, claimed, completed), each made durable "
          "before its call returns, as with single calls."),
      "(x) = ratio to the same system's single-call figure in the lifecycle "
      "table (same column). Only systems with batched calls (taskwal's) "
      "have rows. A trailing 'c' marks a run capped by --max_phase_seconds."};
  return t;
}

Table LatencyTable(const CompareConfig& config, const Results& results) {
  Table t;
  t.title =
      "Latency per call, systems whose calls wait for an fdatasync or a "
      "replica's acknowledgement, and taskwald over HTTP (microseconds)";
  t.header = {"system",
              "clients",
              "call",
              "p50",
              "p99",
              "p999",
              "p99 / taskwal-always p99",
              "p99 / disk fdatasync p99"};
  for (int n : config.latency_threads) {
    std::optional<double> disk_p99 =
        results.Find("latency", kRawSync, "", n, "fdatasync_p99_us");
    if (config.raw) {
      auto v = [&](const char* q) {
        std::optional<double> x = results.Find(
            "latency", kRawSync, "", n, absl::StrCat("fdatasync_", q, "_us"));
        return x.has_value() ? FormatNumber(*x) : std::string("-");
      };
      t.rows.push_back({kRawSync, absl::StrCat(n), "append+fdatasync", v("p50"),
                        v("p99"), v("p999"), "", "1.00x"});
    }
    for (const SystemSpec& s : config.systems) {
      if (!MeasuresLatency(s)) continue;
      for (const char* op : {"submit", "complete"}) {
        auto v = [&](const char* q) {
          return results.Find("latency", s.name, "", n,
                              absl::StrCat(op, "_", q, "_us"));
        };
        if (!v("p50").has_value()) continue;
        std::optional<double> ref = results.Find("latency", kReference, "", n,
                                                 absl::StrCat(op, "_p99_us"));
        t.rows.push_back(
            {s.name, absl::StrCat(n), op, FormatNumber(*v("p50")),
             FormatNumber(*v("p99")), FormatNumber(*v("p999")),
             ref.has_value() && *ref > 0 ? FormatRatio(*v("p99") / *ref) : "-",
             disk_p99.has_value() && *disk_p99 > 0
                 ? FormatRatio(*v("p99") / *disk_p99)
                 : "-"});
      }
    }
  }
  t.notes = {absl::StrCat(
      "Each client runs the lifecycle workload (", config.latency_tasks,
      " tasks in all): submits, then claims and completes; every call is "
      "timed. The disk row is a ",
      config.raw_record_bytes,
      "-byte write + fdatasync loop on the same disk in the same run.")};
  return t;
}

std::vector<std::string> Labels(const Results& results,
                                absl::string_view workload) {
  std::vector<std::string> labels;
  for (const Measurement& m : results.all()) {
    if (m.workload == workload &&
        std::find(labels.begin(), labels.end(), m.label) == labels.end()) {
      labels.push_back(m.label);
    }
  }
  return labels;
}

Table RecoveryTable(const Results& results) {
  Table t;
  t.title = "Recovery: Engine::Open (taskwal)";
  t.header = {"data directory", "open (s)", "records replayed", "records/s",
              "tasks",          "tasks/s",  "on disk (MB)"};
  bool jetstream = false;
  for (const std::string& label : Labels(results, "recovery")) {
    auto v = [&](const char* metric) {
      std::optional<double> x =
          results.Find("recovery", "taskwal", label, 0, metric);
      return x.has_value() ? *x : 0.0;
    };
    const std::optional<double> bytes =
        results.Find("recovery", "taskwal", label, 0, "data_bytes");
    jetstream = jetstream || absl::StartsWith(label, "JetStream");
    t.rows.push_back({label, absl::StrFormat("%.3f", v("open_s")),
                      FormatNumber(v("records_replayed")),
                      FormatNumber(v("records_per_s")),
                      FormatNumber(v("tasks")), FormatNumber(v("tasks_per_s")),
                      bytes.has_value() ? FormatNumber(*bytes / 1e6) : "-"});
  }
  t.notes = {
      "Built with a kNone engine (then closed, so everything is on disk), "
      "automatic snapshots off. \"log only\": Open replays every record. "
      "\"snapshot\": Snapshot(), one more submit, Snapshot() again (which "
      "discards the log the older snapshot covers), Close, then Open loads "
      "the newest snapshot. Each timed Open runs in a fresh child process, "
      "as a daemon opens once at its start. Page cache warm (the files were "
      "just written)."};
  if (jetstream) {
    t.notes.push_back(
        "\"JetStream R<n> stream\": the stream was written by a kNone engine "
        "on NATS JetStream (then closed), and the timed open is "
        "OpenJetStreamEngine, which appends its fence and replays every "
        "record of the stream from the local NATS servers (no snapshot).");
  }
  return t;
}

Table MemoryTable(const Results& results) {
  Table t;
  t.title = "Memory: resident bytes per live task (taskwal)";
  t.header = {"tasks held", "resident B/task", "key+payload B/task",
              "beyond key+payload B/task"};
  std::string params;
  for (const std::string& label : Labels(results, "memory")) {
    auto v = [&](const char* metric) {
      const Measurement* m =
          results.FindMeasurement("memory", "taskwal-none", label, 0, metric);
      if (m != nullptr) params = m->params;
      return m != nullptr ? m->value : 0.0;
    };
    t.rows.push_back({label, FormatNumber(v("rss_bytes_per_task")),
                      FormatNumber(v("key_payload_bytes_per_task")),
                      FormatNumber(v("overhead_bytes_per_task"))});
  }
  t.notes = {absl::StrCat(
      "Resident set growth while one client submits the tasks (then claims "
      "and completes them all), divided by the number of tasks: ",
      params, ".")};
  return t;
}

Table ScaleTable(const CompareConfig& config, const Results& results) {
  Table t;
  t.title = absl::StrCat("Scale: lifecycles/s with a backlog of live tasks (",
                         config.scale_threads, " clients)");
  t.header = {"system"};
  for (uint64_t live : config.scale_live) {
    t.header.push_back(absl::StrCat(FormatNumber(live), " live"));
  }
  for (const std::string& mode : config.scale_modes) {
    const std::string system = absl::StrCat("taskwal-", mode);
    std::vector<std::string> row = {system};
    std::optional<double> first;
    for (uint64_t live : config.scale_live) {
      std::optional<double> v =
          results.Find("scale", system, absl::StrCat("live=", live),
                       config.scale_threads, "lifecycles_per_s");
      if (!v.has_value()) {
        row.push_back("-");
        continue;
      }
      if (!first.has_value()) first = v;
      row.push_back(
          absl::StrCat(FormatNumber(*v), " (", FormatRatio(*v / *first), ")"));
    }
    t.rows.push_back(std::move(row));
    std::vector<std::string> first_row = {
        absl::StrCat(system, ": first lifecycle after the preload (s)")};
    for (uint64_t live : config.scale_live) {
      std::optional<double> v =
          results.Find("scale", system, absl::StrCat("live=", live),
                       config.scale_threads, "first_lifecycle_s");
      first_row.push_back(v.has_value() ? absl::StrFormat("%.3f", *v) : "-");
    }
    t.rows.push_back(std::move(first_row));
  }
  t.notes = {
      "The backlog is pending tasks of priority -1, submitted in batches "
      "before the run; the measured tasks (priority 0) are claimed first, so "
      "the backlog stays in every index. One warm-up submit + claim + "
      "complete runs between the preload and the measurement and is timed "
      "on its own (the \"first lifecycle\" rows): one-time work the engine "
      "does on the first claim after a bulk submit lands there, not in the "
      "rate. (x) = ratio to the smallest backlog."};
  return t;
}

// Each client count's lifecycles/s as a multiple of the system's own
// 1-client figure: how a system scales with clients, the figure that
// partitions are for.
Table ScalingTable(const CompareConfig& config, const Results& results) {
  Table t;
  t.title = "Scaling: lifecycles/s at N clients as a multiple of 1 client";
  t.header = {"system"};
  for (int n : config.threads) t.header.push_back(ClientsHeader(n));
  for (const std::string& system : RowSystems(config, /*with_raw=*/true)) {
    const std::optional<double> one =
        results.Find("lifecycle", system, "", 1, "lifecycles_per_s");
    if (!one.has_value() || *one <= 0) continue;
    std::vector<std::string> row = {system};
    for (int n : config.threads) {
      const std::optional<double> v =
          results.Find("lifecycle", system, "", n, "lifecycles_per_s");
      row.push_back(v.has_value() ? FormatRatio(*v / *one) : "-");
    }
    t.rows.push_back(std::move(row));
  }
  t.notes = {absl::StrCat(
      "From the lifecycle table above (same run). On this machine's ",
      std::thread::hardware_concurrency(),
      " cores; a system whose 2-client figure is below 1x runs slower with "
      "a second client than with one. Chart: scaling.png.")};
  return t;
}

// --- Targets ----------------------------------------------------------------

struct Verdict {
  std::string target;
  std::string measured;
  std::string verdict;
};

std::string MetOrMissed(bool met) { return met ? "met" : "MISSED"; }

int LargestThreads(const std::vector<int>& threads, int wanted) {
  if (std::find(threads.begin(), threads.end(), wanted) != threads.end()) {
    return wanted;
  }
  return threads.empty() ? 0
                         : *std::max_element(threads.begin(), threads.end());
}

std::string AtClients(int n, int wanted) {
  return n == wanted
             ? absl::StrCat(" at ", n, " clients")
             : absl::StrCat(" at ", n, " clients (", wanted, " not run)");
}

// Issue 11's targets: scaling with clients (16-core figures; the 2-core
// one for kNone at 2 clients), throughput against the disk and RocksDB.
void ScalingVerdicts(const CompareConfig& config, const Results& results,
                     std::vector<Verdict>* v) {
  auto rate = [&](const char* system, int n) {
    return results.Find("lifecycle", system, "", n, "lifecycles_per_s");
  };
  auto has = [&](int n) {
    return std::find(config.threads.begin(), config.threads.end(), n) !=
           config.threads.end();
  };
  const std::optional<double> none1 = rate("taskwal-none", 1);
  for (const auto& [n, factor, floor] :
       {std::tuple<int, double, double>{2, 1.6, 0},
        std::tuple<int, double, double>{16, 8.0, 1e6}}) {
    const std::string target = absl::StrCat(
        "kNone, ", n, " clients: >= ", factor, "x its 1-client figure",
        floor > 0 ? absl::StrCat(" and >= ", FormatNumber(floor),
                                 " lifecycles/s (16 cores)")
                  : std::string(" (2 cores)"));
    const std::optional<double> at =
        has(n) ? rate("taskwal-none", n) : std::nullopt;
    if (!none1.has_value() || !at.has_value() || *none1 <= 0) {
      v->push_back({target, "not measured", "-"});
      continue;
    }
    v->push_back(
        {target,
         absl::StrCat(FormatNumber(*at), " vs ", FormatNumber(*none1),
                      " lifecycles/s: ", FormatRatio(*at / *none1), " on ",
                      std::thread::hardware_concurrency(), " cores"),
         MetOrMissed(*at / *none1 >= factor && *at >= floor)});
  }
  const std::optional<double> interval1 = rate("taskwal-interval", 1);
  for (int n : {16, 64, 256}) {
    const std::string target =
        absl::StrCat("kInterval, ", n, " clients: >= its 1-client figure");
    const std::optional<double> at =
        has(n) ? rate("taskwal-interval", n) : std::nullopt;
    if (!interval1.has_value() || !at.has_value() || *interval1 <= 0) {
      v->push_back({target, "not measured", "-"});
      continue;
    }
    v->push_back(
        {target,
         absl::StrCat(FormatNumber(*at), " vs ", FormatNumber(*interval1), ": ",
                      FormatRatio(*at / *interval1)),
         MetOrMissed(*at >= *interval1)});
  }
  for (int n : {64, 256}) {
    const std::optional<double> always =
        has(n) ? rate(kReference, n) : std::nullopt;
    const std::optional<double> rocks =
        has(n) ? rate("rocksdb-sync", n) : std::nullopt;
    const std::string target =
        absl::StrCat("kAlways, ", n, " clients: >= 2x rocksdb-sync");
    if (!always.has_value() || !rocks.has_value() || *rocks <= 0) {
      v->push_back({target, "not measured", "-"});
    } else {
      v->push_back(
          {target,
           absl::StrCat(FormatNumber(*always), " vs ", FormatNumber(*rocks),
                        ": ", FormatRatio(*always / *rocks)),
           MetOrMissed(*always >= 2 * *rocks)});
    }
    if (n != 64) continue;
    const std::optional<double> ceiling =
        has(n) ? rate(kRawClients, n) : std::nullopt;
    const std::string ceiling_target = absl::StrCat(
        "kAlways, 64 clients: >= 0.9x ", kRawClients, " (same run)");
    if (!always.has_value() || !ceiling.has_value() || *ceiling <= 0) {
      v->push_back({ceiling_target, "not measured", "-"});
    } else {
      v->push_back(
          {ceiling_target,
           absl::StrCat(FormatNumber(*always), " vs ", FormatNumber(*ceiling),
                        ": ", FormatRatio(*always / *ceiling)),
           MetOrMissed(*always >= 0.9 * *ceiling)});
    }
  }
}

// Issue 16's target for taskwald: >= 30k lifecycles/s at 64 keep-alive
// HTTP clients in kInterval (on the 2-core machine the issue names).
void TaskwaldVerdicts(const CompareConfig& config, const Results& results,
                      std::vector<Verdict>* v) {
  const std::string target =
      "taskwald-interval, 64 HTTP clients: >= 30,000 lifecycles/s (2 cores)";
  const bool has64 = std::find(config.threads.begin(), config.threads.end(),
                               64) != config.threads.end();
  const std::optional<double> at =
      has64 ? results.Find("lifecycle", "taskwald-interval", "", 64,
                           "lifecycles_per_s")
            : std::nullopt;
  if (!at.has_value()) {
    v->push_back({target, "not measured", "-"});
    return;
  }
  const std::optional<double> local =
      results.Find("lifecycle", "taskwal-interval", "", 64, "lifecycles_per_s");
  v->push_back(
      {target,
       absl::StrCat(FormatNumber(*at), " lifecycles/s",
                    local.has_value() && *local > 0
                        ? absl::StrCat(" (", FormatRatio(*at / *local),
                                       " of taskwal-interval in-process)")
                        : std::string(),
                    " on ", std::thread::hardware_concurrency(), " cores"),
       MetOrMissed(*at >= 30000)});
}

// Issue 15's targets for taskwal on JetStream (3 local servers): >= 30k
// transitions/s through one partition at R3, >= 100k across partitions,
// p99 of a Submit <= 20 ms.
void JetStreamVerdicts(const CompareConfig& config, const Results& results,
                       std::vector<Verdict>* v) {
  if (config.nats_servers.empty() ||
      std::find(config.jetstream_replicas.begin(),
                config.jetstream_replicas.end(),
                3) == config.jetstream_replicas.end()) {
    return;
  }
  // The best lifecycle rate over the client counts run, as transitions/s.
  auto best = [&](const char* system,
                  std::string* at) -> std::optional<double> {
    std::optional<double> top;
    for (int n : config.threads) {
      std::optional<double> r =
          results.Find("lifecycle", system, "", n, "lifecycles_per_s");
      if (r.has_value() && (!top.has_value() || *r > *top)) {
        top = r;
        *at = ClientsHeader(n);
      }
    }
    if (top.has_value()) *top *= kRecordsPerLifecycle;
    return top;
  };
  for (const auto& [system, floor, target] :
       {std::tuple<const char*, double, const char*>{
            "taskwal-jetstream-r3-p1", 30000,
            "JetStream R3, one partition: >= 30,000 transitions/s"},
        std::tuple<const char*, double, const char*>{
            "taskwal-jetstream-r3", 100000,
            "JetStream R3, across partitions: >= 100,000 transitions/s"},
        std::tuple<const char*, double, const char*>{
            "taskwal-jetstream-r3-s3", 100000,
            "JetStream R3, across 3 shards: >= 100,000 transitions/s"}}) {
    std::string at;
    const std::optional<double> rate = best(system, &at);
    if (!rate.has_value()) {
      v->push_back({target, "not measured", "-"});
      continue;
    }
    v->push_back({target,
                  absl::StrCat(FormatNumber(*rate), " transitions/s (", system,
                               ", best at ", at, ", 3 per lifecycle)"),
                  MetOrMissed(*rate >= floor)});
  }
  // The same with batched calls, reported beside (not instead of) the
  // single-call figure above.
  {
    const std::string target = absl::StrCat(
        "JetStream R3, across partitions, batched calls (", config.batch_size,
        " tasks a call): >= 100,000 transitions/s");
    std::optional<double> top;
    std::string at;
    for (int n : config.threads) {
      std::optional<double> r = results.Find("batch", "taskwal-jetstream-r3",
                                             "", n, "lifecycles_per_s");
      if (r.has_value() && (!top.has_value() || *r > *top)) {
        top = r;
        at = ClientsHeader(n);
      }
    }
    if (!top.has_value()) {
      v->push_back({target, "not measured", "-"});
    } else {
      const double rate = *top * kRecordsPerLifecycle;
      v->push_back({target,
                    absl::StrCat(FormatNumber(rate),
                                 " task transitions/s (taskwal-jetstream-r3, "
                                 "best at ",
                                 at, ", 3 per task)"),
                    MetOrMissed(rate >= 100000)});
    }
  }
  for (int n : config.latency_threads) {
    const std::string target = absl::StrCat(
        "JetStream R3: p99 of a Submit <= 20 ms, ", ClientsHeader(n));
    std::optional<double> p99 =
        results.Find("latency", "taskwal-jetstream-r3", "", n, "submit_p99_us");
    if (!p99.has_value()) {
      v->push_back({target, "not measured", "-"});
      continue;
    }
    v->push_back({target,
                  absl::StrCat("Submit p99 ", FormatNumber(*p99), " us"),
                  MetOrMissed(*p99 <= 20000)});
  }
}

Table TargetsTable(const CompareConfig& config, const Results& results) {
  std::vector<Verdict> v;
  ScalingVerdicts(config, results, &v);
  TaskwaldVerdicts(config, results, &v);
  JetStreamVerdicts(config, results, &v);
  const int n64 = LargestThreads(config.threads, 64);
  const std::optional<double> always64 =
      results.Find("lifecycle", kReference, "", n64, "lifecycles_per_s");

  // 1. Throughput at 64 clients.
  if (always64.has_value()) {
    const std::optional<double> ceiling =
        results.Find("lifecycle", kRawClients, "", n64, "lifecycles_per_s");
    v.push_back(
        {"kAlways, 64 clients: >= 100,000 lifecycles/s",
         absl::StrCat(
             FormatNumber(*always64), " lifecycles/s", AtClients(n64, 64),
             ceiling.has_value()
                 ? absl::StrCat("; ", kRawClients, ": ", FormatNumber(*ceiling))
                 : ""),
         MetOrMissed(*always64 >= 100000)});
  } else {
    v.push_back(
        {"kAlways, 64 clients: >= 100,000 lifecycles/s", "not measured", "-"});
  }
  // 2. Against SQLite FULL.
  std::optional<double> sqlite =
      results.Find("lifecycle", "sqlite-full", "", n64, "lifecycles_per_s");
  if (always64.has_value() && sqlite.has_value() && *sqlite > 0) {
    const double ratio = *always64 / *sqlite;
    v.push_back(
        {"kAlways, 64 clients: >= 30x SQLite synchronous=FULL",
         absl::StrCat(FormatRatio(ratio), " (", FormatNumber(*always64), " vs ",
                      FormatNumber(*sqlite), ")", AtClients(n64, 64)),
         MetOrMissed(ratio >= 30)});
  } else {
    v.push_back({"kAlways, 64 clients: >= 30x SQLite synchronous=FULL",
                 "not measured", "-"});
  }
  // 3. kNone, one client, transitions/s.
  std::optional<double> none1 =
      results.Find("lifecycle", "taskwal-none", "", 1, "lifecycles_per_s");
  if (none1.has_value()) {
    const double transitions = *none1 * kRecordsPerLifecycle;
    v.push_back({"kNone, 1 client: >= 1,000,000 transitions/s",
                 absl::StrCat(FormatNumber(transitions),
                              " transitions/s (3 per lifecycle: ",
                              FormatNumber(*none1), " lifecycles/s)"),
                 MetOrMissed(transitions >= 1e6)});
  } else {
    v.push_back(
        {"kNone, 1 client: >= 1,000,000 transitions/s", "not measured", "-"});
  }
  // 4. Ahead of RocksDB in every sync mode, at every client count.
  for (auto [ours, theirs] :
       {std::pair<const char*, const char*>{"taskwal-always", "rocksdb-sync"},
        {"taskwal-interval", "rocksdb-nosync"},
        {"taskwal-none", "rocksdb-buffered"}}) {
    std::string worst_text;
    double worst = 0;
    bool any = false;
    std::vector<std::string> parts;
    for (int n : config.threads) {
      std::optional<double> a =
          results.Find("lifecycle", ours, "", n, "lifecycles_per_s");
      std::optional<double> b =
          results.Find("lifecycle", theirs, "", n, "lifecycles_per_s");
      if (!a.has_value() || !b.has_value() || *b <= 0) continue;
      const double ratio = *a / *b;
      parts.push_back(absl::StrCat(n, ": ", FormatRatio(ratio)));
      if (!any || ratio < worst) worst = ratio;
      any = true;
    }
    const std::string target =
        absl::StrCat("ahead of RocksDB: ", ours, " vs ", theirs,
                     " (lifecycles/s, every client count)");
    if (!any) {
      v.push_back({target, "not measured", "-"});
      continue;
    }
    v.push_back({target,
                 absl::StrCat("taskwal/RocksDB by clients: ",
                              absl::StrJoin(parts, ", ")),
                 MetOrMissed(worst > 1.0)});
  }
  // 5. Latency against the raw fdatasync.
  for (int n : config.latency_threads) {
    std::optional<double> disk =
        results.Find("latency", kRawSync, "", n, "fdatasync_p99_us");
    std::optional<double> submit =
        results.Find("latency", kReference, "", n, "submit_p99_us");
    std::optional<double> complete =
        results.Find("latency", kReference, "", n, "complete_p99_us");
    const std::string target =
        absl::StrCat("kAlways p99 <= 4x raw fdatasync p99, ", ClientsHeader(n));
    if (!disk.has_value() || !submit.has_value() || !complete.has_value() ||
        *disk <= 0) {
      v.push_back({target, "not measured", "-"});
      continue;
    }
    const double worst = std::max(*submit, *complete) / *disk;
    v.push_back({target,
                 absl::StrCat("Submit p99 ", FormatNumber(*submit),
                              " us, Complete p99 ", FormatNumber(*complete),
                              " us, fdatasync p99 ", FormatNumber(*disk),
                              " us: ", FormatRatio(worst)),
                 MetOrMissed(worst <= 4.0)});
  }
  // 6. Replay rate and snapshot open.
  for (const Measurement& m : results.all()) {
    if (m.workload != "recovery") continue;
    if (m.metric == "records_per_s" && absl::StrContains(m.label, "log only") &&
        absl::StrContains(m.label, "lifecycles")) {
      v.push_back(
          {"replay >= 2,000,000 records/s",
           absl::StrCat(FormatNumber(m.value), " records/s (", m.label, ")"),
           MetOrMissed(m.value >= 2e6)});
      if (absl::StrContains(m.label, "10,000,000") ||
          absl::StrContains(m.label, "10000000")) {
        v.push_back(
            {"replay of 10 M transitions >= 4,000,000 records/s "
             "(16 cores)",
             absl::StrCat(FormatNumber(m.value), " records/s on ",
                          std::thread::hardware_concurrency(), " cores"),
             MetOrMissed(m.value >= 4e6)});
      }
    }
    if (m.metric == "open_s" && absl::StrContains(m.label, "snapshot") &&
        absl::StrContains(m.label, "submits")) {
      std::optional<double> tasks =
          results.Find("recovery", "taskwal", m.label, 0, "tasks");
      v.push_back({"Open from a 1M-task snapshot < 1 s",
                   absl::StrFormat("%.3f s for %s tasks", m.value,
                                   FormatNumber(tasks.value_or(0))),
                   MetOrMissed(m.value < 1.0)});
      v.push_back({"Open from a 1M-task snapshot < 0.5 s (16 cores)",
                   absl::StrFormat("%.3f s on %d cores", m.value,
                                   std::thread::hardware_concurrency()),
                   MetOrMissed(m.value < 0.5)});
    }
  }
  // 7. Memory.
  for (const std::string& label : Labels(results, "memory")) {
    std::optional<double> over = results.Find("memory", "taskwal-none", label,
                                              0, "overhead_bytes_per_task");
    if (!over.has_value()) continue;
    v.push_back(
        {absl::StrCat("<= 250 bytes per task beyond payload+key, ", label),
         absl::StrCat(FormatNumber(*over), " bytes at ",
                      FormatNumber(config.memory_tasks), " tasks"),
         MetOrMissed(*over <= 250)});
  }
  // 8. Scale.
  if (config.scale_live.size() >= 2) {
    const uint64_t lo = config.scale_live.front();
    const uint64_t hi = config.scale_live.back();
    for (const std::string& mode : config.scale_modes) {
      const std::string system = absl::StrCat("taskwal-", mode);
      std::optional<double> a =
          results.Find("scale", system, absl::StrCat("live=", lo),
                       config.scale_threads, "lifecycles_per_s");
      std::optional<double> b =
          results.Find("scale", system, absl::StrCat("live=", hi),
                       config.scale_threads, "lifecycles_per_s");
      const std::string target =
          absl::StrCat(system, ": ", FormatNumber(hi),
                       " live tasks within 20% of ", FormatNumber(lo));
      if (!a.has_value() || !b.has_value() || *a <= 0) {
        v.push_back({target, "not measured", "-"});
        continue;
      }
      v.push_back({target,
                   absl::StrCat(FormatNumber(*b), " vs ", FormatNumber(*a),
                                " lifecycles/s: ", FormatRatio(*b / *a)),
                   MetOrMissed(*b / *a >= 0.8)});
    }
  }
  Table t;
  t.title = "Targets (from the issue)";
  t.header = {"target", "measured in this run", "verdict"};
  for (Verdict& x : v) t.rows.push_back({x.target, x.measured, x.verdict});
  t.notes = {
      "Verdicts are computed by compare from the figures above, nothing is "
      "typed by hand. Sizes and client counts are those of this run; a "
      "--quick or medium run is only indicative."};
  return t;
}

bool Has(const Results& results, absl::string_view workload) {
  for (const Measurement& m : results.all()) {
    if (m.workload == workload) return true;
  }
  return false;
}

}  // namespace

std::vector<Table> BuildTables(const CompareConfig& config,
                               const Results& results) {
  std::vector<Table> tables = {SystemsTable(config)};
  if (Has(results, "lifecycle")) {
    tables.push_back(RateTable(
        config, results, "lifecycle", "lifecycles_per_s",
        "Lifecycle throughput: tasks fully processed per second (submit + "
        "claim + complete)",
        {absl::StrCat("N tasks with unique keys and ", config.payload_bytes,
                      "-byte payloads are submitted by the clients, then the "
                      "same clients ClaimNext + Complete until drained. N = ",
                      config.durable_tasks,
                      " for systems that fdatasync per call, ",
                      config.fast_tasks, " for the others",
                      config.nats_servers.empty()
                          ? std::string()
                          : absl::StrCat(" (", config.jetstream_tasks,
                                         " for taskwal-jetstream-* but "
                                         "-async)"),
                      ". Rate = 1 / (submit time per task + "
                      "claim-and-complete time per task)."),
         absl::StrCat("(x) = ratio to ", kReference,
                      " in the same column. disk-* rows: records/s / 3 (three "
                      "records per lifecycle, as taskwal writes). A trailing "
                      "'c' marks a run capped by --max_phase_seconds.")},
        /*with_raw=*/true));
  }
  if (Has(results, "lifecycle")) {
    tables.push_back(ScalingTable(config, results));
    tables.push_back(RateTable(
        config, results, "lifecycle", "cpu_us_per_lifecycle",
        "CPU time per lifecycle (microseconds, whole process, user + system)",
        {absl::StrCat(
            "getrusage over both phases of the lifecycle runs above, divided "
            "by the tasks completed: client threads, the system's own threads "
            "and the kernel's work for its syscalls. Less sensitive to a "
            "noisy disk than the rates; on this machine's ",
            std::thread::hardware_concurrency(),
            " cores, the rate cannot exceed cores / CPU time. (x) = ratio "
            "to ",
            kReference, " (below 1x: cheaper).")},
        /*with_raw=*/false));
  }
  if (Has(results, "batch")) tables.push_back(BatchTable(config, results));
  if (Has(results, "dedup")) {
    tables.push_back(RateTable(
        config, results, "dedup", "submits_per_s",
        "Submit with 50% duplicate keys: Submit calls per second",
        {absl::StrCat("Every second call repeats the previous call's key and "
                      "payload (answered with the existing task). (x) = "
                      "ratio to ",
                      kReference, ".")},
        /*with_raw=*/false));
  }
  if (Has(results, "latency")) tables.push_back(LatencyTable(config, results));
  if (Has(results, "recovery")) tables.push_back(RecoveryTable(results));
  if (Has(results, "memory")) tables.push_back(MemoryTable(results));
  if (Has(results, "scale")) tables.push_back(ScaleTable(config, results));
  tables.push_back(TargetsTable(config, results));
  return tables;
}

}  // namespace taskwal::bench
