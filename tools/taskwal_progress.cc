#include "tools/taskwal_progress.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"

namespace taskwal::tools {
namespace {

constexpr int kBarCells = 20;
constexpr double kMiB = 1024.0 * 1024.0;

}  // namespace

ProgressBar::ProgressBar(std::ostream& out, std::string label, bool enabled,
                         uint64_t min_total_bytes)
    : out_(out),
      label_(std::move(label)),
      enabled_(enabled),
      min_total_bytes_(min_total_bytes) {}

void ProgressBar::Update(uint64_t done_bytes, uint64_t total_bytes) {
  if (!enabled_ || total_bytes == 0 || total_bytes < min_total_bytes_) return;
  done_bytes = std::min(done_bytes, total_bytes);
  const int percent = static_cast<int>(done_bytes * 100.0 / total_bytes);
  if (percent == last_percent_) return;
  last_percent_ = percent;
  const int cells = percent * kBarCells / 100;
  const std::string line = absl::StrFormat(
      "%s [%s%s] %3d%% %7.1f/%.1f MiB", label_, std::string(cells, '#'),
      std::string(kBarCells - cells, '.'), percent, done_bytes / kMiB,
      total_bytes / kMiB);
  // Pad over a longer previous line.
  out_ << '\r' << line
       << std::string(width_ > line.size() ? width_ - line.size() : 0, ' ')
       << std::flush;
  width_ = std::max(width_, line.size());
}

void ProgressBar::Finish() {
  if (width_ == 0) return;
  out_ << '\r' << std::string(width_, ' ') << '\r' << std::flush;
  width_ = 0;
  last_percent_ = -1;
}

}  // namespace taskwal::tools
