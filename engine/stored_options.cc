#include "engine/stored_options.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "wal/data_dir.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/log_writer.h"
#include "wal/status_macros.h"

namespace taskwal::engine {

namespace {

// The file's contents for `stored`: a file header and one record.
std::string Encode(const StoredOptions& stored) {
  std::string contents = wal::EncodeFileHeader(wal::kOptionsMagic, 0);
  wal::AppendRecord(wal::RecordType::kStoredOptions, 0, 0,
                    stored.SerializeAsString(), &contents);
  return contents;
}

// dir/OPTIONS as stored; nullopt if there is none.
absl::StatusOr<std::optional<StoredOptions>> Read(Env* env,
                                                  const std::string& dir) {
  const std::string path = wal::JoinPath(dir, wal::kOptionsFileName);
  if (!env->FileExists(path)) return std::optional<StoredOptions>();
  TASKWAL_ASSIGN_OR_RETURN(std::string contents, env->ReadFileToString(path));
  // Damage says what to do: the file holds no tasks.
  auto damaged = [&path](absl::string_view what) {
    return absl::DataLossError(absl::StrCat(
        path, ": ", what,
        " (it holds the last writer's options, not tasks: the owner's next "
        "Open rewrites it, or remove it)"));
  };
  absl::Status header =
      wal::DecodeFileHeader(contents, wal::kOptionsMagic, path).status();
  if (absl::IsDataLoss(header)) return damaged(header.message());
  TASKWAL_RETURN_IF_ERROR(header);
  wal::LogReader reader(contents, path);
  wal::LogReader::Record record;
  absl::StatusOr<bool> found = reader.Read(&record);
  if (absl::IsDataLoss(found.status())) {
    return damaged(found.status().message());
  }
  TASKWAL_RETURN_IF_ERROR(found.status());
  StoredOptions stored;
  if (!*found || record.type != wal::RecordType::kStoredOptions ||
      !stored.ParseFromString(std::string(record.payload))) {
    return damaged("holds no options record");
  }
  return std::optional<StoredOptions>(std::move(stored));
}

}  // namespace

StoredOptions ToStoredOptions(const EngineOptions& o) {
  StoredOptions s;
  s.set_max_idempotency_key_bytes(o.max_idempotency_key_bytes);
  s.set_max_type_bytes(o.max_type_bytes);
  s.set_max_payload_bytes(o.max_payload_bytes);
  s.set_max_result_bytes(o.max_result_bytes);
  s.set_max_error_bytes(o.max_error_bytes);
  s.set_max_worker_id_bytes(o.max_worker_id_bytes);
  s.set_max_batch_size(o.max_batch_size);
  s.set_max_tasks(o.max_tasks);
  s.set_default_max_attempts(o.default_max_attempts);
  s.set_max_max_attempts(o.max_max_attempts);
  s.set_default_lease_micros(absl::ToInt64Microseconds(o.default_lease));
  s.set_max_lease_micros(absl::ToInt64Microseconds(o.max_lease));
  *s.mutable_default_retry_policy() = o.default_retry_policy;
  s.set_max_history_per_task(o.max_history_per_task);
  s.set_retention_micros(absl::ToInt64Microseconds(o.retention));
  return s;
}

void ApplyStoredOptions(const StoredOptions& s, EngineOptions* o) {
  if (s.has_max_idempotency_key_bytes()) {
    o->max_idempotency_key_bytes = s.max_idempotency_key_bytes();
  }
  if (s.has_max_type_bytes()) o->max_type_bytes = s.max_type_bytes();
  if (s.has_max_payload_bytes()) o->max_payload_bytes = s.max_payload_bytes();
  if (s.has_max_result_bytes()) o->max_result_bytes = s.max_result_bytes();
  if (s.has_max_error_bytes()) o->max_error_bytes = s.max_error_bytes();
  if (s.has_max_worker_id_bytes()) {
    o->max_worker_id_bytes = s.max_worker_id_bytes();
  }
  if (s.has_max_batch_size()) o->max_batch_size = s.max_batch_size();
  if (s.has_max_tasks()) o->max_tasks = s.max_tasks();
  if (s.has_default_max_attempts()) {
    o->default_max_attempts = s.default_max_attempts();
  }
  if (s.has_max_max_attempts()) o->max_max_attempts = s.max_max_attempts();
  if (s.has_default_lease_micros()) {
    o->default_lease = absl::Microseconds(s.default_lease_micros());
  }
  if (s.has_max_lease_micros()) {
    o->max_lease = absl::Microseconds(s.max_lease_micros());
  }
  if (s.has_default_retry_policy()) {
    o->default_retry_policy = s.default_retry_policy();
  }
  if (s.has_max_history_per_task()) {
    o->max_history_per_task = s.max_history_per_task();
  }
  if (s.has_retention_micros()) {
    o->retention = absl::Microseconds(s.retention_micros());
  }
}

absl::Status ApplyStoredOptions(Env* env, const std::string& dir,
                                EngineOptions* options) {
  TASKWAL_ASSIGN_OR_RETURN(std::optional<StoredOptions> stored, Read(env, dir));
  if (stored.has_value()) ApplyStoredOptions(*stored, options);
  return absl::OkStatus();
}

absl::Status StoreOptions(Env* env, const std::string& dir,
                          const EngineOptions& options) {
  const std::string contents = Encode(ToStoredOptions(options));
  const std::string path = wal::JoinPath(dir, wal::kOptionsFileName);
  if (env->FileExists(path)) {
    absl::StatusOr<std::string> current = env->ReadFileToString(path);
    if (current.ok() && *current == contents) return absl::OkStatus();
  }
  return wal::WriteFileDurably(env, dir, wal::kOptionsFileName, contents);
}

}  // namespace taskwal::engine
