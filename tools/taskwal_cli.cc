#include "tools/taskwal_cli.h"

#include <locale.h>
#include <wchar.h>

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/http_engine.h"
#include "engine/transition.pb.h"
#include "engine/verify.h"
#include "google/protobuf/message.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "taskwal/engine.h"
#include "taskwal/metrics.h"
#include "taskwal/task.pb.h"
#include "taskwal/version.h"
#include "tools/taskwal_args.h"
#include "tools/taskwal_cli.pb.h"
#include "tools/taskwal_progress.h"
#include "wal/data_dir.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#ifdef TASKWAL_CLI_JETSTREAM
#include "taskwal/jetstream.h"
#endif

namespace taskwal::tools {
namespace {

// --- Task text on a terminal. ------------------------------------------------

// The character classes of glibc's built-in C.UTF-8 locale (no locale
// files needed), whatever locale the process runs in; nullptr where the C
// library has no such locale.
locale_t Utf8Locale() {
  static const locale_t locale =
      ::newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(nullptr));
  return locale;
}

// The columns a terminal gives code point `c`, as wcwidth() says in
// C.UTF-8 (wide East Asian characters take 2, combining marks 0); -1: not
// printable. Without that locale every code point takes one column.
int CodePointColumns(char32_t c) {
  const locale_t utf8 = Utf8Locale();
  if (utf8 == nullptr) return 1;
  // uselocale() sets this thread's locale only.
  const locale_t previous = ::uselocale(utf8);
  const int columns = ::wcwidth(static_cast<wchar_t>(c));
  ::uselocale(previous);
  return columns;
}

// The well-formed UTF-8 sequence at the front of a string: its code point
// and byte length.
struct Utf8Character {
  char32_t code_point = 0;
  size_t length = 0;  // 0: the bytes there are not well-formed UTF-8.
};

// REQUIRES: !text.empty().
Utf8Character DecodeUtf8(absl::string_view text) {
  const auto byte = [text](size_t i) {
    return static_cast<unsigned char>(text[i]);
  };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return {lead, 1};
  size_t length;
  char32_t c;
  char32_t min;  // Anything below is an overlong form.
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    c = lead & 0x1f;
    min = 0x80;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    c = lead & 0x0f;
    min = 0x800;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    c = lead & 0x07;
    min = 0x10000;
  } else {
    return {};
  }
  if (text.size() < length) return {};
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xc0) != 0x80) return {};
    c = (c << 6) | (byte(i) & 0x3f);
  }
  if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return {};
  return {c, length};
}

// Characters that print nothing themselves but reorder the text around
// them (the bidirectional controls: a key could show reversed, as in the
// "Trojan Source" attack), hide in it (zero-width space, word joiner and
// the invisible operators, byte order mark) or break its line (U+2028,
// U+2029).
bool IsHiddenFormatCharacter(char32_t c) {
  return c == 0x061c || c == 0x200b || c == 0x200e || c == 0x200f ||
         (c >= 0x2028 && c <= 0x202e) || (c >= 0x2060 && c <= 0x2069) ||
         c == 0xfeff;
}

// The one rule for showing task text on a terminal (EscapeForTerminal in
// taskwal_cli.h describes it); Quote, TableCell and EscapeForTerminal
// build on it. Takes the character at the front of *text (a single byte
// where the text is not well-formed UTF-8) off it and appends its terminal
// form to *out. `quote` ('"', or 0 for none) is escaped too, for text
// shown in quotes. Returns the columns appended. REQUIRES: !text->empty().
size_t AppendEscapedCharacter(absl::string_view* text, char quote,
                              std::string* out) {
  const Utf8Character ch = DecodeUtf8(*text);
  if (ch.length == 0) {
    absl::StrAppendFormat(out, "\\x%02x",
                          static_cast<unsigned char>(text->front()));
    text->remove_prefix(1);
    return 4;
  }
  const absl::string_view bytes = text->substr(0, ch.length);
  text->remove_prefix(ch.length);
  const char32_t c = ch.code_point;
  if (c == '\\' || (quote != 0 && c == static_cast<char32_t>(quote))) {
    out->push_back('\\');
    out->push_back(static_cast<char>(c));
    return 2;
  }
  switch (c) {
    case '\n':
      out->append("\\n");
      return 2;
    case '\r':
      out->append("\\r");
      return 2;
    case '\t':
      out->append("\\t");
      return 2;
  }
  if (c < 0x20 || c == 0x7f) {
    absl::StrAppendFormat(out, "\\x%02x", static_cast<uint32_t>(c));
    return 4;
  }
  if (c < 0x7f) {
    out->append(bytes.data(), bytes.size());
    return 1;
  }
  const int columns =
      c <= 0x9f || IsHiddenFormatCharacter(c) ? -1 : CodePointColumns(c);
  if (columns >= 0) {
    out->append(bytes.data(), bytes.size());
    return static_cast<size_t>(columns);
  }
  if (c <= 0xffff) {
    absl::StrAppendFormat(out, "\\u%04x", static_cast<uint32_t>(c));
    return 6;
  }
  absl::StrAppendFormat(out, "\\U%08x", static_cast<uint32_t>(c));
  return 10;
}

// Task text escaped by the rule above, cut to at most `max_columns`
// columns: a cut ends in "…" (an escape is kept whole or cut off whole).
// `quote` as for AppendEscapedCharacter. Sets *columns to the columns of
// the result and *cut to whether it was cut.
std::string EscapeAndCut(absl::string_view text, size_t max_columns, char quote,
                         size_t* columns, bool* cut) {
  std::string shown;
  *columns = 0;
  *cut = false;
  // The longest part that leaves a column for the "…" of a cut.
  size_t cut_bytes = 0;
  size_t cut_columns = 0;
  std::string piece;
  while (!text.empty()) {
    piece.clear();
    const size_t piece_columns = AppendEscapedCharacter(&text, quote, &piece);
    if (*columns + piece_columns > max_columns) {
      shown.resize(cut_bytes);
      shown += "\xe2\x80\xa6";  // "…" (U+2026), one column.
      *columns = cut_columns + 1;
      *cut = true;
      break;
    }
    shown += piece;
    *columns += piece_columns;
    if (*columns < max_columns) {
      cut_bytes = shown.size();
      cut_columns = *columns;
    }
  }
  return shown;
}

// Task text in double quotes, for one-line fields ("key: \"...\""), cut
// after `max_columns` columns (see EscapeAndCut). Sets *cut, when given,
// to whether it was cut.
std::string Quote(absl::string_view text,
                  size_t max_columns = std::numeric_limits<size_t>::max(),
                  bool* cut = nullptr) {
  size_t columns;
  bool was_cut;
  std::string out = absl::StrCat(
      "\"", EscapeAndCut(text, max_columns, '"', &columns, &was_cut), "\"");
  if (cut != nullptr) *cut = was_cut;
  return out;
}

// Task text escaped into a table column `width` columns wide: padded with
// spaces, or cut to fit with "…" as its last column, so that the columns
// after it stay in place. REQUIRES: width >= 1.
std::string TableCell(absl::string_view text, size_t width) {
  size_t columns;
  bool cut;
  std::string cell = EscapeAndCut(text, width, 0, &columns, &cut);
  cell.append(width - columns, ' ');
  return cell;
}

// The columns `text` takes once escaped.
size_t EscapedColumns(absl::string_view text) {
  size_t columns = 0;
  std::string scratch;
  while (!text.empty()) {
    scratch.clear();
    columns += AppendEscapedCharacter(&text, 0, &scratch);
  }
  return columns;
}

// Protobuf's text format (single line, as ShortDebugString) with every
// string and bytes field quoted by the rule above. Protobuf's own escaping
// passes the bytes of string fields through as they are, C1 controls and
// bidirectional overrides included.
class TerminalTextPrinter
    : public google::protobuf::TextFormat::FastFieldValuePrinter {
 public:
  void PrintString(const std::string& value,
                   google::protobuf::TextFormat::BaseTextGenerator* generator)
      const override {
    generator->PrintString(Quote(value));
  }
  void PrintBytes(const std::string& value,
                  google::protobuf::TextFormat::BaseTextGenerator* generator)
      const override {
    generator->PrintString(Quote(value));
  }
};

std::unique_ptr<google::protobuf::TextFormat::Printer> NewTextPrinter() {
  auto printer = std::make_unique<google::protobuf::TextFormat::Printer>();
  printer->SetSingleLineMode(true);
  printer->SetDefaultFieldValuePrinter(new TerminalTextPrinter());  // Owned.
  return printer;
}

std::string ShortText(const google::protobuf::TextFormat::Printer& printer,
                      const google::protobuf::Message& message) {
  std::string text;
  printer.PrintToString(message, &text);
  // Single-line mode leaves a space at the end.
  if (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

// --- Output helpers. ---------------------------------------------------------

// A message in protobuf's JSON mapping, with the .proto field names and
// every field present: the one form of all --json output
// (tools/taskwal_cli.proto).
std::string ProtoJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  if (google::protobuf::util::MessageToJsonString(message, &json, options)
          .ok()) {
    return json;
  }
  // Only a string field that is not UTF-8 gets here (the engine accepts
  // only UTF-8 text, so a damaged record); say so in JSON.
  ErrorOutput error;
  error.mutable_error()->set_code(
      absl::StatusCodeToString(absl::StatusCode::kDataLoss));
  error.mutable_error()->set_message(
      absl::StrCat(message.GetDescriptor()->name(),
                   " holds text that is not UTF-8: it cannot be shown as "
                   "JSON"));
  error.mutable_error()->set_exit_status(kExitDamage);
  json.clear();
  if (!google::protobuf::util::MessageToJsonString(error, &json, options)
           .ok()) {
    json = "{\"error\":{}}";  // Unreachable: ErrorOutput here is ASCII.
  }
  return json;
}

// "2023-11-14T22:13:20.5Z"; "-" for 0 (unset).
std::string FormatMicros(int64_t micros) {
  if (micros == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", absl::FromUnixMicros(micros),
                          absl::UTCTimeZone());
}

// "PENDING"; "-" for no status (before a task existed).
std::string StatusName(TaskStatus status) {
  return status == TASK_STATUS_UNSPECIFIED ? "-" : TaskStatus_Name(status);
}

std::string Plural(uint64_t n, absl::string_view word) {
  return absl::StrCat(n, " ", word, n == 1 ? "" : "s");
}

RecoveryOutput RecoveryJson(const RecoveryReport& recovery) {
  RecoveryOutput output;
  output.set_snapshot_lsn(recovery.snapshot_lsn);
  output.set_records_replayed(recovery.records_replayed);
  output.set_last_lsn(recovery.last_lsn);
  output.set_truncated_bytes(recovery.truncated_bytes);
  output.set_duration_seconds(absl::ToDoubleSeconds(recovery.duration));
  for (const std::string& note : recovery.notes) output.add_notes(note);
  return output;
}

ProblemOutput ProblemJson(const engine::Problem& p) {
  ProblemOutput output;
  output.set_file(p.file);
  output.set_offset(p.offset);
  output.set_kind(std::string(engine::ProblemKindName(p.kind)));
  output.set_message(p.message);
  output.set_valid_records_follow(p.valid_records_follow);
  output.set_repaired_by_open(p.repaired_by_open);
  return output;
}

// --- Commands. ---------------------------------------------------------------

// How a command touches the data directory.
enum class Access {
  kRead,   // An engine opened read_only: no lock, nothing changed.
  kWrite,  // An engine opened normally: takes the lock.
  kFiles,  // Reads the files itself, without an engine.
  // salvage: opens the engine itself, read-only for a dry run, with
  // EngineOptions::salvage (taking the lock) for the real one.
  kSalvage,
};

struct Context {
  std::ostream& out;
  std::ostream& err;
  const CliOptions& options;
  Env* env;
  std::string command;
  std::string data_dir;
  bool json = false;
  // --server: the URL of a running taskwald whose engine the command uses
  // (HttpEngine) instead of opening data_dir. Empty: data_dir.
  std::string server;
  // --nats: the NATS servers of a taskwal cluster on JetStream whose
  // engine the command uses (ConnectJetStreamEngine). Empty: not.
  std::string nats;
  // --partitions of a command that may create the directory; 0: the
  // directory's own count (kDefaultPartitions for a new one).
  uint32_t partitions = 0;
  Engine* engine = nullptr;  // For kRead and kWrite commands.
};

struct Command {
  absl::string_view name;
  absl::string_view args;  // After the command name, for usage lines.
  absl::string_view summary;
  absl::string_view details;
  std::vector<FlagSpec> flags;
  Access access;
  size_t min_positional;
  size_t max_positional;
  int (*run)(Context& ctx, const ParsedArgs& args);
};

const std::vector<FlagSpec>& GlobalFlags() {
  static const auto* const flags = new std::vector<FlagSpec>{
      {"data_dir", "DIR",
       "the data directory (this, --server or --nats is required)"},
      {"server", "URL",
       "a running taskwald (http://HOST:PORT): act through its HTTP API "
       "instead of opening a directory"},
      {"nats", "URLS",
       "NATS servers (nats://HOST:PORT, comma-separated) of a taskwal "
       "cluster on JetStream: act through its leader (with --cluster)"},
      {"cluster", "NAME", "with --nats: the cluster's name"},
      {"shards", "N", "with --nats: the cluster's shard count (default 1)"},
      {"token_file", "FILE",
       "with --server: the bearer token, read from FILE (the first line)"},
      {"token", "TOKEN",
       "with --server: the bearer token (visible to other users in ps: "
       "prefer --token_file)"},
      {"json", "", "machine-readable output (JSON), errors included"},
      {"help", "", "show help and exit"},
      {"version", "", "print the version and exit"},
  };
  return *flags;
}

// Reports a failure and returns `exit_status`. Under --json: an
// ErrorOutput on stdout ({"error":{"code":"NOT_FOUND","message":...,
// "exit_status":3}}). Otherwise on stderr: "taskwal COMMAND: MESSAGE",
// escaped, then `hint` (the tool's own advice, whole lines, shown only as
// text; what it echoes of the input is escaped by the caller).
// code_in_text: the text starts with the code's name ("NOT_FOUND: ...").
int ReportError(Context& ctx, absl::StatusCode code, int exit_status,
                absl::string_view message, absl::string_view hint = "",
                bool code_in_text = false) {
  if (ctx.json) {
    ErrorOutput output;
    Error* error = output.mutable_error();
    error->set_code(absl::StatusCodeToString(code));
    error->set_message(std::string(message));
    error->set_exit_status(exit_status);
    ctx.out << ProtoJson(output) << "\n";
    return exit_status;
  }
  ctx.err << "taskwal" << (ctx.command.empty() ? "" : " ") << ctx.command
          << ": "
          << EscapeForTerminal(
                 code_in_text ? absl::StrCat(absl::StatusCodeToString(code),
                                             ": ", message)
                              : std::string(message))
          << "\n"
          << hint;
  return exit_status;
}

// A usage error: the command line is wrong.
int UsageError(Context& ctx, absl::string_view message) {
  return ReportError(
      ctx, absl::StatusCode::kInvalidArgument, kExitUsage, message,
      ctx.command.empty()
          ? std::string("Run 'taskwal --help' for usage.\n")
          : absl::StrCat("Run 'taskwal help ", ctx.command, "' for usage.\n"));
}

// Reports a failed call and returns its exit status.
int CallError(Context& ctx, const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      return UsageError(ctx, status.message());
    case absl::StatusCode::kDataLoss:
      if (!ctx.server.empty() || !ctx.nats.empty()) {
        return ReportError(ctx, status.code(), kExitDamage, status.message(),
                           "", /*code_in_text=*/true);
      }
      return ReportError(
          ctx, status.code(), kExitDamage,
          absl::StrCat(ctx.data_dir, " is damaged: ", status.message()),
          absl::StrCat(
              "Run 'taskwal --data_dir=", EscapeForTerminal(ctx.data_dir),
              " verify' to list every problem.\n"));
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return ReportError(
          ctx, status.code(), kExitFailed, status.message(),
          ctx.server.empty()
              ? ""
              : "Give the daemon's token with --token_file=FILE (its admin "
                "token for commands that change tasks).\n",
          /*code_in_text=*/true);
    default:
      return ReportError(ctx, status.code(), kExitFailed, status.message(), "",
                         /*code_in_text=*/true);
  }
}

