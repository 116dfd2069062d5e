#include "tools/taskwal_cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "taskwal/engine.h"
#include "taskwal/version.h"
#include "tools/testing_cli.h"
#include "tools/testing_json.h"
#include "wal/data_dir.h"
#include "wal/format.h"
#include "wal/log_reader.h"

namespace taskwal::tools {
namespace {

using ::taskwal::tools::testing_cli::CliResult;
using ::taskwal::tools::testing_cli::RunTaskwal;
using ::taskwal::tools::testing_cli::Spec;

using ::taskwal::tools::testing_json::JsonValue;
using ::taskwal::tools::testing_json::ParseJson;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

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

// A 64-bit integer of --json output: a JSON string in protobuf's JSON
// mapping, as every id, LSN, count and offset is.
uint64_t Uint(const JsonValue& value) {
  EXPECT_EQ(value.type, JsonValue::Type::kString)
      << "a 64-bit integer must be a JSON string";
  uint64_t n = 0;
  EXPECT_TRUE(absl::SimpleAtoi(value.string, &n)) << value.string;
  return n;
}

// Whether `text` is safe to print on a terminal, judged byte by byte:
// well-formed UTF-8 with no control character but the '\n' that ends each
// line (no other C0 control, no DEL, no C1 control U+0080..U+009F), and no
// bidirectional control (U+061C, U+200E, U+200F, U+202A..U+202E,
// U+2066..U+2069).
::testing::AssertionResult IsTerminalSafe(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      if ((lead < 0x20 && lead != '\n') || lead == 0x7f) {
        return ::testing::AssertionFailure()
               << "control byte " << static_cast<int>(lead) << " at offset "
               << i << " of: " << text;
      }
      ++i;
      continue;
    }
    const size_t length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
    if (lead < 0xc2 || lead > 0xf4 || i + length > text.size()) {
      return ::testing::AssertionFailure()
             << "not UTF-8 at offset " << i << " of: " << text;
    }
    uint32_t c = lead & (0x7f >> length);
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xc0) != 0x80) {
        return ::testing::AssertionFailure()
               << "not UTF-8 at offset " << i << " of: " << text;
      }
      c = (c << 6) | (next & 0x3f);
    }
    const bool overlong = (length == 3 && c < 0x800) ||
                          (length == 4 && c < 0x10000) || c > 0x10ffff ||
                          (c >= 0xd800 && c <= 0xdfff);
    const bool control = c <= 0x9f || c == 0x061c || c == 0x200e ||
                         c == 0x200f || (c >= 0x202a && c <= 0x202e) ||
                         (c >= 0x2066 && c <= 0x2069);
    if (overlong || control) {
      return ::testing::AssertionFailure()
             << (overlong ? "not UTF-8" : "control character") << " U+"
             << std::hex << c << " at offset " << std::dec << i
             << " of: " << text;
    }
    i += length;
  }
  return ::testing::AssertionSuccess();
}

// The columns `text` takes, for text whose characters are one column
// wide each.
size_t Columns(absl::string_view text) {
  return std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  });
}

bool IsJson(const std::vector<std::string>& args) {
  return std::find(args.begin(), args.end(), "--json") != args.end();
}

