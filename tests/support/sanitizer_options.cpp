// Sanitizer defaults for every test binary: impossible requests (malloc of
// SIZE_MAX, ...) must return null as glibc's allocator does, which the tests
// of the hooks check, instead of aborting the program.
#if defined(__SANITIZE_ADDRESS__)
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }
#endif
#if defined(__SANITIZE_THREAD__)
extern "C" const char* __tsan_default_options() { return "allocator_may_return_null=1"; }
#endif

// LeakSanitizer treats the blocks that the dynamic loader allocates (link
// maps, TLS of libraries dlopen'ed later, e.g. libgcc_s loaded by the first
// pthread_exit) as reachable by looking at the caller of malloc: with the
// hooks in between, the caller is memlimits' malloc, not ld.so, and those
// blocks would be reported. They are the loader's, so suppressed by module.
#if defined(__SANITIZE_ADDRESS__)
extern "C" const char* __lsan_default_suppressions() { return "leak:ld-linux-x86-64.so\n"; }
#endif
