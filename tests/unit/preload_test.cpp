// The LD_PRELOAD library on unmodified programs: a test binary that does not
// link memlimits, and a system program (sort). The environment-driven
// profile (MEMLIMITS_PROFILE_RATE, MEMLIMITS_PROFILE_OUTPUT) writes one JSON
// line per process at exit; its sample count must be plausible.
#include <unistd.h>

#include <algorithm>
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

}  // namespace
