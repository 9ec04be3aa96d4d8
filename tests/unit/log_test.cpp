// The guard's log line: its words for each kind of limit, sizes in units
// people read, and the library quiet unless the program asks (a logger
// registered under "memlimits", or SPDLOG_LEVEL).
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "limits/report.hpp"
#include "memlimits/limits.hpp"
#include "support/scratch_dir.hpp"

namespace {

using memlimits::limit_kind;
using memlimits::detail::describe_trip;
using memlimits::detail::readable_bytes;
using memlimits::detail::trip_report;
using namespace memlimits::literals;

TEST(LogText, SizesAreInBinaryUnitsWithOneDecimalUnlessWhole) {
  EXPECT_EQ(readable_bytes(0), "0 B");
  EXPECT_EQ(readable_bytes(1023), "1023 B");
  EXPECT_EQ(readable_bytes(1024), "1 KiB");
  EXPECT_EQ(readable_bytes(1536), "1.5 KiB");
  EXPECT_EQ(readable_bytes(16.0 * 1024 * 1024), "16 MiB");
  EXPECT_EQ(readable_bytes(16.2 * 1024 * 1024), "16.2 MiB");
  EXPECT_EQ(readable_bytes(3.0 * 1024 * 1024 * 1024 * 1024), "3 TiB");
  EXPECT_EQ(readable_bytes(-2048), "-2 KiB");
}

TEST(LogText, EachKindOfLimitSaysWhatHappened) {
  trip_report r;
  r.kind = limit_kind::allocations;
  r.limit = 16_MiB;
  r.block = 4_MiB;
  r.used = 14_MiB;
  r.allocated = 14_MiB;
  EXPECT_EQ(describe_trip(r),
            "allocation limit 16 MiB reached: an allocation of 4 MiB would have made 14 MiB + "
            "4 MiB; the task allocated 14 MiB in all");

  r = {};
  r.kind = limit_kind::memory;
  r.limit = 1_MiB;
  r.block = 1_KiB;
  r.used = 1153434;  // 1.1 MiB
  r.allocated = 1153434;
  EXPECT_EQ(describe_trip(r),
            "memory limit 1 MiB reached: live memory was estimated at 1.1 MiB, at an allocation "
            "of 1 KiB; the task allocated 1.1 MiB in all");

  r = {};
  r.kind = limit_kind::global_memory;
  r.limit = 64_MiB;
  r.block = 256_KiB;
  r.allocated = 512;
  EXPECT_EQ(describe_trip(r),
            "global memory limit 64 MiB reached at an allocation of 256 KiB; the task allocated "
            "512 B in all");

  r = {};
  r.kind = limit_kind::token;
  EXPECT_EQ(describe_trip(r), "its token was set; the task allocated 0 B in all");
  r.deadline = true;
  EXPECT_EQ(describe_trip(r), "its deadline passed; the task allocated 0 B in all");
}

// A logger registered by the program under "memlimits" gets the lines, with
// the sizes of the real trip.
TEST(LogLine, GoesToTheProgramsOwnLogger) {
  std::ostringstream text;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text);
  auto mine = std::make_shared<spdlog::logger>("memlimits", sink);
  mine->set_pattern("%v");
  mine->set_level(spdlog::level::info);
  spdlog::register_logger(mine);

  std::vector<std::unique_ptr<char[]>> kept;
  kept.reserve(16);
  const auto r = memlimits::limit_allocations(16_KiB, [&] {
    for (int i = 0; i < 16; ++i) kept.push_back(std::make_unique<char[]>(4_KiB));
  });
  kept.clear();
  {
    memlimits::guard g(memlimits::limits{.deadline = std::chrono::milliseconds(1)});
    try {
      for (;;) kept.push_back(std::make_unique<char[]>(64));
    } catch (const memlimits::limit_reached&) {
    }
    kept.clear();
    EXPECT_TRUE(g.exit().has_value());
  }
  spdlog::drop("memlimits");

  ASSERT_FALSE(r.has_value());
  const std::string lines = text.str();
  EXPECT_NE(lines.find("memlimits::limit_allocations stopped its task: allocation limit 16 KiB "
                       "reached: an allocation of 4 KiB would have made 16 KiB + 4 KiB; the "
                       "task allocated 16 KiB in all\n"),
            std::string::npos)
      << lines;
  EXPECT_NE(lines.find("memlimits::guard stopped its task: its deadline passed"), std::string::npos)
      << lines;
}

// A child process with the given environment prefix: what it wrote to stderr.
std::string probe_stderr(const std::string& environment) {
  memlimits::testing::scratch_dir dir("log_test");
  const std::filesystem::path err = dir.path() / "stderr.txt";
  const std::filesystem::path out = dir.path() / "stdout.txt";
  const std::string line = "env -u SPDLOG_LEVEL " + environment + " " + MEMLIMITS_LOG_PROBE +
                           " >" + out.string() + " 2>" + err.string();
  EXPECT_EQ(std::system(line.c_str()), 0) << line;
  std::ifstream o(out);
  std::string first;
  std::getline(o, first);
  EXPECT_EQ(first, "done");
  std::ifstream in(err);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(LogLine, NothingOnStderrByDefault) { EXPECT_EQ(probe_stderr(""), ""); }

TEST(LogLine, OnWhenSpdlogLevelAsksForIt) {
  const std::string lines = probe_stderr("SPDLOG_LEVEL=memlimits=info");
  EXPECT_NE(lines.find("memlimits::limit_allocations stopped its task: allocation limit 16 KiB "
                       "reached: an allocation of 4 KiB would have made 16 KiB + 4 KiB"),
            std::string::npos)
      << lines;
  EXPECT_NE(lines.find("memlimits::limit_with_token stopped its task: its token was set"),
            std::string::npos)
      << lines;
  // A level above info keeps it quiet.
  EXPECT_EQ(probe_stderr("SPDLOG_LEVEL=memlimits=warn"), "");
}

}  // namespace
