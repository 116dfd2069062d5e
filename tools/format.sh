#!/usr/bin/env bash
# Formats the project's own C++ files (.cc and .h under api engine wal
# tools tests benchmarks examples daemon) with clang-format and the
# repository's .clang-format (Google style).
#   tools/format.sh          rewrite the files in place
#   tools/format.sh --check  change nothing; list the files that differ and
#                            exit 1 if any does
# Files are those git tracks, so build outputs and third_party are left out.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *) echo "usage: tools/format.sh [--check]" >&2; exit 2 ;;
esac

if ! command -v clang-format >/dev/null; then
  echo "tools/format.sh: clang-format is missing (tools/setup.sh installs it)" >&2
  exit 2
fi

mapfile -t files < <(git ls-files -- \
  'api/*.cc' 'api/*.h' 'engine/*.cc' 'engine/*.h' \
  'wal/*.cc' 'wal/*.h' 'tools/*.cc' 'tools/*.h' \
  'tests/*.cc' 'tests/*.h' 'benchmarks/*.cc' 'benchmarks/*.h' \
  'examples/*.cc' 'examples/*.h' 'daemon/*.cc' 'daemon/*.h')

if ! "${check}"; then
  clang-format -i --style=file "${files[@]}"
  echo "formatted ${#files[@]} files"
  exit 0
fi

differ=()
for f in "${files[@]}"; do
  if ! clang-format --style=file "${f}" | cmp -s - "${f}"; then
    differ+=("${f}")
  fi
done
if ((${#differ[@]})); then
  echo "${#differ[@]} of ${#files[@]} files differ from .clang-format (run tools/format.sh):"
  printf '  %s\n' "${differ[@]}"
  exit 1
fi
echo "all ${#files[@]} files follow .clang-format"
