#ifndef TASKWAL_BENCHMARKS_TASKWAL_QUEUE_H_
#define TASKWAL_BENCHMARKS_TASKWAL_QUEUE_H_

// taskwal behind the benchmark queue interface (benchmarks/queue.h): one
// Engine, clients are worker ids.

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "benchmarks/queue.h"
#include "taskwal/engine.h"

namespace taskwal::bench {

class TaskwalQueue final : public QueueSystem {
 public:
  // Opens an engine in dir with `options` (data_dir is set to dir).
  static absl::StatusOr<std::unique_ptr<TaskwalQueue>> Open(
      const std::string& dir, EngineOptions options);
  // Serves an engine already open (on NATS JetStream, for one). `after_close`,
  // when set, runs once Close has closed the engine, whatever that returned
  // (to delete what the engine kept elsewhere); Close returns the engine's
  // error first, else after_close's.
  static std::unique_ptr<TaskwalQueue> Wrap(
      std::unique_ptr<Engine> engine,
      std::function<absl::Status()> after_close = nullptr);

  absl::StatusOr<std::unique_ptr<QueueClient>> NewClient(
      int client_index) override;
  absl::Status Close() override;
  // fsyncs, log flushes and records per flush since Open.
  std::string Diagnostics() override;
  bool batches() const override { return true; }

  // Borrowed; valid until this object is destroyed.
  Engine* engine() { return engine_.get(); }

 private:
  TaskwalQueue(std::unique_ptr<Engine> engine,
               std::function<absl::Status()> after_close)
      : engine_(std::move(engine)), after_close_(std::move(after_close)) {}
  const std::unique_ptr<Engine> engine_;
  const std::function<absl::Status()> after_close_;
};

// The options compare uses for mode: the engine's defaults except the sync
// mode.
EngineOptions CompareOptions(SyncMode mode);

const char* SyncModeName(SyncMode mode);

}  // namespace taskwal::bench

#endif  // TASKWAL_BENCHMARKS_TASKWAL_QUEUE_H_
