#!/usr/bin/env bash
# Builds libFuzzer targets with clang + ASan/UBSan (--config=fuzz, see
# .bazelrc) and runs each for a bounded time.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS defaults to 30 (per target); TARGETs default to every fuzzer listed
# in FUZZERS below. Exits non-zero if a build fails or a fuzzer finds a
# crash, a leak, a timeout or an out-of-memory input; the input is saved
# under the artifact directory printed at the end.
#
# Uses its own Bazel output base (TASKWAL_FUZZ_OUTPUT_BASE, default
# ~/.cache/taskwal-fuzz/output-base) and creates no bazel-* symlinks, so
# switching to clang here never discards the GCC build of the workspace's
# main output base; the Bazel server it starts is shut down on exit. The
# corpus of each fuzzer persists in TASKWAL_FUZZ_CORPUS
# (default ~/.cache/taskwal-fuzz/corpus/<target>).
set -uo pipefail

FUZZERS=(
  //wal:log_reader_fuzzer
  //engine:snapshot_fuzzer
)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

seconds=30
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then
  seconds="$1"
  shift
fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=("${FUZZERS[@]}")
fi

CACHE="${HOME}/.cache/taskwal-fuzz"
OUTPUT_BASE="${TASKWAL_FUZZ_OUTPUT_BASE:-${CACHE}/output-base}"
CORPUS_ROOT="${TASKWAL_FUZZ_CORPUS:-${CACHE}/corpus}"
ARTIFACTS="$(mktemp -d "${TMPDIR:-/tmp}/taskwal-fuzz.XXXXXX")"
BAZEL=(bazel "--output_base=${OUTPUT_BASE}")
FLAGS=(--config=fuzz --symlink_prefix=/ --color=no --curses=no)

cleanup() { "${BAZEL[@]}" shutdown >/dev/null 2>&1; }
trap cleanup EXIT

echo "=== building ${targets[*]} (--config=fuzz)"
if ! "${BAZEL[@]}" build "${FLAGS[@]}" -- "${targets[@]}"; then
  echo "fuzz: build failed"
  exit 1
fi
bin_dir="$("${BAZEL[@]}" info "${FLAGS[@]}" bazel-bin 2>/dev/null)" || {
  echo "fuzz: bazel info failed"
  exit 1
}

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

failed=()
for target in "${targets[@]}"; do
  package="${target#//}"
  package="${package%%:*}"
  name="${target##*:}"
  binary="${bin_dir}/${package}/${name}"
  corpus="${CORPUS_ROOT}/${name}"
  artifacts="${ARTIFACTS}/${name}/"
  mkdir -p "${corpus}" "${artifacts}"
  echo "=== ${target}: ${seconds}s, corpus ${corpus}"
  "${binary}" -max_total_time="${seconds}" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="${artifacts}" "${corpus}"
  rc=$?
  if [[ ${rc} -ne 0 ]]; then
    echo "=== ${target}: FAILED (exit ${rc}); inputs in ${artifacts}"
    failed+=("${target}")
  else
    echo "=== ${target}: no crash in ${seconds}s"
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: ${#failed[@]} of ${#targets[@]} fuzzers failed: ${failed[*]}"
  echo "artifacts: ${ARTIFACTS}"
  exit 1
fi
rm -rf "${ARTIFACTS}"
echo "fuzz: ${#targets[@]} fuzzers ran ${seconds}s each, no failures"
