#include "tools/taskwal_cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "api/engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/testing_json.h"
#include "wal/data_dir.h"
#include "wal/format.h"
#include "wal/log_reader.h"

namespace taskwal::tools {
namespace {

using ::taskwal::tools::testing_json::JsonValue;
using ::taskwal::tools::testing_json::ParseJson;
using ::testing::AllOf;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

struct CliResult {
  int code = -1;
  std::string out;
  std::string err;
};

// One JSON object.
JsonValue ParseObject(const std::string& text) {
  std::optional<JsonValue> parsed = ParseJson(text);
  EXPECT_TRUE(parsed.has_value() && parsed->type == JsonValue::Type::kObject)
      << "not a JSON object: " << text;
  return parsed.has_value() ? *std::move(parsed) : JsonValue();
}

const JsonValue& Field(const JsonValue& object, const std::string& name) {
  static const auto* const kMissing = new JsonValue();
  const JsonValue* value = object.Find(name);
  EXPECT_NE(value, nullptr) << "no field " << name;
  return value != nullptr ? *value : *kMissing;
}

// Runs the real commands on real directories under $TEST_TMPDIR.
class TaskwalCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    root_ = absl::StrCat(
        tmp != nullptr ? tmp : "/tmp", "/",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(::mkdir(root_.c_str(), 0700), 0) << root_;
  }

  CliResult Run(std::vector<std::string> args,
                const CliOptions& options = CliOptions()) {
    args.insert(args.begin(), "taskwal");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    std::ostringstream out;
    std::ostringstream err;
    CliResult r;
    r.code =
        RunCli(static_cast<int>(argv.size()), argv.data(), out, err, options);
    r.out = out.str();
    r.err = err.str();
    return r;
  }
  // Runs with --data_dir=dir in front.
  CliResult RunIn(const std::string& dir, std::vector<std::string> args,
                  const CliOptions& options = CliOptions()) {
    args.insert(args.begin(), absl::StrCat("--data_dir=", dir));
    return Run(std::move(args), options);
  }

  // One partition, so that ids are 1, 2, 3, ... and the log is one LSN
  // sequence (tests of several partitions say so).
  static EngineOptions Options(const std::string& dir,
                               uint32_t partitions = 1) {
    EngineOptions o;
    o.data_dir = dir;
    o.partitions = partitions;
    o.maintenance_interval = absl::ZeroDuration();
    o.snapshot_every_records = 0;
    return o;
  }

  static TaskSpec Spec(const std::string& key, const std::string& type,
                       uint32_t max_attempts = 3) {
    TaskSpec spec;
    spec.idempotency_key = key;
    spec.type = type;
    spec.payload = absl::StrCat("payload of ", key);
    spec.max_attempts = max_attempts;
    return spec;
  }

  // A directory the engine filled: task 1 COMPLETED, 2 CLAIMED, 3 PENDING,
  // 4 FAILED, 5 PENDING.
  std::string Populate(const std::string& name) {
    const std::string dir = absl::StrCat(root_, "/", name);
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(Options(dir));
    EXPECT_TRUE(engine.ok()) << engine.status();
    if (!engine.ok()) return dir;
    Engine& e = **engine;
    EXPECT_EQ(e.Submit(Spec("order-1", "order"))->task_id, 1u);
    EXPECT_EQ(e.Submit(Spec("order-2", "order"))->task_id, 2u);
    EXPECT_EQ(e.Submit(Spec("email-1", "email"))->task_id, 3u);
    EXPECT_EQ(e.Submit(Spec("order-3", "order", 1))->task_id, 4u);
    EXPECT_EQ(e.Submit(Spec("order-4", "order"))->task_id, 5u);
    absl::StatusOr<ClaimedTask> c = e.Claim(1, "w1", absl::Hours(1));
    EXPECT_TRUE(c.ok());
    EXPECT_TRUE(e.Complete(1, "w1", c->claim_token, "done").ok());
    c = e.Claim(4, "w2", absl::Hours(1));
    EXPECT_TRUE(c.ok());
    EXPECT_TRUE(e.Fail(4, "w2", c->claim_token, "card declined").ok());
    EXPECT_TRUE(e.Claim(2, "w3", absl::Hours(1)).ok());
    EXPECT_TRUE(e.Close().ok());
    return dir;
  }

  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  static void WriteFile(const std::string& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << data;
  }
  static std::map<std::string, std::string> DirContents(
      const std::string& dir) {
    std::map<std::string, std::string> files;
    absl::StatusOr<std::vector<std::string>> names =
        Env::Default()->GetChildren(dir);
    EXPECT_TRUE(names.ok());
    if (!names.ok()) return files;
    for (const std::string& name : *names) {
      if (name == "." || name == "..") continue;
      files[name] = ReadFile(absl::StrCat(dir, "/", name));
    }
    return files;
  }
  // Offsets of the records in a segment.
  static std::vector<uint64_t> RecordOffsets(const std::string& path) {
    const std::string contents = ReadFile(path);
    std::vector<uint64_t> offsets;
    wal::LogReader reader(contents, path);
    wal::LogReader::Record record;
    while (true) {
      absl::StatusOr<bool> more = reader.Read(&record);
      if (!more.ok() || !*more) break;
      offsets.push_back(record.offset);
    }
    return offsets;
  }

