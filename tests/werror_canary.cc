// Compiler-warning canary: proves that the --config=werror build (-Wall
// -Wextra -Werror on the project's own files) turns a -Wextra warning into
// an error. Built by tools/test.sh twice: as is it must compile; with
// -DTASKWAL_WERROR_CANARY_VIOLATION it must fail with -Wunused-parameter,
// which only -Wextra enables. Tagged manual.

#ifdef TASKWAL_WERROR_CANARY_VIOLATION
int WerrorCanary(int unused) { return 0; }
#else
int WerrorCanary(int used) { return used - used; }
#endif

int main() { return WerrorCanary(1); }
