// hooks/new_delete.cpp — every replaceable global operator new and delete
// ([new.delete]): plain, array, nothrow, sized, align_val_t, and their
// combinations, over hooks/entry.hpp. Linked into the program by
// memlimits::hooks and into the preload library. Layer 4.
#include <new>

#include "hooks/entry.hpp"
#include "platform/cxx_runtime.hpp"

namespace {

using memlimits::hooks::call_kind;
using memlimits::hooks::source;
namespace cxx_runtime = memlimits::platform::cxx_runtime;

// The standard's loop: call the new_handler until it succeeds, throws, or
// there is none. A nothrow form behaves like the throwing one with
// std::bad_alloc caught. The new_handler, the std::bad_alloc and the catch
// of a nothrow form are the program's C++ runtime's (platform/cxx_runtime.hpp):
// the preload library has a private copy of libstdc++ and libgcc whose state
// the program never sees. No landing pad here nor in the operators that
// throw: the program's exceptions cross these frames without meeting the
// private copy's personality routine.
// A limit's refusal is not an out-of-memory condition: it raises
// limit_reached (or returns null, nothrow) without calling the new_handler.
MEMLIMITS_NOINLINE void* retry_new(std::size_t bytes, std::size_t alignment, bool nothrow,
                                   void* caller) {
  const auto kind = nothrow ? call_kind::nothrow : call_kind::throwing;
  for (;;) {
    if (memlimits::core::take_refusal()) {
      if (nothrow) return nullptr;
      memlimits::core::raise_interruption();
    }
    std::new_handler handler = cxx_runtime::new_handler(caller);
    if (handler == nullptr) {
      if (nothrow) return nullptr;
      cxx_runtime::throw_bad_alloc(caller);
    }
    if (nothrow) {
      void* p = nullptr;
      if (cxx_runtime::nothrow_new_in_program(bytes, alignment, caller, p)) return p;
      if (!cxx_runtime::call_new_handler_nothrow(handler)) return nullptr;
    } else {
      handler();
    }
    void* p = alignment == 0 ? memlimits::hooks::allocate(bytes, source::new_delete, kind, caller)
                             : memlimits::hooks::allocate_aligned(bytes, alignment,
                                                                  source::new_delete, kind, caller);
    if (p != nullptr) return p;
  }
}

MEMLIMITS_ALWAYS_INLINE void* new_impl(std::size_t bytes, bool nothrow, void* caller) {
  void* p = memlimits::hooks::allocate(
      bytes, source::new_delete, nothrow ? call_kind::nothrow : call_kind::throwing, caller);
  if (MEMLIMITS_LIKELY(p != nullptr)) return p;
  return retry_new(bytes, 0, nothrow, caller);
}

MEMLIMITS_ALWAYS_INLINE void* new_aligned_impl(std::size_t bytes, std::align_val_t alignment,
                                               bool nothrow, void* caller) {
  const auto align = static_cast<std::size_t>(alignment);
  void* p = memlimits::hooks::allocate_aligned(
      bytes, align, source::new_delete, nothrow ? call_kind::nothrow : call_kind::throwing,
      caller);
  if (MEMLIMITS_LIKELY(p != nullptr)) return p;
  return retry_new(bytes, align, nothrow, caller);
}

}  // namespace

#define MEMLIMITS_CALLER __builtin_return_address(0)

MEMLIMITS_HOOK void* operator new(std::size_t n) { return new_impl(n, false, MEMLIMITS_CALLER); }
MEMLIMITS_HOOK void* operator new[](std::size_t n) { return new_impl(n, false, MEMLIMITS_CALLER); }
MEMLIMITS_HOOK void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return new_impl(n, true, MEMLIMITS_CALLER);
}
MEMLIMITS_HOOK void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return new_impl(n, true, MEMLIMITS_CALLER);
}
MEMLIMITS_HOOK void* operator new(std::size_t n, std::align_val_t a) {
  return new_aligned_impl(n, a, false, MEMLIMITS_CALLER);
}
MEMLIMITS_HOOK void* operator new[](std::size_t n, std::align_val_t a) {
  return new_aligned_impl(n, a, false, MEMLIMITS_CALLER);
}
MEMLIMITS_HOOK void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return new_aligned_impl(n, a, true, MEMLIMITS_CALLER);
}
MEMLIMITS_HOOK void* operator new[](std::size_t n, std::align_val_t a,
                                    const std::nothrow_t&) noexcept {
  return new_aligned_impl(n, a, true, MEMLIMITS_CALLER);
}

MEMLIMITS_HOOK void operator delete(void* p) noexcept { memlimits::hooks::deallocate(p, MEMLIMITS_CALLER); }
MEMLIMITS_HOOK void operator delete[](void* p) noexcept { memlimits::hooks::deallocate(p, MEMLIMITS_CALLER); }
MEMLIMITS_HOOK void operator delete(void* p, const std::nothrow_t&) noexcept {
  memlimits::hooks::deallocate(p, MEMLIMITS_CALLER);
}
MEMLIMITS_HOOK void operator delete[](void* p, const std::nothrow_t&) noexcept {
  memlimits::hooks::deallocate(p, MEMLIMITS_CALLER);
}
MEMLIMITS_HOOK void operator delete(void* p, std::size_t) noexcept {
  memlimits::hooks::deallocate(p, MEMLIMITS_CALLER);
}
MEMLIMITS_HOOK void operator delete[](void* p, std::size_t) noexcept {
  memlimits::hooks::deallocate(p, MEMLIMITS_CALLER);
}
MEMLIMITS_HOOK void operator delete(void* p, std::align_val_t) noexcept {
  memlimits::hooks::deallocate(p, MEMLIMITS_CALLER);
}
MEMLIMITS_HOOK void operator delete[](void* p, std::align_val_t) noexcept {
  memlimits::hooks::deallocate(p, MEMLIMITS_CALLER);
}
MEMLIMITS_HOOK void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  memlimits::hooks::deallocate(p, MEMLIMITS_CALLER);
}
MEMLIMITS_HOOK void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  memlimits::hooks::deallocate(p, MEMLIMITS_CALLER);
}
MEMLIMITS_HOOK void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  memlimits::hooks::deallocate(p, MEMLIMITS_CALLER);
}
MEMLIMITS_HOOK void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  memlimits::hooks::deallocate(p, MEMLIMITS_CALLER);
}
