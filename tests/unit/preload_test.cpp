// The LD_PRELOAD library on unmodified programs: a test binary that does not
// link memlimits, and a system program (sort). The environment-driven
// profile (MEMLIMITS_PROFILE_RATE, MEMLIMITS_PROFILE_OUTPUT) writes one JSON
// line per process at exit; its sample count must be plausible. And what a
// program must not notice: no output on its standard error unless asked, no
// descriptor of ours; what it must: allocations of other libraries'
// constructors and frees of their destructors; every malformed setting
// named on standard error and ignored.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <boost/math/distributions/binomial.hpp>
#include <gtest/gtest.h>

#include "support/scratch_dir.hpp"

namespace {

namespace fs = std::filesystem;
using memlimits::testing::read_file;
using memlimits::testing::scratch_dir;

#if defined(MEMLIMITS_SANITIZER_ALLOCATOR)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif

struct summary {
  double rate = 0;
  std::uint64_t samples = 0;
  std::uint64_t sampled_blocks = 0;
  std::int64_t live_samples = 0;
};

double number_after(const std::string& line, const std::string& key) {
  const std::size_t at = line.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::strtod(line.c_str() + at + key.size() + 3, nullptr);
}

std::vector<summary> read_summaries(const fs::path& file) {
  std::vector<summary> result;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    summary s;
    s.rate = number_after(line, "rate");
    s.samples = static_cast<std::uint64_t>(number_after(line, "samples"));
    s.sampled_blocks = static_cast<std::uint64_t>(number_after(line, "sampled_blocks"));
    s.live_samples = static_cast<std::int64_t>(number_after(line, "live_samples"));
    result.push_back(s);
  }
  return result;
}

class Preload : public ::testing::Test {
 protected:
  void SetUp() override {
    if (sanitized) {
      GTEST_SKIP() << "a sanitizer runtime must come first in the library list; the preload "
                      "library is tested in the plain build";
    }
  }

  int run(const std::string& command, double rate) {
    const std::string line = "MEMLIMITS_PROFILE_RATE=" + std::to_string(rate) +
                             " MEMLIMITS_PROFILE_OUTPUT='" + output_.string() + "'" +
                             " LD_PRELOAD='" MEMLIMITS_PRELOAD_LIBRARY "' " + command;
    return std::system(line.c_str());
  }

  scratch_dir dir_{"memlimits-preload"};
  fs::path output_ = dir_ / "profile.jsonl";
};

// Samples of W words at rate r are Binomial(W, r); the program's other
// allocations (C++ runtime, locale) add at most `extra_words`. Each bound
// has probability alpha / 2 of a false failure.
void expect_plausible(std::uint64_t samples, double words, double extra_words, double rate,
                      double alpha) {
  using boost::math::binomial_distribution;
  using boost::math::quantile;
  const double low = quantile(binomial_distribution<>(words, rate), alpha / 2);
  const double high = quantile(binomial_distribution<>(words + extra_words, rate), 1 - alpha / 2);
  EXPECT_GE(static_cast<double>(samples), low) << "words " << words << " rate " << rate;
  EXPECT_LE(static_cast<double>(samples), high) << "words " << words << " rate " << rate;
}

TEST_F(Preload, UnmodifiedTestBinary) {
  constexpr int blocks = 5000;
  constexpr int size = 1000;
  constexpr double rate = 0.01;
  ASSERT_EQ(run(std::string("'" MEMLIMITS_PRELOAD_PROBE "' ") + std::to_string(blocks) + " " +
                    std::to_string(size),
                rate),
            0);
  const auto lines = read_summaries(output_);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_DOUBLE_EQ(lines[0].rate, rate);
  // 2 * blocks blocks of ceil(1000 / 8) = 125 words; at most 256 KiB of
  // runtime allocations besides. False failure below 1e-10.
  expect_plausible(lines[0].samples, 2.0 * blocks * 125, 256.0 * 1024 / 8, rate, 1e-10);
  EXPECT_GE(lines[0].live_samples, 0);
}

