#ifndef TASKWAL_ENGINE_ENGINE_TESTING_H_
#define TASKWAL_ENGINE_ENGINE_TESTING_H_

// For tests: an EngineImpl over a MemoryJournal whose live state machines
// the test can inspect, and a replay of that journal into fresh ones.

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/engine_impl.h"
#include "engine/journal.h"
#include "engine/recovery.h"
#include "engine/state_machine.h"
#include "taskwal/engine.h"

namespace taskwal::engine::testing {

struct RecordedEngine {
  std::unique_ptr<EngineImpl> engine;
  MemoryJournal* journal = nullptr;   // Owned by engine.
  std::vector<StateMachine*> states;  // Owned by engine, one per partition.
};

// REQUIRES: partitions >= 1.
inline RecordedEngine OpenRecorded(const EngineOptions& options,
                                   uint32_t partitions) {
  RecordedEngine r;
  auto journal = std::make_unique<MemoryJournal>(partitions);
  r.journal = journal.get();
  std::vector<std::unique_ptr<StateMachine>> states;
  for (uint32_t p = 0; p < partitions; ++p) {
    states.push_back(NewPartitionState(options, p, partitions));
    r.states.push_back(states.back().get());
  }
  r.engine = std::make_unique<EngineImpl>(options, std::move(journal),
                                          std::move(states));
  return r;
}

// Applies each partition's journaled records, in LSN order, to fresh state
// machines. An error names the partition and LSN that did not apply.
inline absl::StatusOr<std::vector<std::unique_ptr<StateMachine>>> Replay(
    const MemoryJournal& journal, const EngineOptions& options) {
  const uint32_t n = journal.partitions();
  std::vector<std::unique_ptr<StateMachine>> states;
  for (uint32_t p = 0; p < n; ++p) {
    states.push_back(NewPartitionState(options, p, n));
    const std::vector<std::string> log = journal.Records(p);
    for (size_t i = 0; i < log.size(); ++i) {
      Transition t;
      if (!t.ParseFromString(log[i])) {
        return absl::DataLossError(
            absl::StrCat("partition ", p, " LSN ", i + 1, " does not parse"));
      }
      absl::Status s = states.back()->Apply(t, i + 1);
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrCat("partition ", p, " LSN ",
                                                   i + 1, ": ", s.message()));
      }
    }
  }
  return states;
}

}  // namespace taskwal::engine::testing

#endif  // TASKWAL_ENGINE_ENGINE_TESTING_H_
