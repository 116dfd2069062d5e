# Turns every ```cpp block of README.md into a function of a C++ file, so
# that the README's samples are compiled by the tests. #include lines go to
# the top; the rest of a block becomes the body of
# `absl::Status ReadmeSampleN()`.
/^```cpp/ { in_block = 1; n++; body[n] = ""; next }
/^```/    { in_block = 0; next }
in_block && /^#include/ { if (!($0 in seen)) { seen[$0] = 1; includes = includes $0 "\n" } next }
in_block { body[n] = body[n] $0 "\n" }
END {
  printf "// Generated from README.md by tests/readme_samples.awk.\n"
  printf "#include \"absl/status/status.h\"\n%s\n", includes
  for (i = 1; i <= n; i++) {
    printf "absl::Status ReadmeSample%d() {\n%s  return absl::OkStatus();\n}\n\n", i, body[i]
  }
  printf "int ReadmeSampleCount() { return %d; }\n", n
}
