// An SQLite task queue built the way popular SQLite-backed job queues are:
// one table, WAL journal mode, a connection per worker thread with a busy
// timeout, one transaction per call (BEGIN IMMEDIATE, so a writer never
// deadlocks upgrading a read lock), and a claim that is one
// UPDATE ... WHERE id = (SELECT ... LIMIT 1) RETURNING statement.
//
// synchronous=FULL: every commit fsyncs the WAL (durable per call, the
// counterpart of taskwal kAlways). synchronous=NORMAL: the WAL is synced at
// checkpoints only, so a commit survives a process crash but not a power
// loss (the counterpart of taskwal kInterval).

#include <sqlite3.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "benchmarks/queue.h"

namespace taskwal::bench {
namespace {

constexpr int kBusyTimeoutMs = 60000;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS tasks (
  id INTEGER PRIMARY KEY,
  key TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  payload BLOB,
  priority INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL DEFAULT 3,
  claimed_by TEXT,
  claim_token INTEGER,
  lease_deadline INTEGER,
  created INTEGER NOT NULL,
  finished INTEGER,
  result BLOB,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS tasks_ready ON tasks (status, priority DESC, id);
)sql";

constexpr const char* kInsert =
    "INSERT INTO tasks (key, type, payload, priority, status, created) "
    "VALUES (?1, ?2, ?3, ?4, 'pending', ?5) "
    "ON CONFLICT (key) DO NOTHING RETURNING id";
constexpr const char* kSelectByKey =
    "SELECT id, type, payload FROM tasks WHERE key = ?1";
constexpr const char* kClaim =
    "UPDATE tasks SET status = 'claimed', claimed_by = ?1, claim_token = ?2, "
    "attempts = attempts + 1, lease_deadline = ?3 "
    "WHERE id = (SELECT id FROM tasks WHERE status = 'pending' "
    "ORDER BY priority DESC, id LIMIT 1) RETURNING id, payload";
constexpr const char* kComplete =
    "UPDATE tasks SET status = 'completed', result = ?1, finished = ?2, "
    "lease_deadline = NULL "
    "WHERE id = ?3 AND status = 'claimed' AND claimed_by = ?4 AND "
    "claim_token = ?5";

absl::Status SqliteError(sqlite3* db, absl::string_view what) {
  return absl::InternalError(
      absl::StrCat("sqlite ", what, ": ", sqlite3_errmsg(db)));
}

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

// A prepared statement, reset after each use.
class Statement {
 public:
  Statement() = default;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() { sqlite3_finalize(stmt_); }

