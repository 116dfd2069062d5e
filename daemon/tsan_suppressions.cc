// ThreadSanitizer settings for every program that links cpp-httplib.
//
// Debian's httplib is a prebuilt, uninstrumented libcpp-httplib.so. TSan
// sees the memcpy/memcmp it calls (through interceptors) but not the
// synchronization it relies on, such as the inlined fast path of a
// function-local static's guard, so it reports races between two server
// threads inside the library that cannot happen (seen: a request-parsing
// memcmp against a memcpy in another worker). `called_from_lib` ignores
// only the interceptors the library calls itself; our handlers, which the
// library calls, stay checked. The same reasoning made this project build
// Abseil from source (BUILD_NOTES: Sanitizers and Abseil).
//
// TSan looks this hook up at startup; other builds never call it.
extern "C" const char* __tsan_default_suppressions() {
  return "called_from_lib:libcpp-httplib.so\n";
}
