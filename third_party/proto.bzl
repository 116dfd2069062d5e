"""Offline C++ protobuf rules: Debian's /usr/bin/protoc + @system//:protobuf.

Bazel's native cc_proto_library needs @com_google_protobuf (a download), so
this macro runs the system protoc in a genrule instead.

The proto path is the root of the main repository, so import paths are
workspace-relative: `engine/transition.proto` says `import "api/task.proto";`
and its BUILD lists the cc_proto target that owns api/task.proto in
`proto_deps`. Generated headers are included the same way:
`#include "api/task.pb.h"`.

Usage (in engine/BUILD.bazel):

    load("//third_party:proto.bzl", "cc_proto")

    cc_proto(
        name = "transition_cc_proto",
        srcs = ["transition.proto"],
        proto_deps = ["//api:task_cc_proto"],
    )
"""

_PROTO_SUFFIX = "_proto_srcs"

def cc_proto(name, srcs, proto_deps = [], visibility = None, testonly = None,
             include_prefix = None, strip_include_prefix = None):
    """C++ library generated from .proto files with Debian's protoc.

    Defines:
      <name>:            cc_library with the generated .pb.h/.pb.cc; depends
                         on @system//:protobuf and on the `proto_deps`.
      <name>_proto_srcs: filegroup of this target's .proto files plus those of
                         all proto_deps (transitively), used so that imports
                         resolve inside the genrule sandbox.
      <name>_genproto:   the protoc genrule.

    Args:
      name: name of the cc_library.
      srcs: .proto files in this package.
      proto_deps: other cc_proto targets whose .proto files are imported.
      visibility: visibility of the cc_library and the proto filegroup.
      testonly: passed through.
      include_prefix, strip_include_prefix: passed to the cc_library, so that
        the generated headers are also reachable under another path (the
        generated code itself includes them by their proto path).
    """
    for src in srcs:
        if not src.endswith(".proto"):
            fail("cc_proto srcs must be .proto files, got %s" % src)
        if ":" in src or src.startswith("//"):
            fail("cc_proto srcs must be files of this package, got %s" % src)

    # Own .proto files plus the transitive .proto files of the deps.
    native.filegroup(
        name = name + _PROTO_SUFFIX,
        srcs = srcs + [_proto_srcs_label(d) for d in proto_deps],
        visibility = visibility,
        testonly = testonly,
    )

    pkg = native.package_name()
    prefix = pkg + "/" if pkg else ""

    # The root that import paths are relative to: the execroot for the main
    # repository, external/<name> when taskwal is embedded as @<name>.
    repo = native.repository_name().lstrip("@")
    root = "external/" + repo if repo else "."
    gendir = "$(GENDIR)/external/" + repo if repo else "$(GENDIR)"
    hdrs = [s[:-len(".proto")] + ".pb.h" for s in srcs]
    ccs = [s[:-len(".proto")] + ".pb.cc" for s in srcs]

    native.genrule(
        name = name + "_genproto",
        srcs = [name + _PROTO_SUFFIX],
        outs = hdrs + ccs,
        cmd = "/usr/bin/protoc --proto_path=" + root + " --cpp_out=" +
              gendir + " " +
              " ".join([(root + "/" if repo else "") + prefix + s for s in srcs]),
        message = "protoc " + " ".join([prefix + s for s in srcs]),
        testonly = testonly,
    )

    native.cc_library(
        name = name,
        srcs = ccs,
        hdrs = hdrs,
        deps = ["@system//:protobuf"] + proto_deps,
        include_prefix = include_prefix,
        strip_include_prefix = strip_include_prefix,
        visibility = visibility,
        testonly = testonly,
    )

def _proto_srcs_label(dep):
    """Label of the `_proto_srcs` filegroup of a cc_proto target label."""
    if dep.startswith(":"):
        return dep + _PROTO_SUFFIX
    if ":" in dep:
        return dep + _PROTO_SUFFIX

    # //pkg/name shorthand for //pkg/name:name
    return dep + ":" + dep.split("/")[-1] + _PROTO_SUFFIX