// A flag's value as a number, or a usage error.
template <typename T>
std::optional<T> NumberFlag(Context& ctx, const ParsedArgs& args,
                            absl::string_view name, T fallback, T min, T max,
                            int* exit_code) {
  if (!args.Has(name)) return fallback;
  const std::string flag = absl::StrCat("--", name);
  if constexpr (std::is_signed_v<T>) {
    absl::StatusOr<int64_t> v = ParseInt64(flag, args.Get(name));
    if (v.ok() && *v >= min && *v <= max) return static_cast<T>(*v);
    *exit_code = UsageError(
        ctx, v.ok() ? absl::StrCat(flag, " must be in [", min, ", ", max, "]")
                    : std::string(v.status().message()));
  } else {
    absl::StatusOr<uint64_t> v = ParseUint64(flag, args.Get(name));
    if (v.ok() && *v >= min && *v <= max) return static_cast<T>(*v);
    *exit_code = UsageError(
        ctx, v.ok() ? absl::StrCat(flag, " must be in [", min, ", ", max, "]")
                    : std::string(v.status().message()));
  }
  return std::nullopt;
}

std::optional<uint64_t> TaskIdArg(Context& ctx, const std::string& arg,
                                  int* exit_code) {
  uint64_t id;
  if (!absl::SimpleAtoi(arg, &id) || id == 0 || arg[0] == '+' ||
      arg[0] == '-') {
    *exit_code = UsageError(
        ctx,
        absl::StrCat("\"", arg, "\" is not a task id (a positive number)"));
    return std::nullopt;
  }
  return id;
}

int RunStats(Context& ctx, const ParsedArgs& args) {
  const bool prometheus = args.GetBool("prometheus");
  if (prometheus && ctx.json) {
    return UsageError(ctx, "--prometheus and --json exclude each other");
  }
  absl::StatusOr<EngineStats> stats = ctx.engine->Stats();
  if (!stats.ok()) return CallError(ctx, stats.status());
  absl::StatusOr<std::vector<std::string>> paused = ctx.engine->PausedTypes();
  if (!paused.ok()) return CallError(ctx, paused.status());
  const RecoveryReport recovery = ctx.engine->Recovery();
  const EngineStats& s = *stats;
  if (prometheus) {
    ctx.out << RenderPrometheus(s, recovery, absl::Now());
    return kExitOk;
  }
  const std::pair<absl::string_view, uint64_t> fields[] = {
      {"tasks", s.tasks},
      {"pending", s.pending},
      {"claimed", s.claimed},
      {"completed", s.completed},
      {"failed", s.failed},
      {"cancelled", s.cancelled},
      {"submitted", s.submitted},
      {"claims", s.claims},
      {"completions", s.completions},
      {"failed_attempts", s.failed_attempts},
      {"lease_expiries", s.lease_expiries},
      {"retries", s.retries},
      {"cancellations", s.cancellations},
      {"deletions", s.deletions},
      {"retention_removals", s.retention_removals},
      {"transitions", s.transitions},
      {"partitions", s.partitions},
      // Sums over the partitions (each counts its own LSNs): records since
      // the data began.
      {"last_lsn", s.last_lsn},
      {"last_snapshot_lsn", s.last_snapshot_lsn},
  };
  if (ctx.json) {
    StatsOutput output;
    // Each field of `fields` by its name in StatsOutput, which has them
    // all (a test holds the two lists together).
    const google::protobuf::Reflection* reflection = output.GetReflection();
    for (const auto& [name, value] : fields) {
      const google::protobuf::FieldDescriptor* field =
          output.GetDescriptor()->FindFieldByName(std::string(name));
      if (field == nullptr) continue;
      if (field->cpp_type() ==
          google::protobuf::FieldDescriptor::CPPTYPE_UINT32) {
        reflection->SetUInt32(&output, field, static_cast<uint32_t>(value));
      } else {
        reflection->SetUInt64(&output, field, value);
      }
    }
    *output.mutable_recovery() = RecoveryJson(recovery);
    for (const std::string& type : *paused) output.add_paused_types(type);
    output.set_schedules(s.schedules);
    for (const auto& [type, t] : s.by_type) {
      TypeStatsOutput* out = output.add_types();
      out->set_type(type);
      out->set_pending(t.pending);
      out->set_claimed(t.claimed);
      out->set_completed(t.completed);
      out->set_failed(t.failed);
      out->set_cancelled(t.cancelled);
      if (t.oldest_ready != absl::InfiniteFuture()) {
        out->set_oldest_ready_micros(absl::ToUnixMicros(t.oldest_ready));
      }
    }
    ctx.out << ProtoJson(output) << "\n";
    return kExitOk;
  }
  for (const auto& [name, value] : fields) {
    const bool by_status = name == "pending" || name == "claimed" ||
                           name == "completed" || name == "failed" ||
                           name == "cancelled";
    ctx.out << (by_status ? "  " : "") << name << ": " << value << "\n";
  }
  std::vector<std::string> shown;
  for (const std::string& type : *paused) shown.push_back(Quote(type));
  ctx.out << "paused_types: "
          << (shown.empty() ? "none" : absl::StrJoin(shown, " ")) << "\n";
  ctx.out << "schedules: " << s.schedules << "\n";
  // One line per type, its name quoted and escaped as paused_types are.
  const absl::Time now = absl::Now();
  ctx.out << "types: " << s.by_type.size() << "\n";
  for (const auto& [type, t] : s.by_type) {
    ctx.out << "  " << Quote(type) << ": pending " << t.pending << ", claimed "
            << t.claimed << ", completed " << t.completed << ", failed "
            << t.failed << ", cancelled " << t.cancelled << ", oldest ready "
            << (t.oldest_ready == absl::InfiniteFuture()
                    ? std::string("none")
                    : absl::StrCat("waited ",
                                   absl::FormatDuration(absl::Trunc(
                                       std::max(absl::ZeroDuration(),
                                                now - t.oldest_ready),
                                       absl::Seconds(1)))))
            << "\n";
  }
  ctx.out << "recovery: " << recovery.records_replayed
          << " records replayed after snapshot LSN " << recovery.snapshot_lsn
          << ", " << recovery.truncated_bytes << " bytes truncated, took "
          << absl::FormatDuration(recovery.duration) << "\n";
  for (const std::string& note : recovery.notes) {
    ctx.out << "recovery note: " << EscapeForTerminal(note) << "\n";
  }
  return kExitOk;
}

std::optional<TaskStatus> ParseStatus(absl::string_view name) {
  for (TaskStatus s : {PENDING, CLAIMED, COMPLETED, FAILED, CANCELLED}) {
    if (absl::EqualsIgnoreCase(name, TaskStatus_Name(s))) return s;
  }
  return std::nullopt;
}

int RunList(Context& ctx, const ParsedArgs& args) {
  int code = kExitOk;
  ListFilter filter;
  if (args.Has("status")) {
    filter.status = ParseStatus(args.Get("status"));
    if (!filter.status.has_value()) {
      return UsageError(
          ctx, absl::StrCat("unknown --status \"", args.Get("status"),
                            "\": use pending, claimed, completed, failed or "
                            "cancelled"));
    }
  }
  filter.type = args.Get("type");
  const std::optional<uint64_t> limit =
      NumberFlag<uint64_t>(ctx, args, "limit", 100, 1, 10000, &code);
  if (!limit.has_value()) return code;
  filter.limit = *limit;
  const std::optional<uint64_t> after = NumberFlag<uint64_t>(
      ctx, args, "after", 0, 0, std::numeric_limits<uint64_t>::max(), &code);
  if (!after.has_value()) return code;
  filter.after_id = *after;
  // The table shows neither payloads nor results: a page of large tasks
  // costs no more than one of small ones. --json shows them.
  filter.payloads = ctx.json;

  absl::StatusOr<ListPage> page = ctx.engine->List(filter);
  if (!page.ok()) return CallError(ctx, page.status());
  if (ctx.json) {
    ListOutput output;
    for (Task& t : page->tasks) *output.add_tasks() = std::move(t);
    output.set_next_cursor(page->next_cursor);
    ctx.out << ProtoJson(output) << "\n";
    return kExitOk;
  }
  // Every row keeps to one line and to the header's columns: the number
  // columns widen to the page's widest number, the type column to its
  // widest type up to kMaxTypeColumns (longer types are cut), and the key,
  // last, is cut after kMaxKeyColumns ('get ID' shows it whole).
  constexpr size_t kMaxTypeColumns = 32;
  constexpr size_t kMaxKeyColumns = 100;
  size_t id_columns = 10;
  size_t attempts_columns = 8;
  size_t priority_columns = 8;
  size_t type_columns = 16;
  auto attempts = [](const Task& t) {
    return absl::StrCat(t.attempts(), "/", t.max_attempts());
  };
  for (const Task& t : page->tasks) {
    id_columns = std::max(id_columns, absl::StrCat(t.id()).size());
    attempts_columns = std::max(attempts_columns, attempts(t).size());
    priority_columns =
        std::max(priority_columns, absl::StrCat(t.priority()).size());
    type_columns = std::max(
        type_columns, std::min(kMaxTypeColumns, EscapedColumns(t.type())));
  }
  ctx.out << absl::StrFormat("%-*s %-9s %-*s %*s  %-*s %s\n", id_columns, "ID",
                             "STATUS", attempts_columns, "ATTEMPTS",
                             priority_columns, "PRIORITY", type_columns, "TYPE",
                             "KEY");
  size_t key_columns;
  bool key_cut;
  for (const Task& t : page->tasks) {
    ctx.out << absl::StrFormat(
        "%-*d %-9s %-*s %*d  %s %s\n", id_columns, t.id(),
        TaskStatus_Name(t.status()), attempts_columns, attempts(t),
        priority_columns, t.priority(),
        TableCell(t.type().empty() ? "-" : t.type(), type_columns),
        EscapeAndCut(t.idempotency_key(), kMaxKeyColumns, 0, &key_columns,
                     &key_cut));
  }
  if (page->next_cursor != 0) {
    ctx.out << "next cursor: " << page->next_cursor
            << " (continue with --after=" << page->next_cursor << ")\n";
  } else {
    ctx.out << "next cursor: none (last page)\n";
  }
  return kExitOk;
}

