// taskwald: a taskwal engine on a data directory, served over HTTP/JSON
// (daemon/http_api.h lists the routes); or, with --nats, a gateway to a
// taskwal cluster on NATS JetStream (ConnectJetStreamEngine). `taskwald
// --help` documents the flags and exit statuses.
//
// Startup prints one line on stdout once the socket is bound,
//   taskwald listening on http://127.0.0.1:PORT
// so that a supervisor (or a test) started with --listen=127.0.0.1:0 can
// read the port. Everything else goes to stderr, one line per event, with
// text from requests escaped (no terminal escapes reach the log).
//
// SIGTERM or SIGINT: stop taking connections, let the requests in flight
// finish (up to --drain_timeout_ms), close the engine (which ends waiting
// long polls with 503 CANCELLED and makes everything acknowledged
// durable), exit 0.
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/http_api.h"
#include "taskwal/engine.h"
#include "taskwal/jetstream.h"
#include "taskwal/version.h"
#include "tools/taskwal_args.h"
#include "wal/status_macros.h"

namespace taskwal::daemon {
namespace {

// Exit statuses (also in --help).
constexpr int kExitOk = 0;
constexpr int kExitCannotOpen = 1;  // The engine did not open.
constexpr int kExitUsage = 2;       // Bad flags, unreadable token file.
constexpr int kExitCannotListen = 3;
constexpr int kExitCloseFailed = 4;  // Close reported the sticky error.

const std::vector<tools::FlagSpec>& Flags() {
  static const auto* flags = new std::vector<tools::FlagSpec>{
      {"data_dir", "DIR",
       "the data directory (created if missing); this or --nats is "
       "required"},
      {"nats", "URLS",
       "instead of a data directory: the NATS servers (nats://HOST:PORT, "
       "comma-separated) of a taskwal cluster on JetStream, served through "
       "its leader (with --cluster)"},
      {"cluster", "NAME", "with --nats: the cluster's name"},
      {"shards", "N", "with --nats: the cluster's shard count (default 1)"},
      {"listen", "HOST:PORT",
       "address to serve on (default 127.0.0.1:7070); port 0 picks a free "
       "one"},
      {"sync_mode", "MODE", "always (default), interval or none"},
      {"partitions", "N", "partitions of a new data directory (0: 16)"},
      {"retention", "DURATION",
       "delete finished tasks this long after they end (e.g. 168h; default "
       "0: keep them)"},
      {"max_tasks", "N", "tasks held at once; 0 (default): no limit"},
      {"admin_token", "TOKEN",
       "bearer token for every request (visible in ps: prefer "
       "--admin_token_file)"},
      {"admin_token_file", "FILE", "file holding the admin token"},
      {"read_token", "TOKEN", "bearer token for GET requests only"},
      {"read_token_file", "FILE", "file holding the read token"},
      {"max_body_bytes", "N", "largest request body (default 16777216)"},
      {"max_claim_wait_ms", "N",
       "longest POST /v1/claims long poll (default 30000)"},
      {"rate_limit", "N", "requests per second over the server; 0: none"},
      {"rate_burst", "N", "burst for --rate_limit (default 100)"},
      {"threads", "N",
       "connections served at once (default 64; a keep-alive client holds "
       "one)"},
      {"series_step_ms", "N",
       "the dashboard's charts: a sample every N ms (default 5000; at least "
       "100), the last 180 steps kept"},
      {"drain_timeout_ms", "N",
       "on SIGTERM, how long requests in flight may take (default 10000)"},
      {"help", "", "print this help"},
  };
  return *flags;
}

std::string Help() {
  return absl::StrCat(
      "taskwald ", TASKWAL_VERSION,
      ": the taskwal engine as an HTTP/JSON service\n\n"
      "usage: taskwald --data_dir=DIR [--listen=127.0.0.1:7070] [flags]\n"
      "       taskwald --nats=URLS --cluster=NAME [--shards=N] [flags]\n\n",
      tools::FlagHelp(Flags()),
      "\nWith --nats, taskwald holds no tasks: it is a gateway to a cluster\n"
      "on NATS JetStream (led by taskwal-node processes), whose calls go to\n"
      "the cluster's leader; --sync_mode, --partitions, --retention and\n"
      "--max_tasks belong to the nodes and are refused.\n"
      "\nThe web dashboard is at /ui/ (it asks for the token). Once a token\n"
      "is set, every request but GET /healthz and the dashboard's static\n"
      "files needs 'Authorization: Bearer TOKEN'. Routes:\n"
      "daemon/http_api.h.\n\n"
      "exit status:\n"
      "  0  stopped by SIGTERM or SIGINT, everything acknowledged durable\n"
      "  1  the data directory could not be opened (locked by another\n"
      "     engine, damaged, not writable); with --nats, the cluster could\n"
      "     not be reached or does not exist\n"
      "  2  usage: a bad flag or value, an unreadable or empty token file\n"
      "  3  the listen address could not be bound\n"
      "  4  closing the engine failed (a storage error; restart recovers\n"
      "     every acknowledged call)\n");
}

void Log(absl::string_view line) {
  std::cerr << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ ", absl::Now(),
                                absl::UTCTimeZone())
            << "taskwald: " << line << std::endl;
}

// A token from a flag or a file (whitespace around it ignored).
absl::StatusOr<std::string> Token(const tools::ParsedArgs& args,
                                  absl::string_view name) {
  const std::string file_flag = absl::StrCat(name, "_file");
  if (args.Has(name) && args.Has(file_flag)) {
    return absl::InvalidArgumentError(
        absl::StrCat("give --", name, " or --", file_flag, ", not both"));
  }
  std::string token = args.Get(name);
  if (args.Has(file_flag)) {
    std::ifstream in(args.Get(file_flag));
    if (!in) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read --", file_flag, "=",
                       absl::CHexEscape(args.Get(file_flag))));
    }
    std::stringstream contents;
    contents << in.rdbuf();
    token = contents.str();
  }
  token = std::string(absl::StripAsciiWhitespace(token));
  if ((args.Has(name) || args.Has(file_flag)) && token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, " is empty"));
  }
  return token;
}

