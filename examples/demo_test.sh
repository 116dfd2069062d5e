#!/usr/bin/env bash
# demo_test.sh <path to the demo binary>
# Runs the full demo, then the --crash demo on the same directory, and checks
# that each exits 0 and prints its key lines.
set -uo pipefail

DEMO="$1"
DATA_DIR="${TEST_TMPDIR:?}/demo-data"
failures=0

# run_demo <name> <expected line>... -- <demo args>...
run_demo() {
  local name="$1"
  shift
  local expected=()
  while [[ "$1" != "--" ]]; do
    expected+=("$1")
    shift
  done
  shift
  local out="${TEST_TMPDIR}/${name}.out"
  echo "=== ${name}: demo $*"
  "${DEMO}" "$@" >"${out}" 2>&1
  local rc=$?
  cat "${out}"
  if [[ ${rc} -ne 0 ]]; then
    echo "FAIL (${name}): demo exited with ${rc}"
    failures=$((failures + 1))
  fi
  for line in "${expected[@]}"; do
    if ! grep -qF -- "${line}" "${out}"; then
      echo "FAIL (${name}): output lacks \"${line}\""
      failures=$((failures + 1))
    fi
  done
  if grep -qF "CHECK FAILED" "${out}"; then
    echo "FAIL (${name}): a check failed"
    failures=$((failures + 1))
  fi
}

run_demo full \
  "Deduplicated! Returned existing task" "ALREADY_EXISTS" \
  "Retry queued" "Completed" "Failed permanently" \
  "tasks, results and histories recovered" \
  "SIGKILL sent" "died of SIGKILL" "acknowledged events recovered" \
  "All checks passed" \
  -- --data_dir="${DATA_DIR}"

# The second run the issue asks for: kill -9 again on what the first left.
run_demo crash \
  "SIGKILL sent" "died of SIGKILL" "acknowledged events recovered" \
  "earlier finished tasks recovered unchanged" "Deduplicated!" \
  "All checks passed" \
  -- --crash --data_dir="${DATA_DIR}"

# A full run on a used directory is refused, not silently merged.
"${DEMO}" --data_dir="${DATA_DIR}" >"${TEST_TMPDIR}/reuse.out" 2>&1
rc=$?
if [[ ${rc} -ne 2 ]]; then
  cat "${TEST_TMPDIR}/reuse.out"
  echo "FAIL (reuse): expected exit 2 on a used directory, got ${rc}"
  failures=$((failures + 1))
fi

if ((failures)); then
  echo "${failures} failures"
  exit 1
fi
echo "PASS"