TEST_F(Preload, UnmodifiedTestBinaryAtRateOneIsExact) {
  ASSERT_EQ(run("'" MEMLIMITS_PRELOAD_PROBE "' 100 24", 1.0), 0);
  const auto lines = read_summaries(output_);
  ASSERT_EQ(lines.size(), 1u);
  // Every word is a sample: the probe's 200 blocks of 3 words, plus the
  // runtime's own allocations.
  EXPECT_GE(lines[0].samples, 600u);
  EXPECT_GE(lines[0].sampled_blocks, 200u);
  EXPECT_LE(lines[0].samples, 600u + 256 * 1024 / 8);
}

TEST_F(Preload, SystemSortOnAGeneratedFile) {
  const fs::path input = dir_ / "input.txt";
  std::vector<std::string> lines;
  std::mt19937_64 rng(2024);
  {
    std::ofstream out(input);
    for (int i = 0; i < 100000; ++i) {
      lines.push_back(std::to_string(rng() % 100000000) + "-line");
      out << lines.back() << '\n';
    }
  }
  const double file_bytes = static_cast<double>(fs::file_size(input));
  constexpr double rate = 1e-3;
  const fs::path sorted = dir_ / "sorted.txt";
  ASSERT_EQ(run("env LC_ALL=C sort '" + input.string() + "' -o '" + sorted.string() + "'", rate),
            0);

  std::sort(lines.begin(), lines.end());
  std::ifstream in(sorted);
  std::vector<std::string> got;
  for (std::string line; std::getline(in, line);) got.push_back(line);
  EXPECT_EQ(got, lines);  // the program still works

  const auto summaries = read_summaries(output_);
  ASSERT_GE(summaries.size(), 1u);  // env, then sort (exec keeps LD_PRELOAD)
  const summary& s = summaries.back();
  // sort holds its whole input in memory, so it allocates at least the
  // file's words: fewer samples than Binomial(file words, rate)'s 1e-10
  // quantile is implausible; and its estimate stays within 1 GiB.
  const double low =
      boost::math::quantile(boost::math::binomial_distribution<>(file_bytes / 8, rate), 1e-10);
  EXPECT_GE(static_cast<double>(s.samples), low);
  EXPECT_LE(static_cast<double>(s.samples) * 8 / rate, 1024.0 * 1024 * 1024);
}

TEST_F(Preload, BadRateIsReportedAndIgnored) {
  const std::string line = "MEMLIMITS_PROFILE_RATE=7 LD_PRELOAD='" MEMLIMITS_PRELOAD_LIBRARY
                           "' '" MEMLIMITS_PRELOAD_PROBE "' 10 10 2>'" +
                           (dir_ / "err.txt").string() + "'";
  ASSERT_EQ(std::system(line.c_str()), 0);
  const std::string text = read_file(dir_ / "err.txt");
  EXPECT_NE(text.find("MEMLIMITS_PROFILE_RATE"), std::string::npos) << text;
}

// Runs `command` in `cwd` with `environment` ("NAME=value ..." words, already
// quoted) and LD_PRELOAD; stdout and stderr go to cwd/out.txt, cwd/err.txt.
int run_preloaded(const fs::path& cwd, const std::string& environment,
                  const std::string& command) {
  const std::string line = "cd '" + cwd.string() + "' && env " + environment +
                           " LD_PRELOAD='" MEMLIMITS_PRELOAD_LIBRARY "' " + command +
                           " >out.txt 2>err.txt";
  return std::system(line.c_str());
}

int run_plain(const fs::path& cwd, const std::string& command) {
  const std::string line = "cd '" + cwd.string() + "' && " + command + " >out.txt 2>err.txt";
  return std::system(line.c_str());
}

std::vector<fs::path> summary_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("memlimits.") && name.ends_with(".json")) files.push_back(entry.path());
  }
  return files;
}

