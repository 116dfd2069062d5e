#ifndef TASKWAL_BENCHMARKS_REPORT_H_
#define TASKWAL_BENCHMARKS_REPORT_H_

// Results of benchmarks/compare and how they are printed: aligned text or
// Markdown tables, CSV and JSON files, and a description of the machine.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace taskwal::bench {

// One figure. `label` distinguishes cases within a workload that are not a
// system or a thread count ("1000000 transitions, snapshot", "live=10000").
struct Measurement {
  std::string workload;
  std::string system;
  std::string label;
  int threads = 0;  // 0: not a multi-client figure
  std::string metric;
  double value = 0;
  std::string unit;
  std::string params;  // how it was obtained: sizes, capped, ...
};

class Results {
 public:
  void Add(Measurement m) { all_.push_back(std::move(m)); }
  const std::vector<Measurement>& all() const { return all_; }
  // A run that failed; compare reports these and exits non-zero.
  void AddError(std::string error) { errors_.push_back(std::move(error)); }
  const std::vector<std::string>& errors() const { return errors_; }
  // The last measurement that matches every given field.
  std::optional<double> Find(absl::string_view workload,
                             absl::string_view system, absl::string_view label,
                             int threads, absl::string_view metric) const;
  const Measurement* FindMeasurement(absl::string_view workload,
                                     absl::string_view system,
                                     absl::string_view label, int threads,
                                     absl::string_view metric) const;

  // Columns: workload,system,label,threads,metric,value,unit,
  // ratio_to_reference,params. ratio_to_reference is value divided by the
  // same figure of `reference` (empty when there is none).
  absl::Status WriteCsv(const std::string& path,
                        absl::string_view reference) const;
  // {"command": ..., "machine": {...}, "reference": ..., "results": [...]}
  absl::Status WriteJson(
      const std::string& path, absl::string_view command,
      const std::vector<std::pair<std::string, std::string>>& machine,
      absl::string_view reference) const;

 private:
  std::vector<Measurement> all_;
  std::vector<std::string> errors_;
};

struct Table {
  std::string title;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> notes;  // printed under the table
};

// Markdown (GitHub pipe table) or aligned plain text.
std::string RenderTable(const Table& table, bool markdown);

// ("CPU", "AMD EPYC, 2 cores"), ("Disk", ...), ... for the scratch
// directory `dir`.
std::vector<std::pair<std::string, std::string>> DescribeMachine(
    const std::string& dir);

// 1234567.8 -> "1,234,568"; small values keep 3 significant digits.
std::string FormatNumber(double value);
// "0.42x"
std::string FormatRatio(double ratio);

}  // namespace taskwal::bench

#endif  // TASKWAL_BENCHMARKS_REPORT_H_
