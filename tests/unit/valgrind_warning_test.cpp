// The start-up check of src/hooks/valgrind_check.cpp: under valgrind's tools
// that replace the allocator (memcheck here) the hooks are never called, and
// the program says so once on standard error; under callgrind, which keeps
// the program's allocator, and without valgrind, the hooks work and nothing
// is said. valgrind_probe (linked with memlimits::hooks) reports on standard
// output whether its own allocations reached the hooks, so that the message
// is checked against what actually happened. Skipped when valgrind is not
// installed (the run without valgrind still runs); not built under the
// sanitizers (tests/unit/CMakeLists.txt).
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "support/scratch_dir.hpp"

namespace {

namespace fs = std::filesystem;
using memlimits::testing::read_file;
using memlimits::testing::scratch_dir;

constexpr char warning[] = "memlimits: the allocation hooks are not called";

struct outcome {
  int status = -1;
  std::string out;
  std::string err;
};

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

class ValgrindWarning : public ::testing::Test {
 protected:
  // Runs `prefix probe --report` in dir_, with the two streams in files.
  outcome run(const std::string& prefix) {
    const fs::path out = dir_ / "stdout";
    const fs::path err = dir_ / "stderr";
    const std::string line = "cd '" + dir_.path().string() + "' && " + prefix + " '" +
                             MEMLIMITS_VALGRIND_PROBE "' --report >'" + out.string() + "' 2>'" +
                             err.string() + "'";
    outcome result;
    result.status = std::system(line.c_str());
    result.out = read_file(out);
    result.err = read_file(err);
    return result;
  }

  // valgrind's path, or "" when it is not installed.
  static std::string valgrind() {
    const std::string path = MEMLIMITS_VALGRIND;
    if (path.empty() || path.ends_with("NOTFOUND") || ::access(path.c_str(), X_OK) != 0) return "";
    return path;
  }

  scratch_dir dir_{"memlimits-valgrind"};
};

TEST_F(ValgrindWarning, MemcheckReplacesTheHooksAndTheProgramSaysSoOnce) {
  const std::string valgrind_path = valgrind();
  if (valgrind_path.empty()) GTEST_SKIP() << "valgrind is not installed";
  const outcome r = run("'" + valgrind_path + "' -q --tool=memcheck --error-exitcode=99");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hooks not called\n") << r.err;
  EXPECT_EQ(count(r.err, warning), 1u) << r.err;
  EXPECT_EQ(count(r.err, "(the program runs under valgrind's memcheck, whose allocator replaces "
                         "them): limits are not enforced and profiles see nothing\n"),
            1u)
      << r.err;
}

TEST_F(ValgrindWarning, CallgrindKeepsTheHooksAndNothingIsSaid) {
  const std::string valgrind_path = valgrind();
  if (valgrind_path.empty()) GTEST_SKIP() << "valgrind is not installed";
  const outcome r = run("'" + valgrind_path + "' -q --tool=callgrind --callgrind-out-file=/dev/null");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hooks called\n") << r.err;
  EXPECT_EQ(count(r.err, "memlimits"), 0u) << r.err;
}

TEST_F(ValgrindWarning, WithoutValgrindNothingIsSaid) {
  const outcome r = run("");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hooks called\n");
  EXPECT_EQ(r.err, "");
}

}  // namespace
