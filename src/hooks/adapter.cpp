// hooks/adapter.cpp — the explicit adapters of <memlimits/allocator.hpp>:
// memlimits::allocator<T> and memlimits::memory_resource, over the same
// entry point as the global hooks, origin core::block_origin::adapter. They work
// whether or not the program replaces the global operator new and malloc.
// Layer 4.
#include <cstddef>
#include <new>

#include "hooks/entry.hpp"
#include "memlimits/allocator.hpp"

namespace memlimits {
namespace detail {

void* adapter_allocate(std::size_t bytes, std::size_t alignment) {
  void* caller = __builtin_return_address(0);
  constexpr auto kind = core::call_kind::throwing;
  void* p = alignment <= alignof(std::max_align_t)
                ? hooks::allocate(bytes, hooks::source::adapter, kind, caller)
                : hooks::allocate_aligned(bytes, alignment, hooks::source::adapter, kind, caller);
  if (MEMLIMITS_UNLIKELY(p == nullptr)) {
    core::raise_pending();  // an interrupted task: limit_reached
    throw std::bad_alloc();
  }
  return p;
}

void adapter_deallocate(void* p) noexcept { hooks::deallocate(p, __builtin_return_address(0)); }

}  // namespace detail

void* memory_resource::do_allocate(std::size_t bytes, std::size_t alignment) {
  return detail::adapter_allocate(bytes, alignment);
}

void memory_resource::do_deallocate(void* p, std::size_t, std::size_t) {
  detail::adapter_deallocate(p);
}

bool memory_resource::do_is_equal(const std::pmr::memory_resource& other) const noexcept {
  return dynamic_cast<const memory_resource*>(&other) != nullptr;
}

memory_resource* resource() noexcept {
  static memory_resource instance;
  return &instance;
}

}  // namespace memlimits
