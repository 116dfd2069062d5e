#ifndef TASKWAL_TESTS_ENGINE_DUMP_H_
#define TASKWAL_TESTS_ENGINE_DUMP_H_

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "taskwal/engine.h"

namespace taskwal::test_util {

// Everything observable about an engine's tasks and totals, as one string:
// two engines with equal dumps hold the same tasks, histories and counters.
inline std::string Dump(Engine* engine) {
  std::string out;
  uint64_t cursor = 0;
  do {
    ListFilter f;
    f.limit = 10000;
    f.after_id = cursor;
    absl::StatusOr<ListPage> page = engine->List(f);
    if (!page.ok()) return page.status().ToString();
    for (const Task& t : page->tasks) {
      absl::StrAppend(&out, t.SerializeAsString(), "\n");
      absl::StatusOr<std::vector<HistoryEntry>> history =
          engine->History(t.id());
      if (!history.ok()) return history.status().ToString();
      for (const HistoryEntry& h : *history) {
        absl::StrAppend(&out, "  ", h.SerializeAsString(), "\n");
      }
    }
    cursor = page->next_cursor;
  } while (cursor != 0);
  absl::StatusOr<EngineStats> s = engine->Stats();
  if (!s.ok()) return s.status().ToString();
  absl::StrAppend(&out, s->pending, " ", s->claimed, " ", s->completed, " ",
                  s->failed, " ", s->cancelled, " | ", s->submitted, " ",
                  s->claims, " ", s->completions, " ", s->failed_attempts, " ",
                  s->lease_expiries, " ", s->retries, " ", s->cancellations,
                  " ", s->deletions, " ", s->retention_removals, " ",
                  s->transitions, " lsn ", s->last_lsn);
  return out;
}

}  // namespace taskwal::test_util

#endif  // TASKWAL_TESTS_ENGINE_DUMP_H_
