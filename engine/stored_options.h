#ifndef TASKWAL_ENGINE_STORED_OPTIONS_H_
#define TASKWAL_ENGINE_STORED_OPTIONS_H_

// The OPTIONS file of a data directory: the EngineOptions that matter for
// its data (input limits, max_tasks, attempt and lease defaults and bounds,
// the default retry policy, history length, retention) as its last writer
// opened it. Partitions are in META (wal/data_dir.h). A writer's Open
// stores its options (StoreOptions); a program that opens a directory it
// does not own, such as the CLI, sets EngineOptions::use_stored_options and
// gets the owner's (ApplyStoredOptions), so that it accepts and keeps what
// the owner does. wal/log_format.md describes the file.

#include <string>

#include "absl/status/status.h"
#include "engine/stored_options.pb.h"
#include "taskwal/engine.h"
#include "taskwal/env.h"

namespace taskwal::engine {

// The data options of `options`.
StoredOptions ToStoredOptions(const EngineOptions& options);

// Sets every field of *options that `stored` holds; leaves the others.
void ApplyStoredOptions(const StoredOptions& stored, EngineOptions* options);

// Reads dir/OPTIONS and applies it to *options (see above). A directory
// without an OPTIONS file (new, or written before there was one) leaves
// *options as it is.
//   kDataLoss: the file is damaged (names it; the owner's next Open
//     rewrites it).
// Stored values are not range-checked here: Engine::Open checks the result.
absl::Status ApplyStoredOptions(Env* env, const std::string& dir,
                                EngineOptions* options);

// Makes dir/OPTIONS hold the data options of `options`, durably (see
// wal::WriteFileDurably). Writes nothing if it already holds them; a
// damaged or missing file is replaced.
absl::Status StoreOptions(Env* env, const std::string& dir,
                          const EngineOptions& options);

}  // namespace taskwal::engine

#endif  // TASKWAL_ENGINE_STORED_OPTIONS_H_
