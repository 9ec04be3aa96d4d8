// tests/unit/fiber_mode_probe.cpp — compiled into the test copies of the
// fiber library (tests/unit/CMakeLists.txt): the size of Boost.Context's
// forced_unwind in the library's own NDEBUG mode, so that a test of a mixed
// program can check that its program and its library really disagree.
#include <boost/context/detail/exception.hpp>

#include <cstddef>

namespace memlimits::testing {

std::size_t library_forced_unwind_size() noexcept {
  return sizeof(boost::context::detail::forced_unwind);
}

}  // namespace memlimits::testing
