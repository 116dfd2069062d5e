#!/usr/bin/env bash
# Checks the README's "Embedding from another Bazel workspace" recipe: makes
# a fresh workspace in a temporary directory whose WORKSPACE.bazel declares this
# checkout as @taskwal by a relative path and calls its
# taskwal_repositories() macro, whose .bazelrc has one line (C++17), and
# which has its own api/env.h; builds a program that includes both its own
# api/env.h and taskwal/engine.h, and runs it. Uses its own Bazel output base and shuts its server down.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/taskwal-embed.XXXXXX")"
OUTPUT_BASE="${WORK}/output-base"
trap 'bazel --output_base="${OUTPUT_BASE}" shutdown >/dev/null 2>&1 || true; rm -rf "${WORK}"' EXIT
mkdir -p "${WORK}/app"
cd "${WORK}/app"

# The README's lines, with the checkout's path relative to the workspace.
TASKWAL_REL="$(realpath --relative-to="${WORK}/app" "${ROOT}")"
cat >WORKSPACE.bazel <<WS
workspace(name = "app")

local_repository(name = "taskwal", path = "${TASKWAL_REL}")

load("@taskwal//:repositories.bzl", "taskwal_repositories")

taskwal_repositories(path = "${TASKWAL_REL}")
WS

# The only flag taskwal asks of an embedder: its headers are C++17.
cat >.bazelrc <<'RC'
build --cxxopt=-std=c++17
RC

cat >BUILD.bazel <<'BUILD'
cc_library(
    name = "own_api",
    hdrs = ["api/env.h"],
)

cc_binary(
    name = "app",
    srcs = ["app.cc"],
    deps = [
        ":own_api",
        "@taskwal//api:taskwal",
    ],
)
BUILD

# The embedder's own api/env.h: taskwal's headers must not be shadowed by
# it, nor shadow it.
mkdir -p api
cat >api/env.h <<'CC'
#ifndef APP_API_ENV_H_
#define APP_API_ENV_H_
namespace app {
inline const char* Environment() { return "production"; }
}  // namespace app
#endif  // APP_API_ENV_H_
CC

cat >app.cc <<'CC'
#include <iostream>

#include "api/env.h"
#include "taskwal/engine.h"

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
  std::cout << "embedded taskwal (" << app::Environment()
            << "): submitted task " << r->task_id
            << " and found it by its key\n";
  return 0;
}
CC

bazel --output_base="${OUTPUT_BASE}" build --color=no --curses=no //:app
"$(bazel --output_base="${OUTPUT_BASE}" info bazel-bin 2>/dev/null)/app"
