// `taskwal --server=URL`: the commands against taskwald's HttpApi served in
// this process on 127.0.0.1 (a free port), in front of an engine the test
// also holds, so that it can change and check the state directly.
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "daemon/http_api.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "tools/taskwal_cli.h"
#include "tools/testing_cli.h"
#include "tools/testing_json.h"

namespace taskwal::tools {
namespace {

using ::taskwal::tools::testing_cli::CliResult;
using ::taskwal::tools::testing_cli::RunTaskwal;
using ::taskwal::tools::testing_cli::Spec;
using ::taskwal::tools::testing_json::JsonValue;
using ::taskwal::tools::testing_json::ParseJson;
using ::testing::HasSubstr;

class TaskwalCliServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    root_ = absl::StrCat(
        tmp != nullptr ? tmp : "/tmp", "/",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(::mkdir(root_.c_str(), 0700), 0) << root_;
  }

  void TearDown() override { StopServer(); }

  // Serves an engine on `data_dir` (empty: in memory), one partition so
  // that ids are 1, 2, 3, ...
  void StartServer(const std::string& data_dir = "",
                   daemon::HttpApiOptions options = {}) {
    EngineOptions engine_options;
    engine_options.data_dir = data_dir;
    engine_options.partitions = 1;
    engine_options.maintenance_interval = absl::ZeroDuration();
    absl::StatusOr<std::unique_ptr<Engine>> engine =
        Engine::Open(engine_options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    options.threads = 8;
    api_ = std::make_unique<daemon::HttpApi>(engine_.get(), std::move(options));
    absl::StatusOr<int> port = api_->Start("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status();
    url_ = absl::StrCat("http://127.0.0.1:", *port);
  }

  void StopServer() {
    if (engine_ != nullptr) engine_->Close().IgnoreError();
    api_.reset();
    engine_.reset();
  }

  static CliResult Run(std::vector<std::string> args) {
    return RunTaskwal(std::move(args));
  }
  // Runs with --server=url_ in front.
  CliResult RunRemote(std::vector<std::string> args) {
    args.insert(args.begin(), absl::StrCat("--server=", url_));
    return Run(std::move(args));
  }

  std::string WriteTokenFile(const std::string& name,
                             const std::string& contents) {
    const std::string path = absl::StrCat(root_, "/", name);
    std::ofstream(path) << contents;
    return path;
  }

  // Task 1 COMPLETED, 2 CLAIMED, 3 PENDING with text that must be escaped,
  // 4 FAILED.
  void Populate() {
    Engine& e = *engine_;
    ASSERT_EQ(e.Submit(Spec("order-1", "order"))->task_id, 1u);
    ASSERT_EQ(e.Submit(Spec("order-2", "order"))->task_id, 2u);
    ASSERT_EQ(e.Submit(Spec("evil\x1b[2J\xe2\x80\xae", "mail\n"))->task_id, 3u);
    ASSERT_EQ(e.Submit(Spec("order-3", "order", 1))->task_id, 4u);
    absl::StatusOr<ClaimedTask> c = e.Claim(1, "w1", absl::Hours(1));
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(e.Complete(c->claim, "done").ok());
    c = e.Claim(4, "w2", absl::Hours(1));
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(e.Fail(c->claim, "card\tdeclined").ok());
    ASSERT_TRUE(e.Claim(2, "w3", absl::Hours(1)).ok());
  }

  std::string root_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<daemon::HttpApi> api_;
  std::string url_;
};

TEST_F(TaskwalCliServerTest, ReadCommandsPrintWhatTheDirectoryWouldShow) {
  // A data directory the served engine holds: the read commands work on it
  // with --data_dir too, and both ways must print the same.
  const std::string dir = absl::StrCat(root_, "/data");
  StartServer(dir);
  Populate();
  ScheduleSpec schedule;
  schedule.name = "hourly";
  schedule.interval = absl::Hours(1);
  schedule.task.type = "report";
  ASSERT_TRUE(engine_->PutSchedule(schedule).ok());
  const std::vector<std::vector<std::string>> commands = {
      {"list"},
      {"list", "--status=failed"},
      {"get", "3"},
      {"get", "--key=order-3"},
      {"history", "4"},
      {"schedules"},
      {"--json", "list"},
      {"--json", "get", "4"},
      {"--json", "history", "1"},
      {"--json", "schedules"},
      {"get", "99"},
      {"--json", "get", "99"},
  };
  for (const std::vector<std::string>& command : commands) {
    std::vector<std::string> local = command;
    local.insert(local.begin(), absl::StrCat("--data_dir=", dir));
    const CliResult want = Run(local);
    const CliResult got = RunRemote(command);
    const std::string shown = absl::StrJoin(command, " ");
    EXPECT_EQ(got.code, want.code) << shown << "\n" << got.err;
    EXPECT_EQ(got.out, want.out) << shown;
    EXPECT_EQ(got.err, want.err) << shown;
  }
  // Escaped as locally: no control character reaches the terminal.
  const CliResult get = RunRemote({"get", "3"});
  EXPECT_THAT(get.out, HasSubstr(R"("evil\x1b[2J\u202e")"));
  EXPECT_THAT(get.out, HasSubstr(R"("mail\n")"));
}

TEST_F(TaskwalCliServerTest, StatsComeFromTheDaemonsEngine) {
  StartServer();
  Populate();
  CliResult r = RunRemote({"stats"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("tasks: 4\n"));
  EXPECT_THAT(r.out, HasSubstr("  failed: 1\n"));
  EXPECT_THAT(r.out, HasSubstr("partitions: 1\n"));
  r = RunRemote({"--json", "stats"});
  ASSERT_EQ(r.code, kExitOk) << r.out;
  std::optional<JsonValue> json = ParseJson(r.out);
  ASSERT_TRUE(json.has_value()) << r.out;
  ASSERT_NE(json->Find("tasks"), nullptr);
  EXPECT_EQ(json->Find("tasks")->string, "4");
  r = RunRemote({"stats", "--prometheus"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("taskwal_tasks{status=\"failed\"} 1"));
}

TEST_F(TaskwalCliServerTest, WritesGoThroughTheRunningDaemon) {
  StartServer();
  Populate();
  // A FAILED task retried while the daemon runs: its engine sees it at once.
  CliResult r = RunRemote({"retry", "4"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "task 4 retried\n");
  EXPECT_EQ(engine_->Get(4)->status(), PENDING);

  r = RunRemote({"submit", "--key=new", "--type=mail", "--payload=hi"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "task 5 submitted\n");
  EXPECT_EQ(engine_->Get(5)->payload(), "hi");
  r = RunRemote({"submit", "--key=new", "--type=mail", "--payload=hi"});
  EXPECT_EQ(r.out, "task 5 already exists for key \"new\" (deduplicated)\n");
  r = RunRemote({"submit", "--key=new", "--type=mail", "--payload=other"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("ALREADY_EXISTS"));

  r = RunRemote({"--json", "cancel", "5"});
  ASSERT_EQ(r.code, kExitOk) << r.out;
  EXPECT_EQ(r.out, "{\"task_id\":\"5\",\"result\":\"cancelled\"}\n");
  EXPECT_EQ(engine_->Get(5)->status(), CANCELLED);
  r = RunRemote({"cancel", "5"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("FAILED_PRECONDITION"));
  r = RunRemote({"delete", "5"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_FALSE(engine_->Get(5).ok());

  // By filter: the completed task 1.
  r = RunRemote({"delete", "--status=completed"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("deleted 1 task (COMPLETED): 1"));

  r = RunRemote({"pause", "order"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "type \"order\" paused; paused types: 1\n");
  EXPECT_EQ(engine_->PausedTypes()->size(), 1u);
  r = RunRemote({"resume", "order"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(engine_->PausedTypes()->empty());

  r = RunRemote({"schedule", "nightly", "--every=24h", "--type=report"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(engine_->GetSchedule("nightly").ok());
  r = RunRemote({"unschedule", "nightly"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_FALSE(engine_->GetSchedule("nightly").ok());

  // The served engine is in memory: it has no snapshots.
  r = RunRemote({"snapshot"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("FAILED_PRECONDITION"));
  // Bad input is refused by the daemon's engine as by a local one.
  r = RunRemote({"submit", "--key=x", "--max_attempts=5000"});
  EXPECT_EQ(r.code, kExitUsage);
}

TEST_F(TaskwalCliServerTest, TokensComeFromAFileAndAWrongOneIsRefused) {
  daemon::HttpApiOptions options;
  options.admin_token = "admin-secret";
  options.read_token = "read-secret";
  StartServer("", options);
  Populate();
  const std::string admin = WriteTokenFile("admin", "admin-secret\n");
  const std::string reader = WriteTokenFile("reader", "  read-secret  \n");
  const std::string wrong = WriteTokenFile("wrong", "guess\n");

  CliResult r = RunRemote({"get", "1"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("UNAUTHENTICATED"));
  EXPECT_THAT(r.err, HasSubstr("--token_file"));
  r = RunRemote({"--token_file=" + wrong, "get", "1"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("UNAUTHENTICATED"));
  r = RunRemote({"--json", "--token_file=" + wrong, "get", "1"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.out, HasSubstr("\"code\":\"UNAUTHENTICATED\""));
  EXPECT_EQ(r.err, "");

  r = RunRemote({"--token_file=" + reader, "get", "1"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  r = RunRemote({"--token_file=" + reader, "retry", "4"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_EQ(engine_->Get(4)->status(), FAILED);

  r = RunRemote({"retry", "4", "--token_file=" + admin});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(engine_->Get(4)->status(), PENDING);
  r = RunRemote({"--token=admin-secret", "cancel", "4"});
  EXPECT_EQ(r.code, kExitOk) << r.err;

  r = RunRemote({"--token_file=" + root_ + "/missing", "get", "1"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("cannot read --token_file"));
  r = RunRemote({"--token_file=" + WriteTokenFile("empty", "\n"), "get", "1"});
  EXPECT_EQ(r.code, kExitUsage);
}

TEST_F(TaskwalCliServerTest, AnUnreachableServerIsARequestFailure) {
  StartServer();
  StopServer();  // Nothing listens on url_ now.
  CliResult r = RunRemote({"list"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err,
              HasSubstr(absl::StrCat("no answer from taskwald at ", url_)));
  EXPECT_THAT(r.err, HasSubstr("Check --server"));
  EXPECT_EQ(r.out, "");
  r = RunRemote({"--json", "retry", "1"});
  EXPECT_EQ(r.code, kExitFailed);
  std::optional<JsonValue> json = ParseJson(r.out);
  ASSERT_TRUE(json.has_value()) << r.out;
  const JsonValue* error = json->Find("error");
  ASSERT_NE(error, nullptr) << r.out;
  EXPECT_EQ(error->Find("code")->string, "UNAVAILABLE");
  EXPECT_EQ(error->Find("exit_status")->number, kExitFailed);
  EXPECT_EQ(r.err, "");
}

TEST_F(TaskwalCliServerTest, FileCommandsAndBadCombinationsAreUsageErrors) {
  StartServer();
  for (const char* command : {"verify", "dump", "salvage"}) {
    CliResult r = RunRemote({command});
    EXPECT_EQ(r.code, kExitUsage) << command;
    EXPECT_THAT(r.err, HasSubstr("does not work with --server")) << command;
  }
  const std::string server = absl::StrCat("--server=", url_);
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{server, "--data_dir=" + root_, "list"}, "exclude each other"},
      {{"--data_dir=" + root_, "list", server}, "exclude each other"},
      {{server, "submit", "--key=k", "--partitions=4"}, "--partitions"},
      {{"--data_dir=" + root_, "--token=t", "list"}, "go with --server"},
      {{server, "--token=t", "--token_file=f", "list"}, "exclude each other"},
      {{"--server=", "list"}, "--server needs a URL"},
      {{"--server=https://127.0.0.1:1", "list"}, "https"},
      {{"--server=127.0.0.1:1", "list"}, "http://"},
      {{server, "get"}, "give either a task id or --key=KEY"},
      {{"list"}, "--data_dir=DIR is required (or --server=URL"},
  };
  for (const auto& [args, message] : cases) {
    CliResult r = Run(args);
    EXPECT_EQ(r.code, kExitUsage) << absl::StrJoin(args, " ");
    EXPECT_THAT(r.err, HasSubstr(message)) << absl::StrJoin(args, " ");
  }
  // Help names both ways.
  CliResult r = Run({"--help"});
  EXPECT_THAT(r.out, HasSubstr("--server=URL"));
  EXPECT_THAT(r.out, HasSubstr("--token_file=FILE"));
  EXPECT_THAT(Run({"help", "get"}).out,
              HasSubstr("(--data_dir=DIR | --server=URL | --nats=URLS "
                        "--cluster=NAME)"));
  EXPECT_THAT(Run({"help", "verify"}).out,
              HasSubstr("Usage: taskwal --data_dir=DIR [--json] verify"));
}

}  // namespace
}  // namespace taskwal::tools
