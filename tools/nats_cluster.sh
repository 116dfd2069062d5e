#!/usr/bin/env bash
# A local NATS JetStream cluster for development, laid out as the C++ test
# fixture (tests/nats_cluster.h) lays out its own:
#   tools/nats_cluster.sh start DIR [N]   start N (default 3) servers n0..n<N-1>
#   tools/nats_cluster.sh status DIR      each server's pid, URL and /healthz
#   tools/nats_cluster.sh stop DIR        stop exactly the servers start started
# `start` writes DIR/n<i>/nats-server.conf, logs to DIR/n<i>/nats-server.log,
# keeps the JetStream store in DIR/n<i>/jetstream, and writes DIR/urls (the
# client URLs, comma-separated on one line: what `nats --server` and
# natsConnection_ConnectTo take) and DIR/pids (one pid a line, n0 first). It
# returns once every server's /healthz says ok (which in nats-server 2.9.10
# includes "JetStream has a meta leader"). Servers run on 127.0.0.1 only, on
# free ports, detached from the terminal (setsid); they run until `stop`.
# Each server gets GOMAXPROCS = cores / N (at least 1) unless GOMAXPROCS is
# set: they share this machine's cores.
# `stop` keeps the stores and logs: a later `start DIR` finds its streams
# again (on new ports). Remove DIR for a fresh cluster.
#
# Needs only bash (its /dev/tcp speaks to the monitoring port) and
# nats-server ($TASKWAL_NATS_SERVER, else /usr/sbin/nats-server, else PATH):
# curl and python3 are not installed on a default Debian 12.
set -euo pipefail

readonly READY_SECONDS=60
readonly START_ATTEMPTS=3

die() {
  echo "nats_cluster.sh: $*" >&2
  exit 1
}

usage() {
  echo "usage: tools/nats_cluster.sh start DIR [N] | status DIR | stop DIR" >&2
  exit 2
}

server_binary() {
  if [[ -n "${TASKWAL_NATS_SERVER:-}" ]]; then
    echo "${TASKWAL_NATS_SERVER}"
  elif [[ -x /usr/sbin/nats-server ]]; then
    echo /usr/sbin/nats-server
  else
    command -v nats-server || die "no nats-server; install Debian's nats-server (tools/setup.sh does)"
  fi
}

# healthz_status PORT: the HTTP status of GET /healthz on 127.0.0.1:PORT
# ("000" when nothing answers).
healthz_status() {
  local port="$1" line="" code=000
  {
    exec 3<>"/dev/tcp/127.0.0.1/${port}" &&
      printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 &&
      IFS=' ' read -r -t 2 line <&3 &&
      code="$(echo "${line}" | cut -d' ' -f2)"
    exec 3>&-
  } 2>/dev/null || true
  echo "${code:-000}"
}

