#!/usr/bin/env bash
# http_client_test.sh <taskwald> <http_client.py>
# Starts taskwald on a free port with an admin token, runs the Python client
# twice (the second run's submits are deduplicated), checks its summary and
# the engine's counts, then stops taskwald with SIGTERM (exit 0).
set -uo pipefail

TASKWALD="$1"
CLIENT="$2"
if ! command -v python3 >/dev/null; then
  echo "FAIL: python3 is missing: run tools/setup.sh (it installs python3)"
  exit 1
fi
DIR="${TEST_TMPDIR:?}/http-client"
rm -rf "${DIR}"
mkdir -p "${DIR}"
echo "admin-secret" >"${DIR}/admin.token"

"${TASKWALD}" --data_dir="${DIR}/data" --listen=127.0.0.1:0 \
  --admin_token_file="${DIR}/admin.token" >"${DIR}/out" 2>"${DIR}/err" &
PID=$!
trap 'kill -9 ${PID} 2>/dev/null' EXIT

port=""
for _ in $(seq 600); do  # Up to 60 s (sanitizer builds are slow).
  port="$(sed -n 's|^taskwald listening on http://127.0.0.1:\([0-9]*\)$|\1|p' "${DIR}/out")"
  [[ -n "${port}" ]] && break
  kill -0 "${PID}" 2>/dev/null || break
  sleep 0.1
done
if [[ -z "${port}" ]]; then
  echo "FAIL: taskwald did not start"; cat "${DIR}/out" "${DIR}/err"; exit 1
fi

failures=0
for run in first second; do
  echo "=== ${run} run"
  python3 "${CLIENT}" --server="http://127.0.0.1:${port}" \
    --token_file="${DIR}/admin.token" --tasks=12 >"${DIR}/${run}.out" 2>&1
  rc=$?
  cat "${DIR}/${run}.out"
  if [[ ${rc} -ne 0 ]]; then
    echo "FAIL (${run}): the client exited with ${rc}"; failures=$((failures + 1))
  fi
done
for line in "submitted 12 tasks (12 new)" \
            "done: 12 completed, 3 failed attempts; engine: 12 completed, 0 pending"; do
  grep -qF -- "${line}" "${DIR}/first.out" ||
    { echo "FAIL: first run lacks \"${line}\""; failures=$((failures + 1)); }
done
for line in "submitted 12 tasks (0 new)" \
            "done: 0 completed, 0 failed attempts; engine: 12 completed, 0 pending"; do
  grep -qF -- "${line}" "${DIR}/second.out" ||
    { echo "FAIL: second run lacks \"${line}\""; failures=$((failures + 1)); }
done

kill -TERM "${PID}"
wait "${PID}"
rc=$?
trap - EXIT
if [[ ${rc} -ne 0 ]]; then
  echo "FAIL: taskwald exited with ${rc} on SIGTERM"; cat "${DIR}/err"
  failures=$((failures + 1))
fi
if [[ ${failures} -ne 0 ]]; then
  echo "${failures} failures"; exit 1
fi
echo "PASS"
