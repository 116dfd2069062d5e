#!/usr/bin/env bash
# Builds and runs the demo (//examples:demo) offline. Extra arguments are
# passed to the demo: tools/demo.sh --help
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

"${ROOT}/tools/setup.sh"
exec bazel run //examples:demo -- "$@"
