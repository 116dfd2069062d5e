#!/usr/bin/env bash
# Checks the README's "Embedding from another Bazel workspace" recipe: makes
# a fresh workspace in a temporary directory whose WORKSPACE declares this
# checkout as @taskwal (with the repositories taskwal's own WORKSPACE
# declares), builds a program that depends on @taskwal//api:taskwal, and
# runs it. Uses its own Bazel output base and shuts its server down.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/taskwal-embed.XXXXXX")"
OUTPUT_BASE="${WORK}/output-base"
trap 'bazel --output_base="${OUTPUT_BASE}" shutdown >/dev/null 2>&1 || true; rm -rf "${WORK}"' EXIT
mkdir -p "${WORK}/app"
cd "${WORK}/app"

cat >WORKSPACE <<WS
workspace(name = "app")

TASKWAL = "${ROOT}"

local_repository(name = "taskwal", path = TASKWAL)

# What taskwal's own WORKSPACE declares, with absolute paths.
local_repository(name = "rules_cc", path = TASKWAL + "/third_party/rules_cc")
local_repository(name = "rules_java", path = TASKWAL + "/third_party/rules_java")
local_repository(name = "remote_coverage_tools", path = TASKWAL + "/third_party/remote_coverage_tools")
local_repository(name = "platforms", path = TASKWAL + "/third_party/platforms")
local_repository(name = "bazel_skylib", path = "/usr/share/bazel/tools/skylib")
local_repository(name = "com_google_absl", path = TASKWAL + "/third_party/abseil-cpp")
new_local_repository(
    name = "system",
    build_file = "@taskwal//third_party:system.BUILD",
    path = "/usr",
)
WS

cat >BUILD.bazel <<'BUILD'
cc_binary(
    name = "app",
    srcs = ["app.cc"],
    deps = ["@taskwal//api:taskwal"],
)
BUILD

cat >app.cc <<'CC'
#include <iostream>

#include "api/engine.h"

int main() {
  taskwal::EngineOptions options;  // No data_dir: in memory.
  absl::StatusOr<std::unique_ptr<taskwal::Engine>> engine =
      taskwal::Engine::Open(options);
  if (!engine.ok()) return 1;
  taskwal::TaskSpec spec;
  spec.idempotency_key = "order-1";
  absl::StatusOr<taskwal::SubmitResult> r = (*engine)->Submit(spec);
  if (!r.ok()) return 1;
  absl::StatusOr<taskwal::Task> found =
      (*engine)->GetByIdempotencyKey("order-1");
  if (!found.ok() || found->id() != r->task_id) return 1;
  std::cout << "embedded taskwal: submitted task " << r->task_id
            << " and found it by its key\n";
  return 0;
}
CC

cp "${ROOT}/.bazelrc" .bazelrc
bazel --output_base="${OUTPUT_BASE}" build --color=no --curses=no //:app
"$(bazel --output_base="${OUTPUT_BASE}" info bazel-bin 2>/dev/null)/app"