struct Config {
  EngineOptions engine;
  // --nats: a cluster on JetStream instead of engine.data_dir.
  std::optional<JetStreamOptions> cluster;
  HttpApiOptions api;
  std::string host;
  int port = 0;
  absl::Duration drain_timeout = absl::Seconds(10);
};

absl::StatusOr<Config> ParseConfig(const tools::ParsedArgs& args) {
  Config config;
  if (!args.positional.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unexpected argument \"", absl::CHexEscape(args.positional[0]), "\""));
  }
  config.engine.data_dir = args.Get("data_dir");
  if (args.Has("nats")) {
    for (const char* local :
         {"data_dir", "sync_mode", "partitions", "retention", "max_tasks"}) {
      if (args.Has(local)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", local,
            " does not go with --nats: the cluster's nodes hold the tasks"));
      }
    }
    JetStreamOptions js;
    js.servers = args.Get("nats");
    js.cluster = args.Get("cluster");
    if (js.servers.empty() || js.cluster.empty()) {
      return absl::InvalidArgumentError(
          "--nats needs the NATS servers' URLs and --cluster=NAME");
    }
    int shards = 1;
    if (args.Has("shards") && (!absl::SimpleAtoi(args.Get("shards"), &shards) ||
                               shards < 1 || shards > 64)) {
      return absl::InvalidArgumentError("--shards must be in [1, 64]");
    }
    js.shards = shards;
    config.cluster = js;
  } else if (args.Has("cluster") || args.Has("shards")) {
    return absl::InvalidArgumentError(
        "--cluster and --shards go with --nats=URLS");
  } else if (config.engine.data_dir.empty()) {
    return absl::InvalidArgumentError(
        "--data_dir is required (or --nats=URLS --cluster=NAME)");
  }
  const std::string sync = args.Get("sync_mode", "always");
  if (sync == "always") {
    config.engine.sync_mode = SyncMode::kAlways;
  } else if (sync == "interval") {
    config.engine.sync_mode = SyncMode::kInterval;
  } else if (sync == "none") {
    config.engine.sync_mode = SyncMode::kNone;
  } else {
    return absl::InvalidArgumentError(
        "--sync_mode must be always, interval or none");
  }
  auto number = [&](absl::string_view name,
                    uint64_t fallback) -> absl::StatusOr<uint64_t> {
    if (!args.Has(name)) return fallback;
    return tools::ParseUint64(name, args.Get(name));
  };
  TASKWAL_ASSIGN_OR_RETURN(uint64_t partitions, number("partitions", 0));
  if (partitions > 256) {
    return absl::InvalidArgumentError("--partitions must be in [0, 256]");
  }
  config.engine.partitions = static_cast<uint32_t>(partitions);
  TASKWAL_ASSIGN_OR_RETURN(config.engine.max_tasks, number("max_tasks", 0));
  if (args.Has("retention") &&
      (!absl::ParseDuration(args.Get("retention"), &config.engine.retention) ||
       config.engine.retention < absl::ZeroDuration() ||
       config.engine.retention == absl::InfiniteDuration())) {
    return absl::InvalidArgumentError(
        "--retention must be a duration such as 168h (0: keep tasks)");
  }

  const std::string listen = args.Get("listen", "127.0.0.1:7070");
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(absl::string_view(listen).substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        "--listen must be HOST:PORT with a port in [0, 65535]");
  }
  config.host = listen.substr(0, colon);
  // An IPv6 address is written in brackets: [::1]:7070.
  if (config.host.size() >= 2 && config.host.front() == '[' &&
      config.host.back() == ']') {
    config.host = config.host.substr(1, config.host.size() - 2);
  }
  config.port = port;

  TASKWAL_ASSIGN_OR_RETURN(config.api.admin_token, Token(args, "admin_token"));
  TASKWAL_ASSIGN_OR_RETURN(config.api.read_token, Token(args, "read_token"));
  TASKWAL_ASSIGN_OR_RETURN(config.api.max_body_bytes,
                           number("max_body_bytes", 16 << 20));
  TASKWAL_ASSIGN_OR_RETURN(uint64_t wait_ms,
                           number("max_claim_wait_ms", 30000));
  config.api.max_claim_wait = absl::Milliseconds(wait_ms);
  TASKWAL_ASSIGN_OR_RETURN(uint64_t rate, number("rate_limit", 0));
  config.api.rate_per_second = static_cast<double>(rate);
  TASKWAL_ASSIGN_OR_RETURN(uint64_t burst, number("rate_burst", 100));
  TASKWAL_ASSIGN_OR_RETURN(uint64_t threads, number("threads", 64));
  if (burst < 1 || burst > 1000000 || threads < 1 || threads > 4096) {
    return absl::InvalidArgumentError(
        "--rate_burst must be in [1, 1000000], --threads in [1, 4096]");
  }
  config.api.rate_burst = static_cast<int>(burst);
  config.api.threads = static_cast<int>(threads);
  TASKWAL_ASSIGN_OR_RETURN(uint64_t series_ms, number("series_step_ms", 5000));
  // Each sample is a Stats() call: not too often.
  if (series_ms < 100 || series_ms > 3600000) {
    return absl::InvalidArgumentError(
        "--series_step_ms must be in [100, 3600000]");
  }
  config.api.series_step = absl::Milliseconds(series_ms);
  config.api.series_window = 180 * config.api.series_step;
  TASKWAL_ASSIGN_OR_RETURN(uint64_t drain_ms,
                           number("drain_timeout_ms", 10000));
  config.drain_timeout = absl::Milliseconds(drain_ms);
  config.api.log = [](absl::string_view line) { Log(line); };
  return config;
}