# port_in_use PORT: true if something listens on 127.0.0.1:PORT.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pick_ports COUNT: COUNT distinct ports nothing listens on, below Linux's
# ephemeral range (32768-60999) so that no outgoing connection holds one.
pick_ports() {
  local count="$1" port
  local -a ports=()
  while ((${#ports[@]} < count)); do
    port=$((20000 + RANDOM % 12000))
    [[ " ${ports[*]} " == *" ${port} "* ]] && continue
    port_in_use "${port}" && continue
    ports+=("${port}")
  done
  echo "${ports[@]}"
}

# is_our_server PID DIR: PID runs nats-server with a config file under DIR.
is_our_server() {
  local pid="$1" dir="$2" cmdline
  [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
  cmdline="$(tr '\0' ' ' 2>/dev/null <"/proc/${pid}/cmdline")" || return 1
  local argv0="${cmdline%% *}"
  [[ "${argv0##*/}" == nats-server && "${cmdline}" == *" ${dir}/n"*"/nats-server.conf"* ]]
}

# gone PID: the process ended (or is a zombie waiting for its reaper).
gone() {
  local state
  kill -0 "$1" 2>/dev/null || return 0
  state="$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null)" || return 0
  [[ "${state}" == Z || "${state}" == X ]]
}

# write_config DIR NAME CLIENT ROUTE HTTP ROUTES
write_config() {
  local dir="$1" name="$2" client="$3" route="$4" http="$5" routes="$6"
  mkdir -p "${dir}/${name}"
  {
    echo "# Written by tools/nats_cluster.sh."
    echo "server_name: ${name}"
    echo "listen: 127.0.0.1:${client}"
    echo "http: 127.0.0.1:${http}"
    echo "pid_file: \"${dir}/${name}/nats-server.pid\""
    echo "jetstream {"
    echo "  store_dir: \"${dir}/${name}\""
    echo "  max_memory_store: 256MB"
    echo "  max_file_store: 1GB"
    echo "}"
    if [[ -n "${routes}" ]]; then
      echo "cluster {"
      echo "  name: taskwal"
      echo "  listen: 127.0.0.1:${route}"
      echo "  routes: [${routes}]"
      echo "}"
    fi
  } >"${dir}/${name}/nats-server.conf"
}

# kill_pids PID...: SIGKILL those still ours and wait until they are gone.
kill_pids() {
  local pid
  for pid in "$@"; do
    is_our_server "${pid}" "${DIR}" && kill -KILL "${pid}" 2>/dev/null
  done
  for pid in "$@"; do
    for _ in $(seq 100); do gone "${pid}" && break; sleep 0.1; done
  done
  return 0
}

# try_start N: one attempt. 0: all healthy; 1: a server exited (port race,
# retry); 2: not healthy in time. Leaves PIDS (all started) set.
try_start() {
  local n="$1" binary i
  binary="$(server_binary)"
  read -r -a ports <<<"$(pick_ports $((3 * n)))"
  local routes_all=() urls=()
  for ((i = 0; i < n; i++)); do
    routes_all+=("nats-route://127.0.0.1:${ports[3 * i + 1]}")
    urls+=("nats://127.0.0.1:${ports[3 * i]}")
  done
  # Servers sharing one machine share its cores: each gets an equal share
  # of Go's processors (at least one) unless GOMAXPROCS is set, so that the
  # Go runtimes do not spin on cores the others need (measured on 2 cores,
  # 3 servers, 120k records from 64 clients: 2.0 s of their CPU with one
  # processor each, 3.0 s with Go's default of one per core).
  local procs="${GOMAXPROCS:-}"
  if [[ -z "${procs}" ]]; then
    procs=$(($(nproc) / n))
    ((procs >= 1)) || procs=1
  fi
  PIDS=()
  for ((i = 0; i < n; i++)); do
    local routes=""
    if ((n > 1)); then
      local others=("${routes_all[@]:0:i}" "${routes_all[@]:i+1}")
      routes="$(IFS=,; echo "${others[*]}")"
      routes="${routes//,/, }"
    fi
    write_config "${DIR}" "n${i}" "${ports[3 * i]}" "${ports[3 * i + 1]}" \
      "${ports[3 * i + 2]}" "${routes}"
    rm -f "${DIR}/n${i}/nats-server.pid"
    # setsid: detached from this terminal in a session of its own, so ^C,
    # ^Z or a closed terminal do not reach it; `stop` ends it. $! is the
    # server itself: setsid forks only when it is a process group leader,
    # and a background job of a script (no job control) is not one. The
    # server's own pid_file double-checks that below.
    GOMAXPROCS="${procs}" setsid "${binary}" -c "${DIR}/n${i}/nats-server.conf" \
      </dev/null >>"${DIR}/n${i}/nats-server.log" 2>&1 &
    PIDS+=("$!")
  done
  local deadline=$((SECONDS + READY_SECONDS))
  for ((i = 0; i < n; i++)); do
    while [[ "$(healthz_status "${ports[3 * i + 2]}")" != 200 ]]; do
      if gone "${PIDS[i]}"; then
        echo "nats_cluster.sh: n${i} exited while starting; its log ends:" >&2
        tail -n 5 "${DIR}/n${i}/nats-server.log" >&2
        return 1
      fi
      if ((SECONDS >= deadline)); then
        echo "nats_cluster.sh: n${i} /healthz not ok after ${READY_SECONDS}s; its log ends:" >&2
        tail -n 20 "${DIR}/n${i}/nats-server.log" >&2
        return 2
      fi
      sleep 0.1
    done
  done
  for ((i = 0; i < n; i++)); do
    local written
    written="$(cat "${DIR}/n${i}/nats-server.pid" 2>/dev/null || true)"
    if [[ "${written}" != "${PIDS[i]}" ]]; then
      echo "nats_cluster.sh: n${i} wrote pid '${written}', started as ${PIDS[i]}" >&2
      return 2
    fi
  done
  (IFS=,; echo "${urls[*]}") >"${DIR}/urls"
  printf '%s\n' "${PIDS[@]}" >"${DIR}/pids"
  return 0
}

cmd_start() {
  local n="${1:-3}" attempt rc
  [[ "${n}" =~ ^[1-9]$ ]] || die "N must be 1..9, not '${n}'"
  if [[ -f "${DIR}/pids" ]]; then
    local pid
    while read -r pid; do
      is_our_server "${pid}" "${DIR}" &&
        die "${DIR} already runs servers (pid ${pid}); run: tools/nats_cluster.sh stop ${DIR}"
    done <"${DIR}/pids"
    rm -f "${DIR}/pids" "${DIR}/urls"
  fi
  mkdir -p "${DIR}"
  for ((attempt = 1; attempt <= START_ATTEMPTS; attempt++)); do
    rc=0
    try_start "${n}" || rc=$?
    if ((rc == 0)); then
      echo "started ${n} nats-server(s) in ${DIR}: $(cat "${DIR}/urls")"
      return 0
    fi
    kill_pids "${PIDS[@]}"
    ((rc == 1)) || break
  done
  die "could not start ${n} servers in ${DIR} (logs: ${DIR}/n*/nats-server.log)"
}

cmd_status() {
  [[ -f "${DIR}/pids" ]] || die "no ${DIR}/pids: not started"
  local i=0 pid healthy=0 http
  while read -r pid; do
    http="$(sed -nE 's/^http: 127\.0\.0\.1:([0-9]+)$/\1/p' "${DIR}/n${i}/nats-server.conf" 2>/dev/null)"
    if is_our_server "${pid}" "${DIR}"; then
      local code
      code="$(healthz_status "${http}")"
      echo "n${i} pid ${pid} running, /healthz HTTP ${code} (http://127.0.0.1:${http}/healthz)"
      [[ "${code}" == 200 ]] || healthy=1
    else
      echo "n${i} pid ${pid} not running"
      healthy=1
    fi
    i=$((i + 1))
  done <"${DIR}/pids"
  echo "urls: $(cat "${DIR}/urls" 2>/dev/null)"
  return "${healthy}"
}

cmd_stop() {
  [[ -f "${DIR}/pids" ]] || die "no ${DIR}/pids: nothing to stop"
  local pid ours=()
  while read -r pid; do
    if is_our_server "${pid}" "${DIR}"; then
      ours+=("${pid}")
    else
      echo "nats_cluster.sh: pid ${pid} is not a nats-server of ${DIR}; left alone" >&2
    fi
  done <"${DIR}/pids"
  # SIGTERM first: the server flushes its store (2.9.10 syncs only every
  # 60 s); SIGKILL whatever is left after 10 s.
  for pid in "${ours[@]}"; do kill -TERM "${pid}" 2>/dev/null || true; done
  for pid in "${ours[@]}"; do
    for _ in $(seq 100); do gone "${pid}" && break; sleep 0.1; done
  done
  kill_pids "${ours[@]}"
  rm -f "${DIR}/pids" "${DIR}/urls"
  echo "stopped ${#ours[@]} nats-server(s) in ${DIR}"
}

[[ $# -ge 2 ]] || usage
command="$1"
DIR="$2"
[[ "${DIR}" != *[\"\\[:space:]]* ]] || die "DIR may not contain quotes, backslashes or spaces"
[[ "${command}" != start ]] || mkdir -p "${DIR}"
[[ -d "${DIR}" ]] || die "no directory ${DIR}"
DIR="$(cd "${DIR}" && pwd -P)"
PIDS=()
case "${command}" in
  start) [[ $# -le 3 ]] || usage; cmd_start "${3:-3}" ;;
  status) [[ $# -eq 2 ]] || usage; cmd_status ;;
  stop) [[ $# -eq 2 ]] || usage; cmd_stop ;;
  *) usage ;;
esac