  std::string root_;
};

TEST_F(TaskwalCliTest, HelpDocumentsCommandsAndExitStatuses) {
  CliResult r = Run({"--help"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("Usage:"));
  for (const char* command :
       {"stats", "list", "get", "history", "submit", "retry", "cancel",
        "delete", "snapshot", "verify", "dump"}) {
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("  ", command, " ")));
  }
  EXPECT_THAT(r.out, HasSubstr("Exit status"));
  EXPECT_THAT(r.out, HasSubstr("64  usage error"));
  EXPECT_EQ(r.err, "");

  EXPECT_EQ(Run({"help"}).out, r.out);
  r = Run({"help", "list"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("--status=S"));
  EXPECT_EQ(Run({"list", "--help"}).out, r.out);
  EXPECT_EQ(Run({"--data_dir=/x", "list", "-h"}).out, r.out);
}

TEST_F(TaskwalCliTest, BadArgumentsAreUsageErrors) {
  const std::string dir = Populate("db");
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{}, "no command given"},
      {{"--data_dir=" + dir, "frobnicate"}, "unknown command \"frobnicate\""},
      {{"--data_dir=" + dir, "list", "--bogus"}, "unknown flag --bogus"},
      {{"--bogus", "list"}, "unknown flag --bogus"},
      {{"list"}, "--data_dir=DIR is required"},
      {{"help", "nope"}, "no command \"nope\""},
      {{"--data_dir=" + dir, "get"}, "either a task id or --key"},
      {{"--data_dir=" + dir, "get", "7", "--key=k"}, "either a task id"},
      {{"--data_dir=" + dir, "get", "abc"}, "\"abc\" is not a task id"},
      {{"--data_dir=" + dir, "history"}, "missing argument"},
      {{"--data_dir=" + dir, "cancel", "1", "2"}, "unexpected argument \"2\""},
      {{"--data_dir=" + dir, "list", "--limit=0"}, "--limit must be in"},
      {{"--data_dir=" + dir, "list", "--limit=x"}, "invalid value for --limit"},
      {{"--data_dir=" + dir, "list", "--status=done"}, "unknown --status"},
      {{"--data_dir=" + dir, "list", "--after"}, "--after needs a value"},
      {{"--data_dir=" + dir, "submit"}, "--key=KEY is required"},
      {{"--data_dir=" + dir, "submit", "--key=k", "--priority=99999999999"},
       "--priority must be in"},
      {{"--data_dir=" + dir, "submit", "--key=k", "--payload=a",
        "--payload_file=b"},
       "exclude each other"},
      {{"--data_dir=" + dir, "stats", "--json", "--prometheus"},
       "exclude each other"},
      {{"--data_dir=" + dir, "list", "--json=maybe"}, "true or false"},
      {{"--data_dir=" + dir, "submit", "--key=k", "--partitions=257"},
       "--partitions must be in [0, 256]"},
      {{"--data_dir=" + dir, "stats", "--partitions=1"},
       "unknown flag --partitions"},
  };
  const std::map<std::string, std::string> before = DirContents(dir);
  for (const Case& c : cases) {
    CliResult r = Run(c.args);
    EXPECT_EQ(r.code, kExitUsage) << absl::StrJoin(c.args, " ");
    EXPECT_THAT(r.err, HasSubstr(c.message)) << absl::StrJoin(c.args, " ");
    EXPECT_THAT(r.err, HasSubstr("for usage")) << absl::StrJoin(c.args, " ");
    EXPECT_EQ(r.out, "") << absl::StrJoin(c.args, " ");
  }
  EXPECT_EQ(DirContents(dir), before);
}

