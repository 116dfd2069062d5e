#ifndef TASKWAL_TOOLS_TASKWAL_PROGRESS_H_
#define TASKWAL_TOOLS_TASKWAL_PROGRESS_H_

#include <cstdint>
#include <ostream>
#include <string>

namespace taskwal::tools {

// A one-line progress bar for a terminal, redrawn in place with '\r':
//
//   verify [##########..........]  50%   12.0/24.0 MiB
//
// It draws nothing unless enabled (the caller checks that the stream is a
// terminal) and the total reaches min_total_bytes, so small jobs and
// redirected output stay clean. It redraws only when the shown percentage
// changes, and Finish() (or the destructor) blanks the line again.
//
// Not safe for concurrent use. `out` must outlive the bar.
class ProgressBar {
 public:
  ProgressBar(std::ostream& out, std::string label, bool enabled,
              uint64_t min_total_bytes);
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  ~ProgressBar() { Finish(); }

  void Update(uint64_t done_bytes, uint64_t total_bytes);
  // Clears the line if anything was drawn. Idempotent.
  void Finish();

  bool drawn() const { return width_ > 0; }

 private:
  std::ostream& out_;
  const std::string label_;
  const bool enabled_;
  const uint64_t min_total_bytes_;
  int last_percent_ = -1;
  size_t width_ = 0;  // Of the line on screen; 0 when nothing is shown.
};

}  // namespace taskwal::tools

#endif  // TASKWAL_TOOLS_TASKWAL_PROGRESS_H_