// Free text (payloads, results, errors) is cut after this many columns in
// human-readable output, with a mark; --json shows it whole.
constexpr size_t kMaxTextColumns = 512;
// An error in a history line, which holds other fields before it.
constexpr size_t kMaxHistoryErrorColumns = 160;

// A field of free text that may be long: quoted and cut after
// kMaxTextColumns columns, followed by its size in bytes (always for
// payloads, which are bytes; for text, when it was cut).
std::string LongField(absl::string_view text, bool always_size) {
  bool cut;
  std::string shown = Quote(text, kMaxTextColumns, &cut);
  if (always_size || cut) {
    absl::StrAppend(&shown, " (", Plural(text.size(), "byte"),
                    cut ? ", cut: --json shows all" : "", ")");
  }
  return shown;
}

void PrintTask(std::ostream& out, const Task& t) {
  auto line = [&out](absl::string_view name, absl::string_view value) {
    out << absl::StrFormat("%-16s %s\n", absl::StrCat(name, ":"), value);
  };
  line("id", absl::StrCat(t.id()));
  line("idempotency_key", Quote(t.idempotency_key()));
  line("type", Quote(t.type()));
  line("status", TaskStatus_Name(t.status()));
  line("priority", absl::StrCat(t.priority()));
  line("attempts", absl::StrCat(t.attempts(), " of ", t.max_attempts()));
  line("created", FormatMicros(t.created_micros()));
  if (t.status() == PENDING && t.not_before_micros() != 0) {
    line("not_before", FormatMicros(t.not_before_micros()));
  }
  if (!t.claimed_by().empty()) {
    line("claimed_by", Quote(t.claimed_by()));
    line("claimed", FormatMicros(t.claimed_micros()));
  }
  if (t.status() == CLAIMED) {
    line("claim_token", absl::StrCat(t.claim_token()));
    line("lease_deadline", FormatMicros(t.lease_deadline_micros()));
  }
  if (t.depends_on_size() > 0) {
    line("depends_on", absl::StrJoin(t.depends_on(), ", "));
    line("waiting_for", t.waiting_for_size() > 0
                            ? absl::StrJoin(t.waiting_for(), ", ")
                            : std::string("(none)"));
    line("on_dep_failure",
         t.on_dependency_failure() == DEPENDENCY_FAILURE_CANCEL ? "cancel"
                                                                : "fail");
  }
  if (t.finished_micros() != 0)
    line("finished", FormatMicros(t.finished_micros()));
  if (!t.last_error().empty()) {
    line("last_error", LongField(t.last_error(), /*always_size=*/false));
  }
  if (!t.result().empty()) {
    line("result", LongField(t.result(), /*always_size=*/false));
  }
  line("payload", LongField(t.payload(), /*always_size=*/true));
}

int RunGet(Context& ctx, const ParsedArgs& args) {
  const bool by_key = args.Has("key");
  if (by_key == !args.positional.empty()) {
    return UsageError(ctx, "give either a task id or --key=KEY");
  }
  absl::StatusOr<Task> task;
  if (by_key) {
    task = ctx.engine->GetByIdempotencyKey(args.Get("key"));
  } else {
    int code = kExitOk;
    const std::optional<uint64_t> id =
        TaskIdArg(ctx, args.positional[0], &code);
    if (!id.has_value()) return code;
    task = ctx.engine->Get(*id);
  }
  if (!task.ok()) return CallError(ctx, task.status());
  if (ctx.json) {
    ctx.out << ProtoJson(*task) << "\n";
  } else {
    PrintTask(ctx.out, *task);
  }
  return kExitOk;
}

int RunHistory(Context& ctx, const ParsedArgs& args) {
  int code = kExitOk;
  const std::optional<uint64_t> id = TaskIdArg(ctx, args.positional[0], &code);
  if (!id.has_value()) return code;
  absl::StatusOr<std::vector<HistoryEntry>> history = ctx.engine->History(*id);
  if (!history.ok()) return CallError(ctx, history.status());
  if (ctx.json) {
    HistoryOutput output;
    output.set_task_id(*id);
    for (HistoryEntry& h : *history) *output.add_history() = std::move(h);
    ctx.out << ProtoJson(output) << "\n";
    return kExitOk;
  }
  for (const HistoryEntry& h : *history) {
    std::string line = absl::StrFormat(
        "%-27s %-14s %9s -> %-9s attempt %d", FormatMicros(h.time_micros()),
        HistoryEntry::Event_Name(h.event()), StatusName(h.from()),
        StatusName(h.to()), h.attempt());
    if (!h.worker_id().empty()) {
      absl::StrAppend(&line, "  worker ", Quote(h.worker_id()));
    }
    if (!h.error().empty()) {
      absl::StrAppend(&line, "  error ",
                      Quote(h.error(), kMaxHistoryErrorColumns));
    }
    ctx.out << line << "\n";
  }
  return kExitOk;
}

// The payload of --payload_file=PATH, or of standard input for "-". The
// file is the operator's, on the local file system, even when the data
// directory is on another Env. kInvalidArgument: more than a log record
// can hold (wal::kMaxRecordBytes), so that a runaway pipe is not read
// into memory whole.
absl::StatusOr<std::string> ReadPayloadFile(Context& ctx,
                                            const std::string& path) {
  if (path != "-") return Env::Default()->ReadFileToString(path);
  std::istream& in = ctx.options.in != nullptr ? *ctx.options.in : std::cin;
  std::string payload;
  char buffer[1 << 16];
  while (in) {
    in.read(buffer, sizeof(buffer));
    payload.append(buffer, static_cast<size_t>(in.gcount()));
    if (payload.size() > wal::kMaxRecordBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("standard input holds more than ", wal::kMaxRecordBytes,
                       " bytes, more than a task can hold"));
    }
  }
  if (in.bad()) return absl::UnknownError("reading standard input failed");
  return payload;
}

// --payload=P or --payload_file=F ('-': standard input) into *payload.
// Returns kExitOk, or the exit status of the error it reported.
int PayloadArg(Context& ctx, const ParsedArgs& args, std::string* payload) {
  if (args.Has("payload") && args.Has("payload_file")) {
    return UsageError(ctx, "--payload and --payload_file exclude each other");
  }
  *payload = args.Get("payload");
  if (!args.Has("payload_file")) return kExitOk;
  absl::StatusOr<std::string> read =
      ReadPayloadFile(ctx, args.Get("payload_file"));
  if (!read.ok()) {
    return ReportError(
        ctx, read.status().code(), kExitFailed,
        absl::StrCat("cannot read --payload_file: ", read.status().message()));
  }
  *payload = *std::move(read);
  return kExitOk;
}

int RunSubmit(Context& ctx, const ParsedArgs& args) {
  if (!args.Has("key") || args.Get("key").empty()) {
    return UsageError(ctx, "--key=KEY is required");
  }
  TaskSpec spec;
  spec.idempotency_key = args.Get("key");
  spec.type = args.Get("type");
  if (int code = PayloadArg(ctx, args, &spec.payload); code != kExitOk) {
    return code;
  }
  if (args.Has("not_before") && args.Has("delay")) {
    return UsageError(ctx, "--not_before and --delay exclude each other");
  }
  if (args.Has("not_before")) {
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, args.Get("not_before"),
                         &spec.not_before, &error)) {
      return UsageError(
          ctx,
          absl::StrCat("--not_before=\"", args.Get("not_before"),
                       "\" is not an RFC 3339 time such as "
                       "2030-01-02T15:04:05Z or 2030-01-02T16:04:05+01:00 (",
                       error, ")"));
    }
  }
  if (args.Has("delay")) {
    absl::Duration delay;
    if (!absl::ParseDuration(args.Get("delay"), &delay) ||
        delay < absl::ZeroDuration() || delay == absl::InfiniteDuration()) {
      return UsageError(
          ctx, absl::StrCat("--delay=\"", args.Get("delay"),
                            "\" is not a duration of 0 or more such as 90s, "
                            "15m or 2h30m"));
    }
    spec.not_before = absl::Now() + delay;
  }
  int code = kExitOk;
  const std::optional<int32_t> priority = NumberFlag<int32_t>(
      ctx, args, "priority", 0, std::numeric_limits<int32_t>::min(),
      std::numeric_limits<int32_t>::max(), &code);
  if (!priority.has_value()) return code;
  spec.priority = *priority;
  const std::optional<uint32_t> max_attempts =
      NumberFlag<uint32_t>(ctx, args, "max_attempts", 0, 0,
                           std::numeric_limits<uint32_t>::max(), &code);
  if (!max_attempts.has_value()) return code;
  spec.max_attempts = *max_attempts;
  if (args.Has("depends_on")) {
    spec.depends_on = absl::StrSplit(args.Get("depends_on"), ',');
  }
  if (args.Has("on_dependency_failure")) {
    const std::string policy = args.Get("on_dependency_failure");
    if (policy == "cancel") {
      spec.on_dependency_failure = DEPENDENCY_FAILURE_CANCEL;
    } else if (policy != "fail") {
      return UsageError(ctx, absl::StrCat("--on_dependency_failure=\"", policy,
                                          "\" is neither fail nor cancel"));
    }
  }

  absl::StatusOr<SubmitResult> result = ctx.engine->Submit(spec);
  if (!result.ok()) return CallError(ctx, result.status());
  if (ctx.json) {
    SubmitOutput output;
    output.set_task_id(result->task_id);
    output.set_deduplicated(result->deduplicated);
    ctx.out << ProtoJson(output) << "\n";
  } else if (result->deduplicated) {
    ctx.out << "task " << result->task_id << " already exists for key "
            << Quote(spec.idempotency_key) << " (deduplicated)\n";
  } else if (spec.not_before > absl::Now()) {
    ctx.out << "task " << result->task_id << " submitted, claimable from "
            << FormatMicros(absl::ToUnixMicros(spec.not_before)) << "\n";
  } else {
    ctx.out << "task " << result->task_id << " submitted\n";
  }
  return kExitOk;
}

// "--every=D --start=TIME" or "--cron=EXPR --time_zone=TZ", and its missed
// policy, as the human output shows a schedule.
std::string DescribeSchedule(const Schedule& s) {
  std::string when =
      s.cron().empty()
          ? absl::StrCat(
                "every ",
                absl::FormatDuration(absl::Microseconds(s.interval_micros())),
                " from ", FormatMicros(s.start_micros()))
          : absl::StrCat("cron ", Quote(s.cron()), " in ",
                         s.time_zone().empty() ? std::string("UTC")
                                               : Quote(s.time_zone()));
  return absl::StrCat(
      when, ", type ", Quote(s.task_template().type()), ", ",
      s.missed() == Schedule::MISSED_CATCH_UP
          ? std::string("catches up")
          : absl::StrCat("skips times late by over ",
                         absl::FormatDuration(
                             absl::Microseconds(s.misfire_grace_micros()))));
}