// A failure as the tool reports it: under --json an ErrorOutput on stdout
// (tools/taskwal_cli.proto) and nothing on stderr; otherwise the message
// on stderr.
void ExpectError(const CliResult& r, const std::vector<std::string>& args,
                 const std::string& code, int exit_status,
                 const std::string& message) {
  const std::string command = absl::StrJoin(args, " ");
  if (!IsJson(args)) {
    EXPECT_THAT(r.err, HasSubstr(message)) << command;
    return;
  }
  EXPECT_EQ(r.err, "") << command;
  std::optional<JsonValue> v = ParseJson(r.out);
  ASSERT_TRUE(v.has_value()) << command << ": not JSON: " << r.out;
  const JsonValue* error = v->Find("error");
  ASSERT_NE(error, nullptr) << command << ": " << r.out;
  EXPECT_EQ(Field(*error, "code").string, code) << command;
  EXPECT_EQ(Field(*error, "exit_status").number, exit_status) << command;
  EXPECT_THAT(Field(*error, "message").string, HasSubstr(message)) << command;
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

  static CliResult Run(std::vector<std::string> args,
                       const CliOptions& options = CliOptions()) {
    return RunTaskwal(std::move(args), options);
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
    EXPECT_TRUE(e.Complete(c->claim, "done").ok());
    c = e.Claim(4, "w2", absl::Hours(1));
    EXPECT_TRUE(c.ok());
    EXPECT_TRUE(e.Fail(c->claim, "card declined").ok());
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
  // Flips one byte of the payload of the record at `offset` of the file.
  static void FlipPayloadByte(const std::string& path, uint64_t offset) {
    std::string contents = ReadFile(path);
    contents[offset + wal::kRecordHeaderSize + 1] ^= 0x01;
    WriteFile(path, contents);
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
  EXPECT_THAT(r.out, HasSubstr("4   DIR is not a taskwal data directory"));
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
    if (IsJson(c.args)) {  // The error is JSON on stdout.
      ExpectError(r, c.args, "INVALID_ARGUMENT", kExitUsage, c.message);
      continue;
    }
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
  EXPECT_THAT(r.out, HasSubstr("types: 2\n  \"email\": pending 1, claimed 0, "
                               "completed 0, failed 0, cancelled 0, oldest "
                               "ready waited "));
  EXPECT_THAT(r.out, HasSubstr("\n  \"order\": pending 1, claimed 1, "
                               "completed 1, failed 1, cancelled 0, oldest "
                               "ready waited "));

  r = RunIn(dir, {"stats", "--json"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_THAT(r.out, StartsWith("{"));
  JsonValue stats = ParseObject(r.out);
  EXPECT_EQ(Uint(Field(stats, "pending")), 2u);
  EXPECT_EQ(Uint(Field(stats, "submitted")), 5u);
  EXPECT_EQ(Field(stats, "partitions").number, 1);
  EXPECT_EQ(Uint(Field(stats, "last_lsn")), 10u);
  EXPECT_EQ(Uint(Field(Field(stats, "recovery"), "records_replayed")), 10u);
  const JsonValue& types = Field(stats, "types");
  ASSERT_EQ(types.array.size(), 2u);
  EXPECT_EQ(Field(types.array[1], "type").string, "order");
  EXPECT_EQ(Uint(Field(types.array[1], "pending")), 1u);
  EXPECT_EQ(Uint(Field(types.array[1], "claimed")), 1u);
  EXPECT_EQ(Uint(Field(types.array[1], "completed")), 1u);
  EXPECT_EQ(Uint(Field(types.array[1], "failed")), 1u);
  EXPECT_GT(Uint(Field(types.array[1], "oldest_ready_micros")), 0u);

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
  EXPECT_EQ(Uint(Field(list, "next_cursor")), 0u);

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
  EXPECT_EQ(Uint(Field(submitted, "task_id")), 6u);
  EXPECT_TRUE(Field(submitted, "deduplicated").boolean);
  r = RunIn(dir, {"submit", "--key=new", "--type=email", "--payload=other"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_THAT(r.err, HasSubstr("ALREADY_EXISTS"));

  const std::string payload_file = root_ + "/payload.bin";
  WriteFile(payload_file, std::string("bin\0ary", 7));
  r = RunIn(dir, {"submit", "--key=file", "--payload_file", payload_file});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  r = RunIn(dir, {"get", "--key=file"});
  EXPECT_THAT(r.out, HasSubstr("\"bin\\x00ary\" (7 bytes)"));
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
  EXPECT_EQ(Uint(Field(verify, "last_lsn")), 10u);
  EXPECT_EQ(Field(verify, "partitions").number, 1);
  EXPECT_EQ(Uint(Field(verify, "replayed")), 10u);

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
    EXPECT_EQ(Uint(Field(record, "lsn")), i + 1);
    EXPECT_EQ(record.Find("group"), nullptr);
    EXPECT_GT(Uint(Field(record, "offset")), offset);
    offset = Uint(Field(record, "offset"));
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
  // One payload byte of the 6th record: valid records follow it.
  FlipPayloadByte(path, offsets[5]);
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
  EXPECT_EQ(Uint(Field(problem, "offset")), offsets[5]);
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
    const auto lsn = static_cast<uint64_t>(Uint(Field(record, "lsn")));
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
    EXPECT_EQ(Uint(Field(*group, "leader_lsn")), 1u);
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
  const auto id = Uint(Field(ParseObject(r.out), "task_id"));
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

// Task text that would drive a terminal: escape sequences, line breaks, C1
// controls (as UTF-8), bidirectional overrides; bytes fields also hold
// what is not UTF-8.
constexpr char kEvilKey[] =
    "evil\x1b[2J\x1b]0;owned\x07\n\ttab\rcr\xc2\x9b"
    "31m\xe2\x80\xae"
    "end";
constexpr char kEvilKeyShown[] =
    "evil\\x1b[2J\\x1b]0;owned\\x07\\n\\ttab\\rcr\\u009b31m\\u202eend";
constexpr char kEvilType[] = "t\x1b[31mred\n\xc2\x85\xe2\x81\xa6";
constexpr char kEvilTypeShown[] = "t\\x1b[31mred\\n\\u0085\\u2066";
constexpr char kEvilWorker[] = "w\x1b[H\t\xe2\x80\x8f";
constexpr char kEvilWorkerShown[] = "w\\x1b[H\\t\\u200f";
constexpr char kEvilError[] = "err\x1b[2K\r\n\xc2\x9d\xe2\x80\xad";
constexpr char kEvilErrorShown[] = "err\\x1b[2K\\r\\n\\u009d\\u202d";

TEST_F(TaskwalCliTest, TaskTextIsEscapedInEveryHumanReadableOutput) {
  const std::string dir = absl::StrCat(root_, "/db");
  {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(Options(dir));
    ASSERT_TRUE(engine.ok()) << engine.status();
    Engine& e = **engine;
    TaskSpec evil = Spec(kEvilKey, kEvilType, /*max_attempts=*/1);
    evil.payload = "\xff\xfe\x1b[5m\xc2\x9b";  // Bytes: not UTF-8.
    ASSERT_EQ(e.Submit(evil)->task_id, 1u);
    ASSERT_EQ(e.Submit(Spec("long-type", std::string(100, 'x')))->task_id, 2u);
    ASSERT_EQ(e.Submit(Spec("plain", "order"))->task_id, 3u);
    ASSERT_EQ(e.Submit(Spec("wide", "\xe6\xb3\xa8\xe6\x96\x87"))->task_id,
              4u);  // "注文", 4 columns.
    absl::StatusOr<ClaimedTask> c = e.Claim(1, kEvilWorker, absl::Hours(1));
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE(e.Fail(c->claim, kEvilError).ok());
    c = e.Claim(3, "w", absl::Hours(1));
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE(e.Complete(c->claim, "\xc0\xaf\x1b[0m").ok());
    ASSERT_EQ(e.Submit(Spec("claimed", "c"))->task_id, 5u);
    ASSERT_TRUE(e.Claim(5, kEvilWorker, absl::Hours(1)).ok());
    ASSERT_TRUE(e.Close().ok());
  }

  // list: one line per task, every row in the header's columns.
  CliResult r = RunIn(dir, {"list"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(IsTerminalSafe(r.out));
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n');
  ASSERT_EQ(lines.size(), 8u) << r.out;  // Header, 5 tasks, cursor, "".
  const size_t key_column = lines[0].find("KEY");
  ASSERT_NE(key_column, std::string::npos);
  const size_t type_column = lines[0].find("TYPE");
  EXPECT_THAT(lines[1], EndsWith(kEvilKeyShown));
  EXPECT_EQ(Columns(lines[1]), key_column + Columns(kEvilKeyShown)) << lines[1];
  EXPECT_EQ(lines[1].substr(type_column, std::strlen(kEvilTypeShown)),
            kEvilTypeShown);
  // A type too long for its column is cut, with a mark, and moves nothing.
  EXPECT_THAT(lines[2], AllOf(HasSubstr("xxx\xe2\x80\xa6 long-type"),
                              EndsWith(" long-type")));
  EXPECT_EQ(Columns(lines[2]), key_column + Columns("long-type")) << lines[2];
  EXPECT_EQ(Columns(lines[3]), key_column + Columns("plain")) << lines[3];
  // Wide characters count two columns each.
  EXPECT_THAT(
      lines[4],
      EndsWith("\xe6\xb3\xa8\xe6\x96\x87" +
               std::string(key_column - type_column - 4, ' ') + "wide"));
  EXPECT_EQ(Columns(lines[5]), key_column + Columns("claimed")) << lines[5];
  EXPECT_THAT(lines[6], StartsWith("next cursor: none"));

  // get, by id and by key: one field a line.
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"get", "1"}, {"get", absl::StrCat("--key=", kEvilKey)}}) {
    r = RunIn(dir, args);
    EXPECT_EQ(r.code, kExitOk) << r.err;
    EXPECT_TRUE(IsTerminalSafe(r.out));
    EXPECT_THAT(
        r.out, AllOf(HasSubstr(absl::StrCat("idempotency_key: \"",
                                            kEvilKeyShown, "\"\n")),
                     HasSubstr(absl::StrCat("type:            \"",
                                            kEvilTypeShown, "\"\n")),
                     HasSubstr(absl::StrCat("last_error:      \"",
                                            kEvilErrorShown, "\"\n")),
                     HasSubstr("payload:         \"\\xff\\xfe\\x1b[5m\\u009b\" "
                               "(8 bytes)\n")));
    for (absl::string_view line :
         absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
      EXPECT_THAT(std::string(line), ::testing::MatchesRegex("[a-z_]+: .*"));
    }
  }
  r = RunIn(dir, {"get", "3"});
  EXPECT_TRUE(IsTerminalSafe(r.out));
  EXPECT_THAT(r.out, HasSubstr("result:          \"\\xc0\\xaf\\x1b[0m\"\n"));
  r = RunIn(dir, {"get", "5"});
  EXPECT_TRUE(IsTerminalSafe(r.out));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("claimed_by:      \"",
                                            kEvilWorkerShown, "\"\n")));

  // history: one line an event.
  r = RunIn(dir, {"history", "1"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(IsTerminalSafe(r.out));
  const std::vector<std::string> events =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(events.size(), 3u) << r.out;  // Submitted, claimed, failed.
  for (const std::string& event : events) {
    EXPECT_THAT(event, StartsWith("20")) << event;  // The time.
  }
  EXPECT_THAT(
      events[2],
      AllOf(HasSubstr(absl::StrCat("worker \"", kEvilWorkerShown, "\"")),
            EndsWith(absl::StrCat("error \"", kEvilErrorShown, "\""))));

  // dump: one line a record, strings in the same escapes.
  r = RunIn(dir, {"dump"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(IsTerminalSafe(r.out));
  const std::vector<std::string> records =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  EXPECT_EQ(records.size(), 10u) << r.out;
  for (const std::string& record : records) {
    EXPECT_THAT(record, StartsWith("0:")) << record;
  }
  EXPECT_THAT(
      r.out,
      AllOf(HasSubstr(absl::StrCat("idempotency_key: \"", kEvilKeyShown, "\"")),
            HasSubstr(absl::StrCat("worker_id: \"", kEvilWorkerShown, "\"")),
            HasSubstr(absl::StrCat("\"", kEvilErrorShown, "\""))));

  for (const char* command : {"stats", "verify"}) {
    r = RunIn(dir, {command});
    EXPECT_EQ(r.code, kExitOk) << r.err;
    EXPECT_TRUE(IsTerminalSafe(r.out)) << command;
  }

  // Messages on stderr that repeat what was asked.
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"get", "--key=nope\x1b[2J\xc2\x9b"},
           {"get", "1\x1b[2J"},
           {"list", "--status=\x1b]0;x\x07"},
           {"submit", absl::StrCat("--key=", kEvilKey), "--payload=other"},
       }) {
    r = RunIn(dir, args);
    EXPECT_NE(r.code, kExitOk);
    EXPECT_THAT(r.err, HasSubstr("\\x1b")) << r.err;
    EXPECT_TRUE(IsTerminalSafe(r.err)) << args[0];
  }
  r = RunIn(root_ + "/no\x1b[2Jpe", {"stats"});
  EXPECT_EQ(r.code, kExitFailed);
  EXPECT_TRUE(IsTerminalSafe(r.err));
}

TEST_F(TaskwalCliTest, LongTextIsCutWithAMarkAndJsonKeepsItWhole) {
  const std::string dir = absl::StrCat(root_, "/db");
  const std::string key = std::string(150, 'k') + "END";
  const std::string payload = std::string(3000, 'p') + "\x1b" + "END";
  const std::string error = std::string(1000, 'e') + "END";
  const std::string result = std::string(700, 'r') + "END";
  {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(Options(dir));
    ASSERT_TRUE(engine.ok()) << engine.status();
    Engine& e = **engine;
    TaskSpec spec = Spec(key, std::string(100, 't'), /*max_attempts=*/1);
    spec.payload = payload;
    ASSERT_EQ(e.Submit(spec)->task_id, 1u);
    absl::StatusOr<ClaimedTask> c = e.Claim(1, "w", absl::Hours(1));
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE(e.Fail(c->claim, error).ok());
    ASSERT_EQ(e.Submit(Spec("done", "t"))->task_id, 2u);
    c = e.Claim(2, "w", absl::Hours(1));
    ASSERT_TRUE(c.ok()) << c.status();
    ASSERT_TRUE(e.Complete(c->claim, result).ok());
    ASSERT_TRUE(e.Close().ok());
  }
  const std::string mark = "\xe2\x80\xa6";  // "…"
  CliResult r = RunIn(dir, {"list"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  const std::vector<std::string> lines = absl::StrSplit(r.out, '\n');
  ASSERT_GE(lines.size(), 3u) << r.out;
  const size_t key_column = lines[0].find("KEY");
  // The type is cut to 32 columns, the key to 100, each ending in the mark.
  EXPECT_THAT(lines[1], HasSubstr(std::string(31, 't') + mark + " "));
  EXPECT_THAT(lines[1], EndsWith(std::string(99, 'k') + mark));
  EXPECT_EQ(Columns(lines[1]), key_column + 100) << lines[1];
  EXPECT_THAT(lines[1], Not(HasSubstr("END")));

  r = RunIn(dir, {"get", "1"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("payload:         \"",
                                            std::string(511, 'p'), mark,
                                            "\" (3004 bytes, cut: --json "
                                            "shows all)\n")));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("last_error:      \"",
                                            std::string(511, 'e'), mark,
                                            "\" (1003 bytes, cut: --json "
                                            "shows all)\n")));
  // The key is shown whole.
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("\"", key, "\"\n")));
  r = RunIn(dir, {"get", "2"});
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("result:          \"",
                                            std::string(511, 'r'), mark,
                                            "\" (703 bytes, cut")));
  EXPECT_THAT(r.out, HasSubstr("payload:         \"payload of done\" "
                               "(15 bytes)\n"));

  r = RunIn(dir, {"history", "1"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("error \"", std::string(159, 'e'),
                                            mark, "\"\n")));

  r = RunIn(dir, {"--json", "get", "1"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  const JsonValue task = ParseObject(r.out);
  EXPECT_EQ(Field(task, "last_error").string, error);
  std::string decoded;
  ASSERT_TRUE(absl::Base64Unescape(Field(task, "payload").string, &decoded));
  EXPECT_EQ(decoded, payload);
}

TEST_F(TaskwalCliTest, JsonOutputOfControlCharactersStaysJson) {
  // ASCII controls come back exactly (the test reader turns \u escapes
  // above U+007F into '?'); the others must still make valid JSON.
  const std::string ascii_key = "key\x1b[2J\x07\x7f\n\t\r\"\\";
  const std::string ascii_worker = "w\x1b[H\n";
  const std::string dir = absl::StrCat(root_, "/db");
  {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(Options(dir));
    ASSERT_TRUE(engine.ok()) << engine.status();
    Engine& e = **engine;
    ASSERT_TRUE(e.Submit(Spec(kEvilKey, kEvilType, 1)).ok());
    absl::StatusOr<ClaimedTask> c = e.Claim(1, kEvilWorker, absl::Hours(1));
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(e.Fail(c->claim, kEvilError).ok());
    ASSERT_TRUE(e.Submit(Spec(ascii_key, "t")).ok());
    ASSERT_TRUE(e.Claim(2, ascii_worker, absl::Hours(1)).ok());
    ASSERT_TRUE(e.Close().ok());
  }
  CliResult r = RunIn(dir, {"--json", "list"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  const JsonValue list = ParseObject(r.out);
  ASSERT_EQ(Field(list, "tasks").array.size(), 2u);
  EXPECT_EQ(Field(Field(list, "tasks").array[1], "idempotency_key").string,
            ascii_key);

  for (const std::string& key : {std::string(kEvilKey), ascii_key}) {
    r = RunIn(dir, {"--json", "get", absl::StrCat("--key=", key)});
    EXPECT_EQ(r.code, kExitOk) << r.err;
    ParseObject(r.out);
  }
  EXPECT_EQ(Field(ParseObject(r.out), "claimed_by").string, ascii_worker);

  r = RunIn(dir, {"--json", "history", "1"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(Field(ParseObject(r.out), "history").array.size(), 3u);

  r = RunIn(dir, {"--json", "dump"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  const std::vector<std::string> records =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  EXPECT_EQ(records.size(), 5u);
  for (const std::string& record : records) ParseObject(record);
}

TEST(EscapeForTerminalTest, EscapesWhatATerminalActsOn) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"plain text, \"quoted\"", "plain text, \"quoted\""},
      {"a\\x1b", "a\\\\x1b"},  // A backslash cannot forge an escape.
      {"\n\r\t", "\\n\\r\\t"},
      {"\x1b[2J\x07\x7f", "\\x1b[2J\\x07\\x7f"},
      {std::string("\0a", 2), "\\x00a"},
      // C1 controls, as UTF-8.
      {"\xc2\x80\xc2\x85\xc2\x9b\xc2\x9f", "\\u0080\\u0085\\u009b\\u009f"},
      // Bidirectional controls and invisible characters.
      {"\xd8\x9c\xe2\x80\x8e\xe2\x80\x8f", "\\u061c\\u200e\\u200f"},
      {"\xe2\x80\xaa\xe2\x80\xae\xe2\x81\xa6\xe2\x81\xa9",
       "\\u202a\\u202e\\u2066\\u2069"},
      {"\xe2\x80\x8b\xe2\x80\xa8\xe2\x80\xa9\xef\xbb\xbf",
       "\\u200b\\u2028\\u2029\\ufeff"},
      // Not UTF-8: a stray byte, overlong, a surrogate, above U+10FFFF,
      // truncated.
      {"\xff", "\\xff"},
      {"\xc0\xaf", "\\xc0\\xaf"},
      {"\xed\xa0\x80", "\\xed\\xa0\\x80"},
      {"\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"},
      {"\xe2\x80", "\\xe2\\x80"},
      {"\xe2\x80z", "\\xe2\\x80z"},
      // Printable UTF-8 stays.
      {"caf\xc3\xa9 \xe6\xb3\xa8\xe6\x96\x87 \xf0\x9f\x98\x80 \xc2\xa0",
       "caf\xc3\xa9 \xe6\xb3\xa8\xe6\x96\x87 \xf0\x9f\x98\x80 \xc2\xa0"},
  };
  for (const auto& [text, shown] : cases) {
    EXPECT_EQ(EscapeForTerminal(text), shown) << absl::CHexEscape(text);
  }
}

TEST(EscapeForTerminalTest, EveryByteAndCodePointComesOutSafe) {
  for (int b = 0; b < 256; ++b) {
    const std::string text(1, static_cast<char>(b));
    EXPECT_TRUE(IsTerminalSafe(EscapeForTerminal(text))) << b;
  }
  std::string all;
  for (uint32_t c = 0; c <= 0x10ffff; ++c) {
    if (c >= 0xd800 && c <= 0xdfff) continue;
    if (c < 0x80) {
      all += static_cast<char>(c);
    } else if (c < 0x800) {
      all += static_cast<char>(0xc0 | (c >> 6));
      all += static_cast<char>(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
      all += static_cast<char>(0xe0 | (c >> 12));
      all += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      all += static_cast<char>(0x80 | (c & 0x3f));
    } else {
      all += static_cast<char>(0xf0 | (c >> 18));
      all += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
      all += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      all += static_cast<char>(0x80 | (c & 0x3f));
    }
  }
  const std::string shown = EscapeForTerminal(all);
  EXPECT_TRUE(IsTerminalSafe(shown));
  EXPECT_EQ(shown.find('\n'), std::string::npos);
}

TEST_F(TaskwalCliTest, ReadCommandsRefuseADirectoryThatIsNotADataDirectory) {
  const std::string other = absl::StrCat(root_, "/other");
  ASSERT_EQ(::mkdir(other.c_str(), 0700), 0);
  WriteFile(other + "/notes.txt", "not a task");
  const std::string empty = absl::StrCat(root_, "/empty");
  ASSERT_EQ(::mkdir(empty.c_str(), 0700), 0);
  for (const std::string& dir : {other, empty}) {
    const std::map<std::string, std::string> before = DirContents(dir);
    for (const std::vector<std::string>& args :
         std::vector<std::vector<std::string>>{{"stats"},
                                               {"stats", "--json"},
                                               {"list"},
                                               {"get", "1"},
                                               {"get", "--key=k"},
                                               {"history", "1"},
                                               {"verify"},
                                               {"dump"}}) {
      CliResult r = RunIn(dir, args);
      EXPECT_EQ(r.code, kExitNotDataDir) << dir << " " << args[0];
      const std::string message =
          absl::StrCat(dir, " is not a taskwal data directory (no META file)");
      ExpectError(r, args, "FAILED_PRECONDITION", kExitNotDataDir, message);
      if (!IsJson(args)) {
        EXPECT_EQ(r.out, "") << args[0];
      }
    }
    EXPECT_EQ(DirContents(dir), before);
  }

  // A data directory that lost its META is damaged, not another directory.
  const std::string dir = Populate("db");
  ASSERT_EQ(::unlink(absl::StrCat(dir, "/", wal::kMetaFileName).c_str()), 0);
  CliResult r = RunIn(dir, {"stats"});
  EXPECT_EQ(r.code, kExitDamage);
  EXPECT_THAT(r.err, HasSubstr("META is missing"));
  r = RunIn(dir, {"verify"});
  EXPECT_EQ(r.code, kExitDamage);
  EXPECT_THAT(r.out, HasSubstr("META"));
}

TEST_F(TaskwalCliTest, WriteCommandsCreateADataDirectoryOnlyInAnEmptyOne) {
  const std::string other = absl::StrCat(root_, "/other");
  ASSERT_EQ(::mkdir(other.c_str(), 0700), 0);
  WriteFile(other + "/notes.txt", "not a task");
  const std::map<std::string, std::string> before = DirContents(other);
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"submit", "--key=k"},
           {"submit", "--key=k", "--partitions=1", "--json"},
           {"retry", "1"},
           {"cancel", "1"},
           {"delete", "1"},
           {"snapshot"}}) {
    CliResult r = RunIn(other, args);
    EXPECT_EQ(r.code, kExitNotDataDir) << args[0];
    ExpectError(r, args, "FAILED_PRECONDITION", kExitNotDataDir,
                absl::StrCat(other,
                             " is not a taskwal data directory (no META "
                             "file) and is not empty"));
    if (!IsJson(args)) {
      EXPECT_EQ(r.out, "") << args[0];
    }
  }
  // Nothing was created there: no LOCK, no META, no log.
  EXPECT_EQ(DirContents(other), before);

  // An empty directory becomes a data directory.
  const std::string empty = absl::StrCat(root_, "/empty");
  ASSERT_EQ(::mkdir(empty.c_str(), 0700), 0);
  CliResult r = RunIn(empty, {"submit", "--key=k", "--partitions=1"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(
      Env::Default()->FileExists(absl::StrCat(empty, "/", wal::kMetaFileName)));
  EXPECT_THAT(RunIn(empty, {"stats"}).out, HasSubstr("tasks: 1\n"));

  // So does one that an Open left before it wrote META (it took the lock).
  const std::string started = absl::StrCat(root_, "/started");
  ASSERT_EQ(::mkdir(started.c_str(), 0700), 0);
  WriteFile(started + "/LOCK", "12345\n");
  EXPECT_EQ(RunIn(started, {"stats"}).code, kExitNotDataDir);
  r = RunIn(started, {"submit", "--key=k"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(RunIn(started, {"stats"}).out, HasSubstr("tasks: 1\n"));
}

TEST_F(TaskwalCliTest, SubmitDependsOnWaitsAndGetShowsIt) {
  const std::string dir = absl::StrCat(root_, "/db");
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  CliResult r = RunIn(dir, {"submit", "--key=a", "--partitions=1"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  r = RunIn(dir, {"submit", "--key=b"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  r = RunIn(dir, {"submit", "--key=c", "--depends_on=a,b",
                  "--on_dependency_failure=cancel"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "task 3 submitted\n");
  r = RunIn(dir, {"get", "3"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("depends_on:      1, 2\n"));
  EXPECT_THAT(r.out, HasSubstr("waiting_for:     1, 2\n"));
  EXPECT_THAT(r.out, HasSubstr("on_dep_failure:  cancel\n"));
  r = RunIn(dir, {"--json", "get", "3"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"waiting_for\""));

  // Only a and b are claimable; c once both completed.
  {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(Options(dir));
    ASSERT_TRUE(engine.ok()) << engine.status();
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<ClaimedTask> c = (*engine)->ClaimNext("w", {});
      ASSERT_TRUE(c.ok()) << c.status();
      EXPECT_NE(c->task.id(), 3u);
      ASSERT_TRUE((*engine)->Complete(c->claim, "").ok());
    }
    absl::StatusOr<ClaimedTask> c = (*engine)->ClaimNext("w", {});
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->task.id(), 3u);
    ASSERT_TRUE((*engine)->Close().ok());
  }
  EXPECT_THAT(RunIn(dir, {"get", "3"}).out,
              HasSubstr("waiting_for:     (none)\n"));

  r = RunIn(dir, {"submit", "--key=d", "--depends_on=nothing"});
  EXPECT_EQ(r.code, kExitFailed);
  r = RunIn(dir, {"submit", "--key=d", "--depends_on=a",
                  "--on_dependency_failure=ignore"});
  EXPECT_EQ(r.code, kExitUsage);
}

TEST_F(TaskwalCliTest, SubmitNotBeforeAndDelayDeferTheTask) {
  const std::string dir = absl::StrCat(root_, "/db");
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  CliResult r = RunIn(dir, {"submit", "--key=at", "--partitions=1",
                            "--not_before=2030-01-02T15:04:05Z"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "task 1 submitted, claimable from 2030-01-02T15:04:05Z\n");
  r = RunIn(dir, {"submit", "--key=zone",
                  "--not_before=2030-01-02T16:04:05.5+01:00", "--json"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  const absl::Time before = absl::Now();
  r = RunIn(dir, {"submit", "--key=later", "--delay=2h30m"});
  const absl::Time after = absl::Now();
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, StartsWith("task 3 submitted, claimable from "));
  // In the past: claimable at once.
  r = RunIn(dir, {"submit", "--key=past", "--not_before=2001-01-01T00:00:00Z"});
  EXPECT_EQ(r.out, "task 4 submitted\n");

  auto not_before = [&](const std::string& id) {
    CliResult got = RunIn(dir, {"--json", "get", id});
    EXPECT_EQ(got.code, kExitOk) << got.err;
    int64_t micros = 0;
    EXPECT_TRUE(absl::SimpleAtoi(
        Field(ParseObject(got.out), "not_before_micros").string, &micros));
    return absl::FromUnixMicros(micros);
  };
  const absl::Time at = absl::FromCivil(absl::CivilSecond(2030, 1, 2, 15, 4, 5),
                                        absl::UTCTimeZone());
  EXPECT_EQ(not_before("1"), at);
  EXPECT_EQ(not_before("2"), at + absl::Milliseconds(500));
  EXPECT_GE(not_before("3"), before + absl::Minutes(150));
  EXPECT_LE(not_before("3"), after + absl::Minutes(150));
  EXPECT_THAT(RunIn(dir, {"get", "1"}).out,
              HasSubstr("not_before:      2030-01-02T15:04:05Z\n"));

  // Only the task in the past is claimable.
  {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(Options(dir));
    ASSERT_TRUE(engine.ok()) << engine.status();
    absl::StatusOr<ClaimedTask> c = (*engine)->ClaimNext("w", {});
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->task.id(), 4u);
    EXPECT_TRUE(absl::IsNotFound((*engine)->ClaimNext("w", {}).status()));
    ASSERT_TRUE((*engine)->Close().ok());
  }

  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"submit", "--key=x", "--not_before=tomorrow"},
           {"submit", "--key=x", "--not_before=2030-01-02 15:04:05"},
           {"submit", "--key=x", "--delay=-1s"},
           {"submit", "--key=x", "--delay=soon"},
           {"submit", "--key=x", "--delay=1s",
            "--not_before=2030-01-02T15:04:05Z"},
       }) {
    r = RunIn(dir, args);
    EXPECT_EQ(r.code, kExitUsage) << args.back();
    EXPECT_THAT(r.err, AnyOf(HasSubstr("RFC 3339"), HasSubstr("duration"),
                             HasSubstr("exclude each other")))
        << args.back();
  }
}

TEST_F(TaskwalCliTest, PayloadFileDashReadsStandardInput) {
  const std::string dir = absl::StrCat(root_, "/db");
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  const std::string payload =
      std::string("bin\0ary\xff\n", 9) + std::string(200000, 'x');
  std::istringstream in(payload);
  CliOptions options;
  options.in = &in;
  CliResult r =
      RunIn(dir, {"submit", "--key=k", "--partitions=1", "--payload_file=-"},
            options);
  EXPECT_EQ(r.code, kExitOk) << r.err;
  r = RunIn(dir, {"--json", "get", "1"});
  std::string decoded;
  ASSERT_TRUE(absl::Base64Unescape(Field(ParseObject(r.out), "payload").string,
                                   &decoded));
  EXPECT_EQ(decoded, payload);

  std::istringstream empty("");
  options.in = &empty;
  r = RunIn(dir, {"submit", "--key=empty", "--payload_file", "-"}, options);
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(RunIn(dir, {"get", "2"}).out,
              HasSubstr("payload:         \"\" (0 bytes)"));
}

// A directory of one partition with FAILED tasks 1 (type a), 2 (b), 3 (a),
// a COMPLETED task 4 (a) and a PENDING task 5 (a).
std::string PopulateFailed(const std::string& dir) {
  EngineOptions o;
  o.data_dir = dir;
  o.partitions = 1;
  o.maintenance_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(o);
  EXPECT_TRUE(engine.ok()) << engine.status();
  if (!engine.ok()) return dir;
  Engine& e = **engine;
  const char* types[] = {"a", "b", "a", "a", "a"};
  for (int i = 0; i < 5; ++i) {
    TaskSpec spec;
    spec.idempotency_key = absl::StrCat("k", i + 1);
    spec.type = types[i];
    spec.max_attempts = 1;
    EXPECT_EQ(e.Submit(spec)->task_id, static_cast<uint64_t>(i + 1));
  }
  for (uint64_t id : {1, 2, 3, 4}) {
    absl::StatusOr<ClaimedTask> c = e.Claim(id, "w", absl::Hours(1));
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) continue;
    EXPECT_TRUE(
        (id == 4 ? e.Complete(c->claim, "ok") : e.Fail(c->claim, "boom")).ok());
  }
  EXPECT_TRUE(e.Close().ok());
  return dir;
}

TEST_F(TaskwalCliTest, RetryAndDeleteByFilter) {
  const std::string dir = PopulateFailed(absl::StrCat(root_, "/db"));
  auto status_of = [&](int id) {
    CliResult r = RunIn(dir, {"--json", "get", absl::StrCat(id)});
    return Field(ParseObject(r.out), "status").string;
  };

  // A dry run changes nothing.
  const std::map<std::string, std::string> before = DirContents(dir);
  CliResult r =
      RunIn(dir, {"retry", "--status=failed", "--type=a", "--dry_run"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(
      r.out,
      "would retry 2 tasks (FAILED of type \"a\"); nothing changed: 1 3\n");
  EXPECT_EQ(DirContents(dir), before);

  // Nothing failed more than an hour ago.
  r = RunIn(dir, {"retry", "--status=FAILED", "--older_than=1h", "--json"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  JsonValue bulk = ParseObject(r.out);
  EXPECT_EQ(Uint(Field(bulk, "changed")), 0u);
  EXPECT_TRUE(Field(bulk, "task_ids").array.empty());

  // --limit bounds a run and says more match.
  r = RunIn(dir, {"retry", "--status=failed", "--type=a", "--limit=1"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, StartsWith("retried 1 task (FAILED of type \"a\"): 1\n"
                                "more tasks match"));
  EXPECT_EQ(status_of(1), "PENDING");
  EXPECT_EQ(status_of(3), "FAILED");
  r = RunIn(dir, {"retry", "--status=failed", "--type=a", "--older_than=0s",
                  "--json"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  bulk = ParseObject(r.out);
  EXPECT_EQ(Field(bulk, "result").string, "retried");
  EXPECT_EQ(Uint(Field(bulk, "changed")), 1u);
  ASSERT_EQ(Field(bulk, "task_ids").array.size(), 1u);
  EXPECT_EQ(Uint(Field(bulk, "task_ids").array[0]), 3u);
  EXPECT_FALSE(Field(bulk, "more").boolean);
  EXPECT_EQ(status_of(3), "PENDING");
  EXPECT_EQ(status_of(2), "FAILED");  // Type b.

  // delete by filter: FAILED and COMPLETED, each on request.
  r = RunIn(dir, {"delete", "--status=failed"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "deleted 1 task (FAILED): 2\n");
  r = RunIn(dir, {"delete", "--status=completed", "--type=a"});
  EXPECT_EQ(r.out, "deleted 1 task (COMPLETED of type \"a\"): 4\n");
  EXPECT_EQ(RunIn(dir, {"get", "2"}).code, kExitFailed);
  EXPECT_EQ(RunIn(dir, {"get", "4"}).code, kExitFailed);
  EXPECT_THAT(RunIn(dir, {"stats"}).out, HasSubstr("tasks: 3\n"));

  // The single-id forms still work.
  EXPECT_EQ(RunIn(dir, {"cancel", "5"}).out, "task 5 cancelled\n");
  EXPECT_EQ(RunIn(dir, {"delete", "5"}).out, "task 5 deleted\n");

  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"retry"},
           {"delete"},
           {"retry", "--status=completed"},
           {"retry", "--status=pending"},
           {"delete", "--status=claimed"},
           {"retry", "1", "--status=failed"},
           {"delete", "--type=a"},
           {"retry", "--status=failed", "--older_than=-1h"},
           {"retry", "--status=failed", "--limit=0"},
       }) {
    r = RunIn(dir, args);
    EXPECT_EQ(r.code, kExitUsage) << absl::StrJoin(args, " ");
    EXPECT_THAT(r.err, HasSubstr("for usage")) << absl::StrJoin(args, " ");
  }
}

TEST_F(TaskwalCliTest, PauseAndResumeATypeDurably) {
  const std::string dir = Populate("db");
  CliResult r = RunIn(dir, {"pause", "a"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "type \"a\" paused; paused types: 1\n");
  EXPECT_EQ(RunIn(dir, {"pause", "a"}).code, kExitOk);  // Idempotent.
  r = RunIn(dir, {"--json", "pause", "b\x1b[31m"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"paused_types\":[\"a\",\"b\\u001b[31m\"]"));
  // stats (read-only, a new process) shows them, escaped.
  r = RunIn(dir, {"stats"});
  EXPECT_THAT(r.out, HasSubstr("paused_types: \"a\" \"b\\x1b[31m\"\n"));
  {
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(Options(dir));
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_EQ(*(*e)->PausedTypes(),
              (std::vector<std::string>{"a", "b\x1b[31m"}));
  }
  r = RunIn(dir, {"resume", "b\x1b[31m"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(RunIn(dir, {"stats"}).out, HasSubstr("paused_types: \"a\"\n"));
  EXPECT_EQ(RunIn(dir, {"pause"}).code, kExitUsage);
  EXPECT_EQ(RunIn(dir, {"pause", ""}).code, kExitUsage);
  EXPECT_EQ(RunIn(dir, {"resume", "a", "b"}).code, kExitUsage);
}

TEST_F(TaskwalCliTest, ScheduleUnscheduleAndSchedules) {
  const std::string dir = Populate("db");
  CliResult r = RunIn(dir, {"schedule", "nightly", "--cron=0 3 * * *",
                            "--time_zone=Europe/Berlin", "--type=report",
                            "--payload=p", "--catch_up"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("schedule \"nightly\": cron \"0 3 * * *\" in "
                               "\"Europe/Berlin\", type \"report\", catches "
                               "up; next "));
  r = RunIn(dir, {"--json", "schedule", "tick\x1b]0;x\x07", "--every=90s",
                  "--start=2030-01-01T00:00:00Z", "--grace=5m"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"next_due_micros\":\"1893456000000000\""));
  EXPECT_THAT(r.out, HasSubstr("\"misfire_grace_micros\":\"300000000\""));
  // schedules (read-only) lists both, names escaped.
  r = RunIn(dir, {"schedules"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"tick\\x1b]0;x\\x07\": every 1m30s from "
                               "2030-01-01T00:00:00Z"));
  EXPECT_THAT(r.out, HasSubstr("2 schedules\n"));
  {
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Open(Options(dir));
    ASSERT_TRUE(e.ok()) << e.status();
    absl::StatusOr<Schedule> s = (*e)->GetSchedule("nightly");
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->task_template().payload(), "p");
    EXPECT_EQ(s->missed(), Schedule::MISSED_CATCH_UP);
  }
  r = RunIn(dir, {"unschedule", "nightly"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, "schedule \"nightly\" deleted; its tasks stay\n");
  EXPECT_EQ(RunIn(dir, {"unschedule", "nightly"}).code, kExitFailed);
  EXPECT_THAT(RunIn(dir, {"schedules"}).out, HasSubstr("1 schedule\n"));
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"schedule", "x"},
           {"schedule", "x", "--cron=@daily", "--every=1h"},
           {"schedule", "x", "--cron=61 * * * *"},
           {"schedule", "x", "--cron=@daily", "--time_zone=Nowhere/X"},
           {"schedule", "x", "--every=0s"},
           {"schedule", "x", "--every=1h", "--start=yesterday"},
           {"schedule", "x", "--every=1h", "--grace=-1s"},
           {"schedule", "", "--every=1h"},
           {"unschedule"},
       }) {
    r = RunIn(dir, args);
    EXPECT_EQ(r.code, kExitUsage) << absl::StrJoin(args, " ") << r.err;
  }
  EXPECT_THAT(RunIn(dir, {"schedules"}).out, HasSubstr("1 schedule\n"));
}

TEST_F(TaskwalCliTest, SalvageAsksForYesThenSetsTheDamageAside) {
  const std::string dir = Populate("db");
  CliResult r = RunIn(dir, {"salvage"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, HasSubstr("nothing to salvage"));
  // A running engine holds it: salvage --yes waits for it like any write.
  {
    absl::StatusOr<std::unique_ptr<Engine>> held = Engine::Open(Options(dir));
    ASSERT_TRUE(held.ok()) << held.status();
    EXPECT_EQ(RunIn(dir, {"salvage", "--yes"}).code, kExitLocked);
    EXPECT_EQ(RunIn(dir, {"salvage"}).code, kExitOk);  // Reads only.
    ASSERT_TRUE((*held)->Close().ok());
  }

  const std::string segment = wal::SegmentFileName(1);
  const std::string path = absl::StrCat(dir, "/", segment);
  const std::vector<uint64_t> offsets = RecordOffsets(path);
  ASSERT_EQ(offsets.size(), 10u);
  // One payload byte of the 6th record: valid records follow it.
  FlipPayloadByte(path, offsets[5]);
  const std::map<std::string, std::string> before = DirContents(dir);

  // Without --yes: what is wrong, how to go on, and nothing changed.
  r = RunIn(dir, {"salvage"});
  EXPECT_EQ(r.code, kExitDamage) << r.err;
  EXPECT_THAT(r.out, AllOf(HasSubstr(absl::StrCat(segment, " offset ",
                                                  offsets[5], ": corruption")),
                           HasSubstr("Nothing was changed"),
                           HasSubstr("salvage --yes")));
  r = RunIn(dir, {"salvage", "--json"});
  EXPECT_EQ(r.code, kExitDamage);
  JsonValue dry = ParseObject(r.out);
  EXPECT_FALSE(Field(dry, "salvaged").boolean);
  EXPECT_EQ(Field(dry, "problems").array.size(), 1u);
  EXPECT_EQ(DirContents(dir), before);
  EXPECT_EQ(RunIn(dir, {"stats"}).code, kExitDamage);

  r = RunIn(dir, {"salvage", "--yes"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_THAT(r.out, AllOf(HasSubstr("opened "), HasSubstr(" with salvage: "),
                           HasSubstr("salvage: ")));
  EXPECT_EQ(RunIn(dir, {"stats"}).code, kExitOk);
  EXPECT_EQ(RunIn(dir, {"verify"}).code, kExitOk);
  r = RunIn(dir, {"salvage", "--yes", "--json"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(Field(ParseObject(r.out), "salvaged").boolean);
}

TEST_F(TaskwalCliTest, VersionIsPrinted) {
  CliResult r = Run({"--version"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_EQ(r.out, absl::StrCat("taskwal ", TASKWAL_VERSION,
                                " (data directory format ", wal::kFormatVersion,
                                ")\n"));
  EXPECT_EQ(Run({"stats", "--version"}).out, r.out);
  r = Run({"--json", "--version"});
  JsonValue v = ParseObject(r.out);
  EXPECT_EQ(Field(v, "version").string, TASKWAL_VERSION);
  EXPECT_EQ(Field(v, "format_version").number, wal::kFormatVersion);
  EXPECT_THAT(Run({"--help"}).out, HasSubstr("--version"));
}

// Every id, LSN, count and offset under --json is a string (protobuf's
// JSON mapping of a 64-bit integer); walks a document for the known names.
void ExpectIdsAreStrings(const JsonValue& v, const std::string& where) {
  static const auto* const kNames = new std::vector<std::string>{
      "id",         "task_id",  "next_cursor", "lsn",
      "leader_lsn", "offset",   "claim_token", "changed",
      "tasks",      "last_lsn", "snapshot_lsn"};
  for (const auto& [name, value] : v.object) {
    if (std::find(kNames->begin(), kNames->end(), name) != kNames->end() &&
        value.type != JsonValue::Type::kArray) {
      EXPECT_EQ(value.type, JsonValue::Type::kString) << where << ": " << name;
    }
    if (name == "task_ids") {
      for (const JsonValue& id : value.array) {
        EXPECT_EQ(id.type, JsonValue::Type::kString) << where << ": task_ids";
      }
    }
    ExpectIdsAreStrings(value, where);
  }
  for (const JsonValue& item : v.array) ExpectIdsAreStrings(item, where);
}

TEST_F(TaskwalCliTest, JsonIdsAreStringsAndErrorsAreJson) {
  const std::string dir = Populate("db");
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"stats"},
           {"list"},
           {"get", "1"},
           {"history", "4"},
           {"verify"},
           {"dump"},
           {"submit", "--key=new"},
           {"retry", "4"},
           {"cancel", "5"},
           {"delete", "5"},
           {"delete", "--status=completed", "--dry_run"},
           {"snapshot"},
           {"salvage"}}) {
    std::vector<std::string> json_args = args;
    json_args.push_back("--json");
    CliResult r = RunIn(dir, json_args);
    EXPECT_EQ(r.code, kExitOk) << args[0] << ": " << r.out << r.err;
    EXPECT_EQ(r.err, "") << args[0];
    for (absl::string_view line :
         absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
      std::optional<JsonValue> v = ParseJson(line);
      ASSERT_TRUE(v.has_value()) << args[0] << ": " << line;
      EXPECT_EQ(v->Find("error"), nullptr) << line;
      ExpectIdsAreStrings(*v, args[0]);
    }
  }
  // The stats fields of the text and of the JSON are the same.
  std::vector<std::string> text_names;
  for (absl::string_view line :
       absl::StrSplit(RunIn(dir, {"stats"}).out, '\n', absl::SkipEmpty())) {
    line = absl::StripLeadingAsciiWhitespace(line);
    // The rows under "types:" name a task type each, not a field.
    if (absl::StartsWith(line, "recovery") || absl::StartsWith(line, "\"")) {
      continue;
    }
    text_names.emplace_back(line.substr(0, line.find(':')));
  }
  std::vector<std::string> json_names;
  for (const auto& [name, value] :
       ParseObject(RunIn(dir, {"stats", "--json"}).out).object) {
    if (name != "recovery") json_names.push_back(name);
  }
  EXPECT_EQ(json_names, text_names);

  // Failures: one JSON object on stdout, with code and exit status.
  struct Case {
    std::vector<std::string> args;
    std::string code;
    int exit_status;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--data_dir=" + dir, "get", "99"},
       "NOT_FOUND",
       kExitFailed,
       "task 99 not found"},
      {{"--data_dir=" + dir, "retry", "1"},
       "FAILED_PRECONDITION",
       kExitFailed,
       ""},
      {{"--data_dir=" + dir, "bogus"},
       "INVALID_ARGUMENT",
       kExitUsage,
       "unknown command \"bogus\""},
      {{"--data_dir=" + dir, "list", "--limit=0"},
       "INVALID_ARGUMENT",
       kExitUsage,
       "--limit must be in"},
      {{"--bogus"}, "INVALID_ARGUMENT", kExitUsage, "unknown flag --bogus"},
      {{"--data_dir=" + root_ + "/none", "stats"},
       "NOT_FOUND",
       kExitFailed,
       "does not exist"},
      {{"--data_dir=" + root_, "stats"},
       "FAILED_PRECONDITION",
       kExitNotDataDir,
       "is not a taskwal data directory"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = c.args;
    args.push_back("--json");
    CliResult r = Run(args);
    EXPECT_EQ(r.code, c.exit_status) << absl::StrJoin(args, " ");
    ExpectError(r, args, c.code, c.exit_status, c.message);
  }

  // A held directory and a damaged one.
  {
    absl::StatusOr<std::unique_ptr<Engine>> held = Engine::Open(Options(dir));
    ASSERT_TRUE(held.ok()) << held.status();
    const std::vector<std::string> args = {"--data_dir=" + dir, "--json",
                                           "submit", "--key=x"};
    CliResult r = Run(args);
    EXPECT_EQ(r.code, kExitLocked);
    ExpectError(r, args, "UNAVAILABLE", kExitLocked, "locked");
    ASSERT_TRUE((*held)->Close().ok());
  }
  const std::string damaged = Populate("damaged");
  const std::string path = absl::StrCat(damaged, "/", wal::SegmentFileName(1));
  FlipPayloadByte(path, RecordOffsets(path)[5]);
  const std::vector<std::string> args = {"--data_dir=" + damaged, "stats",
                                         "--json"};
  CliResult r = Run(args);
  EXPECT_EQ(r.code, kExitDamage);
  ExpectError(r, args, "DATA_LOSS", kExitDamage, "is damaged");
  r = RunIn(damaged, {"dump", "--json"});
  EXPECT_EQ(r.code, kExitDamage);
  EXPECT_EQ(r.err, "");
  int errors = 0;
  for (absl::string_view line :
       absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
    std::optional<JsonValue> v = ParseJson(line);
    ASSERT_TRUE(v.has_value()) << line;
    if (const JsonValue* error = v->Find("error"); error != nullptr) {
      ++errors;
      EXPECT_EQ(Field(*error, "code").string, "DATA_LOSS");
    }
  }
  EXPECT_EQ(errors, 1);
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

// The CLI opens with the options the directory's owner stored there: what
// the owner allows (5000 attempts), the CLI allows; what the owner refuses
// (a type longer than its limit), the CLI refuses; and a write through the
// CLI keeps the owner's longer history.
TEST_F(TaskwalCliTest, CommandsUseTheOwnersStoredOptions) {
  const std::string dir = root_ + "/owned";
  EngineOptions owner = Options(dir);
  owner.max_max_attempts = 5000;
  owner.max_type_bytes = 8;
  {
    absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(owner);
    ASSERT_TRUE(engine.ok()) << engine.status();
    ASSERT_TRUE((*engine)->Close().ok());
  }
  CliResult r = RunIn(dir, {"submit", "--key=many", "--max_attempts=5000"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  r = RunIn(dir, {"submit", "--key=long", "--type=ninechars"});
  EXPECT_NE(r.code, kExitOk);
  EXPECT_THAT(r.err, HasSubstr("the limit is 8"));
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(owner);
  ASSERT_TRUE(engine.ok()) << engine.status();
  EXPECT_EQ((*engine)->GetByIdempotencyKey("many")->max_attempts(), 5000u);
}

}  // namespace
}  // namespace taskwal::tools
