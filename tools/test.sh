#!/usr/bin/env bash
# Runs the whole test suite offline:
#   1. tools/setup.sh (Debian packages, Abseil sources);
#   2. `bazel test //...` under the default config, --config=asan and
#      --config=tsan (override with TASKWAL_CONFIGS="default asan tsan opt",
#      and the targets with TASKWAL_TARGETS="//engine/... //wal/..."); the
#      default config's build adds --config=werror (warnings only: the code
#      is the same), so one build serves its tests and the warnings check;
#   3. the TSan canary (//tests:tsan_canary under --config=tsan): the racy mode
#      must FAIL with "data race" (TSan is active), the --locked mode must be
#      clean (no false reports from the source-built Abseil);
#   4. clang's thread-safety analysis: `bazel build --config=tsa //...`
#      (every lock annotation checked, as errors); -Wall -Wextra -Werror over
#      the project's own code (`--config=werror`, with its canary); clang-format
#      (tools/format.sh --check);
#   5. the README's recipe for embedding from another workspace
#      (tools/embed_check.sh); the CMake build, installed and consumed
#      through find_package and pkg-config (tools/cmake_check.sh);
#   6. the libFuzzer targets for a bounded time (tools/fuzz.sh).
# Prints `N passed, N failed` (all bazel test targets of all configs plus the
# canary checks) and exits non-zero if anything failed. FLAKY counts as failed.
# Each step prints how long it took ("--- cmake: 190s (total 1200s)"), so a
# slow CI run shows where the time went. A warning in the project's code fails
# the default config's build (its tests then FAILED TO BUILD) and the warnings
# check.
# Extra bazel flags can be passed as arguments: tools/test.sh --config=clang
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}" || exit 1

"${ROOT}/tools/setup.sh" || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
echo "--- setup: ${SECONDS}s"

read -r -a CONFIGS <<<"${TASKWAL_CONFIGS:-default asan tsan}"
read -r -a TARGETS <<<"${TASKWAL_TARGETS:-//...}"
EXTRA=("$@")
LOGDIR="$(mktemp -d "${TMPDIR:-/tmp}/taskwal-test.XXXXXX")"
BAZEL_OUT_FLAGS=(--color=no --curses=no)
TSAN_RUN_OPTIONS="report_atomic_races=0 halt_on_error=1 second_deadlock_stack=1"

passed=0
failed=0
failures=()
STARTED=0  # SECONDS counts from the start of the script (setup included).
step_start=${SECONDS}

step_done() {  # step_done <name>: how long the step since the last took
  echo "--- ${1}: $((SECONDS - step_start))s (total $((SECONDS - STARTED))s)"
  step_start=${SECONDS}
}

