// tests/unit/version_test.cpp — <memlimits/version.hpp> is generated from
// the version of project() in CMakeLists.txt, the one place it is written:
// the macros that <memlimits/config.hpp> provides must say what CMake says
// (MEMLIMITS_TEST_PROJECT_VERSION*, passed by tests/unit/CMakeLists.txt).
#include <string>

#include <gtest/gtest.h>

#include "memlimits/config.hpp"

// Usable by the preprocessor, as version macros are.
#if !defined(MEMLIMITS_VERSION_MAJOR) || !defined(MEMLIMITS_VERSION_MINOR) || \
    !defined(MEMLIMITS_VERSION_PATCH) || !defined(MEMLIMITS_VERSION)
#  error "memlimits/config.hpp must define the MEMLIMITS_VERSION macros"
#endif
#if MEMLIMITS_VERSION_MAJOR < 0 || MEMLIMITS_VERSION_MINOR < 0 || MEMLIMITS_VERSION_PATCH < 0
#  error "the MEMLIMITS_VERSION_* macros must be non-negative integers"
#endif

namespace {

TEST(Version, MacrosEqualTheCMakeProjectVersion) {
  EXPECT_EQ(MEMLIMITS_VERSION_MAJOR, MEMLIMITS_TEST_PROJECT_VERSION_MAJOR);
  EXPECT_EQ(MEMLIMITS_VERSION_MINOR, MEMLIMITS_TEST_PROJECT_VERSION_MINOR);
  EXPECT_EQ(MEMLIMITS_VERSION_PATCH, MEMLIMITS_TEST_PROJECT_VERSION_PATCH);
  EXPECT_STREQ(MEMLIMITS_VERSION, MEMLIMITS_TEST_PROJECT_VERSION);
}

TEST(Version, StringAgreesWithTheNumbers) {
  const std::string joined = std::to_string(MEMLIMITS_VERSION_MAJOR) + "." +
                             std::to_string(MEMLIMITS_VERSION_MINOR) + "." +
                             std::to_string(MEMLIMITS_VERSION_PATCH);
  EXPECT_EQ(joined, MEMLIMITS_VERSION);
}

}  // namespace
