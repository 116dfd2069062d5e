#!/usr/bin/env bash
# report.sh [--engine-benchmark] [compare flags...]
#
# Regenerates the measured part of BENCHMARKS.md from a real run:
#   1. builds //benchmarks:compare (and :engine_benchmark) with --config=opt;
#   2. runs `compare --markdown --out=... --json=... [compare flags]`;
#   3. draws the charts (benchmarks/plot.sh);
#   4. replaces the text between the GENERATED markers in BENCHMARKS.md
#      with the command, the machine, every table (targets included, with
#      met / missed computed by compare) and links to the charts.
# With --engine-benchmark it also runs engine_benchmark and puts its output
# in its own generated section.
#
# Outputs go to benchmarks/results/ (override: TASKWAL_RESULTS_DIR):
# results.csv, results.json, tables.md, compare.log, *.png,
# engine_benchmark.txt. Set COMPARE_BIN / ENGINE_BENCHMARK_BIN to use
# binaries built elsewhere. Nothing in BENCHMARKS.md outside the markers is
# touched; a failed run leaves BENCHMARKS.md as it was.
#
# Examples:
#   benchmarks/report.sh                       # the full run (long)
#   benchmarks/report.sh --quick               # smoke test of the pipeline
#   benchmarks/report.sh --engine-benchmark --threads=1,4,16,64 \
#       --durable_tasks=5000 --fast_tasks=50000 ...   # a medium run
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
OUT="${TASKWAL_RESULTS_DIR:-${ROOT}/benchmarks/results}"
DOC="${ROOT}/BENCHMARKS.md"

engine_benchmark=0
if [[ "${1:-}" == "--engine-benchmark" ]]; then
  engine_benchmark=1
  shift
fi

if [[ -z "${COMPARE_BIN:-}" || (${engine_benchmark} == 1 && -z "${ENGINE_BENCHMARK_BIN:-}") ]]; then
  bazel build --config=opt //benchmarks:compare //benchmarks:engine_benchmark >&2
  BIN_DIR="$(bazel info --config=opt bazel-bin 2>/dev/null)/benchmarks"
  COMPARE_BIN="${COMPARE_BIN:-${BIN_DIR}/compare}"
  ENGINE_BENCHMARK_BIN="${ENGINE_BENCHMARK_BIN:-${BIN_DIR}/engine_benchmark}"
fi

mkdir -p "${OUT}"
OUT="$(cd "${OUT}" && pwd)"
# Paths relative to the repository root where possible, so the command
# printed into BENCHMARKS.md reads the same on every machine.
rel="${OUT#"${ROOT}"/}"
rm -f "${OUT}"/*.png
# Show progress and keep it.
set +e
"${COMPARE_BIN}" --markdown --out="${rel}/results.csv" \
  --json="${rel}/results.json" "$@" >"${OUT}/tables.md.new" \
  2> >(tee "${OUT}/compare.log" >&2)
rc=$?
set -e
if [[ ${rc} -ne 0 ]]; then
  echo "report.sh: compare exited with ${rc}; BENCHMARKS.md left as it was" >&2
  echo "report.sh: tables so far in ${OUT}/tables.md.new" >&2
  exit "${rc}"
fi
mv "${OUT}/tables.md.new" "${OUT}/tables.md"
"${ROOT}/benchmarks/plot.sh" "${OUT}/results.csv" "${OUT}" >&2

if ((engine_benchmark)); then
  "${ENGINE_BENCHMARK_BIN}" --benchmark_counters_tabular=false \
    2>&1 | tee "${OUT}/engine_benchmark.txt" >&2
fi

# The generated sections.
generated="${OUT}/generated.md"
{
  cat "${OUT}/tables.md"
  echo "#### Charts"
  echo
  echo "Drawn by \`benchmarks/plot.sh ${rel}/results.csv ${rel}\` from this run's CSV."
  echo
  for png in lifecycle scaling dedup latency-1 latency-4 latency-16 latency-64 scale; do
    if [[ -f "${OUT}/${png}.png" ]]; then
      echo "![${png}](${rel}/${png}.png)"
      echo
    fi
  done
} >"${generated}"

# splice FILE BEGIN_MARKER END_MARKER CONTENT_FILE
splice() {
  local file="$1" begin="$2" end="$3" content="$4"
  if ! grep -qF -- "${begin}" "${file}" || ! grep -qF -- "${end}" "${file}"; then
    echo "report.sh: ${file} lacks the markers ${begin} / ${end}" >&2
    exit 1
  fi
  awk -v begin="${begin}" -v end="${end}" -v content="${content}" '
    $0 == begin { print; while ((getline line < content) > 0) print line; skip = 1; next }
    $0 == end { skip = 0 }
    !skip { print }' "${file}" >"${file}.new"
  mv "${file}.new" "${file}"
}

splice "${DOC}" "<!-- BEGIN GENERATED: compare -->" \
  "<!-- END GENERATED: compare -->" "${generated}"
if ((engine_benchmark)); then
  {
    echo "Produced by:"
    echo
    echo '```'
    echo "bazel-bin/benchmarks/engine_benchmark --benchmark_counters_tabular=false"
    echo '```'
    echo
    echo '```'
    cat "${OUT}/engine_benchmark.txt"
    echo '```'
  } >"${OUT}/engine_benchmark.md"
  splice "${DOC}" "<!-- BEGIN GENERATED: engine_benchmark -->" \
    "<!-- END GENERATED: engine_benchmark -->" "${OUT}/engine_benchmark.md"
fi
rm -f "${generated}" "${OUT}/engine_benchmark.md"
echo "report.sh: BENCHMARKS.md updated from ${rel}/" >&2
