// memlimits/literals.hpp — size literals for limits: 64_KiB, 16_MiB, 2_GiB,
// in memlimits::literals. Depends on nothing else of memlimits.
#pragma once

#include <cstdint>
#include <stdexcept>

namespace memlimits {

// 64_KiB, 16_MiB, 2_GiB. A value that does not fit in 64 bits does not
// compile (and throws std::overflow_error if evaluated at run time).
namespace literals {
namespace detail {
constexpr std::uint64_t scale(unsigned long long n, int shift) {
  if (n > (~std::uint64_t{0} >> shift)) throw std::overflow_error("memlimits: size literal overflows");
  return static_cast<std::uint64_t>(n) << shift;
}
}  // namespace detail
constexpr std::uint64_t operator""_KiB(unsigned long long n) { return detail::scale(n, 10); }
constexpr std::uint64_t operator""_MiB(unsigned long long n) { return detail::scale(n, 20); }
constexpr std::uint64_t operator""_GiB(unsigned long long n) { return detail::scale(n, 30); }
}  // namespace literals

}  // namespace memlimits
