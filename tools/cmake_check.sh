#!/usr/bin/env bash
# The CMake build, end to end (tools/test.sh runs it):
#   1. configure + build (Release, -j2) in a temporary build directory:
#      libtaskwal.a/.so, the taskwal tool, the fast unit tests;
#   2. ctest;
#   3. install into a temporary prefix; check the installed headers (each
#      compiles alone, and includes only taskwal/, absl/, google/protobuf/
#      and standard headers) and that taskwal.pc, taskwalConfigVersion.cmake
#      and `taskwal --version` carry api/version.h's TASKWAL_VERSION;
#   4. builds and runs two consumers of the installed library, the README's
#      API tour (examples/consumers/quickstart.cc) on a data directory under
#      the temporary folder: examples/consumers/cmake (find_package, shared
#      and static) and examples/consumers/pkgconfig (pkg-config + make);
#   5. when the build has TASKWAL_WITH_JETSTREAM (the default), checks that
#      the JetStream mode was installed (libtaskwal_jetstream.a/.so,
#      taskwal/jetstream.h, taskwalJetStreamTargets.cmake,
#      taskwal-jetstream.pc) and builds and runs examples/consumers/
#      jetstream.cc through both (taskwal::jetstream and _static,
#      pkg-config taskwal-jetstream): no NATS server is needed, it checks
#      that OpenJetStreamEngine refuses bad options and an unreachable one.
# Ends with "cmake_check: PASS ..." and exit 0, or "cmake_check: FAIL ..."
# and exit 1. Needs the Debian packages tools/setup.sh installs (cmake,
# pkg-config, libabsl-dev, libprotobuf-dev, protobuf-compiler, libgtest-dev,
# libgmock-dev, libnats-dev); does not use Bazel.
#   TASKWAL_CMAKE_BUILD_DIR=DIR  build there (kept, reused: incremental)
#                                instead of a fresh temporary directory
#   TASKWAL_CMAKE_JOBS=N         parallel jobs (default 2)
#   TASKWAL_CMAKE_KEEP=1         keep the temporary directory
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS="${TASKWAL_CMAKE_JOBS:-2}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/taskwal-cmake-check.XXXXXX")"
BUILD="${TASKWAL_CMAKE_BUILD_DIR:-${WORK}/build}"
PREFIX="${WORK}/prefix"
START=${SECONDS}

step() { echo "=== cmake_check: $* ($((SECONDS - START))s)"; }
fail() {
  echo "cmake_check: FAIL: $* (files in ${WORK})"
  exit 1
}
cleanup() {
  local rc=$?
  if [[ ${rc} -eq 0 && "${TASKWAL_CMAKE_KEEP:-0}" != 1 ]]; then
    rm -rf "${WORK}"
  fi
}
trap cleanup EXIT

for tool in cmake pkg-config protoc c++ make; do
  command -v "${tool}" >/dev/null ||
    fail "${tool} is missing (run tools/setup.sh)"
done