const std::string probe = "'" MEMLIMITS_PRELOAD_PROBE "'";
const std::string startup_probe = "'" MEMLIMITS_PRELOAD_STARTUP_PROBE "'";

TEST_F(Preload, SummaryGoesToAFileOfTheProcessByDefault) {
  ASSERT_EQ(run_preloaded(dir_.path(), "MEMLIMITS_PROFILE_RATE=0.01", probe + " 100 100"), 0);
  EXPECT_EQ(read_file(dir_ / "err.txt"), "");
  const auto files = summary_files(dir_.path());
  ASSERT_EQ(files.size(), 1u);
  const std::string text = read_file(files[0]);
  // memlimits.<pid>.json holds that process's line.
  const std::string pid = files[0].stem().extension().string().substr(1);
  EXPECT_NE(text.find("{\"pid\":" + pid + ","), std::string::npos) << text;
  EXPECT_EQ(read_summaries(files[0]).size(), 1u);
}

TEST_F(Preload, SummaryGoesToStandardErrorOnlyWhenAsked) {
  ASSERT_EQ(run_preloaded(dir_.path(), "MEMLIMITS_PROFILE_RATE=0.01 MEMLIMITS_PROFILE_OUTPUT=-",
                          probe + " 100 100"),
            0);
  const std::string err = read_file(dir_ / "err.txt");
  EXPECT_TRUE(err.starts_with("{\"pid\":")) << err;
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_TRUE(summary_files(dir_.path()).empty());
}

TEST_F(Preload, SummaryPathTakesTheProcessId) {
  ASSERT_EQ(run_preloaded(dir_.path(),
                          "MEMLIMITS_PROFILE_RATE=0.01 MEMLIMITS_PROFILE_OUTPUT=sub.%p.jsonl",
                          "bash -c '" + probe + " 10 10; " + probe + " 10 10; true'"),
            0);
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir_.path())) {
    if (entry.path().filename().string().starts_with("sub.")) files.push_back(entry.path());
  }
  // bash and its two children (dash would not count: it ends by _exit()).
  EXPECT_EQ(files.size(), 3u);
  for (const auto& file : files) EXPECT_EQ(read_summaries(file).size(), 1u) << file;
}

TEST_F(Preload, UnwritableSummaryNamesTheUsersPath) {
  const std::string path = (dir_ / "missing-dir" / "summary.json").string();
  ASSERT_EQ(run_preloaded(dir_.path(),
                          "MEMLIMITS_PROFILE_RATE=0.01 MEMLIMITS_PROFILE_OUTPUT='" + path + "'",
                          probe + " 10 10"),
            0);
  const std::string err = read_file(dir_ / "err.txt");
  EXPECT_NE(err.find("\"" + path + "\""), std::string::npos) << err;
}

TEST_F(Preload, UnwritableHeapProfileNamesTheUsersPath) {
  for (const char* name : {"heap.folded", "heap.pb.gz"}) {
    const std::string path = (dir_ / "missing-dir" / name).string();
    ASSERT_EQ(run_preloaded(dir_.path(), "MEMLIMITS_HEAP_PROFILE='" + path + "'", probe + " 10 10"),
              0);
    // The user's path first; the temporary file beside it may follow.
    const std::string err = read_file(dir_ / "err.txt");
    EXPECT_NE(err.find("cannot write " + path + " "), std::string::npos) << err;
    EXPECT_LT(err.find(path), err.find(".tmp")) << err;
  }
}