std::string ScheduleLine(const Schedule& s) {
  return absl::StrCat(Quote(s.name()), ": ", DescribeSchedule(s), "; next ",
                      s.next_due_micros() == std::numeric_limits<int64_t>::max()
                          ? std::string("never")
                          : FormatMicros(s.next_due_micros()),
                      "; submitted ", s.submitted(), ", skipped ", s.skipped());
}

int RunSchedule(Context& ctx, const ParsedArgs& args) {
  ScheduleSpec spec;
  spec.name = args.positional[0];
  if (args.Has("cron") == args.Has("every")) {
    return UsageError(ctx, "give one of --cron=EXPR and --every=D");
  }
  spec.cron = args.Get("cron");
  spec.time_zone = args.Get("time_zone");
  if (args.Has("every")) {
    if (!absl::ParseDuration(args.Get("every"), &spec.interval) ||
        spec.interval <= absl::ZeroDuration() ||
        spec.interval == absl::InfiniteDuration()) {
      return UsageError(ctx, absl::StrCat("--every=\"", args.Get("every"),
                                          "\" is not a positive duration "
                                          "such as 90s, 15m or 24h"));
    }
  }
  if (args.Has("start")) {
    std::string error;
    if (!absl::ParseTime(absl::RFC3339_full, args.Get("start"), &spec.start,
                         &error)) {
      return UsageError(ctx, absl::StrCat("--start=\"", args.Get("start"),
                                          "\" is not an RFC 3339 time such "
                                          "as 2030-01-02T15:04:05Z (",
                                          error, ")"));
    }
  }
  spec.missed = args.GetBool("catch_up") ? Schedule::MISSED_CATCH_UP
                                         : Schedule::MISSED_SKIP;
  if (args.Has("grace") &&
      (!absl::ParseDuration(args.Get("grace"), &spec.misfire_grace) ||
       spec.misfire_grace < absl::ZeroDuration())) {
    return UsageError(ctx, absl::StrCat("--grace=\"", args.Get("grace"),
                                        "\" is not a duration of 0 or more"));
  }
  spec.task.type = args.Get("type");
  if (int code = PayloadArg(ctx, args, &spec.task.payload); code != kExitOk) {
    return code;
  }
  int code = kExitOk;
  const std::optional<int32_t> priority = NumberFlag<int32_t>(
      ctx, args, "priority", 0, std::numeric_limits<int32_t>::min(),
      std::numeric_limits<int32_t>::max(), &code);
  if (!priority.has_value()) return code;
  spec.task.priority = *priority;
  const std::optional<uint32_t> max_attempts =
      NumberFlag<uint32_t>(ctx, args, "max_attempts", 0, 0,
                           std::numeric_limits<uint32_t>::max(), &code);
  if (!max_attempts.has_value()) return code;
  spec.task.max_attempts = *max_attempts;

  absl::StatusOr<Schedule> stored = ctx.engine->PutSchedule(spec);
  if (!stored.ok()) return CallError(ctx, stored.status());
  if (ctx.json) {
    ctx.out << ProtoJson(*stored) << "\n";
  } else {
    ctx.out << "schedule " << ScheduleLine(*stored) << "\n";
  }
  return kExitOk;
}

int RunUnschedule(Context& ctx, const ParsedArgs& args) {
  const std::string& name = args.positional[0];
  absl::Status status = ctx.engine->DeleteSchedule(name);
  if (!status.ok()) return CallError(ctx, status);
  if (ctx.json) {
    SchedulesOutput output;  // Empty: the schedule is gone.
    ctx.out << ProtoJson(output) << "\n";
  } else {
    ctx.out << "schedule " << Quote(name) << " deleted; its tasks stay\n";
  }
  return kExitOk;
}

int RunSchedules(Context& ctx, const ParsedArgs& /*args*/) {
  absl::StatusOr<std::vector<Schedule>> all = ctx.engine->ListSchedules();
  if (!all.ok()) return CallError(ctx, all.status());
  if (ctx.json) {
    SchedulesOutput output;
    for (const Schedule& s : *all) *output.add_schedules() = s;
    ctx.out << ProtoJson(output) << "\n";
    return kExitOk;
  }
  for (const Schedule& s : *all) ctx.out << ScheduleLine(s) << "\n";
  ctx.out << Plural(all->size(), "schedule") << "\n";
  return kExitOk;
}

// retry, cancel and delete: one call on one task.
int RunOperator(Context& ctx, const ParsedArgs& args,
                absl::Status (Engine::*call)(uint64_t),
                absl::string_view done) {
  int code = kExitOk;
  const std::optional<uint64_t> id = TaskIdArg(ctx, args.positional[0], &code);
  if (!id.has_value()) return code;
  absl::Status status = (ctx.engine->*call)(*id);
  if (!status.ok()) return CallError(ctx, status);
  if (ctx.json) {
    TaskActionOutput output;
    output.set_task_id(*id);
    output.set_result(std::string(done));
    ctx.out << ProtoJson(output) << "\n";
  } else {
    ctx.out << "task " << *id << " " << done << "\n";
  }
  return kExitOk;
}

// pause TYPE and resume TYPE.
int RunPauseOrResume(Context& ctx, const ParsedArgs& args, bool pause) {
  const std::string& type = args.positional[0];
  absl::Status status =
      pause ? ctx.engine->Pause(type) : ctx.engine->Resume(type);
  if (!status.ok()) return CallError(ctx, status);
  absl::StatusOr<std::vector<std::string>> paused = ctx.engine->PausedTypes();
  if (!paused.ok()) return CallError(ctx, paused.status());
  if (ctx.json) {
    PauseOutput output;
    output.set_type(type);
    output.set_paused(pause);
    for (const std::string& t : *paused) output.add_paused_types(t);
    ctx.out << ProtoJson(output) << "\n";
  } else {
    ctx.out << "type " << Quote(type) << (pause ? " paused" : " resumed")
            << "; paused types: " << paused->size() << "\n";
  }
  return kExitOk;
}
int RunPause(Context& ctx, const ParsedArgs& args) {
  return RunPauseOrResume(ctx, args, /*pause=*/true);
}
int RunResume(Context& ctx, const ParsedArgs& args) {
  return RunPauseOrResume(ctx, args, /*pause=*/false);
}

// The flags of retry and delete by filter.
constexpr absl::string_view kBulkFlags[] = {"status", "type", "older_than",
                                            "limit", "dry_run"};

// Tasks changed at most by one run of retry or delete by filter, unless
// --limit says otherwise; --limit is at most kMaxBulkLimit.
constexpr uint64_t kDefaultBulkLimit = 1000;
constexpr uint64_t kMaxBulkLimit = 1000000;

// retry and delete by filter: `call` (Engine::RetryMatching or
// DeleteMatching) on every task in --status (one of `allowed`) of --type,
// finished more than --older_than ago, lowest ids first, at most --limit of
// them. The engine changes them in bounded batches, each task its own
// durable transition: a failure stops the run, and what was changed before
// it stays changed and is reported.
int RunBulk(Context& ctx, const ParsedArgs& args,
            absl::StatusOr<BulkResult> (Engine::*call)(const BulkFilter&),
            absl::string_view done, absl::string_view would,
            std::vector<TaskStatus> allowed) {
  std::vector<std::string> allowed_names;
  for (TaskStatus s : allowed) allowed_names.push_back(TaskStatus_Name(s));
  const std::string allowed_text = absl::StrJoin(allowed_names, ", ");
  if (!args.Has("status")) {
    return UsageError(ctx, absl::StrCat("give a task id, or --status=",
                                        absl::AsciiStrToLower(allowed_text),
                                        " to ", ctx.command, " by filter"));
  }
  const std::optional<TaskStatus> status = ParseStatus(args.Get("status"));
  if (!status.has_value() ||
      std::find(allowed.begin(), allowed.end(), *status) == allowed.end()) {
    return UsageError(
        ctx, absl::StrCat(ctx.command, " by filter takes --status=",
                          absl::AsciiStrToLower(allowed_text), ", not \"",
                          args.Get("status"), "\""));
  }
  std::optional<absl::Time> finished_before;
  if (args.Has("older_than")) {
    absl::Duration age;
    if (!absl::ParseDuration(args.Get("older_than"), &age) ||
        age < absl::ZeroDuration() || age == absl::InfiniteDuration()) {
      return UsageError(
          ctx, absl::StrCat("--older_than=\"", args.Get("older_than"),
                            "\" is not a duration of 0 or more such as 90s, "
                            "36h or 1h30m"));
    }
    finished_before = absl::Now() - age;
  }
  int code = kExitOk;
  const std::optional<uint64_t> limit = NumberFlag<uint64_t>(
      ctx, args, "limit", kDefaultBulkLimit, 1, kMaxBulkLimit, &code);
  if (!limit.has_value()) return code;
  const bool dry_run = args.GetBool("dry_run");

  BulkFilter filter;
  filter.status = *status;
  filter.type = args.Get("type");
  if (finished_before.has_value()) filter.finished_before = *finished_before;
  filter.limit = *limit;
  filter.dry_run = dry_run;
  BulkActionOutput output;
  output.set_result(std::string(done));
  output.set_dry_run(dry_run);
  absl::StatusOr<BulkResult> result = (ctx.engine->*call)(filter);
  absl::Status failed = result.status();
  if (result.ok()) {
    for (uint64_t id : result->task_ids) output.add_task_ids(id);
    output.set_more(result->more);
    output.set_changed(result->changed);
  }
  // What was changed before a failure stays changed; the engine's message
  // says how much.
  if (!failed.ok()) return CallError(ctx, failed);
  if (ctx.json) {
    ctx.out << ProtoJson(output) << "\n";
    return kExitOk;
  }
  const std::string which = absl::StrCat(
      TaskStatus_Name(*status),
      filter.type.empty() ? "" : absl::StrCat(" of type ", Quote(filter.type)),
      finished_before.has_value()
          ? absl::StrCat(" finished before ",
                         FormatMicros(absl::ToUnixMicros(*finished_before)))
          : "");
  const size_t count = output.task_ids_size();
  if (dry_run) {
    ctx.out << "would " << would << " " << Plural(count, "task") << " ("
            << which << "); nothing changed";
  } else {
    ctx.out << done << " " << Plural(count, "task") << " (" << which << ")";
  }
  if (count > 0) {
    constexpr int kShownIds = 20;
    std::vector<uint64_t> shown(
        output.task_ids().begin(),
        output.task_ids().begin() + std::min<int>(kShownIds, count));
    ctx.out << ": " << absl::StrJoin(shown, " ")
            << (count > kShownIds ? " ..." : "");
  }
  ctx.out << "\n";
  if (output.more()) {
    ctx.out << "more tasks match: run again for the next "
            << Plural(*limit, "task") << " (--limit)\n";
  }
  return kExitOk;
}

// `ID` or, for retry and delete, a filter.
bool HasBulkFlag(const ParsedArgs& args) {
  for (absl::string_view flag : kBulkFlags) {
    if (args.Has(flag)) return true;
  }
  return false;
}

int RunRetry(Context& ctx, const ParsedArgs& args) {
  if (args.positional.empty() || HasBulkFlag(args)) {
    if (!args.positional.empty()) {
      return UsageError(ctx, "give a task id or a filter, not both");
    }
    return RunBulk(ctx, args, &Engine::RetryMatching, "retried", "retry",
                   {FAILED});
  }
  return RunOperator(ctx, args, &Engine::Retry, "retried");
}
int RunCancel(Context& ctx, const ParsedArgs& args) {
  return RunOperator(ctx, args, &Engine::Cancel, "cancelled");
}
int RunDelete(Context& ctx, const ParsedArgs& args) {
  if (args.positional.empty() || HasBulkFlag(args)) {
    if (!args.positional.empty()) {
      return UsageError(ctx, "give a task id or a filter, not both");
    }
    return RunBulk(ctx, args, &Engine::DeleteMatching, "deleted", "delete",
                   {FAILED, COMPLETED, CANCELLED});
  }
  return RunOperator(ctx, args, &Engine::Delete, "deleted");
}

absl::StatusOr<std::unique_ptr<Engine>> OpenEngine(
    Context& ctx, Access access, int* exit_code, bool report_data_loss = true);

