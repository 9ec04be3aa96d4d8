// tests/preload/lean_cxx_runtime.cpp — an unmodified C++ program (nothing of
// memlimits in it) that checks what it observes of its own C++ runtime when
// an allocation fails: run plain and under libmemlimits_preload.so (whose
// operator new replaces libstdc++'s and whose own copy of libstdc++ is
// private), it must print the same lines (lean_run_twice.cmake compares).
//  * std::bad_alloc from new char[huge] is caught, std::uncaught_exceptions()
//    is 0 in the handler and after it, a throw and catch nested in the
//    handler work (a destructor run by that unwinding counts 1);
//  * the program's own new_handler (std::set_new_handler) is called, once,
//    before std::bad_alloc: it counts and uninstalls itself;
//  * nothrow new returns nullptr, also after calling that handler, and after
//    a handler that throws std::bad_alloc, with nothing left uncaught;
//  * aligned operator new and its nothrow form, likewise;
//  * a constructor's function-try-block sees the std::bad_alloc and rethrows
//    it; std::exception_ptr keeps it and std::rethrow_exception throws it
//    again, with its dynamic type and what();
//  * libdw, libelf and libz are not loaded (the preload library opens them
//    only to write a profile).
// Prints one line per check ("ok: ..." or "FAILED: ..."); exits 1 if any
// failed. Built twice: as this program, and with LEAN_CXX_RUNTIME_PLUGIN as
// a shared library whose lean_cxx_runtime_checks() lean_plugin_host.cpp calls
// after loading it with RTLD_LOCAL into a process with no C++ runtime of its
// own (the C++ runtime is then in no global scope: that of a Python
// extension). Depends on the C++ standard library only.
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <new>
#include <stdexcept>
#include <string>
#include <typeinfo>

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
  if (!ok) ++failures;
}

// Larger than any address space can hold: every allocation of it fails.
// Volatile, so that the compiler neither folds nor removes the allocations.
volatile std::size_t huge = static_cast<std::size_t>(-1) / 2;
void* volatile kept = nullptr;

int handler_calls = 0;

// Counts its call and uninstalls itself: the next failure throws.
void counting_handler() {
  ++handler_calls;
  std::set_new_handler(nullptr);
}

// Counts its call, uninstalls itself and throws, as the standard allows.
void throwing_handler() {
  ++handler_calls;
  std::set_new_handler(nullptr);
  throw std::bad_alloc();
}

// Records std::uncaught_exceptions() when destroyed.
struct unwinding_witness {
  int& seen;
  ~unwinding_witness() { seen = std::uncaught_exceptions(); }
};

void bad_alloc_is_caught() {
  bool caught = false;
  int in_handler = -1;
  bool nested_caught = false;
  int in_nested_handler = -1;
  int during_nested_unwinding = -1;
  try {
    kept = new char[huge];
  } catch (const std::bad_alloc&) {
    caught = true;
    in_handler = std::uncaught_exceptions();
    try {
      unwinding_witness witness{during_nested_unwinding};
      throw std::runtime_error("nested");
    } catch (const std::runtime_error& e) {
      nested_caught = std::strcmp(e.what(), "nested") == 0;
      in_nested_handler = std::uncaught_exceptions();
    }
  }
  check(caught, "new char[huge] throws std::bad_alloc");
  check(in_handler == 0, "std::uncaught_exceptions() is 0 in the handler");
  check(nested_caught && in_nested_handler == 0 && during_nested_unwinding == 1,
        "a throw and catch nested in the handler: 1 uncaught while unwinding, 0 once caught");
  check(std::uncaught_exceptions() == 0, "std::uncaught_exceptions() is 0 after the handler");
}

void new_handler_is_called() {
  handler_calls = 0;
  std::set_new_handler(counting_handler);
  bool caught = false;
  try {
    kept = new char[huge];
  } catch (const std::bad_alloc&) {
    caught = true;
  }
  check(caught && handler_calls == 1,
        "the program's new_handler is called once, then std::bad_alloc is thrown");
  check(std::get_new_handler() == nullptr, "the handler uninstalled itself");

  handler_calls = 0;
  std::set_new_handler(counting_handler);
  caught = false;
  try {
    kept = ::operator new(huge, std::align_val_t{64});
  } catch (const std::bad_alloc&) {
    caught = true;
  }
  check(caught && handler_calls == 1, "aligned operator new: the handler, then std::bad_alloc");
  check(std::uncaught_exceptions() == 0, "std::uncaught_exceptions() is 0 after them");
}

