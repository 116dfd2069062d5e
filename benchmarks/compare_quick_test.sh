#!/usr/bin/env bash
# compare_quick_test.sh <path to compare>
# Smoke test of benchmarks/compare: `compare --quick` must exit 0, print a
# lifecycle row for every system (and the disk baselines), every table, and
# write well-formed CSV and JSON. It checks that the program works, never
# how fast anything is.
set -uo pipefail

COMPARE="$1"
TMP="${TEST_TMPDIR:-$(mktemp -d)}"
OUT="${TMP}/quick.txt"
failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

"${COMPARE}" --quick --tmpdir="${TMP}" --out="${TMP}/quick.csv" \
  --json="${TMP}/quick.json" >"${OUT}" 2>"${TMP}/quick.err"
rc=$?
cat "${OUT}"
if [[ ${rc} -ne 0 ]]; then
  cat "${TMP}/quick.err"
  fail "compare --quick exited with ${rc}"
fi

# The lifecycle table: from its title to the next table.
lifecycle="$(sed -n '/^== Lifecycle throughput/,/^== Submit with 50% duplicate/p' "${OUT}")"
for system in taskwal-always taskwal-interval taskwal-none taskwald-interval \
    taskwald-always sqlite-full \
    sqlite-normal rocksdb-sync rocksdb-nosync rocksdb-buffered \
    disk-fdatasync disk-group-commit disk-blocking-clients disk-append; do
  if ! grep -qE "^${system} +[0-9]" <<<"${lifecycle}"; then
    fail "the lifecycle table has no row with figures for ${system}"
  fi
done
# taskwald's round trips are timed although its calls wait for no sync.
batch="$(sed -n '/^== Lifecycle throughput with batched calls/,/^== Submit with 50% duplicate/p' "${OUT}")"
for system in taskwal-always taskwal-interval taskwal-none; do
  if ! grep -qE "^${system} +[0-9][0-9,.]* \([0-9.]+x\)" <<<"${batch}"; then
    fail "the batch table has no row with figures and ratios for ${system}"
  fi
done
if grep -qE "^(sqlite|rocksdb|taskwald)" <<<"${batch}"; then
  fail "the batch table has a row for a system without batched calls"
fi
latency="$(sed -n '/^== Latency per call/,/^== /p' "${OUT}")"
for system in taskwald-interval taskwald-always taskwal-always; do
  if ! grep -qE "^${system} +[0-9]+ +submit +[0-9]" <<<"${latency}"; then
    fail "the latency table has no submit row for ${system}"
  fi
done
for title in "== Systems" "== Lifecycle throughput" "== Lifecycle throughput with batched calls" \
    "== Scaling" "== Submit with 50% duplicate" \
    "== Latency per call" "== Recovery" "== Memory" "== Scale" "== Targets"; do
  grep -qF -- "${title}" "${OUT}" || fail "no table \"${title}\""
done
if grep -qF "FAILED RUNS" "${OUT}"; then
  fail "some runs failed"
fi

# Machine-readable output.
head -n1 "${TMP}/quick.csv" | grep -q '^workload,system,label,threads,metric,value,unit,ratio_to_reference,params$' ||
  fail "CSV header"
[[ "$(grep -c '^lifecycle,' "${TMP}/quick.csv")" -ge 22 ]] || fail "too few lifecycle rows in the CSV"
grep -q '"results": \[' "${TMP}/quick.json" || fail "JSON has no results array"
if command -v python3 >/dev/null; then
  python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "${TMP}/quick.json" ||
    fail "JSON does not parse"
fi

# The scratch directory is cleaned up.
if compgen -G "${TMP}/taskwal-compare-*" >/dev/null; then
  fail "compare left its data directory behind"
fi

# Bad flags are refused.
"${COMPARE}" --workloads=nonsense >/dev/null 2>&1
[[ $? -eq 2 ]] || fail "an unknown workload is not refused with exit 2"

if ((failures)); then
  echo "${failures} failures"
  exit 1
fi
echo "PASS"
