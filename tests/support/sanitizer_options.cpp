// Sanitizer defaults for every test binary: impossible requests (malloc of
// SIZE_MAX, ...) must return null as glibc's allocator does, which the tests
// of the hooks check, instead of aborting the program.
#if defined(__SANITIZE_ADDRESS__)
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }
#endif
#if defined(__SANITIZE_THREAD__)
extern "C" const char* __tsan_default_options() { return "allocator_may_return_null=1"; }
#endif
