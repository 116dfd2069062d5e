"""The repositories taskwal builds with, all offline (Debian 12).

taskwal's own WORKSPACE calls taskwal_repositories(); a workspace that
embeds taskwal declares it and calls the same macro:

    local_repository(name = "taskwal", path = "third_party/taskwal")
    load("@taskwal//:repositories.bzl", "taskwal_repositories")
    taskwal_repositories(path = "third_party/taskwal")

Run tools/setup.sh in the taskwal checkout once first: it installs the
Debian packages and unpacks the Abseil sources into third_party/abseil-cpp.
"""

def _unpacked_repository_impl(ctx):
    # ctx.attr.path is relative to the taskwal checkout (the directory of
    # this file), whichever workspace loads it.
    root = ctx.path(Label("//:repositories.bzl")).dirname
    src = ctx.path(str(root) + "/" + ctx.attr.path)
    if not src.get_child("WORKSPACE").exists:
        fail(("%s is missing (%s): run tools/setup.sh in the taskwal " +
              "checkout once; it installs the Debian packages and unpacks " +
              "the sources there.") % (ctx.attr.path, src))
    for child in src.readdir():
        ctx.symlink(child, child.basename)

# A local_repository of a directory inside the taskwal checkout that
# tools/setup.sh makes, which says how to make it when it is missing.
_unpacked_repository = repository_rule(
    implementation = _unpacked_repository_impl,
    attrs = {"path": attr.string(mandatory = True)},
    local = True,
)

def taskwal_repositories(path = "."):
    """Declares the repositories taskwal needs.

    Args:
      path: the taskwal checkout, absolute or relative to the main
        workspace's root ("." in taskwal's own WORKSPACE). The same path as
        the local_repository that declares @taskwal.
    """
    root = "" if path in (".", "") else path.rstrip("/") + "/"

    # --- Offline shims for repositories Bazel 4.2.3 would download. ---
    # C++ toolchain resolution loads @rules_cc//cc:defs.bzl.
    native.local_repository(
        name = "rules_cc",
        path = root + "third_party/rules_cc",
    )

    # The default JDK toolchains in @bazel_tools load @rules_java//java:defs.bzl.
    native.local_repository(
        name = "rules_java",
        path = root + "third_party/rules_java",
    )

    # @bazel_tools//tools/test references the coverage tools (stubs only).
    native.local_repository(
        name = "remote_coverage_tools",
        path = root + "third_party/remote_coverage_tools",
    )

    # Bazel 4.2.3's embedded @platforms lacks cpu:wasm32/wasm64, which
    # Abseil's BUILD files select on: a copy of it with those values added.
    native.local_repository(
        name = "platforms",
        path = root + "third_party/platforms",
    )

    # --- Real dependencies. ---
    # Debian package `bazel-skylib` (needed by Abseil's BUILD files).
    native.local_repository(
        name = "bazel_skylib",
        path = "/usr/share/bazel/tools/skylib",
    )

    # Abseil 20220623.1 built FROM SOURCE (Debian's orig tarball, unpacked by
    # tools/setup.sh; git-ignored). Never link Debian's prebuilt libabsl: it
    # is not instrumented, so TSan/ASan cannot see inside it.
    _unpacked_repository(
        name = "com_google_absl",
        path = "third_party/abseil-cpp",
    )

    # Prebuilt Debian libraries under /usr (headers are in /usr/include,
    # found by the compiler without `hdrs`). See third_party/system.BUILD.
    native.new_local_repository(
        name = "system",
        build_file = str(Label("//third_party:system.BUILD")),
        path = "/usr",
    )