version="$(sed -nE 's/^#define TASKWAL_VERSION "([^"]+)".*/\1/p' "${ROOT}/api/version.h")"
[[ -n "${version}" ]] || fail "no TASKWAL_VERSION in api/version.h"

# --- 1, 2. Build and unit tests -------------------------------------------------
step "configure ${BUILD}"
cmake -S "${ROOT}" -B "${BUILD}" -DCMAKE_BUILD_TYPE=Release \
  -DTASKWAL_BUILD_TESTS=ON -DTASKWAL_BUILD_CLI=ON -DTASKWAL_SLOW_TESTS=OFF ||
  fail "cmake configure"
step "build (-j${JOBS})"
cmake --build "${BUILD}" -j "${JOBS}" || fail "cmake build"
step "ctest"
ctest --test-dir "${BUILD}" -j "${JOBS}" --output-on-failure ||
  fail "ctest"
ntests="$(ctest --test-dir "${BUILD}" -N | sed -nE 's/^Total Tests: ([0-9]+)/\1/p')"

# --- 3. Install and what it put there --------------------------------------------
step "install into ${PREFIX}"
cmake --install "${BUILD}" --prefix "${PREFIX}" >"${WORK}/install.log" ||
  fail "cmake --install"
pcdir="$(dirname "$(find "${PREFIX}" -name taskwal.pc -print -quit)")"
[[ -f "${pcdir}/taskwal.pc" ]] || fail "no taskwal.pc installed"
libdir="$(dirname "${pcdir}")"
for f in "${libdir}/libtaskwal.a" "${libdir}/libtaskwal.so" \
  "${libdir}/cmake/taskwal/taskwalConfig.cmake" \
  "${libdir}/cmake/taskwal/taskwalConfigVersion.cmake" \
  "${PREFIX}/bin/taskwal" "${PREFIX}/include/taskwal/engine.h" \
  "${PREFIX}/include/taskwal/task.pb.h"; do
  [[ -e "${f}" ]] || fail "not installed: ${f}"
done
export PKG_CONFIG_PATH="${pcdir}${PKG_CONFIG_PATH:+:${PKG_CONFIG_PATH}}"
pc_version="$(pkg-config --modversion taskwal)" || fail "pkg-config taskwal"
[[ "${pc_version}" == "${version}" ]] ||
  fail "taskwal.pc says ${pc_version}, api/version.h ${version}"
grep -q "\"${version%%-*}\"" "${libdir}/cmake/taskwal/taskwalConfigVersion.cmake" ||
  fail "taskwalConfigVersion.cmake lacks ${version%%-*}"
grep -qF "${version}" <<<"$("${PREFIX}/bin/taskwal" --version)" ||
  fail "installed 'taskwal --version' does not print ${version}"

step "installed headers"
read -r -a cflags <<<"$(pkg-config --cflags taskwal)"
for h in "${PREFIX}"/include/taskwal/*.h; do
  # Quoted includes must be installed taskwal headers or a dependency's.
  while read -r inc; do
    case "${inc}" in
      taskwal/*) [[ -f "${PREFIX}/include/${inc}" ]] ||
        fail "${h} includes ${inc}, which is not installed" ;;
      absl/* | google/protobuf/*) ;;
      *) fail "${h} includes \"${inc}\", which is not installed" ;;
    esac
  done < <(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/p' "${h}")
  # And compiles alone with nothing but pkg-config's flags.
  c++ -std=c++17 -fsyntax-only "${cflags[@]}" -x c++ \
    -include "taskwal/$(basename "${h}")" /dev/null ||
    fail "$(basename "${h}") does not compile alone"
done

# --- 4. Consumers -----------------------------------------------------------------
step "consumer: find_package (examples/consumers/cmake)"
cmake -S "${ROOT}/examples/consumers/cmake" -B "${WORK}/consumer-cmake" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="${PREFIX}" ||
  fail "configure examples/consumers/cmake"
cmake --build "${WORK}/consumer-cmake" -j "${JOBS}" ||
  fail "build examples/consumers/cmake"
for exe in quickstart quickstart_static; do
  out="$("${WORK}/consumer-cmake/${exe}" "${WORK}/data-cmake-${exe}")" ||
    fail "examples/consumers/cmake: ${exe} failed: ${out}"
  echo "${out}"
  grep -qF "quickstart: taskwal ${version}:" <<<"${out}" ||
    fail "examples/consumers/cmake: ${exe} printed no result line"
done
# The tool reads what the consumer wrote.
"${PREFIX}/bin/taskwal" --data_dir="${WORK}/data-cmake-quickstart" verify \
  >"${WORK}/verify.log" 2>&1 || fail "taskwal verify of the consumer's data"

step "consumer: pkg-config (examples/consumers/pkgconfig)"
make -C "${ROOT}/examples/consumers/pkgconfig" OUT="${WORK}/consumer-pkgconfig" ||
  fail "build examples/consumers/pkgconfig"
out="$("${WORK}/consumer-pkgconfig/quickstart" "${WORK}/data-pkgconfig")" ||
  fail "examples/consumers/pkgconfig: quickstart failed: ${out}"
echo "${out}"
grep -qF "quickstart: taskwal ${version}:" <<<"${out}" ||
  fail "examples/consumers/pkgconfig: quickstart printed no result line"

# --- 5. The JetStream mode --------------------------------------------------------
jetstream="$(sed -nE 's/^TASKWAL_WITH_JETSTREAM:BOOL=(.*)/\1/p' "${BUILD}/CMakeCache.txt")"
case "${jetstream}" in
  ON | on | 1 | TRUE | true | YES | yes) jetstream=ON ;;
  *) jetstream=OFF ;;
esac
js_note="JetStream mode off"
if [[ "${jetstream}" == ON ]]; then
  step "JetStream mode: installed files"
  for f in "${libdir}/libtaskwal_jetstream.a" "${libdir}/libtaskwal_jetstream.so" \
    "${libdir}/cmake/taskwal/taskwalJetStreamTargets.cmake" \
    "${pcdir}/taskwal-jetstream.pc" "${PREFIX}/include/taskwal/jetstream.h"; do
    [[ -e "${f}" ]] || fail "not installed: ${f}"
  done
  pc_version="$(pkg-config --modversion taskwal-jetstream)" ||
    fail "pkg-config taskwal-jetstream"
  [[ "${pc_version}" == "${version}" ]] ||
    fail "taskwal-jetstream.pc says ${pc_version}, api/version.h ${version}"

  step "consumer: find_package(taskwal COMPONENTS jetstream)"
  cmake -S "${ROOT}/examples/consumers/cmake" -B "${WORK}/consumer-cmake-js" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="${PREFIX}" \
    -DWITH_JETSTREAM=ON ||
    fail "configure examples/consumers/cmake -DWITH_JETSTREAM=ON"
  cmake --build "${WORK}/consumer-cmake-js" -j "${JOBS}" \
    --target jetstream jetstream_static ||
    fail "build examples/consumers/cmake's jetstream"
  for exe in jetstream jetstream_static; do
    out="$("${WORK}/consumer-cmake-js/${exe}" 2>&1)" ||
      fail "examples/consumers/cmake: ${exe} failed: ${out}"
    echo "${out}"
    grep -qF "jetstream: taskwal ${version}:" <<<"${out}" ||
      fail "examples/consumers/cmake: ${exe} printed no result line"
  done
  # The shared one runs on the installed library, not the build's.
  # Captured first: grep -q ending a pipe early can kill ldd with SIGPIPE,
  # which pipefail reports as a failure.
  grep -qF "${libdir}/libtaskwal_jetstream.so" \
    <<<"$(ldd "${WORK}/consumer-cmake-js/jetstream")" ||
    fail "the consumer's jetstream does not load the installed libtaskwal_jetstream.so"

  step "consumer: pkg-config taskwal-jetstream"
  make -C "${ROOT}/examples/consumers/pkgconfig" OUT="${WORK}/consumer-pkgconfig" \
    jetstream-mode || fail "build examples/consumers/pkgconfig jetstream-mode"
  out="$("${WORK}/consumer-pkgconfig/jetstream" 2>&1)" ||
    fail "examples/consumers/pkgconfig: jetstream failed: ${out}"
  echo "${out}"
  grep -qF "jetstream: taskwal ${version}:" <<<"${out}" ||
    fail "examples/consumers/pkgconfig: jetstream printed no result line"
  js_note="JetStream consumers (find_package, pkg-config) ran"
fi

echo "cmake_check: PASS: built, ${ntests} ctest tests passed, installed" \
  "taskwal ${version}, find_package and pkg-config consumers ran the API" \
  "tour, ${js_note} ($((SECONDS - START))s)"
