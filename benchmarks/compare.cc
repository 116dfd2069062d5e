// compare: runs the same workloads against taskwal (kAlways, kInterval,
// kNone), taskwald over HTTP/JSON on loopback (benchmarks/taskwald_queue.h),
// an SQLite queue (synchronous=FULL and NORMAL), a RocksDB task
// store (sync, no sync, buffered WAL) and the physical limit of the disk
// (append + fdatasync loops), in one invocation, and prints one table per
// workload with every figure and its ratio to taskwal-always. With
// --nats=URLS also taskwal on NATS JetStream (taskwal-jetstream-*,
// benchmarks/jetstream_queue.h); benchmarks/jetstream_compare.sh starts a
// local 3-server cluster for that and runs it.
//
//   bazel build --config=opt //benchmarks:compare
//   bazel-bin/benchmarks/compare                 # full run (long; GBs of RAM)
//   bazel-bin/benchmarks/compare --quick         # smoke test, < 1 minute
//   bazel-bin/benchmarks/compare --workloads=lifecycle,latency
//       --threads=1,64 --out=results.csv --json=results.json --markdown
//       (one command line)
//
// Data directories are created under --tmpdir (default $TMPDIR, else /tmp;
// it must be on the real disk for the fdatasync figures to mean anything)
// and removed at the end. Nothing here asserts timing: it measures and
// reports. Progress goes to stderr, tables to stdout. Exit status 1 if any
// run failed (the failures are listed), 2 for bad flags.

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "benchmarks/bench_util.h"
#include "benchmarks/compare_runs.h"
#include "benchmarks/compare_tables.h"
#include "benchmarks/jetstream_queue.h"
#include "benchmarks/queue.h"
#include "benchmarks/report.h"
#include "benchmarks/taskwald_queue.h"

ABSL_FLAG(bool, quick, false,
          "Smoke test: tiny sizes, 1 and 4 clients, everything in well under "
          "a minute. Size flags given explicitly still win.");
ABSL_FLAG(bool, markdown, false, "Print the tables as Markdown.");
ABSL_FLAG(std::string, out, "", "Also write every figure to this CSV file.");
ABSL_FLAG(std::string, json, "", "Also write every figure to this JSON file.");
ABSL_FLAG(std::string, workloads,
          "lifecycle,batch,dedup,latency,recovery,memory,scale",
          "Workloads to run, comma-separated.");
ABSL_FLAG(uint64_t, batch_size, 32,
          "Tasks per call of the batch workload (1 to 1000): SubmitBatch, "
          "ClaimNextBatch and CompleteBatch, for the taskwal systems.");
ABSL_FLAG(std::string, systems, "all",
          "Systems to run, comma-separated (taskwal-always, taskwal-interval, "
          "taskwal-none, taskwald-interval, taskwald-always, sqlite-full, "
          "sqlite-normal, rocksdb-sync, "
          "rocksdb-nosync, rocksdb-buffered, disk, taskwal-jetstream-r1, "
          "taskwal-jetstream-r3, taskwal-jetstream-r3-async, "
          "taskwal-jetstream-r3-p1, jetstream for all of those), or all.");
ABSL_FLAG(std::string, threads, "1,2,4,16,64", "Client thread counts.");
ABSL_FLAG(uint64_t, durable_tasks, 20000,
          "Tasks per lifecycle/dedup run of a system that fdatasyncs per "
          "call (and per scale run in kAlways).");
ABSL_FLAG(uint64_t, fast_tasks, 200000,
          "Tasks per lifecycle/dedup/scale run of the other systems.");
ABSL_FLAG(uint64_t, payload_bytes, 128, "Payload size of every task.");
ABSL_FLAG(std::string, latency_threads, "1,64",
          "Client counts of the latency workload.");
ABSL_FLAG(uint64_t, latency_tasks, 20000, "Tasks per latency run.");
ABSL_FLAG(std::string, recovery_transitions, "1000000,10000000",
          "Log sizes (transitions, as submit/claim/complete lifecycles) to "
          "time Open after, with and without a snapshot.");
ABSL_FLAG(std::string, snapshot_tasks, "1000000",
          "Also time Open of this many submitted tasks, from the log and from "
          "a snapshot.");
ABSL_FLAG(uint64_t, memory_tasks, 1000000,
          "Tasks held when measuring resident memory per task.");
ABSL_FLAG(std::string, scale_live, "10000,1000000,10000000",
          "Backlogs of live tasks for the scale workload.");
ABSL_FLAG(std::string, scale_modes, "always,none",
          "Sync modes of the scale workload (always, interval, none).");
ABSL_FLAG(int, scale_threads, 16, "Clients in the scale workload.");
ABSL_FLAG(double, raw_seconds, 2.0, "Duration of each raw disk loop.");
ABSL_FLAG(double, max_phase_seconds, 120.0,
          "Cap on each phase of a run (submit, drain); a capped run reports "
          "the rate of the part done and is marked.");