TEST_F(TaskwalCliTest, MissingDirectoryFails) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"stats"}, {"verify"}, {"dump"}, {"submit", "--key=k"}}) {
    CliResult r = RunIn(root_ + "/nope", args);
    EXPECT_EQ(r.code, kExitFailed) << args[0];
    EXPECT_THAT(r.err, HasSubstr("does not exist")) << args[0];
  }
  // A mutating command does not create it either.
  EXPECT_FALSE(Env::Default()->FileExists(root_ + "/nope"));
}

TEST_F(TaskwalCliTest, ReadCommandsShowThePopulatedDirectory) {
  const std::string dir = Populate("db");
  const std::map<std::string, std::string> before = DirContents(dir);

  CliResult r = RunIn(dir, {"stats"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out,
              AllOf(HasSubstr("tasks: 5\n"), HasSubstr("pending: 2\n"),
                    HasSubstr("claimed: 1\n"), HasSubstr("completed: 1\n"),
                    HasSubstr("failed: 1\n"), HasSubstr("claims: 3\n"),
                    HasSubstr("failed_attempts: 1\n"),
                    HasSubstr("partitions: 1\n"), HasSubstr("last_lsn: 10\n")));

  r = RunIn(dir, {"stats", "--json"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, StartsWith("{"));
  JsonValue stats = ParseObject(r.out);
  EXPECT_EQ(Field(stats, "pending").number, 2);
  EXPECT_EQ(Field(stats, "submitted").number, 5);
  EXPECT_EQ(Field(stats, "partitions").number, 1);
  EXPECT_EQ(Field(stats, "last_lsn").number, 10);
  EXPECT_EQ(Field(Field(stats, "recovery"), "records_replayed").number, 10);

  r = RunIn(dir, {"stats", "--prometheus"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, AllOf(HasSubstr("# TYPE taskwal_tasks gauge\n"),
                           HasSubstr("taskwal_tasks{status=\"pending\"} 2\n"),
                           HasSubstr("taskwal_submitted_total 5\n")));

  r = RunIn(dir, {"list"});
  EXPECT_EQ(r.code, kExitOk);
  for (const char* key :
       {"order-1", "order-2", "email-1", "order-3", "order-4"}) {
    EXPECT_THAT(r.out, HasSubstr(key));
  }
  EXPECT_THAT(r.out, HasSubstr("next cursor: none"));

  r = RunIn(dir, {"list", "--limit=2"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, AllOf(HasSubstr("order-1"), HasSubstr("order-2"),
                           Not(HasSubstr("email-1")),
                           HasSubstr("next cursor: 2 (continue with "
                                     "--after=2)")));
  r = RunIn(dir, {"list", "--limit=2", "--after=2"});
  EXPECT_THAT(r.out, AllOf(Not(HasSubstr("order-2")), HasSubstr("email-1"),
                           HasSubstr("order-3"), HasSubstr("next cursor: 4")));

  r = RunIn(dir, {"list", "--status=pending", "--type=order"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, AllOf(HasSubstr("order-4"), Not(HasSubstr("email-1")),
                           Not(HasSubstr("order-1"))));

  r = RunIn(dir, {"--json", "list", "--status=FAILED"});
  EXPECT_EQ(r.code, kExitOk);
  JsonValue list = ParseObject(r.out);
  ASSERT_EQ(Field(list, "tasks").array.size(), 1u);
  const JsonValue& failed = Field(list, "tasks").array[0];
  EXPECT_EQ(Field(failed, "idempotency_key").string, "order-3");
  EXPECT_EQ(Field(failed, "status").string, "FAILED");
  EXPECT_EQ(Field(failed, "last_error").string, "card declined");
  EXPECT_EQ(Field(list, "next_cursor").number, 0);

  r = RunIn(dir, {"get", "1"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, AllOf(HasSubstr("status:          COMPLETED"),
                           HasSubstr("result:          \"done\""),
                           HasSubstr("\"order-1\"")));
  r = RunIn(dir, {"get", "--key=order-2", "--json"});
  EXPECT_EQ(r.code, kExitOk);
  JsonValue task = ParseObject(r.out);
  EXPECT_EQ(Field(task, "id").string, "2");
  EXPECT_EQ(Field(task, "status").string, "CLAIMED");
  EXPECT_EQ(Field(task, "claimed_by").string, "w3");

  r = RunIn(dir, {"history", "4"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, AllOf(HasSubstr("SUBMITTED"), HasSubstr("CLAIMED"),
                           HasSubstr("FAILED"), HasSubstr("\"card declined\""),
                           HasSubstr("worker \"w2\"")));
  r = RunIn(dir, {"history", "1", "--json"});
  EXPECT_EQ(r.code, kExitOk);
  JsonValue history = ParseObject(r.out);
  ASSERT_EQ(Field(history, "history").array.size(), 3u);
  EXPECT_EQ(Field(Field(history, "history").array[2], "event").string,
            "COMPLETED");

  r = RunIn(dir, {"get", "99"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  r = RunIn(dir, {"history", "99"});
  EXPECT_EQ(r.code, kExitFailed);

  // None of it changed a byte, nor took the lock file.
  EXPECT_EQ(DirContents(dir), before);
}

TEST_F(TaskwalCliTest, MutatingCommandsChangeTheDirectory) {
  const std::string dir = Populate("db");

  CliResult r =
      RunIn(dir, {"submit", "--key=new", "--type=email", "--payload=hi",
                  "--priority=-2", "--max_attempts=7"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "task 6 submitted\n");
  r = RunIn(dir,
            {"submit", "--key=new", "--type=email", "--payload=hi", "--json"});
  EXPECT_EQ(r.code, kExitOk);
  JsonValue submitted = ParseObject(r.out);
  EXPECT_EQ(Field(submitted, "task_id").number, 6);
  EXPECT_TRUE(Field(submitted, "deduplicated").boolean);
  r = RunIn(dir, {"submit", "--key=new", "--type=email", "--payload=other"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("ALREADY_EXISTS"));

  const std::string payload_file = root_ + "/payload.bin";
  WriteFile(payload_file, std::string("bin\0ary", 7));
  r = RunIn(dir, {"submit", "--key=file", "--payload_file", payload_file});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  r = RunIn(dir, {"get", "--key=file"});
  EXPECT_THAT(r.out, HasSubstr("\"bin\\x00\\x61ry\" (7 bytes)"));
  r = RunIn(dir, {"submit", "--key=nofile", "--payload_file=" + root_ + "/x"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("cannot read --payload_file"));

  r = RunIn(dir, {"get", "6"});
  EXPECT_THAT(r.out, AllOf(HasSubstr("priority:        -2"),
                           HasSubstr("attempts:        0 of 7")));

  // FAILED -> PENDING.
  EXPECT_EQ(RunIn(dir, {"retry", "4"}).code, kExitOk);
  EXPECT_THAT(RunIn(dir, {"get", "4"}).out, HasSubstr("PENDING"));
  // COMPLETED cannot be retried.
  r = RunIn(dir, {"retry", "1"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("FAILED_PRECONDITION"));

  r = RunIn(dir, {"cancel", "5", "--json"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_EQ(Field(ParseObject(r.out), "result").string, "cancelled");
  EXPECT_EQ(RunIn(dir, {"cancel", "5"}).code, kExitFailed);
  EXPECT_EQ(RunIn(dir, {"delete", "2"}).code, kExitFailed);  // CLAIMED.
  EXPECT_EQ(RunIn(dir, {"delete", "5"}).out, "task 5 deleted\n");
  EXPECT_EQ(RunIn(dir, {"get", "5"}).code, kExitFailed);
  EXPECT_EQ(RunIn(dir, {"cancel", "99"}).code, kExitFailed);

  r = RunIn(dir, {"snapshot"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, StartsWith("snapshot written at LSN "));
  EXPECT_THAT(r.out, EndsWith(" (summed over 1 partition)\n"));

  r = RunIn(dir, {"stats"});
  EXPECT_THAT(r.out, AllOf(HasSubstr("tasks: 6\n"), HasSubstr("retries: 1\n"),
                           HasSubstr("cancellations: 1\n"),
                           HasSubstr("deletions: 1\n")));
  r = RunIn(dir, {"verify"});
  EXPECT_EQ(r.code, kExitOk) << r.out;
  EXPECT_THAT(r.out,
              AllOf(HasSubstr("1 snapshot file and"), EndsWith(": clean\n")));
}

TEST_F(TaskwalCliTest, VerifyAndDumpACleanDirectory) {
  const std::string dir = Populate("db");
  CliResult r = RunIn(dir, {"verify"});
  EXPECT_EQ(r.code, kExitOk) << r.out;
  EXPECT_THAT(r.out, HasSubstr("segment of 1 partition ("));
  EXPECT_THAT(r.out, HasSubstr("10 log records, 10 since the data began): "
                               "clean"));
  EXPECT_EQ(r.err, "");  // No progress bar off a terminal.

  r = RunIn(dir, {"verify", "--json"});
  EXPECT_EQ(r.code, kExitOk);
  JsonValue verify = ParseObject(r.out);
  EXPECT_TRUE(Field(verify, "clean").boolean);
  EXPECT_EQ(Field(verify, "problems").array.size(), 0u);
  EXPECT_EQ(Field(verify, "last_lsn").number, 10);
  EXPECT_EQ(Field(verify, "partitions").number, 1);
  EXPECT_EQ(Field(verify, "replayed").number, 10);

  r = RunIn(dir, {"dump"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  const std::vector<std::string> lines =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 10u);
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_THAT(lines[i], StartsWith(absl::StrCat(
                              "0:", i + 1, " wal-00000000000000000001.log ")));
  }
  EXPECT_THAT(lines[0], HasSubstr("submit { tasks { id: 1 "));
  EXPECT_THAT(lines[9], HasSubstr("claim { task_id: 2 worker_id: \"w3\""));

  r = RunIn(dir, {"dump", "--json"});
  EXPECT_EQ(r.code, kExitOk);
  const std::vector<std::string> json_lines =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(json_lines.size(), 10u);
  uint64_t offset = 0;
  for (size_t i = 0; i < json_lines.size(); ++i) {
    JsonValue record = ParseObject(json_lines[i]);
    EXPECT_EQ(Field(record, "partition").number, 0);
    EXPECT_EQ(Field(record, "lsn").number, i + 1);
    EXPECT_EQ(record.Find("group"), nullptr);
    EXPECT_GT(Field(record, "offset").number, offset);
    offset = Field(record, "offset").number;
    EXPECT_EQ(Field(record, "segment").string, "wal-00000000000000000001.log");
    EXPECT_EQ(Field(record, "transition").type, JsonValue::Type::kObject);
  }
  EXPECT_THAT(json_lines[6], HasSubstr("\"complete\":{\"task_id\":\"1\""));
}

TEST_F(TaskwalCliTest, DamagedDirectoryIsReportedWithFileAndOffset) {
  const std::string dir = Populate("db");
  const std::string segment = wal::SegmentFileName(1);
  const std::string path = absl::StrCat(dir, "/", segment);
  const std::vector<uint64_t> offsets = RecordOffsets(path);
  ASSERT_EQ(offsets.size(), 10u);
  // Flip one payload byte of the 6th record: valid records follow it.
  std::string contents = ReadFile(path);
  contents[offsets[5] + wal::kRecordHeaderSize + 1] ^= 0x01;
  WriteFile(path, contents);
  const std::map<std::string, std::string> before = DirContents(dir);

  CliResult r = RunIn(dir, {"verify"});
  EXPECT_EQ(r.code, kExitDamage);
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(segment, " offset ", offsets[5],
                                            ": corruption: checksum mismatch; "
                                            "valid records follow")));
  EXPECT_THAT(r.out, HasSubstr("1 problem\n"));

  r = RunIn(dir, {"verify", "--json"});
  EXPECT_EQ(r.code, kExitDamage);
  JsonValue verify = ParseObject(r.out);
  EXPECT_FALSE(Field(verify, "clean").boolean);
  ASSERT_EQ(Field(verify, "problems").array.size(), 1u);
  const JsonValue& problem = Field(verify, "problems").array[0];
  EXPECT_EQ(Field(problem, "file").string, segment);
  EXPECT_EQ(Field(problem, "offset").number, offsets[5]);
  EXPECT_EQ(Field(problem, "kind").string, "corruption");
  EXPECT_TRUE(Field(problem, "valid_records_follow").boolean);

  // Read commands cannot open it: kDataLoss, named clearly.
  for (const char* command : {"stats", "list"}) {
    r = RunIn(dir, {command});
    EXPECT_EQ(r.code, kExitDamage) << command;
    EXPECT_THAT(r.err, AllOf(HasSubstr("is damaged"), HasSubstr(path),
                             HasSubstr(absl::StrCat("offset ", offsets[5])),
                             HasSubstr("verify' to list every problem")))
        << command;
  }
  // Neither can a mutating one, and it changes nothing.
  r = RunIn(dir, {"submit", "--key=x"});
  EXPECT_EQ(r.code, kExitDamage);

  // dump prints what precedes the damage and reports the damage.
  r = RunIn(dir, {"dump"});
  EXPECT_EQ(r.code, kExitDamage);
  EXPECT_EQ(
      std::vector<std::string>(absl::StrSplit(r.out, '\n', absl::SkipEmpty()))
          .size(),
      5u);
  EXPECT_THAT(r.err, AllOf(HasSubstr(absl::StrCat("offset ", offsets[5])),
                           HasSubstr("valid records follow")));

  EXPECT_EQ(DirContents(dir), before);
}

TEST_F(TaskwalCliTest, TornTailIsReportedAndReadCommandsSkipIt) {
  const std::string dir = Populate("db");
  const std::string path = absl::StrCat(dir, "/", wal::SegmentFileName(1));
  const std::vector<uint64_t> offsets = RecordOffsets(path);
  const std::string contents = ReadFile(path);
  WriteFile(path, contents.substr(0, offsets.back() + 9));
  const std::map<std::string, std::string> before = DirContents(dir);

  CliResult r = RunIn(dir, {"verify"});
  EXPECT_EQ(r.code, kExitDamage);
  EXPECT_THAT(
      r.out,
      AllOf(HasSubstr(absl::StrCat("offset ", offsets.back(), ": torn tail")),
            HasSubstr("Open cuts it off"),
            HasSubstr("(1 of them Open repairs by itself)")));
  r = RunIn(dir, {"stats"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, AllOf(HasSubstr("transitions: 9\n"),
                           HasSubstr("recovery note: skipped a torn tail")));
  EXPECT_EQ(DirContents(dir), before);
}

TEST_F(TaskwalCliTest, HeldDirectoryReadsWorkAndWritesNameTheHolder) {
  const std::string dir = Populate("db");
  EngineOptions options = Options(dir);
  options.maintenance_interval = absl::Milliseconds(100);  // As a daemon.
  absl::StatusOr<std::unique_ptr<Engine>> holder = Engine::Open(options);
  ASSERT_TRUE(holder.ok()) << holder.status();
  ASSERT_TRUE((*holder)->Submit(Spec("live-1", "live")).ok());

  CliResult r = RunIn(dir, {"stats"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("tasks: 6\n"));
  r = RunIn(dir, {"get", "--key=live-1", "--json"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(Field(ParseObject(r.out), "id").string, "6");
  r = RunIn(dir, {"list", "--type=live"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, HasSubstr("live-1"));
  EXPECT_EQ(RunIn(dir, {"history", "6"}).code, kExitOk);
  r = RunIn(dir, {"verify"});
  EXPECT_EQ(r.code, kExitOk) << r.out;
  r = RunIn(dir, {"dump"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("idempotency_key: \"live-1\""));

  const std::string holder_pid = absl::StrCat("locked by process ", ::getpid());
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"submit", "--key=k"}, {"retry", "4"}, {"snapshot"}}) {
    r = RunIn(dir, args);
    EXPECT_EQ(r.code, kExitLocked) << args[0];
    EXPECT_THAT(r.err, AllOf(HasSubstr(holder_pid), HasSubstr("Read commands")))
        << args[0];
  }
  // The holder is unaffected: its writes still work, and the refused
  // commands wrote nothing.
  EXPECT_EQ((*holder)->Get(4)->status(), FAILED);
  EXPECT_TRUE((*holder)->Submit(Spec("live-2", "live")).ok());
  EXPECT_TRUE((*holder)->Close().ok());
  r = RunIn(dir, {"get", "--key=k"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_EQ(RunIn(dir, {"get", "--key=live-2"}).code, kExitOk);
}

TEST_F(TaskwalCliTest, ProgressBarOnlyOnATerminal) {
  const std::string dir = Populate("db");
  CliOptions terminal;
  terminal.err_is_terminal = true;
  terminal.progress_min_bytes = 1;
  CliResult r = RunIn(dir, {"verify"}, terminal);
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.err, AllOf(StartsWith("\rverify ["), HasSubstr("100%"),
                           EndsWith("\r")));
  EXPECT_EQ(r.err.find('\n'), std::string::npos);
  EXPECT_THAT(r.out, Not(HasSubstr("\r")));

  r = RunIn(dir, {"dump"}, terminal);
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.err, StartsWith("\rdump ["));
  // Not when the records go to the same terminal.
  terminal.out_is_terminal = true;
  EXPECT_EQ(RunIn(dir, {"dump"}, terminal).err, "");

  // Not for a log below the threshold.
  terminal.progress_min_bytes = 8 << 20;
  EXPECT_EQ(RunIn(dir, {"verify"}, terminal).err, "");
}

// Several partitions: ids name partitions, each partition numbers its own
// records, and a batch across partitions is one group of records.
TEST_F(TaskwalCliTest, PartitionedDirectoryShowsPartitionsAndGroups) {
  const std::string dir = absl::StrCat(root_, "/db");
  std::vector<uint64_t> ids;
  {
    absl::StatusOr<std::unique_ptr<Engine>> engine =
        Engine::Open(Options(dir, /*partitions=*/4));
    ASSERT_TRUE(engine.ok()) << engine.status();
    std::vector<TaskSpec> batch;
    for (int i = 0; i < 8; ++i) {
      batch.push_back(Spec(absl::StrCat("batch-", i), "b"));
    }
    absl::StatusOr<std::vector<SubmitResult>> results =
        (*engine)->SubmitBatch(batch);
    ASSERT_TRUE(results.ok()) << results.status();
    for (const SubmitResult& result : *results) ids.push_back(result.task_id);
    ASSERT_TRUE((*engine)->Submit(Spec("single", "s")).ok());
    ASSERT_TRUE((*engine)->Close().ok());
  }
  std::map<uint64_t, int> partitions_of_batch;  // Partition -> tasks.
  for (uint64_t id : ids) ++partitions_of_batch[id % 4];
  ASSERT_GE(partitions_of_batch.size(), 2u) << "the batch needs a group";

  CliResult r = RunIn(dir, {"stats"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out,
              AllOf(HasSubstr("tasks: 9\n"), HasSubstr("partitions: 4\n")));
  r = RunIn(dir, {"get", absl::StrCat(ids[3])});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"batch-3\""));

  r = RunIn(dir, {"verify"});
  EXPECT_EQ(r.code, kExitOk) << r.out;
  EXPECT_THAT(r.out, AllOf(HasSubstr("1 segment of 4 partitions"),
                           EndsWith(": clean\n")));

  r = RunIn(dir, {"dump", "--json"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  const std::vector<std::string> json_lines =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(json_lines.size(), partitions_of_batch.size() + 1);
  std::map<uint64_t, uint64_t> last_lsn;  // Per partition.
  size_t pieces = 0;
  for (const std::string& line : json_lines) {
    JsonValue record = ParseObject(line);
    const auto partition =
        static_cast<uint64_t>(Field(record, "partition").number);
    const auto lsn = static_cast<uint64_t>(Field(record, "lsn").number);
    EXPECT_LT(partition, 4u);
    EXPECT_EQ(lsn, last_lsn[partition] + 1) << line;
    last_lsn[partition] = lsn;
    const JsonValue& transition = Field(record, "transition");
    ASSERT_EQ(transition.type, JsonValue::Type::kObject) << line;
    const JsonValue* group = record.Find("group");
    if (group == nullptr) continue;
    ++pieces;
    EXPECT_EQ(Field(*group, "pieces").number, partitions_of_batch.size());
    EXPECT_EQ(Field(*group, "leader_partition").number,
              partitions_of_batch.begin()->first);
    EXPECT_EQ(Field(*group, "leader_lsn").number, 1);
    // The piece holds the batch's tasks of its partition.
    const JsonValue* submit = transition.Find("submit");
    ASSERT_NE(submit, nullptr) << line;
    EXPECT_EQ(Field(*submit, "tasks").array.size(),
              partitions_of_batch[partition]);
  }
  EXPECT_EQ(pieces, partitions_of_batch.size());

  r = RunIn(dir, {"dump"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  const std::vector<std::string> lines =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), json_lines.size());
  const std::string leader =
      absl::StrCat(partitions_of_batch.begin()->first, ":1");
  EXPECT_THAT(lines[0],
              AllOf(StartsWith(absl::StrCat(
                        leader, " wal-00000000000000000001.log 24 group(",
                        partitions_of_batch.size(), " pieces, leader ", leader,
                        ") time_micros: ")),
                    HasSubstr("submit { tasks { id: "),
                    HasSubstr("idempotency_key: \"batch-")));
  EXPECT_THAT(lines.back(), HasSubstr("idempotency_key: \"single\""));
  EXPECT_THAT(lines.back(), Not(HasSubstr("group(")));
}

TEST_F(TaskwalCliTest, PartitionsFlagSetsTheCountOfANewDirectory) {
  const std::string dir = absl::StrCat(root_, "/four");
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  CliResult r = RunIn(dir, {"submit", "--key=a", "--partitions=4", "--json"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  // Partition p of 4 hands out 4+p first.
  const auto id =
      static_cast<uint64_t>(Field(ParseObject(r.out), "task_id").number);
  EXPECT_GE(id, 4u);
  EXPECT_LT(id, 8u);
  EXPECT_THAT(RunIn(dir, {"stats"}).out, HasSubstr("partitions: 4\n"));
  EXPECT_EQ(RunIn(dir, {"get", absl::StrCat(id)}).code, kExitOk);

  // The directory keeps its count: the same count or none opens it,
  // another does not, and changes nothing.
  EXPECT_EQ(RunIn(dir, {"submit", "--key=b", "--partitions=4"}).code, kExitOk);
  EXPECT_EQ(RunIn(dir, {"submit", "--key=c"}).code, kExitOk);
  const std::map<std::string, std::string> before = DirContents(dir);
  r = RunIn(dir, {"submit", "--key=d", "--partitions=2"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("created with 4 partitions"));
  r = RunIn(dir, {"snapshot", "--partitions=2"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_EQ(DirContents(dir), before);

  // Without the flag a new directory gets the default count.
  const std::string other = absl::StrCat(root_, "/default");
  ASSERT_EQ(::mkdir(other.c_str(), 0700), 0);
  EXPECT_EQ(RunIn(other, {"submit", "--key=a"}).code, kExitOk);
  EXPECT_THAT(
      RunIn(other, {"stats"}).out,
      HasSubstr(absl::StrCat("partitions: ", kDefaultPartitions, "\n")));
}

// The reader the tests above rely on rejects what is not JSON.
TEST(TestingJsonTest, AcceptsJsonAndRejectsTheRest) {
  std::optional<JsonValue> v =
      ParseJson(" {\"a\":[1,-2.5e3,true,null,\"x\\n\\u0041\"],\"b\":{}}\n");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(Field(*v, "a").array.size(), 5u);
  EXPECT_EQ(Field(*v, "a").array[1].number, -2500);
  EXPECT_TRUE(Field(*v, "a").array[2].boolean);
  EXPECT_EQ(Field(*v, "a").array[4].string, "x\nA");
  for (const char* bad : {"", "{", "{\"a\":}", "{\"a\":1,}", "[1 2]", "{} {}",
                          "01", "\"tab\there\"", "{a:1}", "[-]", "nul"}) {
    EXPECT_FALSE(ParseJson(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace taskwal::tools