// The descriptors a program sees are its own: the probe lists
// /proc/self/fd after allocating, plain and under the library with each
// profile asked for.
TEST_F(Preload, HoldsNoDescriptor) {
  const std::string command = probe + " 1000 100 fds";
  ASSERT_EQ(run_plain(dir_.path(), command), 0);
  const std::string plain = read_file(dir_ / "out.txt");
  ASSERT_NE(plain, "");
  for (const std::string environment :
       {"MEMLIMITS_PROFILE_RATE=0.01", "MEMLIMITS_PROFILE_RATE=1 MEMLIMITS_PROFILE_OUTPUT=-",
        "MEMLIMITS_HEAP_PROFILE=heap.folded", "MEMLIMITS_HEAP_PROFILE=heap.pb.gz",
        "MEMLIMITS_PROFILE_RATE=0.01 MEMLIMITS_HEAP_PROFILE=heap.folded"}) {
    ASSERT_EQ(run_preloaded(dir_.path(), environment, command), 0) << environment;
    EXPECT_EQ(read_file(dir_ / "out.txt"), plain) << environment;
  }
}

// preload_startup_lib allocates 1,000 blocks of 18,500 bytes in its
// constructor, which the loader runs before the preloaded library's: at rate
// 1 every word is a sample, so the summary counts at least their words.
TEST_F(Preload, CountsAllocationsOfOtherLibrariesConstructors) {
  ASSERT_EQ(run_preloaded(dir_.path(), "MEMLIMITS_PROFILE_RATE=1", startup_probe), 0);
  const auto files = summary_files(dir_.path());
  ASSERT_EQ(files.size(), 1u);
  const auto lines = read_summaries(files[0]);
  ASSERT_EQ(lines.size(), 1u);
  constexpr std::uint64_t table_words = 1000 * ((18500 + 7) / 8);
  EXPECT_GE(lines[0].samples, table_words);
  EXPECT_GE(lines[0].sampled_blocks, 1000u);
}

// ... and frees them in its destructor, which runs after the preloaded
// library's: the profiles are written after it, so the table (18.5 MB) is
// not live. What runtimes leave live at exit (C++'s emergency exception
// pool: 72 KiB, stdio's buffers) is below 1 MiB.
TEST_F(Preload, FreesOfOtherLibrariesDestructorsAreNotLive) {
  ASSERT_EQ(run_preloaded(dir_.path(),
                          "MEMLIMITS_PROFILE_RATE=1 MEMLIMITS_HEAP_PROFILE=heap.folded "
                          "MEMLIMITS_HEAP_PROFILE_RATE=1",
                          startup_probe),
            0);
  EXPECT_EQ(read_file(dir_ / "err.txt"), "");
  const auto files = summary_files(dir_.path());
  ASSERT_EQ(files.size(), 1u);
  const auto lines = read_summaries(files[0]);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_LT(lines[0].live_samples, 1024 * 1024 / 8);
  // Folded stacks: "frame;frame;... bytes" per line; at rate 1 the counts
  // are the live bytes.
  std::ifstream in(dir_ / "heap.folded");
  ASSERT_TRUE(in) << "no heap profile";
  double live_bytes = 0;
  for (std::string line; std::getline(in, line);) {
    live_bytes += std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
  }
  EXPECT_LT(live_bytes, 1024 * 1024);
}

struct bad_setting {
  const char* name;
  const char* value;
};

