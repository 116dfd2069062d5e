#!/usr/bin/env bash
# compare_jetstream_quick_test.sh <path to compare> <path to nats_cluster.sh>
# Smoke test of compare's taskwal-jetstream-* systems against one local
# nats-server (started here, stopped on every exit): a --quick run with R1
# must exit 0, give every JetStream system figures in the lifecycle, dedup
# and latency tables and a recovery row, state the durability honestly,
# and leave no stream behind on the server. Without --nats they are skipped
# with a reason. It checks that the program works, never how fast anything
# is.
set -uo pipefail

COMPARE="$1"
NATS_CLUSTER="$2"
TMP="${TEST_TMPDIR:-$(mktemp -d)}"
CLUSTER="${TMP}/nats"
OUT="${TMP}/jetstream.txt"
failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
stop_cluster() {
  [[ -f "${CLUSTER}/pids" ]] && "${NATS_CLUSTER}" stop "${CLUSTER}" >/dev/null 2>&1
  return 0
}
trap stop_cluster EXIT

# Without --nats: skipped, with one line saying why, and no failure.
"${COMPARE}" --quick --tmpdir="${TMP}" --systems=taskwal-none,jetstream \
  --workloads=dedup --threads=1 >"${TMP}/skipped.txt" 2>"${TMP}/skipped.err"
rc=$?
[[ ${rc} -eq 0 ]] || fail "compare without --nats exited with ${rc}"
grep -q 'taskwal-jetstream-r3.* skipped: no --nats=URLS' "${TMP}/skipped.err" ||
  fail "no line saying why the JetStream systems were skipped"
if grep -qE '^taskwal-jetstream-[a-z0-9-]+ +[0-9]' "${TMP}/skipped.txt"; then
  fail "a JetStream row without --nats"
fi

"${NATS_CLUSTER}" start "${CLUSTER}" 1 || {
  echo "FAIL: could not start nats-server"
  exit 1
}
URLS="$(cat "${CLUSTER}/urls")"

"${COMPARE}" --quick --tmpdir="${TMP}" --nats="${URLS}" \
  --jetstream_replicas=1 --systems=taskwal-always,jetstream \
  --workloads=lifecycle,dedup,latency,recovery --recovery_transitions=3000 \
  --snapshot_tasks=1000 --jetstream_tasks=200 --latency_tasks=200 \
  --jetstream_recovery_transitions=3000 --out="${TMP}/jetstream.csv" \
  >"${OUT}" 2>"${TMP}/jetstream.err"
rc=$?
cat "${OUT}"
if [[ ${rc} -ne 0 ]]; then
  cat "${TMP}/jetstream.err"
  fail "compare --nats exited with ${rc}"
fi

table() {  # table TITLE_PREFIX: that table's lines, up to the next title.
  # (Read with <<<"$(table ...)": grep -q ending a pipe early could kill awk
  # with SIGPIPE, which pipefail reports as a failure.)
  awk -v t="== $1" 'index($0, t) == 1 {on = 1; print; next}
                    /^== / {on = 0} on' "${OUT}"
}
for system in taskwal-jetstream-r1 taskwal-jetstream-r1-async \
    taskwal-jetstream-r1-p1; do
  grep -qE "^${system} +[0-9]" <<<"$(table "Lifecycle throughput")" ||
    fail "the lifecycle table has no figures for ${system}"
  grep -qE "^${system} +[0-9]" <<<"$(table "Submit with 50% duplicate")" ||
    fail "the dedup table has no figures for ${system}"
done
for system in taskwal-jetstream-r1 taskwal-jetstream-r1-p1; do
  grep -qE "^${system} +1 +submit +[0-9]" <<<"$(table "Latency per call")" ||
    fail "the latency table has no submit row for ${system}"
done
grep -q '^taskwal-jetstream-r1-async' <<<"$(table "Latency per call")" &&
  fail "the latency table times the -async system, whose calls do not wait"
grep -qE '^JetStream R1 stream, 3000 transitions.* [0-9.]+ +3,000 ' <<<"$(table "Recovery")" ||
  fail "no recovery row replaying the JetStream stream"
grep -qF 'acknowledged once a majority of NATS servers hold it (in memory; NATS 2.9 fsyncs every 60 s)' <<<"$(table "Systems")" ||
  fail "the Systems table does not state the JetStream durability"
grep -q '^lifecycle,taskwal-jetstream-r1,' "${TMP}/jetstream.csv" ||
  fail "no JetStream rows in the CSV"
if grep -qF "FAILED RUNS" "${OUT}"; then
  fail "some runs failed"
fi

# Every stream compare made was deleted: the server's /jsz counts none.
http="$(sed -nE 's/^http: 127\.0\.0\.1:([0-9]+)$/\1/p' "${CLUSTER}/n0/nats-server.conf")"
jsz=""
if exec 3<>"/dev/tcp/127.0.0.1/${http}"; then
  printf 'GET /jsz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  jsz="$(cat <&3)"
  exec 3>&-
fi
grep -qE '"streams": *0\b' <<<"${jsz}" ||
  fail "streams left on the server: $(grep -oE '"streams": *[0-9]+' <<<"${jsz}")"

if ((failures)); then
  echo "${failures} failures"
  exit 1
fi
echo "PASS"
