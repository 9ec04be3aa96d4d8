// Frames of every shape that the handler search (src/platform/
// handler_search.cpp) must classify: noexcept functions and destructors,
// handlers of each kind, libstdc++'s catch-and-rethrow. This file is
// compiled four times (tests/unit/CMakeLists.txt): by g++ and by clang++, at
// -O0 and -O2, each into its own namespace (FRAMES_NS), because the two
// compilers mark noexcept differently (g++ leaves the call site out of the
// LSDA; clang gives it a catch-all landing pad that calls
// __clang_call_terminate). It uses only the standard library: each shape
// calls `probe`, the test's function, where the search is made.
#include <algorithm>
#include <functional>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "unit/handler_search_frames.hpp"

namespace handler_frames::FRAMES_NS {
namespace {

// Keeps objects alive across the probe, so that their destructors are
// cleanups of its call site.
[[gnu::noinline]] void keep(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

// A local with a destructor that does not allocate: a cleanup.
struct cleanup {
  ~cleanup() { keep(this); }
};

struct calls_in_destructor {
  probe_fn probe;
  ~calls_in_destructor() { probe(); }  // implicitly noexcept
};

struct calls_in_throwing_destructor {
  probe_fn probe;
  ~calls_in_throwing_destructor() noexcept(false) { probe(); }
};

struct calls_when_copied {
  probe_fn probe;
  explicit calls_when_copied(probe_fn p) : probe(p) {}
  calls_when_copied(const calls_when_copied& other) : probe(other.probe) { probe(); }
  calls_when_copied& operator=(const calls_when_copied&) = default;
};

[[gnu::noinline]] void plain(probe_fn probe) { probe(); }

[[gnu::noinline]] void noexcept_direct(probe_fn probe) noexcept { probe(); }

[[gnu::noinline]] void noexcept_with_cleanup(probe_fn probe) noexcept {
  cleanup local;
  probe();
}

[[gnu::noinline]] void noexcept_catch_all(probe_fn probe) noexcept {
  try {
    probe();
  } catch (...) {
  }
}

[[gnu::noinline]] void noexcept_catch_bad_alloc(probe_fn probe) noexcept {
  try {
    probe();
  } catch (const std::bad_alloc&) {
  }
}

[[gnu::noinline]] void noexcept_catch_exception(probe_fn probe) noexcept {
  try {
    cleanup local;
    probe();
  } catch (const std::exception&) {
  }
}

[[gnu::noinline]] void noexcept_catch_unrelated(probe_fn probe) noexcept {
  try {
    probe();
  } catch (const std::runtime_error&) {
  }
}

// A handler in the function, but the call outside its try block.
[[gnu::noinline]] void noexcept_call_after_try(probe_fn probe) noexcept {
  try {
    keep(&probe);
  } catch (const std::bad_alloc&) {
  }
  probe();
}

[[gnu::noinline]] void plain_catch_unrelated(probe_fn probe) {
  try {
    probe();
  } catch (const std::logic_error&) {
  }
}

[[gnu::noinline]] void destructor(probe_fn probe) { calls_in_destructor d{probe}; }

[[gnu::noinline]] void throwing_destructor(probe_fn probe) { calls_in_throwing_destructor d{probe}; }

[[gnu::noinline]] void noexcept_lambda_in_function(probe_fn probe) {
  std::function<void()> f = [probe]() noexcept { probe(); };
  f();
}

[[gnu::noinline]] void sort_in_noexcept(probe_fn probe) noexcept {
  std::vector<int> v{5, 3, 4, 1, 2};
  std::sort(v.begin(), v.end(), [probe](int a, int b) {
    probe();
    return a < b;
  });
  keep(v.data());
}

// libstdc++ copies elements under try { ... } catch (...) { destroy; throw; }:
// the catch-all rethrows, so it does not stop the search.
[[gnu::noinline]] void copy_in_noexcept(probe_fn probe) noexcept {
  const std::vector<calls_when_copied> source(1, calls_when_copied(probe));
  // (building `source` copied once through the probe too)
  std::vector<calls_when_copied> copy = source;
  keep(copy.data());
}

[[gnu::noinline]] void copy_in_plain(probe_fn probe) {
  const std::vector<calls_when_copied> source(1, calls_when_copied(probe));
  std::vector<calls_when_copied> copy = source;
  keep(copy.data());
}

// A handler below the noexcept frame that swallows the exception (its code
// never throws): caught there.
[[gnu::noinline]] void swallow_bad_alloc(probe_fn probe) {
  try {
    probe();
  } catch (const std::bad_alloc&) {
  }
}
[[gnu::noinline]] void noexcept_over_handler(probe_fn probe) noexcept { swallow_bad_alloc(probe); }

[[gnu::noinline]] void deep_plain(probe_fn probe, int depth) {
  if (depth == 0) return probe();
  deep_plain(probe, depth - 1);
  keep(&depth);
}

[[gnu::noinline]] void deep_under_noexcept(probe_fn probe) noexcept { deep_plain(probe, 20); }

}  // namespace

const shape shapes[] = {
    {"plain", &plain, expect::caught},
    {"noexcept_direct", &noexcept_direct, expect::terminates},
    {"noexcept_with_cleanup", &noexcept_with_cleanup, expect::terminates},
    {"noexcept_catch_all", &noexcept_catch_all, expect::caught},
    {"noexcept_catch_bad_alloc", &noexcept_catch_bad_alloc, expect::caught},
    {"noexcept_catch_exception", &noexcept_catch_exception, expect::caught},
    {"noexcept_catch_unrelated", &noexcept_catch_unrelated, expect::terminates},
    {"noexcept_call_after_try", &noexcept_call_after_try, expect::terminates},
    {"plain_catch_unrelated", &plain_catch_unrelated, expect::caught},
    {"destructor", &destructor, expect::terminates},
    {"throwing_destructor", &throwing_destructor, expect::caught},
    {"noexcept_lambda_in_function", &noexcept_lambda_in_function, expect::terminates},
    {"sort_in_noexcept", &sort_in_noexcept, expect::terminates},
    {"copy_in_noexcept", &copy_in_noexcept, expect::terminates},
    {"copy_in_plain", &copy_in_plain, expect::caught},
    {"noexcept_over_handler", &noexcept_over_handler, expect::caught},
    {"deep_under_noexcept", &deep_under_noexcept, expect::terminates},
};
const std::size_t shape_count = sizeof shapes / sizeof shapes[0];

}  // namespace handler_frames::FRAMES_NS