int Run(int argc, char** argv) {
  std::vector<std::string> arguments(argv + 1, argv + argc);
  absl::StatusOr<tools::ParsedArgs> args = tools::ParseArgs(arguments, Flags());
  if (!args.ok()) {
    std::cerr << "taskwald: " << args.status().message()
              << "\n(taskwald --help lists the flags)\n";
    return kExitUsage;
  }
  if (args->GetBool("help")) {
    std::cout << Help();
    return kExitOk;
  }
  absl::StatusOr<Config> config = ParseConfig(*args);
  if (!config.ok()) {
    std::cerr << "taskwald: " << config.status().message()
              << "\n(taskwald --help lists the flags)\n";
    return kExitUsage;
  }

  // SIGTERM and SIGINT wait for sigwait below: blocked before any thread
  // starts, so every thread inherits the mask. A write to a closed
  // connection must not kill the process.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<std::unique_ptr<Engine>> opened;
  if (config->cluster.has_value()) {
    Log(absl::StrCat("pid ", ::getpid(), " connecting to cluster ",
                     absl::CHexEscape(config->cluster->cluster), " at ",
                     absl::CHexEscape(config->cluster->servers)));
    opened = ConnectJetStreamEngine(*config->cluster);
    if (!opened.ok()) {
      Log(absl::StrCat("cannot reach the cluster: ",
                       absl::CHexEscape(opened.status().ToString())));
      return kExitCannotOpen;
    }
  } else {
    Log(absl::StrCat("pid ", ::getpid(), " opening ",
                     absl::CHexEscape(config->engine.data_dir)));
    opened = Engine::Open(config->engine);
    if (!opened.ok()) {
      Log(absl::StrCat("cannot open the data directory: ",
                       absl::CHexEscape(opened.status().ToString())));
      return kExitCannotOpen;
    }
  }
  Engine& engine = **opened;
  const RecoveryReport recovery = engine.Recovery();
  Log(absl::StrCat("recovered ", recovery.last_lsn, " records (",
                   recovery.records_replayed, " replayed, ",
                   recovery.truncated_bytes, " torn bytes cut) in ",
                   absl::FormatDuration(recovery.duration)));
  for (const std::string& note : recovery.notes) {
    Log(absl::StrCat("recovery note: ", absl::CHexEscape(note)));
  }

  const bool tokens =
      !config->api.admin_token.empty() || !config->api.read_token.empty();
  if (!tokens && config->host != "127.0.0.1" && config->host != "localhost" &&
      config->host != "::1") {
    Log(absl::StrCat("warning: serving ", absl::CHexEscape(config->host),
                     " without a token: anyone who reaches it can change "
                     "tasks"));
  }
  if (!config->api.read_token.empty() && config->api.admin_token.empty()) {
    Log("warning: a read token and no admin token: every write is refused");
  }

  HttpApi api(&engine, config->api);
  absl::StatusOr<int> port = api.Start(config->host, config->port);
  if (!port.ok()) {
    Log(absl::CHexEscape(port.status().ToString()));
    engine.Close().IgnoreError();
    return kExitCannotListen;
  }
  const bool ipv6 = config->host.find(':') != std::string::npos;
  const std::string url = absl::StrCat(
      "http://", ipv6 ? absl::StrCat("[", config->host, "]") : config->host,
      ":", *port);
  std::cout << "taskwald listening on " << url << std::endl;
  Log(absl::StrCat("dashboard at ", url, "/ui/"));
  Log(absl::StrCat(
      "serving, ", tokens ? "tokens required" : "no tokens",
      config->cluster.has_value()
          ? absl::StrCat(", cluster ",
                         absl::CHexEscape(config->cluster->cluster))
          : absl::StrCat(", sync_mode ", args->Get("sync_mode", "always"))));

  int signal_number = 0;
  while (sigwait(&signals, &signal_number) != 0) {
  }
  Log(absl::StrCat("signal ", signal_number, ": draining"));
  api.StopAccepting();
  if (!api.AwaitIdle(config->drain_timeout)) {
    Log("requests still in flight at the drain timeout: closing anyway");
  }
  const absl::Status closed = engine.Close();
  api.Wait();
  if (!closed.ok()) {
    Log(absl::StrCat("closing the engine failed: ",
                     absl::CHexEscape(closed.ToString())));
    return kExitCloseFailed;
  }
  Log("stopped");
  return kExitOk;
}

}  // namespace
}  // namespace taskwal::daemon

int main(int argc, char** argv) { return taskwal::daemon::Run(argc, argv); }