int RunSalvage(Context& ctx, const ParsedArgs& args) {
  int code = kExitOk;
  if (!args.GetBool("yes")) {
    // A dry run: does Open need salvage, and what is damaged.
    absl::StatusOr<std::unique_ptr<Engine>> engine =
        OpenEngine(ctx, Access::kRead, &code, /*report_data_loss=*/false);
    SalvageOutput output;
    if (engine.ok()) {
      (*engine)->Close().IgnoreError();  // Read-only: nothing to lose.
      if (ctx.json) {
        ctx.out << ProtoJson(output) << "\n";
      } else {
        ctx.out << "nothing to salvage: " << EscapeForTerminal(ctx.data_dir)
                << " opens as it is (run verify for a full check)\n";
      }
      return kExitOk;
    }
    if (!absl::IsDataLoss(engine.status())) return code;  // Reported.
    engine::VerifySummary summary;
    absl::StatusOr<std::vector<engine::Problem>> problems =
        engine::VerifyDirectory(
            ctx.env, ctx.data_dir, [](uint64_t, uint64_t) {}, &summary);
    if (!problems.ok()) return CallError(ctx, problems.status());
    if (ctx.json) {
      for (const engine::Problem& p : *problems) {
        *output.add_problems() = ProblemJson(p);
      }
      ctx.out << ProtoJson(output) << "\n";
    } else {
      for (const engine::Problem& p : *problems) {
        ctx.out << EscapeForTerminal(engine::FormatProblem(p)) << "\n";
      }
      ctx.out << "Salvage would keep each partition's records up to the "
                 "first damage and set aside\n(rename to *.salvaged, "
                 "*.corrupt) the files after it: what they hold is lost.\n"
                 "Nothing was changed. To salvage, stop the process that "
                 "owns the directory, then run\n  taskwal --data_dir="
              << EscapeForTerminal(ctx.data_dir) << " salvage --yes\n";
    }
    return kExitDamage;
  }

  absl::StatusOr<std::unique_ptr<Engine>> engine =
      OpenEngine(ctx, Access::kSalvage, &code);
  if (!engine.ok()) return code;
  const RecoveryReport recovery = (*engine)->Recovery();
  absl::StatusOr<EngineStats> stats = (*engine)->Stats();
  absl::Status closed = (*engine)->Close();
  if (!stats.ok()) return CallError(ctx, stats.status());
  if (!closed.ok()) return CallError(ctx, closed);
  if (ctx.json) {
    SalvageOutput output;
    output.set_salvaged(true);
    *output.mutable_recovery() = RecoveryJson(recovery);
    output.set_tasks(stats->tasks);
    ctx.out << ProtoJson(output) << "\n";
    return kExitOk;
  }
  ctx.out << "opened " << EscapeForTerminal(ctx.data_dir)
          << " with salvage: " << Plural(recovery.last_lsn, "record")
          << " kept, " << Plural(recovery.truncated_bytes, "byte")
          << " cut off, " << Plural(stats->tasks, "task") << " now\n";
  for (const std::string& note : recovery.notes) {
    ctx.out << "  " << EscapeForTerminal(note) << "\n";
  }
  if (recovery.notes.empty()) {
    ctx.out << "nothing needed salvage: no file was set aside\n";
  }
  return kExitOk;
}

int RunSnapshot(Context& ctx, const ParsedArgs& /*args*/) {
  absl::Status status = ctx.engine->Snapshot();
  if (!status.ok()) return CallError(ctx, status);
  absl::StatusOr<EngineStats> stats = ctx.engine->Stats();
  if (!stats.ok()) return CallError(ctx, stats.status());
  // The snapshot holds one file per partition; its LSN is their sum.
  if (ctx.json) {
    SnapshotOutput output;
    output.set_snapshot_lsn(stats->last_snapshot_lsn);
    output.set_partitions(stats->partitions);
    ctx.out << ProtoJson(output) << "\n";
  } else {
    ctx.out << "snapshot written at LSN " << stats->last_snapshot_lsn
            << " (summed over " << Plural(stats->partitions, "partition")
            << ")\n";
  }
  return kExitOk;
}

int RunVerify(Context& ctx, const ParsedArgs& /*args*/) {
  ProgressBar bar(ctx.err, "verify", ctx.options.err_is_terminal,
                  ctx.options.progress_min_bytes);
  engine::VerifySummary summary;
  absl::StatusOr<std::vector<engine::Problem>> problems =
      engine::VerifyDirectory(
          ctx.env, ctx.data_dir,
          [&bar](uint64_t done, uint64_t total) { bar.Update(done, total); },
          &summary);
  bar.Finish();
  if (!problems.ok()) return CallError(ctx, problems.status());

  // LSNs count records per partition; their sum is the records since the
  // data began.
  const std::string records =
      summary.log_records == 0
          ? std::string("no log records")
          : absl::StrCat(Plural(summary.log_records, "log record"), ", ",
                         summary.last_lsn, " since the data began");
  if (ctx.json) {
    VerifyOutput output;
    output.set_clean(problems->empty());
    for (const engine::Problem& p : *problems) {
      *output.add_problems() = ProblemJson(p);
    }
    output.set_snapshots(summary.snapshots);
    output.set_segments(summary.segments);
    output.set_bytes(summary.bytes);
    output.set_partitions(summary.partitions);
    output.set_log_records(summary.log_records);
    output.set_last_lsn(summary.last_lsn);
    output.set_replay_base_lsn(summary.replay_base_lsn);
    output.set_replayed(summary.replayed);
    ctx.out << ProtoJson(output) << "\n";
  } else {
    for (const engine::Problem& p : *problems) {
      ctx.out << EscapeForTerminal(engine::FormatProblem(p)) << "\n";
    }
    const auto repaired = std::count_if(
        problems->begin(), problems->end(),
        [](const engine::Problem& p) { return p.repaired_by_open; });
    ctx.out << "checked " << Plural(summary.snapshots, "snapshot file")
            << " and " << Plural(summary.segments, "segment");
    if (summary.partitions != 0) {
      ctx.out << " of " << Plural(summary.partitions, "partition");
    }
    ctx.out << " (" << Plural(summary.bytes, "byte") << ", " << records
            << "): ";
    if (problems->empty()) {
      ctx.out << "clean\n";
    } else {
      ctx.out << Plural(problems->size(), "problem");
      if (repaired > 0) {
        ctx.out << " (" << repaired << " of them Open repairs by itself)";
      }
      ctx.out << "\n";
    }
  }
  return problems->empty() ? kExitOk : kExitDamage;
}

// One log record of dump: "PARTITION:LSN SEGMENT OFFSET TRANSITION", or
// the JSON object of --json. A group piece's transition follows its group
// header (wal/format.h), which is shown apart.
void PrintRecord(Context& ctx,
                 const google::protobuf::TextFormat::Printer& printer,
                 const std::string& segment,
                 const wal::LogReader::Record& record, bool* damaged) {
  absl::string_view payload = record.payload;
  wal::GroupHeader group;
  const bool is_group = record.type == wal::RecordType::kGroupTransition;
  bool parsed = is_group
                    ? wal::DecodeGroupHeader(record.payload, &group, &payload)
                    : record.type == wal::RecordType::kTransition;
  engine::Transition transition;
  parsed = parsed && transition.ParseFromArray(
                         payload.data(), static_cast<int>(payload.size()));
  if (!parsed) *damaged = true;
  if (ctx.json) {
    DumpRecordOutput output;
    output.set_partition(record.partition);
    output.set_lsn(record.lsn);
    output.set_segment(segment);
    output.set_offset(record.offset);
    if (is_group && parsed) {
      GroupOutput* g = output.mutable_group();
      g->set_pieces(group.pieces);
      g->set_leader_partition(group.leader_partition);
      g->set_leader_lsn(group.leader_lsn);
    }
    if (parsed) {
      *output.mutable_transition() = std::move(transition);
    } else {
      output.set_error("not a transition");
    }
    ctx.out << ProtoJson(output) << "\n";
    return;
  }
  ctx.out << record.partition << ":" << record.lsn << " " << segment << " "
          << record.offset << " ";
  if (!parsed) {
    ctx.out << "<not a transition>\n";
    return;
  }
  if (is_group) {
    ctx.out << "group(" << group.pieces << " pieces, leader "
            << group.leader_partition << ":" << group.leader_lsn << ") ";
  }
  ctx.out << ShortText(printer, transition) << "\n";
}

int RunDump(Context& ctx, const ParsedArgs& /*args*/) {
  absl::StatusOr<wal::DirectoryListing> listing =
      wal::ListDirectory(ctx.env, ctx.data_dir);
  if (!listing.ok()) return CallError(ctx, listing.status());
  const std::vector<wal::SegmentFile>& segments = listing->segments;
  uint64_t total = 0;
  for (const wal::SegmentFile& segment : segments) {
    absl::StatusOr<uint64_t> size =
        ctx.env->GetFileSize(wal::JoinPath(ctx.data_dir, segment.name));
    if (size.ok()) total += *size;
  }

  ProgressBar bar(ctx.err, "dump",
                  ctx.options.err_is_terminal && !ctx.options.out_is_terminal,
                  ctx.options.progress_min_bytes);
  const std::unique_ptr<google::protobuf::TextFormat::Printer> printer =
      NewTextPrinter();
  bool damaged = false;
  // Damage (under --json, an ErrorOutput line among the records) or, for
  // a notice, a line on stderr.
  auto report = [&](absl::string_view message, bool is_damage = true) {
    bar.Finish();
    if (is_damage) {
      ReportError(ctx, absl::StatusCode::kDataLoss, kExitDamage, message);
    } else {
      ctx.err << "taskwal dump: " << EscapeForTerminal(message) << "\n";
    }
  };
  uint64_t done = 0;
  for (size_t i = 0; i < segments.size(); ++i) {
    const wal::SegmentFile& segment = segments[i];
    const std::string path = wal::JoinPath(ctx.data_dir, segment.name);
    absl::StatusOr<std::string> contents = ctx.env->ReadFileToString(path);
    if (absl::IsNotFound(contents.status())) {
      // The owner discarded it after a snapshot while we were reading.
      report(absl::StrCat("skipped ", segment.name,
                          ": it was removed while dump ran"),
             /*is_damage=*/false);
      continue;
    }
    if (!contents.ok()) {
      bar.Finish();
      ReportError(ctx, contents.status().code(), kExitDamage,
                  contents.status().message());
      damaged = true;
      continue;
    }
    absl::StatusOr<uint64_t> header =
        wal::DecodeFileHeader(*contents, wal::kSegmentMagic, path);
    if (!header.ok()) {
      report(absl::StrCat(
          header.status().message(),
          i + 1 == segments.size() && wal::IsTornHeader(*contents)
              ? " (a torn header: the writer died creating the segment; "
                "Open removes it)"
              : ""));
      damaged = true;
      done += contents->size();
      continue;
    }
    wal::LogReader reader(*contents, path);
    wal::LogReader::Record record;
    while (true) {
      absl::StatusOr<bool> more = reader.Read(&record);
      if (!more.ok()) {
        report(absl::StrCat(
            more.status().message(),
            reader.ValidRecordFollows()
                ? " (valid records follow: corruption; the rest of this "
                  "segment is skipped)"
                : " (nothing valid follows: a torn tail)",
            "; run 'taskwal verify' for every problem"));
        damaged = true;
        break;
      }
      if (!*more) break;
      bar.Update(done + record.offset, total);
      PrintRecord(ctx, *printer, segment.name, record, &damaged);
    }
    done += contents->size();
    bar.Update(done, total);
  }
  bar.Finish();
  return damaged ? kExitDamage : kExitOk;
}

// The write commands' --partitions: they may be the first to write to an
// empty directory, which fixes its partition count.
FlagSpec PartitionsFlag() {
  return {"partitions", "N",
          absl::StrCat("partition count of a new (empty) data directory, 1 "
                       "to ",
                       wal::kMaxPartitions,
                       " (default 0: the directory's own count, ",
                       kDefaultPartitions,
                       " for a new one); opening a directory of another "
                       "count fails (exit 3)")};
}

// The flags of retry and delete: by id, or by filter.
std::vector<FlagSpec> BulkFlags(absl::string_view command,
                                absl::string_view statuses) {
  return {
      {"status", "S",
       absl::StrCat("by filter: the tasks in status S (", statuses, ")")},
      {"type", "T", "by filter: only tasks of type T"},
      {"older_than", "D",
       "by filter: only tasks that finished more than D ago (36h, 90m)"},
      {"limit", "N",
       absl::StrCat("by filter: ", command, " at most N tasks, 1 to ",
                    kMaxBulkLimit, " (default ", kDefaultBulkLimit, ")")},
      {"dry_run", "", "by filter: list the tasks, change nothing"},
      PartitionsFlag(),
  };
}

