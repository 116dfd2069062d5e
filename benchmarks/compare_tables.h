#ifndef TASKWAL_BENCHMARKS_COMPARE_TABLES_H_
#define TASKWAL_BENCHMARKS_COMPARE_TABLES_H_

// The tables benchmarks/compare prints, built from its Results, including
// the targets with met / missed.

#include <vector>

#include "benchmarks/compare_runs.h"
#include "benchmarks/report.h"

namespace taskwal::bench {

// Every table for which there are results, in reading order: systems
// legend, lifecycle, dedup, latency, recovery, memory, scale, targets.
std::vector<Table> BuildTables(const CompareConfig& config,
                               const Results& results);

}  // namespace taskwal::bench

#endif  // TASKWAL_BENCHMARKS_COMPARE_TABLES_H_
