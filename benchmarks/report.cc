#include "benchmarks/report.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tools/json.h"

namespace taskwal::bench {

const Measurement* Results::FindMeasurement(absl::string_view workload,
                                            absl::string_view system,
                                            absl::string_view label,
                                            int threads,
                                            absl::string_view metric) const {
  for (auto it = all_.rbegin(); it != all_.rend(); ++it) {
    if (it->workload == workload && it->system == system &&
        it->label == label && it->threads == threads && it->metric == metric) {
      return &*it;
    }
  }
  return nullptr;
}

std::optional<double> Results::Find(absl::string_view workload,
                                    absl::string_view system,
                                    absl::string_view label, int threads,
                                    absl::string_view metric) const {
  const Measurement* m =
      FindMeasurement(workload, system, label, threads, metric);
  if (m == nullptr) return std::nullopt;
  return m->value;
}

namespace {

std::string CsvField(absl::string_view s) {
  if (s.find_first_of(",\"\n") == absl::string_view::npos) {
    return std::string(s);
  }
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  return absl::StrFormat("%.17g", v);
}

absl::Status WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::trunc);
  out << contents;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

std::optional<double> Ratio(const Results& results, const Measurement& m,
                            absl::string_view reference) {
  if (reference.empty() || m.system == reference) {
    return m.system == reference ? std::optional<double>(1.0) : std::nullopt;
  }
  std::optional<double> ref =
      results.Find(m.workload, reference, m.label, m.threads, m.metric);
  if (!ref.has_value() || *ref == 0) return std::nullopt;
  return m.value / *ref;
}

}  // namespace

absl::Status Results::WriteCsv(const std::string& path,
                               absl::string_view reference) const {
  std::string out =
      "workload,system,label,threads,metric,value,unit,ratio_to_reference,"
      "params\n";
  for (const Measurement& m : all_) {
    std::optional<double> ratio = Ratio(*this, m, reference);
    absl::StrAppend(&out, CsvField(m.workload), ",", CsvField(m.system), ",",
                    CsvField(m.label), ",", m.threads, ",", CsvField(m.metric),
                    ",", absl::StrFormat("%.6g", m.value), ",",
                    CsvField(m.unit), ",",
                    ratio.has_value() ? absl::StrFormat("%.4g", *ratio) : "",
                    ",", CsvField(m.params), "\n");
  }
  return WriteFile(path, out);
}

absl::Status Results::WriteJson(
    const std::string& path, absl::string_view command,
    const std::vector<std::pair<std::string, std::string>>& machine,
    absl::string_view reference) const {
  std::string out =
      absl::StrCat("{\n  \"command\": ", tools::JsonQuote(command),
                   ",\n  \"reference\": ", tools::JsonQuote(reference),
                   ",\n  \"machine\": {");
  for (size_t i = 0; i < machine.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "\n" : ",\n", "    ",
                    tools::JsonQuote(machine[i].first), ": ",
                    tools::JsonQuote(machine[i].second));
  }
  absl::StrAppend(&out, "\n  },\n  \"results\": [");
  for (size_t i = 0; i < all_.size(); ++i) {
    const Measurement& m = all_[i];
    std::optional<double> ratio = Ratio(*this, m, reference);
    absl::StrAppend(&out, i == 0 ? "\n" : ",\n",
                    "    {\"workload\": ", tools::JsonQuote(m.workload),
                    ", \"system\": ", tools::JsonQuote(m.system),
                    ", \"label\": ", tools::JsonQuote(m.label),
                    ", \"threads\": ", m.threads,
                    ", \"metric\": ", tools::JsonQuote(m.metric),
                    ", \"value\": ", JsonNumber(m.value),
                    ", \"unit\": ", tools::JsonQuote(m.unit),
                    ", \"ratio_to_reference\": ",
                    ratio.has_value() ? JsonNumber(*ratio) : "null",
                    ", \"params\": ", tools::JsonQuote(m.params), "}");
  }
  absl::StrAppend(&out, "\n  ]\n}\n");
  return WriteFile(path, out);
}

std::string RenderTable(const Table& table, bool markdown) {
  std::string out;
  // Columns of figures are right-aligned, columns of words left-aligned.
  std::vector<bool> right(table.header.size(), true);
  right[0] = false;
  for (const auto& r : table.rows) {
    for (size_t i = 0; i < r.size() && i < right.size(); ++i) {
      if (!r[i].empty() && !absl::ascii_isdigit(r[i][0]) && r[i] != "-") {
        right[i] = false;
      }
    }
  }
  if (markdown) {
    absl::StrAppend(&out, "#### ", table.title, "\n\n");
    auto row = [&out](const std::vector<std::string>& cells) {
      absl::StrAppend(&out, "| ", absl::StrJoin(cells, " | "), " |\n");
    };
    row(table.header);
    std::vector<std::string> sep;
    for (bool r : right) sep.push_back(r ? "---:" : "---");
    row(sep);
    for (const auto& r : table.rows) row(r);
    if (!table.notes.empty()) out += "\n";
    for (const std::string& n : table.notes) absl::StrAppend(&out, n, "\n\n");
    if (table.notes.empty()) out += "\n";
    return out;
  }
  std::vector<size_t> width(table.header.size(), 0);
  auto measure = [&width](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], cells[i].size());
    }
  };
  measure(table.header);
  for (const auto& r : table.rows) measure(r);
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size() && i < width.size(); ++i) {
      const std::string pad(width[i] - cells[i].size(), ' ');
      const bool last = i + 1 == cells.size();
      absl::StrAppend(
          &out, right[i] ? pad + cells[i] : (last ? cells[i] : cells[i] + pad),
          last ? "\n" : "  ");
    }
  };
  absl::StrAppend(&out, "== ", table.title, "\n");
  line(table.header);
  size_t total = 0;
  for (size_t w : width) total += w + 2;
  out += std::string(total > 2 ? total - 2 : 0, '-') + "\n";
  for (const auto& r : table.rows) line(r);
  for (const std::string& n : table.notes) absl::StrAppend(&out, n, "\n");
  out += "\n";
  return out;
}