const std::vector<Command>& Commands() {
  static const auto* const commands = new std::vector<Command>{
      {"stats",
       "[--prometheus]",
       "task counts by status, lifetime totals, last recovery",
       "Prints the task counts by status, the lifetime totals (submitted,\n"
       "claims, completions, failed attempts, lease expiries, retries,\n"
       "cancellations, deletions, retention removals, transitions), the\n"
       "partition count, the last LSN and the last snapshot's LSN, and what\n"
       "recovery found. Each partition numbers its own records (its LSNs);\n"
       "the LSNs shown are sums over the partitions, i.e. the records since\n"
       "the data began. --prometheus prints the same in the\n"
       "Prometheus text format (api/metrics.h); the counters of this\n"
       "process's own writes (fsyncs, WAL bytes, batches) are 0 there, as\n"
       "this command opens the directory read-only.\n",
       {{"prometheus", "", "Prometheus text exposition format 0.0.4"}},
       Access::kRead,
       0,
       0,
       &RunStats},
      {"list",
       "[--status=S] [--type=T] [--limit=N] [--after=CURSOR]",
       "list tasks, a page at a time",
       "Lists tasks in ascending id order, at most --limit of them. The last\n"
       "line gives the cursor of the next page, to pass as --after (with\n"
       "--json: \"next_cursor\", 0 on the last page). One line a task: a\n"
       "type longer than 32 columns and a key longer than 100 are cut,\n"
       "ending in \"\u2026\" (get shows them whole).\n",
       {{"status", "S",
         "only tasks in this status: pending, claimed, completed, failed or "
         "cancelled"},
        {"type", "T", "only tasks of this type"},
        {"limit", "N", "at most N tasks, 1 to 10000 (default 100)"},
        {"after", "CURSOR", "the page after this cursor (a task id)"}},
       Access::kRead,
       0,
       0,
       &RunList},
      {"get",
       "ID | --key=KEY",
       "show one task, by id or idempotency key",
       "Shows one task, a field a line. A payload, result or error longer\n"
       "than 512 columns is cut, ending in \"\u2026\" and followed by its\n"
       "size. --json prints the Task message (api/task.proto) in\n"
       "protobuf's JSON mapping: payload and result base64-encoded, 64-bit\n"
       "integers as strings.\n",
       {{"key", "KEY", "look the task up by its idempotency key"}},
       Access::kRead,
       0,
       1,
       &RunGet},
      {"history",
       "ID",
       "show a task's audit trail",
       "Shows a task's audit trail, oldest first: time (UTC), event, status\n"
       "change, attempt, worker and error. Only the newest entries are kept\n"
       "(EngineOptions::max_history_per_task).\n",
       {},
       Access::kRead,
       1,
       1,
       &RunHistory},
      {"verify",
       "",
       "check every snapshot and log record, report each problem",
       "Reads the META file, every snapshot file of every partition and\n"
       "every log segment, record by record, and prints each problem with\n"
       "its file and byte offset: a missing or damaged META, or a format\n"
       "version this build does not read (a directory of version 1, written\n"
       "before partitions, is reported once); a damaged file header; a\n"
       "damaged record, either a torn tail (damage at the end of the newest\n"
       "segment with nothing valid after it: a write cut short by a crash,\n"
       "which Open cuts off by itself) or corruption (valid records follow\n"
       "it, or it is in an older segment: Open fails); an LSN gap in one\n"
       "partition's records, or a missing segment; an incomplete group (the\n"
       "records of one batch that spans partitions, all or none: at the end\n"
       "of the newest segment Open cuts it off like a torn tail, elsewhere\n"
       "Open fails); a segment header or snapshot that disagrees with its\n"
       "file name; snapshot damage, including a wrong task count or another\n"
       "partition count than the directory's; a record of a partition out\n"
       "of range, or with a valid checksum that is not a transition, or a\n"
       "transition that does not replay onto its partition's snapshot. It\n"
       "goes on past each problem, so one run shows them all. It only reads:\n"
       "it takes no lock and changes nothing. On a directory a running\n"
       "engine holds, a record being written at that moment shows as a torn\n"
       "tail (or an incomplete group).\n"
       "Exit status 0 when clean, 1 when anything was found (a torn tail\n"
       "included). A progress bar is drawn on stderr when stderr is a\n"
       "terminal and the files exceed 8 MiB.\n",
       {},
       Access::kFiles,
       0,
       0,
       &RunVerify},
      {"dump",
       "",
       "print every log record, segment by segment",
       "Prints every record of the log in the order it was written (segment\n"
       "by segment, in sequence order), one line each:\n"
       "  PARTITION:LSN SEGMENT OFFSET TRANSITION\n"
       "with the transition (engine/transition.proto) in protobuf text\n"
       "format. Each partition numbers its own records 1, 2, ... (its LSNs);\n"
       "records of different partitions interleave. A piece of a transition\n"
       "that spans partitions (a batch of submits) shows its group before\n"
       "the transition: \"group(N pieces, leader PARTITION:LSN)\". With\n"
       "--json, one JSON object per line:\n"
       "  {\"partition\":P,\"lsn\":N,\"segment\":\"wal-...\",\"offset\":N,\n"
       "   \"transition\":{...}}\n"
       "with, for a group piece, \"group\":{\"pieces\":N,\n"
       "\"leader_partition\":P,\"leader_lsn\":N} before the transition.\n"
       "Records covered by older snapshots may be gone (their segments are\n"
       "discarded). Damage is reported on stderr, the rest of that segment\n"
       "is skipped, and the exit status is 1 (run verify for details). It\n"
       "only reads. A progress bar is drawn on stderr when stderr is a\n"
       "terminal, stdout is not, and the log exceeds 8 MiB.\n",
       {},
       Access::kFiles,
       0,
       0,
       &RunDump},
      {"submit",
       "--key=K [--type=T] [--payload=P | --payload_file=F] [--priority=N] "
       "[--max_attempts=N] [--not_before=TIME | --delay=D] "
       "[--depends_on=K1,K2 [--on_dependency_failure=fail|cancel]] "
       "[--partitions=N]",
       "submit a task (idempotent by key)",
       "Submits a task. The same key with the same type and payload returns\n"
       "the existing task (\"deduplicated\"); with another type or payload\n"
       "it fails (exit 3). The task's id names its partition (partition p of\n"
       "P hands out ids P+p, 2P+p, ...; with one partition 1, 2, 3, ...).\n"
       "The first write to an empty directory fixes its partition count\n"
       "(--partitions); a directory keeps that count for good.\n"
       "--not_before or --delay make the task claimable only from that\n"
       "time on (a time in the past: at once); the output says from when.\n"
       "--depends_on names the keys of tasks this one waits for: it is\n"
       "claimable once all of them completed, and fails (or, with\n"
       "--on_dependency_failure=cancel, is cancelled) if one of them fails\n"
       "or is cancelled. An unknown key fails (exit 3); `get` shows\n"
       "depends_on and waiting_for.\n",
       {{"key", "K", "idempotency key (required)"},
        {"type", "T", "task type"},
        {"payload", "P", "payload bytes"},
        {"payload_file", "F",
         "read the payload from file F; '-': from standard input"},
        {"priority", "N", "higher is claimed first (default 0)"},
        {"max_attempts", "N",
         "attempts before the task fails for good (default: the engine's)"},
        {"not_before", "TIME",
         "not claimable before TIME, in RFC 3339: 2030-01-02T15:04:05Z, "
         "2030-01-02T16:04:05.5+01:00"},
        {"delay", "D",
         "not claimable for duration D from now: 90s, 15m, 2h30m"},
        {"depends_on", "K1,K2",
         "keys of the tasks this one waits for, comma-separated"},
        {"on_dependency_failure", "fail|cancel",
         "what a failed dependency makes of this task (default fail)"},
        PartitionsFlag()},
       Access::kWrite,
       0,
       0,
       &RunSubmit},
      {"retry",
       "ID | --status=failed [--type=T] [--older_than=D] [--limit=N] "
       "[--dry_run]",
       "make a task claimable again (or FAILED tasks by filter)",
       "Operator retry of task ID. CLAIMED: releases the claim (the attempt\n"
       "in progress is not counted). FAILED: back to PENDING with a fresh\n"
       "attempt budget. PENDING: claimable now, skipping any backoff.\n"
       "COMPLETED or CANCELLED: refused (exit 3).\n"
       "\n"
       "By filter (no ID): retries the FAILED tasks of --type that failed\n"
       "more than --older_than ago, in ascending id order, at most --limit\n"
       "of them, and prints how many and which (--json: \"changed\" and\n"
       "\"task_ids\"; \"more\": true when more match, for another run). Each\n"
       "retry is durable on its own: a failure stops the run and says how\n"
       "many were retried before it. --dry_run only says which would be.\n",
       BulkFlags("retry", "failed"), Access::kWrite, 0, 1, &RunRetry},
      {"cancel",
       "ID",
       "cancel a PENDING task",
       "Cancels a PENDING task: it becomes CANCELLED. Any other status is\n"
       "refused (exit 3).\n",
       {PartitionsFlag()},
       Access::kWrite,
       1,
       1,
       &RunCancel},
      {"schedule",
       "NAME (--cron=EXPR [--time_zone=TZ] | --every=D [--start=TIME]) "
       "[--type=T] [--payload=P | --payload_file=F] [--priority=N] "
       "[--max_attempts=N] [--catch_up] [--grace=D]",
       "create or replace a periodic task (durable)",
       "Creates the schedule NAME, or replaces it: the engine that owns the\n"
       "directory (a daemon, or any program that opens it with a\n"
       "maintenance interval) submits one task per due time, keyed\n"
       "schedule:NAME@<due time in RFC 3339 UTC>, so no due time is ever\n"
       "submitted twice. --cron takes five fields, minute hour day-of-month\n"
       "month day-of-week (or @hourly, @daily, @weekly, @monthly, @yearly),\n"
       "in --time_zone (an IANA name, default UTC). --every repeats from\n"
       "--start (default: now). Due times missed by more than --grace\n"
       "(default 1m) while the engine was down are skipped, or all\n"
       "submitted with --catch_up. A replacement with the same timing keeps\n"
       "its position; one with another timing starts after now.\n",
       {{"cron", "EXPR", "cron expression, e.g. \"0 3 * * *\" or @hourly"},
        {"time_zone", "TZ", "time zone of --cron, e.g. Europe/Berlin"},
        {"every", "D", "fixed interval, at least 1s: 90s, 15m, 24h"},
        {"start", "TIME", "first due time of --every, RFC 3339"},
        {"type", "T", "type of the tasks"},
        {"payload", "P", "payload of the tasks"},
        {"payload_file", "F",
         "read the payload from file F; '-': from standard input"},
        {"priority", "N", "priority of the tasks (default 0)"},
        {"max_attempts", "N", "attempts of each task (default: the engine's)"},
        {"catch_up", "", "submit every missed due time, however late"},
        {"grace", "D", "how late a due time may be and still run (1m)"},
        PartitionsFlag()},
       Access::kWrite,
       1,
       1,
       &RunSchedule},
      {"unschedule",
       "NAME",
       "delete a schedule (its tasks stay)",
       "Deletes the schedule NAME; no more tasks are submitted for it. The\n"
       "tasks it submitted stay. An unknown name fails (exit 3).\n",
       {PartitionsFlag()},
       Access::kWrite,
       1,
       1,
       &RunUnschedule},
      {"schedules",
       "",
       "list the schedules",
       "Lists every schedule: its timing, the type of its tasks, how it\n"
       "treats missed due times, its next due time and how many due times\n"
       "it submitted and skipped. --json prints Schedule messages\n"
       "(api/task.proto).\n",
       {},
       Access::kRead,
       0,
       0,
       &RunSchedules},
      {"pause",
       "TYPE",
       "stop claiming tasks of a type (durable, until resume)",
       "Pauses a task type: workers claim none of its PENDING tasks until\n"
       "resume, also after a restart (the pause is journaled). Submits,\n"
       "running claims and everything else go on. Pausing a paused type\n"
       "changes nothing. stats lists the paused types.\n",
       {PartitionsFlag()},
       Access::kWrite,
       1,
       1,
       &RunPause},
      {"resume",
       "TYPE",
       "claim tasks of a paused type again",
       "Resumes a paused task type: its ready tasks are claimed again.\n"
       "Resuming a type that is not paused changes nothing.\n",
       {PartitionsFlag()},
       Access::kWrite,
       1,
       1,
       &RunResume},
      {"delete",
       "ID | --status=S [--type=T] [--older_than=D] [--limit=N] [--dry_run]",
       "delete a finished task, freeing its key (or many by filter)",
       "Deletes a COMPLETED, FAILED or CANCELLED task and frees its\n"
       "idempotency key. PENDING or CLAIMED: refused (exit 3).\n"
       "\n"
       "By filter (no ID): deletes the tasks in --status (failed, completed\n"
       "or cancelled) of --type that finished more than --older_than ago,\n"
       "in ascending id order, at most --limit of them, and prints how many\n"
       "and which (--json: \"changed\" and \"task_ids\"; \"more\": true when\n"
       "more match, for another run). Each delete is durable on its own: a\n"
       "failure stops the run and says how many were deleted before it.\n"
       "--dry_run only says which would be.\n",
       BulkFlags("delete", "failed, completed or cancelled"), Access::kWrite, 0,
       1, &RunDelete},
      {"salvage",
       "[--yes]",
       "open a damaged directory, setting the damage aside",
       "For a directory that Open refuses as damaged (kDataLoss; stats,\n"
       "list, ... exit 1). Without --yes it changes nothing: it opens the\n"
       "directory read-only and, if that fails on damage, lists what verify\n"
       "finds and exits 1; if the directory opens, it says so and exits 0.\n"
       "With --yes it opens the directory with EngineOptions::salvage, taking\n"
       "its lock: each partition keeps its records up to the first damage,\n"
       "later segments are renamed *.salvaged and damaged snapshots\n"
       "*.corrupt, so every transition after the damage is lost (the files\n"
       "stay, for a person to look at). It prints what was kept and each\n"
       "file set aside. Stop the process that owns the directory first.\n",
       {{"yes", "", "really salvage: set the damaged part aside (destructive)"},
        PartitionsFlag()},
       Access::kSalvage,
       0,
       0,
       &RunSalvage},
      {"snapshot",
       "",
       "write a snapshot, drop the log it makes unnecessary",
       "Writes a snapshot of the whole state, then removes the older\n"
       "snapshots and log segments it makes unnecessary (the two newest\n"
       "snapshots are kept, with the log after the older one).\n",
       {PartitionsFlag()},
       Access::kWrite,
       0,
       0,
       &RunSnapshot},
  };
  return *commands;
}