// Every variable with malformed values: one line naming the variable and
// the value, the program unharmed, the value ignored as if unset.
TEST_F(Preload, MalformedSettingsAreNamedAndIgnored) {
  const std::string long_path(5000, 'x');
  const std::vector<bad_setting> cases = {
      {"MEMLIMITS_PROFILE_RATE", "1e-3abc"}, {"MEMLIMITS_PROFILE_RATE", "abc"},
      {"MEMLIMITS_PROFILE_RATE", "0"},       {"MEMLIMITS_PROFILE_RATE", "-0.5"},
      {"MEMLIMITS_PROFILE_RATE", "2"},       {"MEMLIMITS_PROFILE_RATE", "nan"},
      {"MEMLIMITS_PROFILE_RATE", "inf"},     {"MEMLIMITS_PROFILE_RATE", " 0.1"},
      {"MEMLIMITS_PROFILE_RATE", "0.1 "},    {"MEMLIMITS_HEAP_PROFILE_RATE", "1e-3abc"},
      {"MEMLIMITS_HEAP_PROFILE_RATE", "0"},  {"MEMLIMITS_HEAP_PROFILE_RATE", "1.5"},
      {"MEMLIMITS_HEAP_PROFILE_DEPTH", "0"}, {"MEMLIMITS_HEAP_PROFILE_DEPTH", "257"},
      {"MEMLIMITS_HEAP_PROFILE_DEPTH", "-1"}, {"MEMLIMITS_HEAP_PROFILE_DEPTH", "10x"},
      {"MEMLIMITS_HEAP_PROFILE_DEPTH", "1e1"}, {"MEMLIMITS_HEAP_PROFILE_TOP", "-1"},
      {"MEMLIMITS_HEAP_PROFILE_TOP", "abc"}, {"MEMLIMITS_HEAP_PROFILE_TOP", "5 "},
      {"MEMLIMITS_SEED", "abc"},             {"MEMLIMITS_SEED", "-1"},
      {"MEMLIMITS_SEED", "12x"},             {"MEMLIMITS_SEED", "99999999999999999999999"},
      {"MEMLIMITS_SEED", "+5"},              {"MEMLIMITS_PROFILE_OUTPUT", long_path.c_str()},
      {"MEMLIMITS_HEAP_PROFILE", long_path.c_str()}};
  for (const bad_setting& c : cases) {
    SCOPED_TRACE(std::string(c.name) + "=" + std::string(c.value).substr(0, 40));
    for (const auto& file : summary_files(dir_.path())) fs::remove(file);
    fs::remove(dir_ / "heap.folded");
    // The other variables set and valid, so that each bad one is seen.
    std::string environment = std::string(c.name) + "='" + c.value + "'";
    for (const char* valid : {"MEMLIMITS_PROFILE_RATE=0.5", "MEMLIMITS_HEAP_PROFILE=heap.folded"}) {
      if (!std::string(valid).starts_with(std::string(c.name) + "=")) {
        environment += std::string(" ") + valid;
      }
    }
    ASSERT_EQ(run_preloaded(dir_.path(), environment, probe + " 100 100"), 0);
    const std::string err = read_file(dir_ / "err.txt");
    const std::string shown = std::string(c.value).substr(0, 200);
    EXPECT_EQ(err, "memlimits: ignoring " + std::string(c.name) + "=\"" + shown + "\": expected " +
                       err.substr(std::min(err.size(), err.find("expected ") + 9)))
        << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    // Ignored, as if unset: no summary without a rate; everything else
    // written as asked (a bad MEMLIMITS_PROFILE_OUTPUT: the default file).
    const std::string name = c.name;
    EXPECT_EQ(summary_files(dir_.path()).size(), name == "MEMLIMITS_PROFILE_RATE" ? 0u : 1u);
    EXPECT_EQ(fs::exists(dir_ / "heap.folded"), name != "MEMLIMITS_HEAP_PROFILE");
  }
}

// A malformed rate of the heap profile does not make the heap profile
// fall back silently: the summary's rate is used, and said.
TEST_F(Preload, MalformedHeapRateFallsBackToTheSummaryRate) {
  ASSERT_EQ(run_preloaded(dir_.path(),
                          "MEMLIMITS_PROFILE_RATE=1 MEMLIMITS_HEAP_PROFILE=heap.folded "
                          "MEMLIMITS_HEAP_PROFILE_RATE=0.5x MEMLIMITS_HEAP_PROFILE_TOP=0",
                          probe + " 10 10"),
            0);
  EXPECT_NE(read_file(dir_ / "err.txt").find("MEMLIMITS_HEAP_PROFILE_RATE=\"0.5x\""),
            std::string::npos);
  EXPECT_TRUE(fs::exists(dir_ / "heap.folded"));
  EXPECT_FALSE(fs::exists(dir_ / "heap.folded.top"));
}

}  // namespace
