// preload/lazy_zlib.cpp — zlib, loaded by the preload library only when a
// pprof profile is compressed, not at every exec: definitions of exactly the
// zlib functions that memprof/pprof.cpp calls (deflateInit2 is the macro of
// deflateInit2_), each a trampoline that opens libz.so.1 (dlopen, RTLD_NOW |
// RTLD_LOCAL) and looks the function up at its first call, once and
// thread-safely (a function-local static). When zlib cannot be loaded,
// deflateInit2_ returns Z_VERSION_ERROR (no usable library of the version
// the caller was compiled for) and deflate and deflateEnd Z_STREAM_ERROR:
// the pprof writer then fails as it does when zlib refuses (memprof/pprof.cpp
// throws std::bad_alloc), and the preload library reports the profile as not
// written. Folded profiles need no zlib.
// Compiled into libmemlimits_preload.so only, which then needs zlib's header
// but not its library; the static library `memlimits` links zlib. Hidden
// (the target's default visibility, and local in preload/exports.map).
// Layer 8: depends on zlib's header and the dynamic loader only.
#include <dlfcn.h>

#include <zlib.h>

namespace {

// libz.so.1, opened at the first call of any function below; nullptr when it
// cannot be loaded. Never closed.
void* libz() noexcept {
  static void* const handle = ::dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
  return handle;
}

template <class Function>
Function zlib_function(const char* name) noexcept {
  void* handle = libz();
  return handle == nullptr ? nullptr : reinterpret_cast<Function>(::dlsym(handle, name));
}

}  // namespace

// Defines `name` with the header's signature: forwards to zlib's, or returns
// `failure`.
#define MEMLIMITS_LAZY_ZLIB(failure, type, name, parameters, arguments)   \
  type name parameters {                                                  \
    static const auto real = zlib_function<decltype(&::name)>(#name);     \
    if (real == nullptr) return failure;                                  \
    return real arguments;                                                \
  }

extern "C" {

MEMLIMITS_LAZY_ZLIB(Z_VERSION_ERROR, int, deflateInit2_,
                    (z_streamp stream, int level, int method, int window_bits, int memory_level,
                     int strategy, const char* version, int stream_size),
                    (stream, level, method, window_bits, memory_level, strategy, version,
                     stream_size))
MEMLIMITS_LAZY_ZLIB(Z_STREAM_ERROR, int, deflate, (z_streamp stream, int flush), (stream, flush))
MEMLIMITS_LAZY_ZLIB(Z_STREAM_ERROR, int, deflateEnd, (z_streamp stream), (stream))

}  // extern "C"
