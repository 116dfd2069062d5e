#!/usr/bin/env bash
# tools/nats_cluster.sh: start a 3-server cluster, check that every URL
# answers as a NATS server, that status sees it healthy, that stop ends
# exactly those servers, and that stop leaves alone a pid that is not one of
# them.
set -euo pipefail

script="${TEST_SRCDIR}/${TEST_WORKSPACE}/tools/nats_cluster.sh"
dir="${TEST_TMPDIR}/cluster"
rm -rf "${dir}"
decoy=""
cleanup() {
  "${script}" stop "${dir}" >/dev/null 2>&1 || true
  [[ -z "${decoy}" ]] || kill "${decoy}" 2>/dev/null || true
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  for log in "${dir}"/n*/nats-server.log; do
    [[ -f "${log}" ]] && { echo "--- ${log}"; tail -n 20 "${log}"; } >&2
  done
  exit 1
}

# gone PID: no such process, or a zombie waiting for a reaper.
gone() {
  kill -0 "$1" 2>/dev/null || return 0
  local state
  state="$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null)" || return 0
  [[ "${state}" == Z || "${state}" == X ]]
}

"${script}" start "${dir}" 3 || fail "start"
IFS=, read -r -a urls <"${dir}/urls"
mapfile -t pids <"${dir}/pids"
((${#urls[@]} == 3)) || fail "urls: ${urls[*]}"
((${#pids[@]} == 3)) || fail "pids: ${pids[*]}"

# A NATS server greets every connection with an INFO line.
for url in "${urls[@]}"; do
  [[ "${url}" =~ ^nats://127\.0\.0\.1:([0-9]+)$ ]] || fail "url ${url}"
  exec 3<>"/dev/tcp/127.0.0.1/${BASH_REMATCH[1]}" || fail "connect ${url}"
  IFS= read -r -t 5 greeting <&3 || fail "no greeting from ${url}"
  exec 3>&-
  [[ "${greeting}" == INFO* ]] || fail "${url} greeted with: ${greeting}"
done
for pid in "${pids[@]}"; do
  grep -q nats-server "/proc/${pid}/cmdline" || fail "pid ${pid} is no nats-server"
done

"${script}" status "${dir}" || fail "status of a running cluster"
if "${script}" start "${dir}" 3 2>/dev/null; then fail "second start"; fi

"${script}" stop "${dir}" || fail "stop"
for pid in "${pids[@]}"; do
  for _ in $(seq 100); do gone "${pid}" && break; sleep 0.1; done
  gone "${pid}" || fail "nats-server ${pid} still runs after stop"
done
[[ ! -e "${dir}/pids" && ! -e "${dir}/urls" ]] || fail "stop left pids/urls"
if "${script}" status "${dir}" 2>/dev/null; then fail "status after stop"; fi

# A pids file naming something else: stop must not kill it.
sleep 300 &
decoy=$!
echo "${decoy}" >"${dir}/pids"
"${script}" stop "${dir}" 2>/dev/null || fail "stop with a foreign pid"
kill -0 "${decoy}" || fail "stop killed pid ${decoy}, which is no nats-server"

echo "PASS"