const Command* FindCommand(absl::string_view name) {
  for (const Command& c : Commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

// Whether a command works on the files of a data directory, not through an
// engine, so that it cannot run with --server.
bool FilesOnly(const Command& c) {
  return c.access == Access::kFiles || c.access == Access::kSalvage;
}

std::string ToolHelp() {
  std::string read;
  std::string write;
  std::vector<absl::string_view> files_only;
  for (const Command& c : Commands()) {
    if (FilesOnly(c)) files_only.push_back(c.name);
    const bool changes =
        c.access == Access::kWrite || c.access == Access::kSalvage;
    absl::StrAppend(changes ? &write : &read,
                    absl::StrFormat("  %-9s %s\n", c.name, c.summary));
  }
  return absl::StrCat(
      "taskwal: inspect and operate a taskwal data directory, a running\n"
      "taskwald, or a taskwal cluster on NATS JetStream.\n"
      "\n"
      "Usage:\n"
      "  taskwal --data_dir=DIR [--json] COMMAND [ARGS]\n"
      "  taskwal --server=URL [--token_file=FILE] [--json] COMMAND [ARGS]\n"
      "  taskwal --nats=URLS --cluster=NAME [--shards=N] [--json] COMMAND "
      "[ARGS]\n"
      "  taskwal help [COMMAND]      (or: taskwal COMMAND --help)\n"
      "  taskwal --version\n"
      "\n"
      "Read commands. They open the directory read-only: no lock, nothing\n"
      "changed, so they work while a daemon holds it, and show the state\n"
      "its files held at that moment.\n",
      read,
      "\n"
      "Commands that change the directory. They take its lock, so they\n"
      "fail (exit 2, naming the holder's pid) while another process holds\n"
      "it. They create a data directory only in an empty directory (salvage\n"
      "creates none).\n",
      write,
      "\n"
      "A running daemon: with --server=URL (http://HOST:PORT of a taskwald)\n"
      "instead of --data_dir, the commands act through the daemon's HTTP\n"
      "API: reads show its live state, changes go through its engine (no\n"
      "lock to wait for), and the output is the same. --token_file=FILE\n"
      "gives its bearer token (--token=TOKEN too, but other users see it in\n"
      "ps); the admin token for commands that change tasks. ",
      absl::StrJoin(files_only, ", "),
      "\n"
      "work on the files and refuse --server and --nats (exit 64). A server\n"
      "that does not answer, or a token it refuses, is exit 3.\n"
      "\n"
      "A cluster on NATS JetStream: with --nats=URLS --cluster=NAME (and\n"
      "--shards=N for a sharded one), the commands act through the\n"
      "cluster's leader, as ConnectJetStreamEngine's clients do; the same\n"
      "commands as with --server. A cluster that does not exist, or has\n"
      "another shard count, is exit 3.\n"
      "\n"
      "Global flags (before or after the command):\n",
      FlagHelp(GlobalFlags()),
      "\n"
      "--json prints one JSON document on stdout (dump: one JSON object per\n"
      "line), failures included: {\"error\":{\"code\":\"NOT_FOUND\",\n"
      "\"message\":\"...\",\"exit_status\":3}}, with the canonical status\n"
      "code name and the exit status below; stderr then stays empty (but for\n"
      "dump's notices and a progress bar on a terminal). Every document is\n"
      "protobuf's JSON mapping of a message in tools/taskwal_cli.proto (get:\n"
      "api/task.proto's Task) with the .proto field names: 64-bit integers,\n"
      "task ids among them, are strings (\"42\"), bytes base64-encoded.\n"
      "\n"
      "Without --json, task text (keys, types, worker ids, errors,\n"
      "payloads) is printed escaped: \\n, \\t, \\x1b for control bytes and\n"
      "bytes that are not UTF-8, \\u202e for C1 controls and characters that\n"
      "reorder or hide text, \\\\ for a backslash. It cannot drive the\n"
      "terminal or break a line.\n"
      "\n"
      "Exit status:\n"
      "  0   success; verify: nothing wrong found\n"
      "  1   damage: verify or dump found a problem, or the directory cannot\n"
      "      be opened because it is damaged; salvage without --yes found\n"
      "      damage that needs it\n"
      "  2   the directory is held (locked) by another process\n"
      "  3   the request failed: no such task, a status that does not allow\n"
      "      it, no such directory, an I/O error\n"
      "  4   DIR is not a taskwal data directory: it has no META file (nor\n"
      "      log or snapshots), and, for commands that change it, is not\n"
      "      empty either; nothing is read or written\n"
      "  64  usage error: unknown command or flag, missing or bad argument\n");
}

std::string CommandHelp(const Command& c) {
  std::string help = absl::StrCat(
      "Usage: taskwal ",
      FilesOnly(c) ? "--data_dir=DIR"
                   : "(--data_dir=DIR | --server=URL | --nats=URLS "
                     "--cluster=NAME)",
      " [--json] ", c.name, c.args.empty() ? "" : " ", c.args, "\n\n",
      c.details);
  if (!c.flags.empty()) {
    absl::StrAppend(&help, "\nFlags:\n", FlagHelp(c.flags));
  }
  absl::StrAppend(
      &help,
      "\nGlobal flags: --data_dir, --server, --token_file, --token, "
      "--nats, --cluster, --shards, --json, --help, --version; exit "
      "statuses and --json's "
      "form: see 'taskwal --help'.\n");
  return help;
}

// Whether the command line asks for --json, judged before it is parsed
// (so that a command line that does not parse gets its error in JSON).
bool JsonRequested(const std::vector<std::string>& args) {
  for (const std::string& arg : args) {
    if (arg == "--") break;
    if (arg == "--json" || arg == "-json" || arg == "--json=true" ||
        arg == "-json=true") {
      return true;
    }
  }
  return false;
}

int PrintVersion(Context& ctx) {
  if (ctx.json) {
    VersionOutput output;
    output.set_version(TASKWAL_VERSION);
    output.set_format_version(wal::kFormatVersion);
    ctx.out << ProtoJson(output) << "\n";
  } else {
    ctx.out << "taskwal " << TASKWAL_VERSION << " (data directory format "
            << wal::kFormatVersion << ")\n";
  }
  return kExitOk;
}

// The tool's rule for --data_dir, checked before anything opens it: read
// commands refuse a directory that is not a data directory, and commands
// that change one create a data directory only in an empty directory, so
// that a mistyped --data_dir neither reads as an empty data directory nor
// gets a data directory's files written among its own files. A directory
// with log segments or snapshots but no META passes: Open and verify say
// why it cannot be read (damage, or format version 1). Returns kExitOk,
// or the exit status of a refusal it has reported.
int CheckDataDirectory(Context& ctx, Access access) {
  absl::StatusOr<wal::DirectoryListing> listing =
      wal::ListDirectory(ctx.env, ctx.data_dir);
  if (!listing.ok()) {
    return ReportError(ctx, listing.status().code(), kExitFailed,
                       absl::StrCat("cannot read ", ctx.data_dir, ": ",
                                    listing.status().message()));
  }
  const wal::DirectoryKind kind = wal::ClassifyDirectory(*listing);
  const bool write = access == Access::kWrite;
  if (kind == wal::DirectoryKind::kDataDirectory ||
      kind == wal::DirectoryKind::kDataWithoutMeta ||
      (kind == wal::DirectoryKind::kEmpty && write)) {
    return kExitOk;
  }
  std::string message =
      absl::StrCat(ctx.data_dir, " is not a taskwal data directory (no ",
                   wal::kMetaFileName, " file)");
  absl::string_view hint;
  if (kind == wal::DirectoryKind::kEmpty) {
    absl::StrAppend(&message, "; it is empty");
    hint = "A command that changes it (such as submit) makes it one.\n";
  } else if (write) {
    absl::StrAppend(&message, " and is not empty");
    hint =
        "A new data directory is created only in an empty directory; "
        "nothing was written.\n";
  } else {
    hint =
        "A data directory holds a META file, log segments (wal-*.log) and "
        "snapshots (snapshot-*): check --data_dir.\n";
  }
  return ReportError(ctx, absl::StatusCode::kFailedPrecondition,
                     kExitNotDataDir, message, hint);
}

// Opens the engine a command needs, reporting failures (but kDataLoss
// when !report_data_loss) and setting *exit_code for them.
absl::StatusOr<std::unique_ptr<Engine>> OpenEngine(Context& ctx, Access access,
                                                   int* exit_code,
                                                   bool report_data_loss) {
  EngineOptions options;
  options.data_dir = ctx.data_dir;
  options.env = ctx.env;
  options.read_only = access == Access::kRead;
  options.salvage = access == Access::kSalvage;
  options.partitions = ctx.partitions;
  // A short-lived process: no background thread, no automatic snapshot.
  options.maintenance_interval = absl::ZeroDuration();
  options.snapshot_every_records = 0;
  // The owner's limits, defaults and history bound, stored in the
  // directory by its last writer: the CLI accepts and keeps what the owner
  // does. A directory written before there was an OPTIONS file has none:
  // then never cut a history shorter than the owner kept it (a snapshot
  // would persist the cut).
  options.use_stored_options = true;
  options.max_history_per_task = std::numeric_limits<size_t>::max();
  absl::StatusOr<std::unique_ptr<Engine>> engine = Engine::Open(options);
  if (engine.ok()) return engine;
  const absl::Status& s = engine.status();
  // A writer's Open is kUnavailable only for a directory another engine
  // holds (api/engine.h): the code says it, never the message.
  if (access != Access::kRead && absl::IsUnavailable(s)) {
    *exit_code = ReportError(
        ctx, s.code(), kExitLocked,
        absl::StrCat("cannot change ", ctx.data_dir, ": ", s.message()),
        "A running engine holds the directory: make the change through it, "
        "or stop it first. Read commands (stats, list, get, history, verify, "
        "dump) work while it runs.\n");
  } else if (absl::IsDataLoss(s)) {
    *exit_code = report_data_loss ? CallError(ctx, s) : kExitDamage;
  } else {
    *exit_code = ReportError(
        ctx, s.code(), kExitFailed,
        absl::StrCat("cannot open ", ctx.data_dir, ": ", s.message()));
  }
  return s;
}

// What --server and --nats share: a command acts on a remote engine or on
// a directory, through an engine. Returns kExitOk, or the exit status of
// the usage error it reported.
int CheckRemoteFlags(Context& ctx, const Command& command,
                     const ParsedArgs& args, absl::string_view flag,
                     absl::string_view where) {
  if (args.Has("data_dir")) {
    return UsageError(
        ctx, absl::StrCat(flag,
                          " and --data_dir exclude each other: a command "
                          "acts on ",
                          where, " or on a directory"));
  }
  if (command.access == Access::kFiles || command.access == Access::kSalvage) {
    return UsageError(
        ctx, absl::StrCat(command.name,
                          " works on a data directory's files and does not "
                          "work with ",
                          flag,
                          ": run it with --data_dir=DIR on the machine that "
                          "holds the directory"));
  }
  if (args.Has("partitions")) {
    return UsageError(ctx, absl::StrCat("--partitions is for a new data "
                                        "directory; it does not go with ",
                                        flag));
  }
  return kExitOk;
}

// The rules of --server, checked before anything is sent: it names a URL,
// excludes --data_dir and --partitions, and works only with the commands
// that act through an engine. Returns kExitOk, or the exit status of the
// usage error it reported.
int CheckServerFlags(Context& ctx, const Command& command,
                     const ParsedArgs& args) {
  if (ctx.server.empty()) {
    return UsageError(ctx,
                      "--server needs a URL, such as "
                      "--server=http://127.0.0.1:8080");
  }
  if (int code = CheckRemoteFlags(ctx, command, args, "--server",
                                  "a running taskwald");
      code != kExitOk) {
    return code;
  }
  if (args.Has("token") && args.Has("token_file")) {
    return UsageError(ctx, "--token and --token_file exclude each other");
  }
  return kExitOk;
}

// The rules of --nats: URLs and --cluster, not --server, --data_dir,
// --partitions or a token, a command that acts through an engine.
int CheckNatsFlags(Context& ctx, const Command& command,
                   const ParsedArgs& args) {
  if (ctx.nats.empty()) {
    return UsageError(ctx,
                      "--nats needs the NATS servers' URLs, such as "
                      "--nats=nats://127.0.0.1:4222");
  }
  if (args.Has("server")) {
    return UsageError(ctx,
                      "--nats and --server exclude each other: a command acts "
                      "on a cluster on JetStream or on a running taskwald");
  }
  if (int code = CheckRemoteFlags(ctx, command, args, "--nats",
                                  "a cluster on JetStream");
      code != kExitOk) {
    return code;
  }
  if (args.Has("token") || args.Has("token_file")) {
    return UsageError(ctx,
                      "--token and --token_file go with --server; a cluster on "
                      "JetStream is reached with the NATS servers' own "
                      "credentials");
  }
  if (args.Get("cluster").empty()) {
    return UsageError(ctx, "--nats needs --cluster=NAME, the cluster's name");
  }
  return kExitOk;
}

// The bearer token of --token_file (its first line, without surrounding
// white space) or --token; empty for neither. Sets *exit_code to the exit
// status of a failure it reported.
std::optional<std::string> ServerToken(Context& ctx, const ParsedArgs& args,
                                       int* exit_code) {
  std::string token = args.Get("token");
  if (args.Has("token_file")) {
    absl::StatusOr<std::string> contents =
        Env::Default()->ReadFileToString(args.Get("token_file"));
    if (!contents.ok()) {
      *exit_code = ReportError(ctx, contents.status().code(), kExitFailed,
                               absl::StrCat("cannot read --token_file: ",
                                            contents.status().message()));
      return std::nullopt;
    }
    const absl::string_view text = *contents;
    token = std::string(
        absl::StripAsciiWhitespace(text.substr(0, text.find('\n'))));
  }
  if ((args.Has("token") || args.Has("token_file")) && token.empty()) {
    *exit_code =
        UsageError(ctx, args.Has("token_file") ? "--token_file holds no token"
                                               : "--token is empty");
    return std::nullopt;
  }
  return token;
}

// Runs a command on a remote engine (--server, --nats), then closes the
// client.
int RunOnRemote(Context& ctx, const Command& command, const ParsedArgs& args,
                Engine& engine) {
  ctx.engine = &engine;
  int code = command.run(ctx, args);
  absl::Status closed = engine.Close();
  if (!closed.ok() && code == kExitOk) {
    code = ReportError(
        ctx, closed.code(), kExitFailed,
        absl::StrCat("closing the client failed: ", closed.message()));
  }
  return code;
}

// Runs a command on the engine of the taskwald at --server, through its
// HTTP API (daemon/http_engine.h).
int RunThroughServer(Context& ctx, const Command& command,
                     const ParsedArgs& args) {
  int code = kExitOk;
  std::optional<std::string> token = ServerToken(ctx, args, &code);
  if (!token.has_value()) return code;
  daemon::HttpEngineOptions options;
  options.bearer_token = *std::move(token);
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      daemon::ConnectHttpEngine(ctx.server, std::move(options));
  if (!engine.ok()) {
    const absl::Status& s = engine.status();
    if (absl::IsInvalidArgument(s)) return UsageError(ctx, s.message());
    return ReportError(
        ctx, s.code(), kExitFailed, s.message(),
        "Check --server: is taskwald running, and listening on that "
        "address?\n");
  }
  return RunOnRemote(ctx, command, args, **engine);
}

// Runs a command on the engine of the cluster on JetStream at --nats,
// through its leader (ConnectJetStreamEngine).
int RunThroughNats(Context& ctx, const Command& command,
                   const ParsedArgs& args) {
#ifdef TASKWAL_CLI_JETSTREAM
  int code = kExitOk;
  const std::optional<int> shards =
      NumberFlag<int>(ctx, args, "shards", 1, 1, 64, &code);
  if (!shards.has_value()) return code;
  JetStreamOptions js;
  js.servers = ctx.nats;
  js.cluster = args.Get("cluster");
  js.shards = *shards;
  // A call that is safe to repeat waits this long for a leader (a
  // failover takes seconds); the others fail at once while none leads.
  js.retry_for = absl::Seconds(15);
  absl::StatusOr<std::unique_ptr<Engine>> engine = ConnectJetStreamEngine(js);
  if (!engine.ok()) {
    const absl::Status& s = engine.status();
    if (absl::IsInvalidArgument(s)) return UsageError(ctx, s.message());
    return ReportError(ctx, s.code(), kExitFailed, s.message(),
                       "Check --nats, --cluster and --shards: are the NATS "
                       "servers up, and does a taskwal-node serve that "
                       "cluster?\n",
                       /*code_in_text=*/false);
  }
  return RunOnRemote(ctx, command, args, **engine);
#else
  (void)command;
  (void)args;
  return UsageError(ctx,
                    "this taskwal was built without the JetStream mode "
                    "(CMake: -DTASKWAL_WITH_JETSTREAM=ON)");
#endif
}

}  // namespace

std::string EscapeForTerminal(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) AppendEscapedCharacter(&text, /*quote=*/0, &out);
  return out;
}

