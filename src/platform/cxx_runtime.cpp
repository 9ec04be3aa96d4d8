// platform/cxx_runtime.cpp — the program's C++ runtime for the failure path
// of operator new (platform/cxx_runtime.hpp). Layer 1: the Itanium C++ ABI's
// symbol names and the dynamic loader only.
#include "platform/cxx_runtime.hpp"

#include <exception>
#include <new>

#if defined(MEMLIMITS_PRELOAD_BUILD)
#  include <dlfcn.h>
#  include <link.h>

#  include <atomic>
#endif

namespace memlimits::platform::cxx_runtime {

bool call_new_handler_nothrow(std::new_handler handler) {
  try {
    handler();
    return true;
  } catch (const std::bad_alloc&) {
    return false;
  }
}

#if defined(MEMLIMITS_PRELOAD_BUILD)

namespace {

// Where a function of the program's runtime is looked for first.
enum class scope {
  global,  // RTLD_DEFAULT: what the program's own calls bind to; for the
           // functions this library does not export
  next,    // RTLD_NEXT: past this library; for those it exports (operator
           // new), whose first definition is this library's own
};

// The definition of `name` in the object that holds `caller` or in its
// dependencies: the scope of a library loaded with RTLD_LOCAL, which the
// global scope does not see. nullptr for the main program (its scope is the
// global one) or an address in no object.
void* caller_symbol(const char* name, const void* caller) noexcept {
  Dl_info info;
  link_map* object = nullptr;
  if (caller == nullptr ||
      ::dladdr1(caller, &info, reinterpret_cast<void**>(&object), RTLD_DL_LINKMAP) == 0 ||
      object == nullptr || object->l_name == nullptr || object->l_name[0] == '\0') {
    return nullptr;
  }
  // A handle of the loaded object (not loaded again); its lookups search the
  // object and its dependencies, never the preloaded libraries.
  void* handle = ::dlopen(object->l_name, RTLD_LAZY | RTLD_NOLOAD);
  if (handle == nullptr) return nullptr;
  void* f = ::dlsym(handle, name);
  ::dlclose(handle);  // still loaded: the caller's object depends on it
  return f;
}

// A function of the program's C++ runtime by its mangled name; nullptr when
// none is in reach. The global scope's is cached once found (a runtime
// loaded later is found then); the library's own copies of libstdc++ and
// libgcc are local to it (preload/exports.map), so never found. dlsym
// allocates only on failure (dlerror's message), through the hooks: the
// callers hold no lock.
void* program_function(std::atomic<void*>& cache, scope where, const char* name,
                       const void* caller) noexcept {
  void* f = cache.load(std::memory_order_acquire);
  if (f != nullptr) return f;
  f = ::dlsym(where == scope::next ? RTLD_NEXT : RTLD_DEFAULT, name);
  if (f != nullptr) {
    cache.store(f, std::memory_order_release);
    return f;
  }
  return caller_symbol(name, caller);
}

}  // namespace

std::new_handler new_handler(const void* caller) noexcept {
  static constinit std::atomic<void*> cache{nullptr};
  using get_handler = std::new_handler (*)() noexcept;
  // std::get_new_handler()
  if (auto* get = reinterpret_cast<get_handler>(
          program_function(cache, scope::global, "_ZSt15get_new_handlerv", caller))) {
    return get();
  }
  return std::get_new_handler();
}

void throw_bad_alloc(const void* caller) {
  static constinit std::atomic<void*> cache{nullptr};
  using throw_fn = void (*)();
  // std::__throw_bad_alloc(), [[noreturn]]
  if (auto* raise = reinterpret_cast<throw_fn>(
          program_function(cache, scope::global, "_ZSt17__throw_bad_allocv", caller))) {
    raise();
  }
  throw std::bad_alloc();
}

bool nothrow_new_in_program(std::size_t bytes, std::size_t alignment, const void* caller,
                            void*& result) noexcept {
  if (alignment == 0) {
    static constinit std::atomic<void*> cache{nullptr};
    using new_fn = void* (*)(std::size_t, const std::nothrow_t&) noexcept;
    // operator new(std::size_t, const std::nothrow_t&)
    auto* call = reinterpret_cast<new_fn>(
        program_function(cache, scope::next, "_ZnwmRKSt9nothrow_t", caller));
    if (call == nullptr) return false;
    result = call(bytes, std::nothrow);
    return true;
  }
  static constinit std::atomic<void*> cache{nullptr};
  using new_fn = void* (*)(std::size_t, std::align_val_t, const std::nothrow_t&) noexcept;
  // operator new(std::size_t, std::align_val_t, const std::nothrow_t&)
  auto* call = reinterpret_cast<new_fn>(
      program_function(cache, scope::next, "_ZnwmSt11align_val_tRKSt9nothrow_t", caller));
  if (call == nullptr) return false;
  result = call(bytes, std::align_val_t{alignment}, std::nothrow);
  return true;
}

int uncaught_exceptions() noexcept {
  static constinit std::atomic<void*> cache{nullptr};
  using count_fn = int (*)() noexcept;
  // std::uncaught_exceptions()
  if (auto* count = reinterpret_cast<count_fn>(
          program_function(cache, scope::global, "_ZSt19uncaught_exceptionsv", nullptr))) {
    return count();
  }
  return std::uncaught_exceptions();
}

#else  // one C++ runtime: the program's

std::new_handler new_handler(const void*) noexcept { return std::get_new_handler(); }

void throw_bad_alloc(const void*) { throw std::bad_alloc(); }

bool nothrow_new_in_program(std::size_t, std::size_t, const void*, void*&) noexcept {
  return false;
}

int uncaught_exceptions() noexcept { return std::uncaught_exceptions(); }

#endif

}  // namespace memlimits::platform::cxx_runtime
