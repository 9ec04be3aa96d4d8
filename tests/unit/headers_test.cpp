// tests/unit/headers_test.cpp — the public headers. That each compiles on
// its own is checked by the build: tests/unit/CMakeLists.txt compiles one
// translation unit per header of include/memlimits/, including only that
// header, into memlimits_header_checks, which this test depends on. Here:
// that every header has such a unit, and that the headers of the limits API
// (the parts limits.hpp includes) give that API when included one by one,
// without limits.hpp.
#include <cstddef>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>

#include <gtest/gtest.h>

#include "memlimits/guards.hpp"
#include "memlimits/literals.hpp"
#include "memlimits/mask.hpp"
#include "memlimits/monitoring.hpp"
#include "memlimits/result.hpp"
#include "memlimits/settings.hpp"
#include "memlimits/token.hpp"

namespace {

TEST(PublicHeaders, EveryHeaderIsCompiledOnItsOwn) {
  std::set<std::string> present;
  for (const auto& entry : std::filesystem::directory_iterator(MEMLIMITS_PUBLIC_HEADER_DIR)) {
    if (entry.path().extension() == ".hpp") present.insert(entry.path().filename().string());
  }
  std::set<std::string> checked;
  std::istringstream list(MEMLIMITS_CHECKED_HEADERS);
  for (std::string name; std::getline(list, name, ',');) checked.insert(name);
  EXPECT_EQ(checked, present);
  for (const char* part : {"result.hpp", "guards.hpp", "token.hpp", "mask.hpp", "settings.hpp",
                           "monitoring.hpp", "literals.hpp", "limits.hpp", "memlimits.hpp"}) {
    EXPECT_TRUE(checked.count(part)) << part;
  }
}

TEST(PublicHeaders, TheLimitsHeadersGiveTheLimitsApiWithoutLimitsHpp) {
  using namespace memlimits::literals;  // literals.hpp
  static_assert(2_KiB == 2048 && 1_MiB == 1u << 20 && 1_GiB == 1u << 30);

  // guards.hpp, result.hpp, monitoring.hpp
  std::size_t tasks_in_guard = 0;
  memlimits::limit_kind kind_in_guard = memlimits::limit_kind::token;
  memlimits::result<int> r = memlimits::limit_allocations(1_MiB, [&] {
    const auto tasks = memlimits::tasks();
    tasks_in_guard = tasks.size();
    if (tasks.size() == 1 && tasks[0].contexts.size() == 1) {
      kind_in_guard = tasks[0].contexts[0].kind;
    }
    return 42;
  });
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 42);
  EXPECT_EQ(tasks_in_guard, 1u);
  EXPECT_EQ(kind_in_guard, memlimits::limit_kind::allocations);
  EXPECT_STREQ(memlimits::to_string(memlimits::limit_kind::memory), "memory");
  EXPECT_LT(memlimits::global_memory_limit(), 0) << "no global limit by default";

  // token.hpp: a token set before entry, the task does not run.
  memlimits::token t;
  t.set();
  bool ran = false;
  memlimits::result<void> stopped = memlimits::limit_with_token(t, [&] { ran = true; });
  EXPECT_FALSE(ran);
  ASSERT_FALSE(stopped.has_value());
  EXPECT_EQ(stopped.error().kind(), memlimits::limit_kind::token);
  EXPECT_THROW(stopped.value(), memlimits::bad_result_access);

  // mask.hpp
  EXPECT_FALSE(memlimits::is_interrupted());
  EXPECT_NO_THROW(memlimits::poll());
  const bool masked = memlimits::with_resource(
      [] { return memlimits::is_masked(); }, [](bool& acquired_masked) { return acquired_masked; },
      [](bool&) {});
  EXPECT_TRUE(masked);
  EXPECT_FALSE(memlimits::is_masked());

  // settings.hpp
  const memlimits::settings s = memlimits::current_settings();
  EXPECT_GT(s.sampling_rate, 0.0);
  static_assert(std::is_enum_v<memlimits::memory_source> && std::is_enum_v<memlimits::malloc_policy>);
}

}  // namespace