int RunCli(int argc, char** argv, std::ostream& out, std::ostream& err,
           const CliOptions& options) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    args.emplace_back(argv[i]);
    if (args.back() == "-h") args.back() = "--help";
  }
  // The command is named once it is known; until then errors are the
  // tool's ("taskwal: ...").
  Context ctx{out,
              err,
              options,
              options.env != nullptr ? options.env : Env::Default(),
              /*command=*/"",
              /*data_dir=*/"",
              /*json=*/JsonRequested(args),
              /*server=*/"",
              /*nats=*/""};
  absl::StatusOr<ParsedArgs> global =
      ParseArgs(args, GlobalFlags(), /*stop_at_positional=*/true);
  if (!global.ok()) {
    return UsageError(ctx, absl::StrCat(global.status().message(),
                                        " (command flags go after the "
                                        "command)"));
  }
  if (global->GetBool("version")) return PrintVersion(ctx);
  if (global->positional.empty()) {
    if (global->GetBool("help")) {
      out << ToolHelp();
      return kExitOk;
    }
    return UsageError(ctx,
                      "no command given; usage: taskwal --data_dir=DIR "
                      "[--json] COMMAND [ARGS]");
  }
  const std::string name = global->positional[0];
  const std::vector<std::string> rest(global->positional.begin() + 1,
                                      global->positional.end());
  if (name == "help") {
    if (rest.empty()) {
      out << ToolHelp();
      return kExitOk;
    }
    const Command* command = rest.size() == 1 ? FindCommand(rest[0]) : nullptr;
    if (command == nullptr) {
      return UsageError(
          ctx, absl::StrCat("help takes one command name; no command \"",
                            absl::StrJoin(rest, " "), "\""));
    }
    out << CommandHelp(*command);
    return kExitOk;
  }
  const Command* command = FindCommand(name);
  if (command == nullptr) {
    std::vector<absl::string_view> names;
    for (const Command& c : Commands()) names.push_back(c.name);
    return UsageError(
        ctx, absl::StrCat("unknown command \"", name,
                          "\"; commands: ", absl::StrJoin(names, ", ")));
  }

  ctx.command = name;
  std::vector<FlagSpec> specs = GlobalFlags();
  specs.insert(specs.end(), command->flags.begin(), command->flags.end());
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(rest, specs);
  if (!parsed.ok()) return UsageError(ctx, parsed.status().message());
  for (const auto& [flag, value] : global->flags) {
    parsed->flags.emplace(flag, value);  // A later repetition wins.
  }
  ctx.json = parsed->GetBool("json");
  if (parsed->GetBool("version")) return PrintVersion(ctx);
  if (parsed->GetBool("help")) {
    out << CommandHelp(*command);
    return kExitOk;
  }
  ctx.data_dir = parsed->Get("data_dir");
  ctx.server = parsed->Get("server");
  ctx.nats = parsed->Get("nats");
  if (parsed->Has("nats")) {
    if (int code = CheckNatsFlags(ctx, *command, *parsed); code != kExitOk) {
      return code;
    }
  } else if (parsed->Has("cluster") || parsed->Has("shards")) {
    return UsageError(ctx, "--cluster and --shards go with --nats=URLS");
  } else if (parsed->Has("server")) {
    if (int code = CheckServerFlags(ctx, *command, *parsed); code != kExitOk) {
      return code;
    }
  } else if (parsed->Has("token") || parsed->Has("token_file")) {
    return UsageError(ctx, "--token and --token_file go with --server=URL");
  } else if (ctx.data_dir.empty()) {
    return UsageError(ctx,
                      "--data_dir=DIR is required (or --server=URL, to act "
                      "through a running taskwald, or --nats=URLS "
                      "--cluster=NAME, through a cluster on JetStream)");
  }
  while (ctx.data_dir.size() > 1 && ctx.data_dir.back() == '/') {
    ctx.data_dir.pop_back();
  }
  const size_t n = parsed->positional.size();
  if (n < command->min_positional || n > command->max_positional) {
    return UsageError(
        ctx,
        n < command->min_positional
            ? absl::StrCat("missing argument: taskwal ", name, " ",
                           command->args)
            : absl::StrCat("unexpected argument \"",
                           parsed->positional[command->max_positional], "\""));
  }
  if (!ctx.nats.empty()) return RunThroughNats(ctx, *command, *parsed);
  if (!ctx.server.empty()) return RunThroughServer(ctx, *command, *parsed);
  if (!ctx.env->FileExists(ctx.data_dir)) {
    return ReportError(
        ctx, absl::StatusCode::kNotFound, kExitFailed,
        absl::StrCat("data directory ", ctx.data_dir, " does not exist"));
  }

  int code = kExitOk;
  const std::optional<uint32_t> partitions = NumberFlag<uint32_t>(
      ctx, *parsed, "partitions", 0, 0, wal::kMaxPartitions, &code);
  if (!partitions.has_value()) return code;
  ctx.partitions = *partitions;
  code = CheckDataDirectory(ctx, command->access);
  if (code != kExitOk) return code;
  if (command->access == Access::kFiles ||
      command->access == Access::kSalvage) {
    return command->run(ctx, *parsed);
  }
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      OpenEngine(ctx, command->access, &code);
  if (!engine.ok()) return code;
  ctx.engine = engine->get();
  code = command->run(ctx, *parsed);
  absl::Status closed = (*engine)->Close();
  if (!closed.ok() && code == kExitOk) {
    code = ReportError(
        ctx, closed.code(), kExitFailed,
        absl::StrCat("closing the engine failed: ", closed.message()));
  }
  return code;
}

}  // namespace taskwal::tools
