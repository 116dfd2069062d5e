#!/usr/bin/env bash
# taskwal_binary_test.sh <path to the taskwal binary>
# The real binary, as a user runs it: --help, exit statuses, output streams,
# and no progress bar when stderr is not a terminal.
set -uo pipefail

TASKWAL="$1"
DIR="${TEST_TMPDIR:?}/data"
failures=0

# expect <status> <description> -- <taskwal args>...
# Runs taskwal with stdout in $OUT and stderr in $ERR.
OUT="${TEST_TMPDIR}/out"
ERR="${TEST_TMPDIR}/err"
expect() {
  local want="$1" what="$2"
  shift 3
  "${TASKWAL}" "$@" >"${OUT}" 2>"${ERR}"
  local got=$?
  if [[ ${got} -ne ${want} ]]; then
    echo "FAIL: ${what}: taskwal $* exited ${got}, want ${want}"
    echo "--- stdout"; cat "${OUT}"; echo "--- stderr"; cat "${ERR}"
    failures=$((failures + 1))
  fi
}
# contains <file> <text> <description>
contains() {
  if ! grep -qF -- "$2" "$1"; then
    echo "FAIL: $3: $(basename "$1") lacks \"$2\""
    cat "$1"
    failures=$((failures + 1))
  fi
}
empty() {
  if [[ -s "$1" ]]; then
    echo "FAIL: $2: $(basename "$1") is not empty:"
    cat -A "$1"
    failures=$((failures + 1))
  fi
}

expect 0 "help" -- --help
contains "${OUT}" "Usage:" "help"
contains "${OUT}" "Exit status:" "help"
contains "${OUT}" "64  usage error" "help"
contains "${OUT}" "4   DIR is not a taskwal data directory" "help"
empty "${ERR}" "help"
expect 0 "help of a command" -- help verify
contains "${OUT}" "torn tail" "help verify"
expect 0 "command --help" -- dump --help
contains "${OUT}" "PARTITION:LSN SEGMENT OFFSET TRANSITION" "dump --help"
expect 0 "submit --help" -- submit --help
contains "${OUT}" "--partitions=N" "submit --help"

expect 64 "no command" --
contains "${ERR}" "no command given" "no command"
empty "${OUT}" "no command"
expect 64 "unknown command" -- --data_dir="${DIR}" frobnicate
expect 64 "unknown flag" -- --data_dir="${DIR}" list --colour
expect 64 "missing data_dir" -- stats
expect 3 "missing directory" -- --data_dir="${DIR}" stats
contains "${ERR}" "does not exist" "missing directory"

# Another directory: read commands refuse it, and so do commands that
# change one, which create nothing there.
OTHER="${TEST_TMPDIR}/other"
mkdir -p "${OTHER}"
echo "not a task" >"${OTHER}/notes.txt"
expect 4 "not a data directory" -- --data_dir="${OTHER}" stats
contains "${ERR}" "${OTHER} is not a taskwal data directory (no META file)" \
  "not a data directory"
empty "${OUT}" "not a data directory"
expect 4 "submit into another directory" -- --data_dir="${OTHER}" submit --key=a
contains "${ERR}" "is not empty" "submit into another directory"
if [[ "$(ls -A "${OTHER}")" != "notes.txt" ]]; then
  echo "FAIL: submit into another directory wrote there:"; ls -A "${OTHER}"
  failures=$((failures + 1))
fi

mkdir -p "${DIR}"
# One partition: ids 1, 2, 3, ... (the default of 16 hands out 16+p first).
expect 64 "bad --partitions" -- --data_dir="${DIR}" submit --key=a --partitions=0x
expect 0 "submit" -- --data_dir="${DIR}" submit --key=a --type=t --payload=x \
  --partitions=1
contains "${OUT}" "task 1 submitted" "submit"
expect 3 "another partition count" -- --data_dir="${DIR}" submit --key=z \
  --partitions=2