  absl::Status Prepare(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_,
                           nullptr) != SQLITE_OK) {
      return SqliteError(db, sql);
    }
    return absl::OkStatus();
  }
  sqlite3_stmt* get() { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

class SqliteClient final : public QueueClient {
 public:
  SqliteClient(sqlite3* db, int index, std::atomic<uint64_t>* next_token)
      : db_(db),
        worker_(absl::StrCat("worker-", index)),
        next_token_(next_token) {}
  // close_v2: the connection goes once the statements (members, destroyed
  // after this body) are finalized.
  ~SqliteClient() override { sqlite3_close_v2(db_); }

  absl::Status Init() {
    for (auto [stmt, sql] :
         {std::pair<Statement*, const char*>{&begin_, "BEGIN IMMEDIATE"},
          {&commit_, "COMMIT"},
          {&rollback_, "ROLLBACK"},
          {&insert_, kInsert},
          {&select_, kSelectByKey},
          {&claim_, kClaim},
          {&complete_, kComplete}}) {
      absl::Status s = stmt->Prepare(db_, sql);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status Submit(const NewTask& task, bool* deduplicated) override {
    return InTransaction([&]() -> absl::Status {
      sqlite3_stmt* ins = insert_.get();
      sqlite3_bind_text(ins, 1, task.key.data(),
                        static_cast<int>(task.key.size()), SQLITE_STATIC);
      sqlite3_bind_text(ins, 2, task.type.data(),
                        static_cast<int>(task.type.size()), SQLITE_STATIC);
      sqlite3_bind_blob(ins, 3, task.payload.data(),
                        static_cast<int>(task.payload.size()), SQLITE_STATIC);
      sqlite3_bind_int(ins, 4, task.priority);
      sqlite3_bind_int64(ins, 5, NowMicros());
      int rc = sqlite3_step(ins);
      const bool inserted = rc == SQLITE_ROW;
      while (rc == SQLITE_ROW) rc = sqlite3_step(ins);
      sqlite3_reset(ins);
      if (rc != SQLITE_DONE) return SqliteError(db_, "insert");
      *deduplicated = !inserted;
      if (inserted) return absl::OkStatus();
      // The key exists: the same task if type and payload match.
      sqlite3_stmt* sel = select_.get();
      sqlite3_bind_text(sel, 1, task.key.data(),
                        static_cast<int>(task.key.size()), SQLITE_STATIC);
      rc = sqlite3_step(sel);
      absl::Status s;
      if (rc != SQLITE_ROW) {
        s = SqliteError(db_, "select by key");
      } else {
        const absl::string_view type(
            reinterpret_cast<const char*>(sqlite3_column_text(sel, 1)),
            static_cast<size_t>(sqlite3_column_bytes(sel, 1)));
        const absl::string_view payload(
            static_cast<const char*>(sqlite3_column_blob(sel, 2)),
            static_cast<size_t>(sqlite3_column_bytes(sel, 2)));
        if (type != task.type || payload != task.payload) {
          s = absl::AlreadyExistsError("key names a different task");
        }
      }
      sqlite3_reset(sel);
      return s;
    });
  }

  absl::StatusOr<ClaimedRef> ClaimNext() override {
    ClaimedRef claimed;
    bool found = false;
    const uint64_t token = next_token_->fetch_add(1) + 1;
    absl::Status s = InTransaction([&]() -> absl::Status {
      sqlite3_stmt* st = claim_.get();
      sqlite3_bind_text(st, 1, worker_.data(), static_cast<int>(worker_.size()),
                        SQLITE_STATIC);
      sqlite3_bind_int64(st, 2, static_cast<int64_t>(token));
      sqlite3_bind_int64(st, 3, NowMicros() + 30000000);
      int rc = sqlite3_step(st);
      if (rc == SQLITE_ROW) {
        found = true;
        claimed.id = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
        claimed.token = token;
        // The worker reads its payload, as a real one would.
        payload_.assign(static_cast<const char*>(sqlite3_column_blob(st, 1)),
                        static_cast<size_t>(sqlite3_column_bytes(st, 1)));
      }
      while (rc == SQLITE_ROW) rc = sqlite3_step(st);
      sqlite3_reset(st);
      if (rc != SQLITE_DONE) return SqliteError(db_, "claim");
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    if (!found) return absl::NotFoundError("no task is ready");
    return claimed;
  }

  absl::Status Complete(const ClaimedRef& claim,
                        absl::string_view result) override {
    return InTransaction([&]() -> absl::Status {
      sqlite3_stmt* st = complete_.get();
      sqlite3_bind_blob(st, 1, result.data(), static_cast<int>(result.size()),
                        SQLITE_STATIC);
      sqlite3_bind_int64(st, 2, NowMicros());
      sqlite3_bind_int64(st, 3, static_cast<int64_t>(claim.id));
      sqlite3_bind_text(st, 4, worker_.data(), static_cast<int>(worker_.size()),
                        SQLITE_STATIC);
      sqlite3_bind_int64(st, 5, static_cast<int64_t>(claim.token));
      const int rc = sqlite3_step(st);
      sqlite3_reset(st);
      if (rc != SQLITE_DONE) return SqliteError(db_, "complete");
      if (sqlite3_changes(db_) != 1) {
        return absl::AbortedError("claim is not current");
      }
      return absl::OkStatus();
    });
  }

 private:
  // BEGIN IMMEDIATE; body; COMMIT (ROLLBACK if body fails). SQLITE_BUSY
  // past the busy timeout is returned as an error.
  template <typename Body>
  absl::Status InTransaction(Body body) {
    if (Step(begin_) != SQLITE_DONE) return SqliteError(db_, "begin");
    absl::Status s = body();
    if (!s.ok()) {
      Step(rollback_);
      return s;
    }
    if (Step(commit_) != SQLITE_DONE) {
      absl::Status e = SqliteError(db_, "commit");
      Step(rollback_);
      return e;
    }
    return absl::OkStatus();
  }

  int Step(Statement& stmt) {
    const int rc = sqlite3_step(stmt.get());
    sqlite3_reset(stmt.get());
    return rc;
  }

  sqlite3* const db_;
  const std::string worker_;
  std::atomic<uint64_t>* const next_token_;
  std::string payload_;
  Statement begin_, commit_, rollback_, insert_, select_, claim_, complete_;
};

class SqliteQueue final : public QueueSystem {
 public:
  SqliteQueue(std::string path, bool full)
      : path_(std::move(path)), full_(full) {}

  absl::StatusOr<std::unique_ptr<QueueClient>> NewClient(
      int client_index) override {
    sqlite3* db = nullptr;
    // One connection per thread, so no SQLite-level mutex is needed.
    const int rc = sqlite3_open_v2(
        path_.c_str(), &db,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
        nullptr);
    if (rc != SQLITE_OK) {
      absl::Status s = SqliteError(db, "open");
      sqlite3_close(db);
      return s;
    }
    sqlite3_busy_timeout(db, kBusyTimeoutMs);
    const std::string pragmas =
        absl::StrCat("PRAGMA journal_mode = WAL; PRAGMA synchronous = ",
                     full_ ? "FULL" : "NORMAL", ";");
    char* err = nullptr;
    if (sqlite3_exec(db, pragmas.c_str(), nullptr, nullptr, &err) !=
        SQLITE_OK) {
      absl::Status s =
          absl::InternalError(absl::StrCat("sqlite pragma: ", err));
      sqlite3_free(err);
      sqlite3_close(db);
      return s;
    }
    auto client =
        std::make_unique<SqliteClient>(db, client_index, &next_token_);
    absl::Status s = client->Init();
    if (!s.ok()) return s;
    return std::unique_ptr<QueueClient>(std::move(client));
  }

  absl::Status Close() override { return absl::OkStatus(); }

  absl::Status CreateSchema() {
    sqlite3* db = nullptr;
    if (sqlite3_open(path_.c_str(), &db) != SQLITE_OK) {
      absl::Status s = SqliteError(db, "open");
      sqlite3_close(db);
      return s;
    }
    sqlite3_busy_timeout(db, kBusyTimeoutMs);
    char* err = nullptr;
    absl::Status s;
    const std::string sql = absl::StrCat("PRAGMA journal_mode = WAL;", kSchema);
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      s = absl::InternalError(absl::StrCat("sqlite schema: ", err));
      sqlite3_free(err);
    }
    sqlite3_close(db);
    return s;
  }

 private:
  const std::string path_;
  const bool full_;
  std::atomic<uint64_t> next_token_{0};
};

}  // namespace

std::vector<SystemSpec> SqliteSystems() {
  std::vector<SystemSpec> specs;
  for (const bool full : {true, false}) {
    specs.push_back(SystemSpec{
        full ? "sqlite-full" : "sqlite-normal",
        absl::StrCat(
            "SQLite ", sqlite3_libversion(), " queue table, WAL, synchronous=",
            full ? "FULL (fsync per commit)" : "NORMAL (no fsync per commit)",
            ", BEGIN IMMEDIATE per call, connection per thread"),
        full ? Durability::kFsyncPerCall : Durability::kOsPerCall,
        [full](const std::string& dir)
            -> absl::StatusOr<std::unique_ptr<QueueSystem>> {
          auto queue = std::make_unique<SqliteQueue>(
              absl::StrCat(dir, "/queue.db"), full);
          absl::Status s = queue->CreateSchema();
          if (!s.ok()) return s;
          return std::unique_ptr<QueueSystem>(std::move(queue));
        }});
  }
  return specs;
}

}  // namespace taskwal::bench
