#!/usr/bin/env bash
# Idempotent, offline-friendly setup for the taskwal build (Debian 12).
#   1. installs the missing Debian packages (apt-get only if something is
#      missing);
#   2. makes sure a deb-src entry for the installed Debian suite exists;
#   3. fills third_party/abseil-cpp from Debian's abseil orig tarball
#      (checksum-verified) plus Debian's CVE-2025-0838 fix.
# Prints nothing when everything is already in place. Needs root (or sudo)
# only when it has something to install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

ABSL_VERSION="20220623.1"
ABSL_TARBALL="abseil_${ABSL_VERSION}.orig.tar.gz"
ABSL_SHA256="abfe2897f3a30edaa74bc34365afe3c2a3cd012091a97dc7e008f7016adcd5fe"
ABSL_DIR="${ROOT}/third_party/abseil-cpp"
ABSL_STAMP="${ABSL_DIR}/.taskwal-setup-${ABSL_VERSION}"

PACKAGES=(
  bazel-bootstrap      # Bazel 4.2.3 (/usr/bin/bazel)
  bazel-skylib         # @bazel_skylib, needed by Abseil's BUILD files
  default-jdk-headless # Bazel's server runs on the system JDK
  build-essential      # GCC 12, the default compiler
  protobuf-compiler    # /usr/bin/protoc (third_party/proto.bzl)
  libprotobuf-dev
  libgtest-dev
  libgmock-dev
  libabsl-dev          # Abseil for the CMake build (Bazel builds it from source)
  cmake                # the CMake build (CMakeLists.txt, tools/cmake_check.sh)
  pkg-config           # the taskwal.pc consumer in tools/cmake_check.sh
  libbenchmark-dev
  libsqlite3-dev
  librocksdb-dev
  gnuplot-nox          # benchmarks/plot.sh (headless gnuplot, pngcairo terminal)
  clang                # clang 14 (--config=clang, fuzzers)
  libclang-rt-14-dev   # clang's sanitizer and libFuzzer runtimes
  clang-format         # clang-format 14 (tools/format.sh)
  dpkg-dev             # apt-get source needs dpkg-source around
  patch
  ca-certificates
  tzdata               # /usr/share/zoneinfo: engine/cron.h's time zones
  nats-server          # NATS JetStream 2.9 (the replicated journal's tests)
  libnats-dev          # the NATS C client (engine/jetstream_journal.h)
  libcpp-httplib-dev   # HTTP server and client (taskwald, test fixtures)
  python3              # examples/http_client.py and its test (json, http)
  chromium             # headless browser: daemon/dashboard_test
  chromium-driver      # WebDriver for it
  python3-selenium     # the dashboard test drives the browser with it
)

log() { echo "setup.sh: $*" >&2; }

SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive

# --- 1. Debian packages -----------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)"
  if [[ "${status}" != "install ok installed" ]]; then
    missing+=("${pkg}")
  fi
done
APT_UPDATED=0
if ((${#missing[@]})); then
  log "installing missing packages: ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq >&2
  APT_UPDATED=1
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# --- 2. deb-src entry (only needed to fetch the Abseil sources) -------------
ensure_deb_src() {
  if grep -rqsE '^[[:space:]]*(deb-src[[:space:]]|Types:.*deb-src)' \
      /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return 0
  fi
  local codename
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
  log "adding a deb-src entry for ${codename}"
  "${SUDO[@]}" tee /etc/apt/sources.list.d/taskwal-deb-src.sources >/dev/null <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: ${codename} ${codename}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  APT_UPDATED=0  # the new entry needs an `apt-get update`
}
ensure_deb_src

# --- 3. Abseil sources ------------------------------------------------------
if [[ ! -f "${ABSL_STAMP}" ]]; then
  if ((APT_UPDATED == 0)); then
    log "apt-get update (for the abseil sources)"
    "${SUDO[@]}" apt-get update -qq >&2
  fi
  work="$(mktemp -d)"
  trap 'rm -rf "${work}"' EXIT
  apt_opts=()
  if [[ "$(id -u)" == 0 ]]; then
    # root's mktemp dir is not writable by apt's `_apt` sandbox user.
    apt_opts=(-o APT::Sandbox::User=root)
  fi
  log "fetching Debian's abseil source package"
  (cd "${work}" && apt-get source --download-only -qq "${apt_opts[@]}" abseil >&2)
  if [[ ! -f "${work}/${ABSL_TARBALL}" ]]; then
    log "ERROR: apt-get source did not provide ${ABSL_TARBALL}:"
    ls -l "${work}" >&2
    exit 1
  fi
  echo "${ABSL_SHA256}  ${work}/${ABSL_TARBALL}" | sha256sum --check --quiet -
  mkdir -p "${work}/src"
  tar -xzf "${work}/${ABSL_TARBALL}" -C "${work}/src"
  src="${work}/src/abseil-${ABSL_VERSION}"
  if [[ ! -f "${src}/WORKSPACE" || ! -f "${src}/absl/synchronization/BUILD.bazel" ]]; then
    log "ERROR: unexpected layout in ${ABSL_TARBALL} (no abseil-${ABSL_VERSION}/)"
    exit 1
  fi
  # Apply Debian's security fix (the only Debian patch that touches code
  # Bazel compiles; the others are CMake/packaging changes).
  debtar="$(ls "${work}"/abseil_${ABSL_VERSION}-*.debian.tar.xz 2>/dev/null | head -n1 || true)"
  if [[ -n "${debtar}" ]]; then
    tar -xJf "${debtar}" -C "${work}"
    cve="${work}/debian/patches/CVE-2025-0838.patch"
    if [[ -f "${cve}" ]]; then
      patch -s -p1 -d "${src}" <"${cve}"
    fi
  fi
  rm -rf "${ABSL_DIR}"
  mv "${src}" "${ABSL_DIR}"
  echo "abseil ${ABSL_VERSION} from ${ABSL_TARBALL} (sha256 ${ABSL_SHA256})" >"${ABSL_STAMP}"
  log "Abseil ${ABSL_VERSION} unpacked into third_party/abseil-cpp"
fi
