// tests/preload/lean_plugin_host.cpp — a process with no C++ runtime in its
// global scope (linked with --as-needed and using no C++ library, as a C
// program or the Python interpreter), that loads the C++ library of
// lean_cxx_runtime.cpp with RTLD_LOCAL, as Python loads an extension, and
// runs its checks: their libstdc++ is then only in that library's own scope.
//   lean_plugin_host <library>
// Prints a line on its own scope, then the library's lines; exits 1 if a
// check failed, 2 if the library cannot be loaded. Depends on the C library
// and the dynamic loader only.
#include <dlfcn.h>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: lean_plugin_host <library>\n");
    return 2;
  }
  // std::get_new_handler(), which a C++ runtime in the global scope defines.
  const bool global_runtime = ::dlsym(RTLD_DEFAULT, "_ZSt15get_new_handlerv") != nullptr;
  std::printf("%s: no C++ runtime in the global scope\n", global_runtime ? "FAILED" : "ok");
  std::fflush(stdout);
  void* library = ::dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    std::fprintf(stderr, "lean_plugin_host: %s\n", ::dlerror());
    return 2;
  }
  using checks_fn = int (*)();
  auto* checks = reinterpret_cast<checks_fn>(::dlsym(library, "lean_cxx_runtime_checks"));
  if (checks == nullptr) {
    std::fprintf(stderr, "lean_plugin_host: %s\n", ::dlerror());
    return 2;
  }
  const int failures = checks();
  return failures == 0 && !global_runtime ? 0 : 1;
}