void nothrow_new_returns_null() {
  std::set_new_handler(nullptr);
  kept = new (std::nothrow) char[huge];
  check(kept == nullptr, "nothrow new returns nullptr");

  handler_calls = 0;
  std::set_new_handler(counting_handler);
  kept = new (std::nothrow) char[huge];
  check(kept == nullptr && handler_calls == 1,
        "nothrow new calls the program's new_handler once, then returns nullptr");

  handler_calls = 0;
  std::set_new_handler(throwing_handler);
  kept = new (std::nothrow) char[huge];
  check(kept == nullptr && handler_calls == 1,
        "nothrow new whose new_handler throws std::bad_alloc returns nullptr");
  check(std::uncaught_exceptions() == 0,
        "std::uncaught_exceptions() is 0 after the handler's std::bad_alloc was swallowed");

  kept = ::operator new(huge, std::align_val_t{64}, std::nothrow);
  check(kept == nullptr, "aligned nothrow operator new returns nullptr");

  int during_unwinding = -1;
  int in_handler = -1;
  try {
    unwinding_witness witness{during_unwinding};
    throw 7;
  } catch (int) {
    in_handler = std::uncaught_exceptions();
  }
  check(during_unwinding == 1 && in_handler == 0,
        "a later throw and catch count 1 while unwinding, 0 once caught");
}

int constructor_handler_runs = 0;

struct holder {
  char* block;
  holder() try : block(new char[huge]) {
  } catch (const std::bad_alloc&) {
    ++constructor_handler_runs;  // rethrown at the end of the handler
  }
};

void rethrows_across_handlers() {
  bool rethrown = false;
  try {
    holder h;
    kept = h.block;
  } catch (const std::bad_alloc&) {
    rethrown = true;
  }
  check(constructor_handler_runs == 1 && rethrown,
        "a constructor's function-try-block sees std::bad_alloc and rethrows it");

  std::exception_ptr saved;
  try {
    kept = new char[huge];
  } catch (...) {
    saved = std::current_exception();
  }
  check(saved != nullptr && std::uncaught_exceptions() == 0,
        "std::current_exception() keeps the std::bad_alloc");
  bool again = false;
  try {
    std::rethrow_exception(saved);
  } catch (const std::exception& e) {
    again = typeid(e) == typeid(std::bad_alloc) && std::strcmp(e.what(), "std::bad_alloc") == 0;
  }
  check(again, "std::rethrow_exception throws it again: a std::bad_alloc, what() \"std::bad_alloc\"");
  check(std::uncaught_exceptions() == 0, "std::uncaught_exceptions() is 0 at the end");
}

void profile_libraries_not_loaded() {
  std::ifstream maps("/proc/self/maps");
  bool loaded = false;
  for (std::string line; std::getline(maps, line);) {
    const std::size_t slash = line.rfind('/');
    const std::string name = slash == std::string::npos ? std::string() : line.substr(slash + 1);
    if (name.starts_with("libdw") || name.starts_with("libelf") || name.starts_with("libz.")) {
      std::printf("loaded: %s\n", line.c_str());
      loaded = true;
    }
  }
  check(!loaded, "libdw, libelf and libz are not loaded");
}

}  // namespace

// The number of failed checks.
extern "C" __attribute__((visibility("default"))) int lean_cxx_runtime_checks() {
  bad_alloc_is_caught();
  new_handler_is_called();
  nothrow_new_returns_null();
  rethrows_across_handlers();
  profile_libraries_not_loaded();
  std::fflush(stdout);
  return failures;
}

#if !defined(LEAN_CXX_RUNTIME_PLUGIN)
int main() { return lean_cxx_runtime_checks() == 0 ? 0 : 1; }
#endif