ABSL_FLAG(std::string, nats, "",
          "NATS server URLs, comma-separated (nats://127.0.0.1:4222,...): "
          "also run taskwal on NATS JetStream (taskwal-jetstream-*; start "
          "local servers with tools/nats_cluster.sh, or run "
          "benchmarks/jetstream_compare.sh). Without it those systems are "
          "skipped.");
ABSL_FLAG(std::string, jetstream_replicas, "1,3",
          "Stream replicas of the taskwal-jetstream-r<R> systems (at most "
          "the number of NATS servers); the -async and -p1 variants use the "
          "largest.");
ABSL_FLAG(uint64_t, jetstream_tasks, 5000,
          "Tasks per lifecycle/dedup run of the taskwal-jetstream-* systems "
          "whose calls wait for the NATS servers (-async: --fast_tasks).");
ABSL_FLAG(std::string, jetstream_recovery_transitions, "300000",
          "JetStream stream sizes (transitions) to time OpenJetStreamEngine's "
          "replay after, per replica count of --jetstream_replicas.");
ABSL_FLAG(std::string, open_cluster, "",
          "Internal: the JetStream cluster --internal_child=open_jetstream "
          "opens.");
ABSL_FLAG(std::string, tmpdir, "",
          "Where data directories go (default $TMPDIR, else /tmp).");
ABSL_FLAG(std::string, open_dir, "",
          "Internal: the data directory --internal_child=open opens.");
ABSL_FLAG(std::string, internal_child, "",
          "Internal: run a child workload (memory) and print key=value "
          "lines.");

namespace taskwal::bench {
namespace {

constexpr const char* kAllWorkloads[] = {
    "lifecycle", "batch", "dedup", "latency", "recovery", "memory", "scale"};

std::vector<int> Ints(const std::string& list) {
  std::vector<int> out;
  for (int64_t v : ParseIntList(list)) {
    if (v > 0 && v <= 4096) out.push_back(static_cast<int>(v));
  }
  return out;
}

std::vector<uint64_t> Sizes(const std::string& list) {
  std::vector<uint64_t> out;
  for (int64_t v : ParseIntList(list)) {
    if (v > 0) out.push_back(static_cast<uint64_t>(v));
  }
  return out;
}

std::string SelfPath() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}

// Flags named on the command line, so --quick does not override them.
std::set<std::string> GivenFlags(int argc, char** argv) {
  std::set<std::string> given;
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (!absl::ConsumePrefix(&a, "--") && !absl::ConsumePrefix(&a, "-")) {
      continue;
    }
    given.insert(std::string(a.substr(0, a.find('='))));
  }
  return given;
}

