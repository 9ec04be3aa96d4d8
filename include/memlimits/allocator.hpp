// memlimits/allocator.hpp — explicit adapters for code that cannot (or does
// not want to) replace the global operator new and malloc: an STL allocator
// and a std::pmr::memory_resource. Both go through the same sampling core and
// tracking as the global hooks, with memprof::source::adapter as origin.
// Blocks obtained here must be returned here (the same adapter kind or each
// other: both use one entry point).
#pragma once

#include <cstddef>
#include <limits>
#include <memory_resource>
#include <new>

#include "memlimits/config.hpp"

namespace memlimits {
namespace detail {
// Returns a block of `bytes` aligned to `alignment` (a power of two), or throws
// std::bad_alloc. Defined in src/hooks/adapter.cpp.
MEMLIMITS_API void* adapter_allocate(std::size_t bytes, std::size_t alignment);
MEMLIMITS_API void adapter_deallocate(void* p) noexcept;
}  // namespace detail

template <class T>
class allocator {
 public:
  using value_type = T;
  using size_type = std::size_t;
  using difference_type = std::ptrdiff_t;
  using propagate_on_container_move_assignment = std::true_type;
  using is_always_equal = std::true_type;

  constexpr allocator() noexcept = default;
  template <class U>
  constexpr allocator(const allocator<U>&) noexcept {}

  [[nodiscard]] T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) {
      throw std::bad_array_new_length();
    }
    return static_cast<T*>(detail::adapter_allocate(n * sizeof(T), alignof(T)));
  }
  void deallocate(T* p, std::size_t) noexcept { detail::adapter_deallocate(p); }

  template <class U>
  friend constexpr bool operator==(const allocator&, const allocator<U>&) noexcept {
    return true;
  }
};

// A stateless memory resource; every instance compares equal to every other.
class MEMLIMITS_API memory_resource final : public std::pmr::memory_resource {
 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override;
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override;
};

// A process-wide instance, for std::pmr containers.
MEMLIMITS_API memory_resource* resource() noexcept;

}  // namespace memlimits
