#!/usr/bin/env bash
# benchmarks/jetstream_compare.sh [COMPARE_FLAGS...]
#
# taskwal on NATS JetStream (R1, R3, R3 acknowledged before the stream, R3
# with one partition) beside the local modes (kAlways, kNone), in one run
# of benchmarks/compare: starts a local 3-server NATS cluster
# (tools/nats_cluster.sh) in a temporary directory, runs compare with
# --nats=<its URLs>, prints the tables (each figure with its ratio to
# taskwal-always), and stops the cluster and removes its directory on every
# exit, also ^C or a failure. Sized for a 2-core machine: about 6-7 minutes.
# With one client a JetStream call takes about 1 ms, so those runs stop
# after --max_phase_seconds per phase and report the rate of the part done
# (marked 'c').
# Flags given here are passed to compare after the defaults below, so they
# win (e.g. --threads=1,64 --jetstream_tasks=20000 --markdown).
#
# Needs nats-server (tools/setup.sh installs Debian's) and builds compare
# with --config=opt unless $COMPARE names a binary. $BAZEL_FLAGS go before
# the bazel command (e.g. --output_base=...).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

if [[ -z "${COMPARE:-}" ]]; then
  # shellcheck disable=SC2086
  bazel ${BAZEL_FLAGS:-} build --config=opt //benchmarks:compare >&2
  # shellcheck disable=SC2086
  COMPARE="$(bazel ${BAZEL_FLAGS:-} info --config=opt bazel-bin 2>/dev/null)/benchmarks/compare"
fi
[[ -x "${COMPARE}" ]] || {
  echo "jetstream_compare.sh: no compare binary at ${COMPARE}" >&2
  exit 1
}

CLUSTER_DIR="$(mktemp -d "${TMPDIR:-/tmp}/taskwal-nats-XXXXXX")"
stop_cluster() {
  if [[ -f "${CLUSTER_DIR}/pids" ]]; then
    tools/nats_cluster.sh stop "${CLUSTER_DIR}" >&2 || true
  fi
  rm -rf "${CLUSTER_DIR}"
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

tools/nats_cluster.sh start "${CLUSTER_DIR}" 3 >&2
URLS="$(cat "${CLUSTER_DIR}/urls")"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

"${COMPARE}" \
  --nats="${URLS}" \
  --systems=taskwal-always,taskwal-none,jetstream \
  --workloads=lifecycle,batch,dedup,latency,recovery \
  --threads=1,4,16,64,256 \
  --latency_threads=1,16,64 \
  --durable_tasks=4000 \
  --fast_tasks=200000 \
  --jetstream_tasks=40000 \
  --latency_tasks=3000 \
  --recovery_transitions=300000 \
  --snapshot_tasks=100000 \
  --jetstream_recovery_transitions=300000 \
  --max_phase_seconds=8 \
  "$@"