// The command as a reader would type it: Bazel's output path shortened to
// bazel-bin/.
std::string CommandLine(int argc, char** argv) {
  std::vector<std::string> parts;
  for (int i = 0; i < argc; ++i) parts.push_back(argv[i]);
  if (!parts.empty() && absl::EndsWith(parts[0], "/benchmarks/compare")) {
    parts[0] = "bazel-bin/benchmarks/compare";
  }
  return absl::StrJoin(parts, " ");
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Runs taskwal, SQLite, RocksDB and raw-disk baselines through the same "
      "workloads and prints comparison tables. See benchmarks/compare.cc.");
  const std::set<std::string> given = GivenFlags(argc, argv);
  absl::ParseCommandLine(argc, argv);
  const std::string tmpdir = absl::GetFlag(FLAGS_tmpdir).empty()
                                 ? ScratchRoot()
                                 : absl::GetFlag(FLAGS_tmpdir);

  if (absl::GetFlag(FLAGS_internal_child) == "open") {
    return OpenChildMain(absl::GetFlag(FLAGS_open_dir));
  }
  if (absl::GetFlag(FLAGS_internal_child) == "open_jetstream") {
    return OpenJetStreamChildMain(absl::GetFlag(FLAGS_nats),
                                  absl::GetFlag(FLAGS_open_cluster));
  }
  if (absl::GetFlag(FLAGS_internal_child) == "memory") {
    return MemoryChildMain(tmpdir, absl::GetFlag(FLAGS_memory_tasks),
                           absl::GetFlag(FLAGS_payload_bytes));
  }

  // --quick: small values for every size flag not given explicitly.
  if (absl::GetFlag(FLAGS_quick)) {
    auto quick = [&given](auto& flag, auto value, const char* name) {
      if (given.count(name) == 0) absl::SetFlag(&flag, value);
    };
    quick(FLAGS_threads, std::string("1,4"), "threads");
    quick(FLAGS_durable_tasks, uint64_t{300}, "durable_tasks");
    quick(FLAGS_fast_tasks, uint64_t{3000}, "fast_tasks");
    quick(FLAGS_latency_threads, std::string("1,4"), "latency_threads");
    quick(FLAGS_latency_tasks, uint64_t{300}, "latency_tasks");
    quick(FLAGS_recovery_transitions, std::string("30000"),
          "recovery_transitions");
    quick(FLAGS_snapshot_tasks, std::string("10000"), "snapshot_tasks");
    quick(FLAGS_memory_tasks, uint64_t{20000}, "memory_tasks");
    quick(FLAGS_scale_live, std::string("1000,20000"), "scale_live");
    quick(FLAGS_scale_threads, 4, "scale_threads");
    quick(FLAGS_raw_seconds, 0.2, "raw_seconds");
    quick(FLAGS_max_phase_seconds, 10.0, "max_phase_seconds");
    quick(FLAGS_jetstream_tasks, uint64_t{300}, "jetstream_tasks");
    quick(FLAGS_jetstream_recovery_transitions, std::string("3000"),
          "jetstream_recovery_transitions");
  }

  CompareConfig config;
  config.self_path = SelfPath();
  config.threads = Ints(absl::GetFlag(FLAGS_threads));
  config.durable_tasks = absl::GetFlag(FLAGS_durable_tasks);
  config.fast_tasks = absl::GetFlag(FLAGS_fast_tasks);
  config.payload_bytes = absl::GetFlag(FLAGS_payload_bytes);
  config.raw_time = absl::Seconds(absl::GetFlag(FLAGS_raw_seconds));
  config.max_phase_time = absl::Seconds(absl::GetFlag(FLAGS_max_phase_seconds));
  config.latency_threads = Ints(absl::GetFlag(FLAGS_latency_threads));
  config.latency_tasks = absl::GetFlag(FLAGS_latency_tasks);
  config.recovery_transitions =
      Sizes(absl::GetFlag(FLAGS_recovery_transitions));
  config.snapshot_tasks = Sizes(absl::GetFlag(FLAGS_snapshot_tasks));
  config.memory_tasks = absl::GetFlag(FLAGS_memory_tasks);
  config.scale_live = Sizes(absl::GetFlag(FLAGS_scale_live));
  config.scale_threads = absl::GetFlag(FLAGS_scale_threads);
  for (absl::string_view m : absl::StrSplit(absl::GetFlag(FLAGS_scale_modes),
                                            ',', absl::SkipEmpty())) {
    if (m != "always" && m != "interval" && m != "none") {
      std::fprintf(stderr, "compare: unknown scale mode %s\n",
                   std::string(m).c_str());
      return 2;
    }
    config.scale_modes.emplace_back(m);
  }

  // JetStream.
  config.nats_servers = absl::GetFlag(FLAGS_nats);
  config.jetstream_replicas = Ints(absl::GetFlag(FLAGS_jetstream_replicas));
  for (int r : config.jetstream_replicas) {
    if (r > 5) {
      std::fprintf(stderr, "compare: --jetstream_replicas: %d is not 1 to 5\n",
                   r);
      return 2;
    }
  }
  config.jetstream_tasks = absl::GetFlag(FLAGS_jetstream_tasks);
  const uint64_t batch_size = absl::GetFlag(FLAGS_batch_size);
  if (batch_size < 1 || batch_size > 1000) {
    std::fprintf(stderr, "compare: --batch_size must be from 1 to 1000\n");
    return 2;
  }
  config.batch_size = batch_size;
  config.jetstream_recovery_transitions =
      Sizes(absl::GetFlag(FLAGS_jetstream_recovery_transitions));

  // Systems.
  std::vector<SystemSpec> all = TaskwalSystems();
  for (auto* more : {&TaskwaldSystems, &SqliteSystems, &RocksdbSystems}) {
    for (SystemSpec& s : (*more)()) all.push_back(std::move(s));
  }
  const std::string systems_flag = absl::GetFlag(FLAGS_systems);
  std::set<std::string> wanted;
  for (absl::string_view s :
       absl::StrSplit(systems_flag, ',', absl::SkipEmpty())) {
    wanted.insert(std::string(s));
  }
  const bool every = wanted.count("all") > 0;
  std::set<std::string> known = {"all", "disk", "jetstream"};
  for (SystemSpec& s : all) {
    known.insert(s.name);
    if (every || wanted.count(s.name) > 0) config.systems.push_back(s);
  }
  // The JetStream systems are known by name without --nats too, so that
  // naming one then is skipped with a reason, not refused as unknown.
  std::vector<std::string> jetstream_wanted;
  for (SystemSpec& s :
       JetStreamSystems(config.nats_servers, config.jetstream_replicas)) {
    known.insert(s.name);
    if (every || wanted.count("jetstream") > 0 || wanted.count(s.name) > 0) {
      jetstream_wanted.push_back(s.name);
      if (!config.nats_servers.empty()) config.systems.push_back(s);
    }
  }
  for (const std::string& w : wanted) {
    if (known.count(w) == 0) {
      std::fprintf(stderr, "compare: unknown system %s\n", w.c_str());
      return 2;
    }
  }
  if (config.nats_servers.empty() && !jetstream_wanted.empty()) {
    config.jetstream_skipped =
        absl::StrCat(absl::StrJoin(jetstream_wanted, ", "),
                     " skipped: no --nats=URLS given (start NATS servers with "
                     "tools/nats_cluster.sh start DIR 3, or run "
                     "benchmarks/jetstream_compare.sh)");
    std::fprintf(stderr, "compare: %s\n", config.jetstream_skipped.c_str());
  }
  config.raw = every || wanted.count("disk") > 0;

  std::set<std::string> workloads;
  for (absl::string_view w :
       absl::StrSplit(absl::GetFlag(FLAGS_workloads), ',', absl::SkipEmpty())) {
    if (std::find(std::begin(kAllWorkloads), std::end(kAllWorkloads), w) ==
        std::end(kAllWorkloads)) {
      std::fprintf(stderr, "compare: unknown workload %s\n",
                   std::string(w).c_str());
      return 2;
    }
    workloads.insert(std::string(w));
  }
  if (config.threads.empty() ||
      (workloads.count("latency") > 0 && config.latency_threads.empty())) {
    std::fprintf(stderr, "compare: no thread counts\n");
    return 2;
  }

  absl::StatusOr<TempDir> scratch = TempDir::Create(tmpdir, "taskwal-compare-");
  if (!scratch.ok()) {
    std::fprintf(stderr, "compare: %s\n", scratch.status().ToString().c_str());
    return 1;
  }
  config.scratch = scratch->path();
  const std::string command = CommandLine(argc, argv);
  const std::vector<std::pair<std::string, std::string>> machine =
      DescribeMachine(config.scratch);

  Results results;
  auto run = [&](const char* name,
                 absl::Status (*fn)(const CompareConfig&, Results*)) {
    if (workloads.count(name) == 0) return;
    const int64_t t0 = NowNanos();
    absl::Status s = fn(config, &results);
    if (!s.ok()) results.AddError(absl::StrCat(name, ": ", s.ToString()));
    std::fprintf(stderr, "[%s] done in %.1f s\n", name,
                 (NowNanos() - t0) / 1e9);
  };
  run("lifecycle", &RunLifecycleWorkload);
  run("batch", &RunBatchWorkload);
  run("dedup", &RunDedupWorkload);
  run("latency", &RunLatencyWorkload);
  run("recovery", &RunRecoveryWorkload);
  run("memory", &RunMemoryWorkload);
  run("scale", &RunScaleWorkload);

  const bool markdown = absl::GetFlag(FLAGS_markdown);
  std::string out;
  if (markdown) {
    absl::StrAppend(&out, "Produced by:\n\n```\n", command, "\n```\n\n");
    for (const auto& [k, v] : machine) {
      absl::StrAppend(&out, "- **", k, "**: ", v, "\n");
    }
    out += "\n";
  } else {
    absl::StrAppend(&out, "command: ", command, "\n");
    for (const auto& [k, v] : machine) absl::StrAppend(&out, k, ": ", v, "\n");
    out += "\n";
  }
  for (const Table& t : BuildTables(config, results)) {
    out += RenderTable(t, markdown);
  }
  if (!results.errors().empty()) {
    absl::StrAppend(&out, markdown ? "**Failed runs:**\n\n" : "FAILED RUNS:\n");
    for (const std::string& e : results.errors()) {
      absl::StrAppend(&out, markdown ? "- " : "  ", e, "\n");
    }
  }
  std::fputs(out.c_str(), stdout);
  std::fflush(stdout);

  int rc = results.errors().empty() ? 0 : 1;
  if (!absl::GetFlag(FLAGS_out).empty()) {
    absl::Status s = results.WriteCsv(absl::GetFlag(FLAGS_out), kReference);
    if (!s.ok()) {
      std::fprintf(stderr, "compare: %s\n", s.ToString().c_str());
      rc = 1;
    }
  }
  if (!absl::GetFlag(FLAGS_json).empty()) {
    absl::Status s = results.WriteJson(absl::GetFlag(FLAGS_json), command,
                                       machine, kReference);
    if (!s.ok()) {
      std::fprintf(stderr, "compare: %s\n", s.ToString().c_str());
      rc = 1;
    }
  }
  return rc;
}

}  // namespace
}  // namespace taskwal::bench

int main(int argc, char** argv) { return taskwal::bench::Main(argc, argv); }