namespace {

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(ss.str()));
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
    }
  }
  return "unknown";
}

// The block device and file system holding dir.
std::string DescribeDisk(const std::string& dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return "unknown";
  const std::string sys =
      absl::StrCat("/sys/dev/block/", major(st.st_dev), ":", minor(st.st_dev));
  char resolved[4096];
  std::string device = "unknown";
  if (realpath(sys.c_str(), resolved) != nullptr) {
    const std::string path = resolved;
    device = path.substr(path.rfind('/') + 1);
  }
  // A partition's queue/ lives in its parent disk's directory.
  std::string rotational = ReadSmallFile(sys + "/queue/rotational");
  if (rotational.empty())
    rotational = ReadSmallFile(sys + "/../queue/rotational");
  std::string model = ReadSmallFile(sys + "/device/model");
  std::string size = ReadSmallFile(sys + "/size");
  // File system: the longest mount point that prefixes dir.
  std::ifstream mounts("/proc/mounts");
  std::string line, fs = "unknown", mount_point;
  char real_dir[4096];
  const std::string abs_dir =
      realpath(dir.c_str(), real_dir) != nullptr ? real_dir : dir;
  while (std::getline(mounts, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() < 4) continue;
    const std::string& mp = f[1];
    const bool prefix =
        abs_dir == mp || mp == "/" ||
        (absl::StartsWith(abs_dir, mp) && abs_dir[mp.size()] == '/');
    if (prefix && mp.size() >= mount_point.size()) {
      mount_point = mp;
      fs = absl::StrCat(f[2], " (", f[0], ", ", f[3], ")");
    }
  }
  uint64_t sectors = 0;
  std::string size_text;
  if (absl::SimpleAtoi(size, &sectors) && sectors > 0) {
    size_text = absl::StrFormat(", %.0f GiB", sectors * 512.0 / (1 << 30));
  }
  return absl::StrCat(
      device, model.empty() ? "" : absl::StrCat(" ", model), size_text,
      rotational == "0"   ? ", non-rotational"
      : rotational == "1" ? ", rotational flag set (virtual disks often say so)"
                          : "",
      "; file system ", fs, " at ", mount_point);
}

std::string MemTotal() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "MemTotal:")) {
      uint64_t kb = 0;
      std::vector<absl::string_view> f =
          absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() >= 2 && absl::SimpleAtoi(f[1], &kb)) {
        return absl::StrFormat("%.1f GiB", kb / 1048576.0);
      }
    }
  }
  return "unknown";
}

}  // namespace

std::vector<std::pair<std::string, std::string>> DescribeMachine(
    const std::string& dir) {
  struct utsname u;
  std::string kernel = "unknown";
  if (uname(&u) == 0) kernel = absl::StrCat(u.sysname, " ", u.release);
  double load[3] = {0, 0, 0};
  std::string load_text = "unknown";
  if (getloadavg(load, 3) == 3) {
    load_text = absl::StrFormat("%.2f %.2f %.2f", load[0], load[1], load[2]);
  }
  return {
      {"Date", absl::FormatTime("%Y-%m-%d %H:%M:%S %Z", absl::Now(),
                                absl::UTCTimeZone())},
      {"CPU", absl::StrCat(CpuModel(),
                           ", nproc = ", std::thread::hardware_concurrency())},
      {"Memory", MemTotal()},
      {"Kernel", kernel},
      {"Build",
#ifdef NDEBUG
       absl::StrCat("optimized (NDEBUG), compiler ", __VERSION__)
#else
       absl::StrCat("NOT OPTIMIZED (build with --config=opt), compiler ",
                    __VERSION__)
#endif
      },
      {"Disk (data directories)", absl::StrCat(dir, " on ", DescribeDisk(dir))},
      {"Load average at start", load_text},
  };
}

std::string FormatNumber(double value) {
  if (!std::isfinite(value)) return "-";
  const double a = std::fabs(value);
  if (a >= 1000) {
    std::string digits = absl::StrFormat("%.0f", a);
    std::string out;
    const int n = static_cast<int>(digits.size());
    for (int i = 0; i < n; ++i) {
      if (i > 0 && (n - i) % 3 == 0) out += ',';
      out += digits[i];
    }
    return value < 0 ? "-" + out : out;
  }
  if (a >= 100) return absl::StrFormat("%.0f", value);
  if (a >= 10) return absl::StrFormat("%.1f", value);
  if (a >= 1) return absl::StrFormat("%.2f", value);
  return absl::StrFormat("%.3g", value);
}

std::string FormatRatio(double ratio) {
  if (!std::isfinite(ratio)) return "-";
  if (ratio >= 100) return absl::StrFormat("%.0fx", ratio);
  if (ratio >= 10) return absl::StrFormat("%.1fx", ratio);
  return absl::StrFormat("%.2fx", ratio);
}

}  // namespace taskwal::bench