contains "${ERR}" "created with 1 partition " "another partition count"
expect 0 "submit again" -- --data_dir="${DIR}" submit --key=a --type=t --payload=x
contains "${OUT}" "deduplicated" "submit again"
expect 3 "conflicting submit" -- --data_dir="${DIR}" submit --key=a --payload=y
expect 0 "get --json" -- --data_dir="${DIR}" --json get 1
contains "${OUT}" '{"id":"1","idempotency_key":"a"' "get --json"
expect 3 "get a missing task" -- --data_dir="${DIR}" get 2
expect 0 "cancel" -- --data_dir="${DIR}" cancel 1
expect 0 "verify" -- --data_dir="${DIR}" verify
contains "${OUT}" ": clean" "verify"
empty "${ERR}" "verify (no progress bar off a terminal)"
contains "${OUT}" "of 1 partition (" "verify"
expect 0 "stats" -- --data_dir="${DIR}" stats
contains "${OUT}" "partitions: 1" "stats"
expect 0 "dump" -- --data_dir="${DIR}" dump
contains "${OUT}" "0:1 wal-00000000000000000001.log 24 time_micros:" "dump"
contains "${OUT}" "cancel { task_id: 1 }" "dump"
empty "${ERR}" "dump"

# Task text reaches the terminal escaped, one row a task.
expect 0 "submit escapes" -- --data_dir="${DIR}" submit --key=$'k\e[2J\n\t' \
  --type=$'t\e]0;title\a'
expect 0 "list escapes" -- --data_dir="${DIR}" list
if LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]' "${OUT}"; then
  echo "FAIL: list printed control characters:"; cat -A "${OUT}"
  failures=$((failures + 1))
fi
contains "${OUT}" 't\x1b]0;title\x07' "list escapes"
contains "${OUT}" 'k\x1b[2J\n\t' "list escapes"
if [[ $(wc -l <"${OUT}") -ne 4 ]]; then  # Header, 2 tasks, cursor.
  echo "FAIL: list escapes: not one line a task:"; cat -A "${OUT}"
  failures=$((failures + 1))
fi

# --version; --json errors; submit's --delay and --payload_file=-; retry
# by filter; salvage of a clean directory.
expect 0 "version" -- --version
contains "${OUT}" "taskwal 0.12.0-dev (data directory format " "version"
expect 3 "json error" -- --data_dir="${DIR}" --json get 99
contains "${OUT}" \
  '{"error":{"code":"NOT_FOUND","message":"task 99 not found","exit_status":3}}' \
  "json error"
empty "${ERR}" "json error"
expect 0 "submit --delay" -- --data_dir="${DIR}" submit --key=later --delay=1h
contains "${OUT}" "submitted, claimable from " "submit --delay"
printf 'from\nstdin' >"${TEST_TMPDIR}/payload"
expect 0 "payload from stdin" -- --data_dir="${DIR}" submit --key=piped \
  --payload_file=- <"${TEST_TMPDIR}/payload"
expect 0 "get piped" -- --data_dir="${DIR}" get --key=piped
contains "${OUT}" 'payload:         "from\nstdin" (10 bytes)' "get piped"
expect 0 "retry by filter" -- --data_dir="${DIR}" retry --status=failed --dry_run
contains "${OUT}" "would retry 0 tasks (FAILED); nothing changed" \
  "retry by filter"
expect 0 "salvage a clean directory" -- --data_dir="${DIR}" salvage
contains "${OUT}" "nothing to salvage" "salvage a clean directory"

# Damage a byte in the middle of the first record's payload: the next
# record follows it, so this is corruption, not a torn tail.
SEGMENT="${DIR}/wal-00000000000000000001.log"
printf '\377' | dd of="${SEGMENT}" bs=1 seek=50 conv=notrunc status=none
expect 1 "submit on damaged" -- --data_dir="${DIR}" submit --key=b
contains "${ERR}" "offset 24" "submit on damaged"
expect 1 "verify damaged" -- --data_dir="${DIR}" verify
contains "${OUT}" "wal-00000000000000000001.log offset 24: corruption" \
  "verify damaged"
expect 1 "stats on damaged" -- --data_dir="${DIR}" stats
contains "${ERR}" "is damaged" "stats on damaged"
expect 1 "dump damaged" -- --data_dir="${DIR}" dump
expect 1 "salvage without --yes" -- --data_dir="${DIR}" salvage
contains "${OUT}" "salvage --yes" "salvage without --yes"
expect 1 "still damaged" -- --data_dir="${DIR}" stats
expect 0 "salvage --yes" -- --data_dir="${DIR}" salvage --yes
contains "${OUT}" "with salvage: " "salvage --yes"
expect 0 "stats after salvage" -- --data_dir="${DIR}" stats

if [[ ${failures} -ne 0 ]]; then
  echo "${failures} check(s) failed"
  exit 1
fi
echo "all checks passed"