record() {  # record <pass|fail> <description>
  if [[ "$1" == pass ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failures+=("$2")
  fi
}

config_flags() {  # config_flags <name> -> bazel flags for that config
  if [[ "$1" == default ]]; then
    # -Wall -Wextra as errors over the project's own code: the same code as
    # a plain build, so the default config's tests run what the warnings
    # check built (one build of //... instead of two).
    echo "--config=werror"
  else
    echo "--config=$1"
  fi
}

for cfg in "${CONFIGS[@]}"; do
  log="${LOGDIR}/test-${cfg}.log"
  read -r -a flags <<<"$(config_flags "${cfg}")"
  echo "=== bazel test ${TARGETS[*]} (${cfg}) ${flags[*]} ${EXTRA[*]}"
  # --keep_going: one target that fails to build does not hide the others.
  bazel test "${BAZEL_OUT_FLAGS[@]}" --keep_going "${flags[@]}" "${EXTRA[@]}" \
    -- "${TARGETS[@]}" 2>&1 | tee "${log}"
  rc=${PIPESTATUS[0]}
  # Summary lines: "//pkg:target   (cached) PASSED in 0.1s", "... FAILED in",
  # "... FLAKY, failed in 1 out of 2", "... TIMEOUT in", "... NO STATUS",
  # "... FAILED TO BUILD", "... INCOMPLETE".
  cfg_pass=0
  cfg_fail=0
  while read -r target status; do
    if [[ "${status}" == PASSED ]]; then
      record pass "${target}"
      cfg_pass=$((cfg_pass + 1))
    else
      record fail "${target} (${cfg}): ${status}"
      cfg_fail=$((cfg_fail + 1))
    fi
  done < <(sed -nE 's/^((\/\/|@)[^[:space:]]+)[[:space:]]+(\(cached\)[[:space:]]+)?(PASSED|FAILED TO BUILD|FAILED|FLAKY|TIMEOUT|NO STATUS|INCOMPLETE|REMOTE FAILURE)([[:space:],].*)?$/\1 \4/p' "${log}")
  # Exit code 4: no test targets at all (fine). Any other non-zero exit
  # without a failed test line (e.g. a build error) counts as one failure.
  if [[ ${rc} -ne 0 && ${rc} -ne 4 && ${cfg_fail} -eq 0 ]]; then
    record fail "bazel test (${cfg}) exited with ${rc}"
  fi
  echo "=== ${cfg}: ${cfg_pass} passed, ${cfg_fail} failed (bazel exit ${rc}; log ${log})"
  if [[ "${cfg}" == default ]]; then default_built_rc=${rc}; fi
  step_done "bazel test (${cfg})"
done

# --- TSan canary -------------------------------------------------------------
canary_log="${LOGDIR}/canary-build.log"
echo "=== TSan canary: bazel build --config=tsan //tests:tsan_canary"
if bazel build "${BAZEL_OUT_FLAGS[@]}" --config=tsan "${EXTRA[@]}" //tests:tsan_canary >"${canary_log}" 2>&1 &&
   bin="$(bazel info "${BAZEL_OUT_FLAGS[@]}" --config=tsan "${EXTRA[@]}" bazel-bin 2>/dev/null)/tests/tsan_canary" &&
   [[ -x "${bin}" ]]; then
  out="${LOGDIR}/canary-racy.log"
  TSAN_OPTIONS="${TSAN_RUN_OPTIONS}" "${bin}" >"${out}" 2>&1
  rc=$?
  if [[ ${rc} -ne 0 ]] && grep -q "data race" "${out}"; then
    echo "tsan canary (racy): PASSED (TSan reported the deliberate data race, exit ${rc})"
    record pass canary-racy
  else
    echo "tsan canary (racy): FAILED (expected a TSan 'data race' report and a non-zero exit; got exit ${rc})"
    cat "${out}"
    record fail "tsan canary (racy): TSan did not catch the deliberate race"
  fi
  out="${LOGDIR}/canary-locked.log"
  TSAN_OPTIONS="${TSAN_RUN_OPTIONS}" "${bin}" --locked >"${out}" 2>&1
  rc=$?
  if [[ ${rc} -eq 0 ]] && ! grep -q "ThreadSanitizer" "${out}"; then
    echo "tsan canary (locked): PASSED (absl::Mutex-guarded counter is clean)"
    record pass canary-locked
  else
    echo "tsan canary (locked): FAILED (exit ${rc}):"
    cat "${out}"
    record fail "tsan canary (locked): report on correctly locked code"
  fi
else
  echo "tsan canary: FAILED TO BUILD"
  tail -n 50 "${canary_log}"
  record fail "tsan canary: build failed"
  record fail "tsan canary: build failed"
fi
step_done "TSan canary"

# --- Compiler checks -----------------------------------------------------------
# checked_build NAME CONFIG CANARY DEFINE PATTERN VIOLATION: builds //... with
# --config=CONFIG, after a canary: CANARY built with -DDEFINE must fail with
# a message matching PATTERN (a build that lets VIOLATION through proves
# nothing about the rest).
checked_build() {
  local name="$1" config="$2" canary="$3" define="$4" pattern="$5" violation="$6"
  local log="${LOGDIR}/${config}.log" canary_log="${LOGDIR}/${config}-canary.log"
  echo "=== ${name}: bazel build --config=${config} //... ${canary}"
  if bazel build "${BAZEL_OUT_FLAGS[@]}" --config="${config}" "${EXTRA[@]}" \
      --copt="-D${define}" "${canary}" >"${canary_log}" 2>&1; then
    echo "${name} canary: FAILED (${violation} built)"
    record fail "${name} canary: --config=${config} is not active"
  elif grep -q -- "${pattern}" "${canary_log}"; then
    echo "${name} canary: PASSED (${violation} was refused)"
    record pass "${config}-canary"
  else
    echo "${name} canary: FAILED (the build failed for another reason)"
    tail -n 20 "${canary_log}"
    record fail "${name} canary: build failed (log ${canary_log})"
  fi
  if [[ "${config}" == werror && -n "${default_built_rc:-}" &&
        "${TARGETS[*]}" == "//..." ]]; then
    # The default config's tests were built with --config=werror.
    # 0: passed, 3: tests failed, 4: no tests; anything else (1: a build
    # failure, 2: bad flags, 8: interrupted, ...) did not build all.
    if [[ ${default_built_rc} -eq 0 || ${default_built_rc} -eq 3 || ${default_built_rc} -eq 4 ]]; then
      echo "${name}: PASSED (--config=${config}, //..., built by the default config's tests)"
      record pass "${name}"
    else
      echo "${name}: FAILED (the default config's build failed; see its log)"
      grep -E "error:|warning:" "${LOGDIR}/test-default.log" | sort -u | head -n 40
      record fail "${name} (log ${LOGDIR}/test-default.log)"
    fi
  elif bazel build "${BAZEL_OUT_FLAGS[@]}" --keep_going --config="${config}" \
      "${EXTRA[@]}" -- //... "${canary}" >"${log}" 2>&1; then
    echo "${name}: PASSED (--config=${config}, //...)"
    record pass "${name}"
  else
    echo "${name}: FAILED"
    grep -E "error:|warning:" "${log}" | sort -u | head -n 40
    tail -n 20 "${log}"
    record fail "${name} (log ${log})"
  fi
}

# clang's -Wthread-safety as errors over the project's own code (external
# code is built with -w), so the lock annotations are checked, not trusted.
checked_build thread-safety tsa //tests:tsa_canary \
  TASKWAL_TSA_CANARY_VIOLATION "thread-safety" "an unguarded read"
step_done thread-safety
# -Wall -Wextra as errors over the project's own files; external code and
# protoc's output are left out.
checked_build warnings werror //tests:werror_canary \
  TASKWAL_WERROR_CANARY_VIOLATION "Werror=unused-parameter" \
  "an unused parameter"
step_done warnings

# --- Format ---------------------------------------------------------------------
# The project's own C++ files follow .clang-format (tools/format.sh fixes
# them).
format_log="${LOGDIR}/format.log"
echo "=== format: tools/format.sh --check"
if "${ROOT}/tools/format.sh" --check >"${format_log}" 2>&1; then
  echo "format: PASSED ($(grep -c . "${format_log}" || true) lines of output)"
  record pass format
else
  echo "format: FAILED"
  head -n 40 "${format_log}"
  record fail "clang-format (log ${format_log}; run tools/format.sh)"
fi
step_done format

# --- Embedding -----------------------------------------------------------------
# The README's recipe for depending on taskwal from another Bazel workspace.
embed_log="${LOGDIR}/embed.log"
echo "=== embedding: tools/embed_check.sh"
if "${ROOT}/tools/embed_check.sh" >"${embed_log}" 2>&1 &&
   grep -Eq "embedded taskwal \(production\): submitted task [0-9]+ and found it by its key" "${embed_log}"; then
  echo "embedding: PASSED (another workspace built and ran against @taskwal)"
  record pass embedding
else
  echo "embedding: FAILED"
  tail -n 40 "${embed_log}"
  record fail "embedding (log ${embed_log})"
fi
step_done embedding

# --- CMake -------------------------------------------------------------------
# The CMake build beside Bazel: build, ctest, install into a temporary
# prefix, and the find_package and pkg-config consumers of the installed
# library (tools/cmake_check.sh). TASKWAL_CMAKE=0 skips it.
if [[ "${TASKWAL_CMAKE:-1}" != 0 ]]; then
  cmake_log="${LOGDIR}/cmake.log"
  echo "=== cmake: tools/cmake_check.sh"
  if "${ROOT}/tools/cmake_check.sh" >"${cmake_log}" 2>&1 &&
     grep -q "^cmake_check: PASS" "${cmake_log}"; then
    echo "cmake: PASSED ($(grep "^cmake_check: PASS" "${cmake_log}" | sed 's/^cmake_check: PASS: //'))"
    record pass cmake
  else
    echo "cmake: FAILED"
    tail -n 40 "${cmake_log}"
    record fail "cmake build and consumers (log ${cmake_log})"
  fi
fi
step_done cmake

# --- Fuzzers -----------------------------------------------------------------
# libFuzzer targets (log reader, snapshot loader) under clang + ASan + UBSan,
# each for a bounded time. TASKWAL_FUZZ_SECONDS=0 skips them.
fuzz_seconds="${TASKWAL_FUZZ_SECONDS:-30}"
if [[ "${fuzz_seconds}" != 0 ]]; then
  fuzz_log="${LOGDIR}/fuzz.log"
  echo "=== fuzzers: tools/fuzz.sh ${fuzz_seconds}"
  if "${ROOT}/tools/fuzz.sh" "${fuzz_seconds}" >"${fuzz_log}" 2>&1; then
    echo "fuzzers: PASSED (no crash in ${fuzz_seconds}s each)"
    record pass fuzzers
  else
    echo "fuzzers: FAILED"
    tail -n 60 "${fuzz_log}"
    record fail "fuzzers (log ${fuzz_log})"
  fi
fi
step_done fuzzers

echo
if ((failed)); then
  echo "Failures:"
  printf '  %s\n' "${failures[@]}"
fi
echo "Logs: ${LOGDIR}"
echo "${passed} passed, ${failed} failed"
((failed == 0))
