// memprof::heap_profile: arguments, attribution of live bytes to known
// allocation sites, frees, the folded and top-N outputs, frame names, a full
// table, threads; and the preload library's MEMLIMITS_HEAP_PROFILE on an
// unmodified program.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "core/sampler.hpp"
#include "heap_profile_sites.hpp"
#include "memlimits/memprof.hpp"
#include "support/recording_tracker.hpp"
#include "support/scratch_dir.hpp"
#include "support/wait.hpp"
#include "unloadable_library.hpp"

// ---- allocation sites ----
// Named in the profile through dladdr: external linkage (the test is linked
// with -rdynamic), noinline, and each keeps its frame on the stack across
// the allocation (the result is stored, not returned by a tail call).

__attribute__((noinline)) void site_malloc_blocks(std::vector<void*>& out, std::size_t count,
                                                  std::size_t size) {
  for (std::size_t i = 0; i < count; ++i) out.push_back(std::malloc(size));
  memlimits::testing::sink(out.data());
}

__attribute__((noinline)) void site_new_arrays(std::vector<char*>& out, std::size_t count,
                                               std::size_t size) {
  for (std::size_t i = 0; i < count; ++i) out.push_back(new char[size]);
  memlimits::testing::sink(out.data());
}

__attribute__((noinline)) void site_vector(std::vector<std::uint64_t>& out, std::size_t elements) {
  out.assign(elements, 7);
  memlimits::testing::sink(out.data());
}

__attribute__((noinline)) void site_freed(std::size_t count, std::size_t size) {
  std::vector<void*> blocks;
  blocks.reserve(count);
  for (std::size_t i = 0; i < count; ++i) blocks.push_back(std::malloc(size));
  memlimits::testing::sink(blocks.data());
  for (void* b : blocks) std::free(b);
}

// The bodies differ (the byte written), so that identical code folding
// (GCC's -fipa-icf) cannot merge the sites into one function.
constexpr int site_big_malloc_line = __LINE__ + 2;  // the line of its malloc()
__attribute__((noinline)) void* site_big(std::size_t n) {
  auto* p = static_cast<char*>(std::malloc(n));
  *p = 1;
  memlimits::testing::sink(p);
  return p;
}
__attribute__((noinline)) void* site_middle(std::size_t n) {
  auto* p = static_cast<char*>(std::malloc(n));
  *p = 2;
  memlimits::testing::sink(p);
  return p;
}
__attribute__((noinline)) void* site_small(std::size_t n) {
  auto* p = static_cast<char*>(std::malloc(n));
  *p = 3;
  memlimits::testing::sink(p);
  return p;
}

// A demangled name with spaces: "void* site_template<std::pair<int, long> >(unsigned long)".
template <class T>
__attribute__((noinline)) void* site_template(std::size_t n) {
  auto* p = static_cast<char*>(std::malloc(n));
  *p = 4;
  memlimits::testing::sink(p);
  return p;
}
template void* site_template<std::pair<int, long>>(std::size_t);

// Distinct callstacks: one per depth.
__attribute__((noinline)) void* site_at_depth(int depth, std::size_t n) {
  void* p = depth == 0 ? std::malloc(n) : site_at_depth(depth - 1, n);
  memlimits::testing::sink(p);
  return p;
}

namespace {

// Internal linkage: not in the dynamic symbol table, so named module+offset.
__attribute__((noinline)) void* site_without_symbol(std::size_t n) {
  auto* p = static_cast<char*>(std::malloc(n));
  *p = 5;
  memlimits::testing::sink(p);
  return p;
}

namespace fs = std::filesystem;
using memlimits::testing::read_file;
using memlimits::testing::scratch_dir;
using memlimits::memprof::frame_name;
using memlimits::memprof::heap_profile;
using memlimits::memprof::heap_stack;
using memlimits::testing::sink;

std::uint64_t words(std::size_t bytes) { return (bytes + 7) / 8; }

// A snapshot whose own allocations are not sampled, for exact counts at
// rate 1 (snapshot() allocates, and at rate 1 each of its blocks would be
// counted while it is live).
std::vector<heap_stack> quiet_snapshot(const heap_profile& p) {
  memlimits::core::sampling_off off;
  return p.snapshot();
}

bool names(const heap_stack& s, const std::string& function) {
  for (void* f : s.frames) {
    if (frame_name(f).find(function) != std::string::npos) return true;
  }
  return false;
}

// Live samples of the stacks that pass through `function`.
std::uint64_t samples_through(const std::vector<heap_stack>& stacks, const std::string& function) {
  std::uint64_t n = 0;
  for (const heap_stack& s : stacks) n += names(s, function) ? s.samples : 0;
  return n;
}

std::int64_t objects_through(const std::vector<heap_stack>& stacks, const std::string& function) {
  std::int64_t n = 0;
  for (const heap_stack& s : stacks) n += names(s, function) ? s.live_objects : 0;
  return n;
}

std::uint64_t total_samples(const std::vector<heap_stack>& stacks) {
  std::uint64_t n = 0;
  for (const heap_stack& s : stacks) n += s.samples;
  return n;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool all_of_chars(std::string_view text, bool (*allowed)(char)) {
  return !text.empty() && std::all_of(text.begin(), text.end(), allowed);
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_hex_digit(char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }
bool is_frame_char(char c) { return c != ';' && !std::isspace(static_cast<unsigned char>(c)); }

// "frame;frame;...;frame count", as the regular expression
// ^[^;\s]+(;[^;\s]+)* [1-9][0-9]*$: frames neither empty nor holding ';' or
// white space, the count a positive integer.
bool is_folded_line(std::string_view line) {
  const std::size_t space = line.rfind(' ');
  if (space == std::string_view::npos) return false;
  const std::string_view count = line.substr(space + 1);
  if (!all_of_chars(count, &is_digit) || count[0] == '0') return false;
  std::string_view stack = line.substr(0, space);
  for (;;) {
    const std::size_t semicolon = stack.find(';');
    if (!all_of_chars(stack.substr(0, semicolon), &is_frame_char)) return false;
    if (semicolon == std::string_view::npos) return true;
    stack.remove_prefix(semicolon + 1);
  }
}

// Checks every line; returns the sum of the counts.
std::int64_t check_folded(const std::string& text) {
  std::int64_t total = 0;
  for (const std::string& line : lines_of(text)) {
    EXPECT_TRUE(is_folded_line(line)) << "bad folded line: " << line;
    total += std::stoll(line.substr(line.rfind(' ') + 1));
  }
  return total;
}

// "prefix" followed by one or more characters that pass `allowed`.
bool has_form(std::string_view text, std::string_view prefix, bool (*allowed)(char)) {
  return text.substr(0, prefix.size()) == prefix &&
         all_of_chars(text.substr(std::min(prefix.size(), text.size())), allowed);
}

TEST(HeapProfileArguments, RejectsBadArgumentsNamingThem) {
  const auto expect_invalid = [](auto make, const std::string& parameter) {
    try {
      make();
      ADD_FAILURE() << "accepted a bad " << parameter;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(parameter), std::string::npos) << e.what();
    }
  };
  for (double rate : {0.0, -1.0, 1.5, std::nan(""), std::numeric_limits<double>::infinity()}) {
    expect_invalid([rate] { heap_profile p(rate); }, "sampling_rate");
  }
  expect_invalid([] { heap_profile p(0.1, 0); }, "callstack_size");
  expect_invalid([] { heap_profile p(0.1, memlimits::memprof::profile::max_callstack_size + 1); },
                 "callstack_size");
  expect_invalid([] { heap_profile p(0.1, 8, 0); }, "max_stacks");
  expect_invalid([] { heap_profile p(0.1, 8, heap_profile::max_stacks_limit + 1); }, "max_stacks");
  heap_profile p(0.5, 3, 10);
  EXPECT_TRUE(p.running());
  EXPECT_EQ(p.sampling_rate(), 0.5);
  EXPECT_EQ(p.callstack_size(), 3u);
}

// The acceptance test of the profiler: known sites with known live bytes.
//
// Law: every 8-byte word is sampled independently with probability r at the
// profile's rate (binomial thinning keeps that exact whatever else runs), so
// a site whose live blocks hold W words has N ~ Binomial(W, r) live samples,
// estimated as N * 8 / r bytes. Frees take back exactly what allocations
// added, so the freed site has exactly 0.
// False failure: each site has W = 524288 words (4 MiB) and r = 0.05, so
// mu = W r = 26214.4; by the Chernoff bound
//   P(|N - mu| >= 0.1 mu) <= 2 exp(-0.1^2 mu / 3) = 2 exp(-87.4) < 1e-37,
// for three sites < 1e-36. The share check fails only if the other live
// blocks sampled during the test (a few KiB of GoogleTest's, at most 64 KiB
// = 8192 words, mean 410 samples) got over 10% of the estimate, i.e. more
// than 7800 samples: Chernoff P(N >= 19 mu') <= (e^18 / 19^19)^410 < 1e-300.
// So the test fails falsely with probability far below 1e-9; the seed makes
// it deterministic on top (the same stream of samples on every run).
TEST(HeapProfileAttribution, KnownSitesGetAtLeastNinetyPercentOfTheLiveBytes) {
  constexpr double rate = 0.05;
  constexpr std::size_t malloc_count = 4096, malloc_size = 1024;
  constexpr std::size_t new_count = 1024, new_size = 4096;
  constexpr std::size_t vector_elements = 512 * 1024;
  std::vector<void*> malloc_blocks;
  std::vector<char*> new_blocks;
  std::vector<std::uint64_t> vector_block;
  malloc_blocks.reserve(malloc_count);  // fixtures before the profile
  new_blocks.reserve(new_count);
  memlimits::core::reseed(20240601);

  heap_profile p(rate, 32);
  site_malloc_blocks(malloc_blocks, malloc_count, malloc_size);
  site_new_arrays(new_blocks, new_count, new_size);
  site_vector(vector_block, vector_elements);
  site_freed(4096, 1024);
  p.stop();

  const std::vector<heap_stack> stacks = p.snapshot();
  const std::map<std::string, double> true_bytes = {
      {"site_malloc_blocks", 8.0 * malloc_count * words(malloc_size)},
      {"site_new_arrays", 8.0 * new_count * words(new_size)},
      {"site_vector", 8.0 * words(vector_elements * sizeof(std::uint64_t))},
  };
  std::map<std::string, double> attributed;
  double total = 0;
  for (const heap_stack& s : stacks) {
    total += static_cast<double>(s.live_bytes);
    int sites = 0;
    for (const auto& [site, bytes] : true_bytes) {
      if (names(s, site)) {
        attributed[site] += static_cast<double>(s.live_bytes);
        ++sites;
      }
    }
    EXPECT_LE(sites, 1) << "a stack attributed to two sites";
    EXPECT_FALSE(names(s, "site_freed")) << "freed blocks still live: " << s.live_bytes;
  }
  double correct = 0;
  for (const auto& [site, bytes] : true_bytes) {
    EXPECT_NEAR(attributed[site], bytes, 0.1 * bytes) << site;
    correct += attributed[site];
  }
  ASSERT_GT(total, 0);
  const double share = correct / total;
  std::printf("attributed to the right sites: %.4f%% of %.0f estimated live bytes\n", 100 * share,
              total);
  ::testing::Test::RecordProperty("attribution_percent", std::to_string(100 * share));
  EXPECT_GE(share, 0.9);
  EXPECT_EQ(p.live_bytes(), static_cast<std::int64_t>(total));

  for (void* b : malloc_blocks) std::free(b);
  for (char* b : new_blocks) delete[] b;
}

TEST(HeapProfileFrees, FreesTakeBackExactlyWhatAllocationsAdded) {
  // At rate 1 a block of w words carries exactly w samples.
  heap_profile p(1.0, 16);
  std::vector<void*> blocks;
  blocks.reserve(200);
  site_malloc_blocks(blocks, 200, 1000);
  std::vector<heap_stack> now = quiet_snapshot(p);
  EXPECT_EQ(samples_through(now, "site_malloc_blocks"), 200 * words(1000));
  for (std::size_t i = 0; i < 100; ++i) std::free(blocks[i]);
  now = quiet_snapshot(p);
  EXPECT_EQ(samples_through(now, "site_malloc_blocks"), 100 * words(1000));
  // Frees on another thread credit the same stack.
  std::thread([&] {
    for (std::size_t i = 100; i < 150; ++i) std::free(blocks[i]);
  }).join();
  now = quiet_snapshot(p);
  EXPECT_EQ(samples_through(now, "site_malloc_blocks"), 50 * words(1000));
  for (const heap_stack& s : now) {
    if (names(s, "site_malloc_blocks")) {
      EXPECT_EQ(s.live_bytes, static_cast<std::int64_t>(8 * s.samples));
    }
  }
  for (std::size_t i = 150; i < 200; ++i) std::free(blocks[i]);
  now = quiet_snapshot(p);
  EXPECT_EQ(samples_through(now, "site_malloc_blocks"), 0u);
}

TEST(HeapProfileObjects, AtRateOneEveryLiveBlockIsCountedOnce) {
  heap_profile p(1.0, 16);
  std::vector<void*> blocks;
  blocks.reserve(300);
  site_malloc_blocks(blocks, 100, 1);
  site_malloc_blocks(blocks, 100, 24);
  site_malloc_blocks(blocks, 100, 3000);
  EXPECT_EQ(objects_through(quiet_snapshot(p), "site_malloc_blocks"), 300);
  std::thread([&] {
    for (std::size_t i = 0; i < 150; ++i) std::free(blocks[i]);
  }).join();
  EXPECT_EQ(objects_through(quiet_snapshot(p), "site_malloc_blocks"), 150);
  for (std::size_t i = 150; i < 300; ++i) std::free(blocks[i]);
  EXPECT_EQ(objects_through(quiet_snapshot(p), "site_malloc_blocks"), 0);
}

TEST(HeapProfileObjects, TheEstimateOfLiveBlocksIsUnbiasedForEverySize) {
  // n blocks of w words at rate p: each is sampled with probability
  // q = 1 - (1 - p)^w and then counts 1 / q, so the estimate has mean n and
  // standard deviation sqrt(n (1 - q) / q). Checked within 6.5 standard
  // deviations for each of the two sizes (false failure < 1e-10 each, seed
  // fixed), and after half the blocks are freed.
  constexpr double rate = 1e-3;
  constexpr std::size_t count = 100'000;
  memlimits::core::reseed(20261207);
  std::vector<void*> small;
  std::vector<char*> large;
  small.reserve(count);
  large.reserve(count);
  heap_profile p(rate, 16);
  site_malloc_blocks(small, count, 64);    // q = 0.0080
  site_new_arrays(large, count, 800);      // q = 0.095
  const auto bound = [&](std::size_t n, std::size_t bytes) {
    const double q = -std::expm1(static_cast<double>(words(bytes)) * std::log1p(-rate));
    return 6.5 * std::sqrt(static_cast<double>(n) * (1 - q) / q);
  };
  std::vector<heap_stack> now = quiet_snapshot(p);
  EXPECT_NEAR(static_cast<double>(objects_through(now, "site_malloc_blocks")), count,
              bound(count, 64));
  EXPECT_NEAR(static_cast<double>(objects_through(now, "site_new_arrays")), count,
              bound(count, 800));
  for (std::size_t i = 0; i < count / 2; ++i) std::free(small[i]);
  now = quiet_snapshot(p);
  // The half that stays is a sample of its own with the same law.
  EXPECT_NEAR(static_cast<double>(objects_through(now, "site_malloc_blocks")), count / 2.0,
              bound(count / 2, 64));
  p.stop();
  for (std::size_t i = count / 2; i < count; ++i) std::free(small[i]);
  for (char* b : large) delete[] b;
}

TEST(HeapProfileFrees, BlocksOfOtherTimesAreNotCounted) {
  void* before = site_big(4096);  // allocated before the profile: never seen
  heap_profile p(1.0, 16);
  std::free(before);  // its free is not credited to anything
  void* during = site_big(8192);
  p.stop();
  void* after = site_big(4096);  // after stop: not seen
  std::free(during);             // freed after stop: still counted as live
  const std::vector<heap_stack> now = quiet_snapshot(p);
  EXPECT_EQ(samples_through(now, "site_big"), words(8192));
  std::free(after);
}

TEST(HeapProfileOutput, FoldedLinesParseAndSumToTheLiveBytes) {
  heap_profile p(1.0, 32);
  void* big = site_big(30000);
  void* middle = site_middle(20000);
  p.stop();  // the outputs below then read one unchanging table

  std::ostringstream text;
  p.write_folded(text);
  ASSERT_TRUE(text.good());
  const std::string folded = text.str();
  ASSERT_FALSE(folded.empty());
  EXPECT_EQ(check_folded(folded), p.live_bytes());

  bool found = false;
  for (const std::string& line : lines_of(folded)) {
    const std::string stack = line.substr(0, line.rfind(' '));
    const std::string innermost = stack.substr(stack.rfind(';') + 1);
    if (innermost.rfind("site_big", 0) != 0) continue;
    found = true;
    // Outermost first: main, then GoogleTest's frames, then the test body
    // (in an anonymous namespace: named module+offset), then site_big.
    EXPECT_LT(line.find("main"), line.find("testing::Test::Run()")) << line;
    EXPECT_LT(line.find("testing::Test::Run()"), line.find("site_big")) << line;
    EXPECT_EQ(std::stoll(line.substr(line.rfind(' ') + 1)),
              static_cast<long long>(8 * words(30000)));
  }
  EXPECT_TRUE(found) << folded;

  // The FILE* and path overloads write the same text.
  const scratch_dir dir("memlimits-heap");
  const fs::path file = dir / "profile.folded";
  p.write_folded(file.string());
  EXPECT_EQ(read_file(file), folded);
  EXPECT_FALSE(fs::exists(file.string() + ".tmp." + std::to_string(::getpid())));
  std::FILE* stream = std::tmpfile();
  ASSERT_NE(stream, nullptr);
  p.write_folded(stream);
  std::rewind(stream);
  std::string from_stream;
  for (int c; (c = std::fgetc(stream)) != EOF;) from_stream += static_cast<char>(c);
  std::fclose(stream);
  EXPECT_EQ(from_stream, folded);
  // An unwritable path: std::system_error, nothing left behind.
  EXPECT_THROW(p.write_folded((dir / "missing" / "profile.folded").string()), std::system_error);
  std::free(big);
  std::free(middle);
}

TEST(HeapProfileOutput, NamesWithSpacesAreFoldedIntoOneToken) {
  heap_profile p(1.0, 8);
  void* a = site_template<std::pair<int, long>>(1000);
  void* b = site_without_symbol(1000);
  p.stop();
  std::ostringstream text;
  p.write_folded(text);
  check_folded(text.str());
  EXPECT_NE(text.str().find("site_template<std::pair<int,long>>(unsigned_long)"), std::string::npos)
      << text.str();

  const std::vector<heap_stack> now = quiet_snapshot(p);
  bool named = false;
  bool by_offset = false;
  for (const heap_stack& s : now) {
    if (s.frames.empty()) continue;
    const std::string innermost = frame_name(s.frames[0]);
    if (innermost.find("site_template") != std::string::npos) {
      named = true;
      // frame_name() itself keeps the demangler's spelling.
      EXPECT_NE(innermost.find("site_template<std::pair<int, long> >(unsigned long)"),
                std::string::npos)
          << innermost;
    }
    if (has_form(innermost, "heap_profile_test+0x", &is_hex_digit)) {
      by_offset = true;
    }
  }
  EXPECT_TRUE(named);
  EXPECT_TRUE(by_offset) << "no stack named module+offset";
  EXPECT_EQ(frame_name(nullptr), "0x0");
  EXPECT_EQ(frame_name(reinterpret_cast<void*>(0x10)), "0x10");
  std::free(a);
  std::free(b);
}

// Frames are named from the debug information: a static function and a
// lambda (which the dynamic symbol table does not name) and a function
// inlined into another (a frame of its own, innermost), each with the file
// and line of its call.
TEST(HeapProfileOutput, FoldedFramesHaveFileAndLineInlinedFramesIncluded) {
  namespace sites = memlimits::testing::heap_profile_sites;
  heap_profile p(1.0, 32);
  const sites::allocation from_static = sites::from_static_function(4000);
  const sites::allocation from_lambda = sites::from_lambda(5000);
  const sites::allocation from_inlined = sites::from_inlined_function(6000);
  p.stop();
  std::ostringstream text;
  p.write_folded(text);
  check_folded(text.str());
  // The innermost frames of the stack whose count is the block's bytes.
  const auto innermost = [&](std::size_t bytes, std::size_t n) {
    for (const std::string& line : lines_of(text.str())) {
      if (std::stoll(line.substr(line.rfind(' ') + 1)) != static_cast<long long>(bytes)) continue;
      std::vector<std::string> frames;
      std::string stack = line.substr(0, line.rfind(' '));
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t semicolon = stack.rfind(';');
        frames.push_back(stack.substr(semicolon + 1));
        if (semicolon == std::string::npos) break;
        stack.resize(semicolon);
      }
      return frames;
    }
    return std::vector<std::string>{};
  };
  const auto at = [](int line) { return "@heap_profile_sites.cpp:" + std::to_string(line); };
  const auto ends_with = [](const std::string& text, const std::string& end) {
    return text.size() >= end.size() && text.compare(text.size() - end.size(), end.size(), end) == 0;
  };

  std::vector<std::string> frames = innermost(4000, 1);
  ASSERT_EQ(frames.size(), 1u) << text.str();
  EXPECT_NE(frames[0].find("static_allocator(unsigned_long)"), std::string::npos) << frames[0];
  EXPECT_TRUE(ends_with(frames[0], at(from_static.line))) << frames[0];

  frames = innermost(5000, 1);
  ASSERT_EQ(frames.size(), 1u) << text.str();
  // g++ names it from_lambda(unsigned long)::{lambda(unsigned long)#1},
  // clang from_lambda(unsigned long)::$_0.
  EXPECT_NE(frames[0].find("from_lambda(unsigned_long)::"), std::string::npos) << frames[0];
  EXPECT_TRUE(ends_with(frames[0], at(from_lambda.line))) << frames[0];

  frames = innermost(6000, 2);
  ASSERT_EQ(frames.size(), 2u) << text.str();
  EXPECT_NE(frames[0].find("inlined_allocator"), std::string::npos) << frames[0];
  EXPECT_TRUE(ends_with(frames[0], at(from_inlined.line))) << frames[0];
  EXPECT_NE(frames[1].find("inlining_allocator"), std::string::npos) << frames[1];
  EXPECT_TRUE(ends_with(frames[1], at(from_inlined.caller_line))) << frames[1];

  // Without source lines, the same frames by name only.
  std::ostringstream names_only;
  p.write_folded(names_only, {.source_lines = false});
  check_folded(names_only.str());
  EXPECT_EQ(names_only.str().find("@heap_profile_sites.cpp"), std::string::npos);
  EXPECT_NE(names_only.str().find("inlined_allocator"), std::string::npos);
  std::free(from_static.block);
  std::free(from_lambda.block);
  std::free(from_inlined.block);
}

// A row of the top table: rank, live bytes, share%, samples, and its
// frames, innermost first (the first on the row's line, the others on the
// "<- " lines after it).
struct top_row {
  unsigned long rank = 0;
  long long bytes = 0;
  double share = 0;
  unsigned long long samples = 0;
  std::vector<std::string> frames;
};

std::vector<top_row> top_rows(const std::string& text) {
  std::vector<top_row> rows;
  for (const std::string& line : lines_of(text)) {
    top_row row;
    int frame = 0;
    if (std::sscanf(line.c_str(), " %lu %lld %lf%% %llu %n", &row.rank, &row.bytes, &row.share,
                    &row.samples, &frame) == 4 &&
        frame != 0) {
      row.frames.push_back(line.substr(static_cast<std::size_t>(frame)));
      rows.push_back(std::move(row));
    } else if (const std::size_t arrow = line.find("<- ");
               arrow != std::string::npos && !rows.empty()) {
      rows.back().frames.push_back(line.substr(arrow + 3));
    }
  }
  return rows;
}

TEST(HeapProfileOutput, TopTableRanksStacksByLiveBytes) {
  heap_profile p(1.0, 32);
  void* small = site_small(100000);
  void* big = site_big(300000);
  void* middle = site_middle(200000);
  p.stop();

  const std::vector<heap_stack> now = p.snapshot();
  for (std::size_t i = 1; i < now.size(); ++i) {
    EXPECT_GE(now[i - 1].live_bytes, now[i].live_bytes);
  }
  std::ostringstream text;
  p.write_top(text, 3);
  const std::vector<std::string> lines = lines_of(text.str());
  ASSERT_GE(lines.size(), 5u) << text.str();
  EXPECT_NE(lines[0].find(std::to_string(p.live_bytes()) + " bytes"), std::string::npos)
      << lines[0];
  const std::vector<top_row> rows = top_rows(text.str());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const top_row& row = rows[i];
    EXPECT_EQ(row.rank, i + 1) << row.frames[0];
    EXPECT_NEAR(row.share,
                100.0 * static_cast<double>(row.bytes) / static_cast<double>(p.live_bytes()), 0.006)
        << row.frames[0];
    // rate 1: 8 bytes a sample
    EXPECT_EQ(static_cast<long long>(row.samples) * 8, row.bytes) << row.frames[0];
  }
  ASSERT_EQ(rows.size(), std::min<std::size_t>(3, now.size())) << text.str();
  EXPECT_EQ(rows[0].bytes, static_cast<long long>(8 * words(300000)));
  // With debug information (the tests' default build), the file and line of
  // the call; without, the call's offset in its function.
  const std::string at_line =
      "site_big(unsigned long) at heap_profile_test.cpp:" + std::to_string(site_big_malloc_line);
  EXPECT_TRUE(rows[0].frames[0] == at_line ||
              rows[0].frames[0].rfind("site_big(unsigned long)+0x", 0) == 0)
      << rows[0].frames[0];
  EXPECT_EQ(rows[1].frames[0].rfind("site_middle", 0), 0u) << rows[1].frames[0];
  EXPECT_EQ(rows[2].frames[0].rfind("site_small", 0), 0u) << rows[2].frames[0];
  // The outer frames follow, one a line.
  EXPECT_NE(text.str().find("<- "), std::string::npos);
  if (now.size() > 3) {
    EXPECT_NE(lines.back().find("more stacks hold"), std::string::npos) << lines.back();
  }
  std::free(small);
  std::free(big);
  std::free(middle);
}

TEST(HeapProfileOutput, EmptyProfileWritesNothingToFold) {
  heap_profile p(1e-6, 8);
  p.stop();
  std::ostringstream folded;
  p.write_folded(folded);
  EXPECT_EQ(folded.str(), "");
  std::ostringstream top;
  p.write_top(top);
  EXPECT_NE(top.str().find("0 bytes"), std::string::npos) << top.str();
}

TEST(HeapProfileTable, StacksBeyondMaxStacksAreCountedTogether) {
  constexpr int depths = 12;
  heap_profile p(1.0, 64, 4);
  std::vector<void*> blocks;
  blocks.reserve(depths);
  const std::uint64_t before = total_samples(quiet_snapshot(p));
  for (int d = 0; d < depths; ++d) blocks.push_back(site_at_depth(d, 800));
  const std::vector<heap_stack> now = quiet_snapshot(p);
  std::size_t with_frames = 0;
  std::uint64_t untracked = 0;
  for (const heap_stack& s : now) {
    if (s.frames.empty()) {
      untracked += s.samples;
    } else {
      ++with_frames;
    }
  }
  EXPECT_LE(with_frames, 4u);
  EXPECT_GE(untracked, (depths - 4) * words(800));
  EXPECT_EQ(total_samples(now) - before, depths * words(800));
  std::ostringstream text;
  p.write_folded(text);
  EXPECT_NE(text.str().find("[memlimits:unrecorded_stack] "), std::string::npos) << text.str();
  // (write_folded's own blocks were sampled too, and the text is live.)
  const std::uint64_t with_blocks = total_samples(quiet_snapshot(p));
  for (void* b : blocks) std::free(b);
  EXPECT_EQ(with_blocks - total_samples(quiet_snapshot(p)), depths * words(800));
}

TEST(HeapProfileThreads, ConcurrentAllocationsAndCrossThreadFrees) {
  constexpr int threads = 4;
  constexpr std::size_t per_thread = 2000;
  heap_profile p(1.0, 16);
  std::vector<std::vector<void*>> blocks(threads);
  for (auto& b : blocks) b.reserve(per_thread);
  {
    std::vector<std::thread> workers;
    for (int k = 0; k < threads; ++k) {
      workers.emplace_back([&, k] { site_malloc_blocks(blocks[k], per_thread, 256); });
    }
    for (auto& t : workers) t.join();
  }
  std::vector<heap_stack> now = quiet_snapshot(p);
  EXPECT_EQ(samples_through(now, "site_malloc_blocks"), threads * per_thread * words(256));
  // Identical stacks are merged, even those inserted by two threads at once.
  std::set<std::vector<void*>> distinct;
  for (const heap_stack& s : now) EXPECT_TRUE(distinct.insert(s.frames).second);
  {
    std::vector<std::thread> freers;
    for (int k = 0; k < threads; ++k) {
      freers.emplace_back([&, k] {
        for (void* b : blocks[(k + 1) % threads]) std::free(b);
      });
    }
    for (auto& t : freers) t.join();
  }
  now = quiet_snapshot(p);
  EXPECT_EQ(samples_through(now, "site_malloc_blocks"), 0u);
}

TEST(HeapProfileThreads, SnapshotsAndWritesWhileOtherThreadsAllocate) {
  // New stacks are inserted (depths 0..19) and blocks freed while the main
  // thread reads the table: each round waits until the workers have
  // allocated since the previous one.
  heap_profile p(0.5, 32);
  std::atomic<bool> done{false};
  std::atomic<long> worker_rounds{0};
  std::vector<std::thread> workers;
  for (int k = 0; k < 3; ++k) {
    workers.emplace_back([&, k] {
      std::vector<void*> held(64, nullptr);
      for (unsigned i = 0; !done.load(std::memory_order_relaxed); ++i) {
        void*& slot = held[i % held.size()];
        std::free(slot);
        slot = site_at_depth(static_cast<int>((i + static_cast<unsigned>(k)) % 20), 64 + i % 512);
        worker_rounds.fetch_add(1, std::memory_order_relaxed);
      }
      for (void* b : held) std::free(b);
    });
  }
  long rounds_seen = 0;
  for (int round = 0; round < 50; ++round) {
    const auto allocated = memlimits::testing::eventually(
        [&] { return worker_rounds.load(std::memory_order_relaxed) > rounds_seen; },
        "the workers to allocate");
    EXPECT_TRUE(allocated) << "round " << round;
    if (!allocated) break;
    rounds_seen = worker_rounds.load(std::memory_order_relaxed);
    const std::vector<heap_stack> now = p.snapshot();
    for (std::size_t i = 0; i < now.size(); ++i) {
      EXPECT_GT(now[i].samples, 0u);
      if (i > 0) {
        EXPECT_GE(now[i - 1].live_bytes, now[i].live_bytes);
      }
    }
    std::ostringstream text;
    p.write_folded(text);
    check_folded(text.str());
  }
  done = true;
  for (auto& t : workers) t.join();
  EXPECT_EQ(samples_through(quiet_snapshot(p), "site_at_depth"), 0u);
}

// ---- frames of libraries closed before the profile is written ----
// unloadable_lib.cpp's two call sites, reached through functions that only
// its file names (not exported), allocate blocks that stay live; the library
// is closed (and checked to be unmapped) before the profile is written.

using memlimits::testing::unloadable_library;

// A folded line: its frames, innermost first, and its count.
struct folded_line {
  std::vector<std::string> frames;
  long long bytes = 0;
};

// The folded lines of `text` with a frame that holds `part`.
std::vector<folded_line> folded_lines_through(const std::string& text, std::string_view part) {
  std::vector<folded_line> found;
  for (const std::string& line : lines_of(text)) {
    const std::size_t space = line.rfind(' ');
    folded_line f;
    f.bytes = std::stoll(line.substr(space + 1));
    std::string stack = line.substr(0, space);
    for (std::size_t semicolon; (semicolon = stack.rfind(';')) != std::string::npos;) {
      f.frames.push_back(stack.substr(semicolon + 1));
      stack.resize(semicolon);
    }
    f.frames.push_back(stack);
    if (std::any_of(f.frames.begin(), f.frames.end(),
                    [&](const std::string& frame) { return frame.find(part) != std::string::npos; })) {
      found.push_back(std::move(f));
    }
  }
  return found;
}

// The library's frames of a call site, innermost first, in folded stacks
// and in the top table: make_block at its malloc, the site at its call,
// memlimits_unloadable_allocate at its call of the site.
std::vector<std::string> library_frames(const std::string& ns, int site,
                                        const memlimits_unloadable_lines& lines, bool folded) {
  const std::string at = folded ? "@unloadable_lib.cpp:" : " at unloadable_lib.cpp:";
  const std::string parameter = folded ? "(unsigned_long)" : "(unsigned long)";
  return {ns + "::make_block" + parameter + at + std::to_string(lines.malloc_line),
          ns + (site == 1 ? "::first_site" : "::second_site") + parameter + at +
              std::to_string(site == 1 ? lines.first_site_line : lines.second_site_line),
          "memlimits_unloadable_allocate" + at +
              std::to_string(site == 1 ? lines.entry_first_line : lines.entry_second_line)};
}

// Whether `frames` (innermost first) start with `expected`.
bool starts_with_frames(const std::vector<std::string>& frames,
                        const std::vector<std::string>& expected) {
  return frames.size() >= expected.size() &&
         std::equal(expected.begin(), expected.end(), frames.begin());
}

std::string joined(const std::vector<std::string>& frames) {
  std::string text;
  for (const std::string& f : frames) text += "\n  " + f;
  return text;
}

// The one folded line and the one top-table row of `site` of the library of
// namespace `ns`, with `bytes` live bytes.
void expect_one_stack_per_site(const heap_profile& p, const std::string& ns, int site,
                               const memlimits_unloadable_lines& lines, long long bytes) {
  const std::string function = ns + (site == 1 ? "::first_site" : "::second_site");
  std::ostringstream folded;
  p.write_folded(folded);
  check_folded(folded.str());
  const std::vector<folded_line> found = folded_lines_through(folded.str(), function);
  ASSERT_EQ(found.size(), 1u) << function << " in\n" << folded.str();
  EXPECT_TRUE(starts_with_frames(found[0].frames, library_frames(ns, site, lines, true)))
      << joined(found[0].frames);
  ASSERT_GT(found[0].frames.size(), 3u);
  EXPECT_NE(found[0].frames[3].find("unloadable_library::allocate"), std::string::npos)
      << found[0].frames[3];
  EXPECT_EQ(found[0].bytes, bytes);

  std::ostringstream top;
  p.write_top(top, 1000);
  std::size_t rows = 0;
  for (const top_row& row : top_rows(top.str())) {
    const bool through = std::any_of(row.frames.begin(), row.frames.end(), [&](const auto& f) {
      return f.find(function) != std::string::npos;
    });
    if (!through) continue;
    ++rows;
    EXPECT_TRUE(starts_with_frames(row.frames, library_frames(ns, site, lines, false)))
        << joined(row.frames);
    EXPECT_EQ(row.bytes, bytes);
  }
  EXPECT_EQ(rows, 1u) << top.str();
}

// For the tests that load a library where another one was: the loader puts
// it at the top of the highest free range that fits, which is where the
// first one was, unless something was mapped there since. The only
// mappings of such a test are memlimits' tracking of sampled blocks, which
// grows as blocks are sampled (platform::map_pages): warm_tracking makes it
// grow beforehand (`count` blocks of `bytes`, sampled at rate 1 under the
// running profile, then freed: the next ones reuse their memory and pages),
// and the libraries are opened and closed with sampling off for the thread,
// so that the loader's own allocations are not sampled.
void warm_tracking(std::size_t count, std::size_t bytes) {
  std::vector<void*> blocks;
  blocks.reserve(count);
  for (std::size_t i = 0; i < count; ++i) blocks.push_back(std::malloc(bytes));
  sink(blocks.data());
  for (void* b : blocks) std::free(b);
}

std::unique_ptr<unloadable_library> open_quietly(const char* path) {
  memlimits::core::sampling_off off;
  return std::make_unique<unloadable_library>(path);
}

bool close_quietly(unloadable_library& library) {
  memlimits::core::sampling_off off;
  return library.close();
}

TEST(HeapProfileUnloadedLibrary, FramesAreNamedFromItsFileAndEachCallSiteIsOneStack) {
  constexpr std::size_t count = 40, bytes = 1000;
  std::vector<void*> blocks;
  blocks.reserve(2 * count);
  memlimits_unloadable_lines lines{};
  heap_profile p(1.0, 32);
  {
    unloadable_library library(MEMLIMITS_UNLOADABLE_LIB);
    lines = library.lines();
    library.allocate(1, blocks, count, bytes);
    library.allocate(2, blocks, count, bytes);
    p.stop();
    ASSERT_TRUE(library.close()) << "dlclose left the library mapped";
  }
  const long long site_bytes = static_cast<long long>(count * 8 * words(bytes));
  expect_one_stack_per_site(p, "unloadable_first", 1, lines, site_bytes);
  expect_one_stack_per_site(p, "unloadable_first", 2, lines, site_bytes);
  // No frame named by raw address or by object and offset.
  std::ostringstream folded;
  p.write_folded(folded);
  EXPECT_EQ(folded.str().find("libunloadable_lib.so+0x"), std::string::npos) << folded.str();
  // Without lines: the call's offset in its function, from the file's
  // symbol table, in the top table; names alone in folded stacks.
  std::ostringstream top;
  p.write_top(top, 1000, {.source_lines = false});
  bool by_offset = false;
  for (const top_row& row : top_rows(top.str())) {
    by_offset |= has_form(row.frames[0], "unloadable_first::make_block(unsigned long)+0x",
                          &is_hex_digit);
  }
  EXPECT_TRUE(by_offset) << top.str();
  std::ostringstream names_only;
  p.write_folded(names_only, {.source_lines = false});
  EXPECT_EQ(folded_lines_through(names_only.str(), "unloadable_first::first_site(unsigned_long)")
                .size(),
            1u)
      << names_only.str();
  for (void* b : blocks) std::free(b);
}

// The same library closed, opened again (the loader puts it where it was),
// and closed again: both loads' blocks of a call site are one stack, named
// alike while the second load is open and after it is closed.
// The placement is the kernel's: a mapping made between the two loads (by
// this process's other threads, or the loader's own bookkeeping) can move
// the second load. The case is tried afresh, with a new profile, up to 8
// times; it is skipped only if the library never came back to its place.
bool opened_again_at_the_same_address(std::uintptr_t (&bias)[2]);

TEST(HeapProfileUnloadedLibrary, OpenedAgainAtTheSameAddressItIsOneLibrary) {
  std::uintptr_t bias[2] = {};
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (opened_again_at_the_same_address(bias) || ::testing::Test::HasFatalFailure()) return;
  }
  GTEST_SKIP() << "the loader put the library elsewhere the second time, 8 times (last: 0x"
               << std::hex << bias[0] << ", then 0x" << bias[1] << "): not the case under test";
}

// False, having checked nothing, when the second load was placed elsewhere.
bool opened_again_at_the_same_address(std::uintptr_t (&bias)[2]) {
  constexpr std::size_t count = 30, bytes = 500;
  std::vector<void*> blocks;
  blocks.reserve(3 * count);
  memlimits_unloadable_lines lines{};
  heap_profile p(1.0, 32);
  warm_tracking(4 * count, bytes);
  std::string while_open;
  for (int load = 0; load < 2; ++load) {
    const std::unique_ptr<unloadable_library> library = open_quietly(MEMLIMITS_UNLOADABLE_LIB);
    bias[load] = library->bias();
    lines = library->lines();
    library->allocate(1, blocks, count, bytes);
    if (load == 1) {
      library->allocate(2, blocks, count, bytes);
      p.stop();
      std::ostringstream folded;
      p.write_folded(folded);
      while_open = folded.str();
    }
    EXPECT_TRUE(close_quietly(*library)) << "dlclose left the library mapped (load " << load << ")";
    if (::testing::Test::HasFailure()) return true;
  }
  if (bias[0] != bias[1]) {
    for (void* b : blocks) std::free(b);
    return false;
  }
  // One stack in the table for both loads' blocks of site 1.
  std::size_t through_library = 0;
  for (const heap_stack& s : quiet_snapshot(p)) {
    through_library += s.samples == 2 * count * words(bytes) ? 1 : 0;
  }
  EXPECT_EQ(through_library, 1u);
  const long long site_bytes = static_cast<long long>(count * 8 * words(bytes));
  expect_one_stack_per_site(p, "unloadable_first", 1, lines, 2 * site_bytes);
  expect_one_stack_per_site(p, "unloadable_first", 2, lines, site_bytes);
  // Named the same from the loaded library and from its file.
  std::ostringstream closed;
  p.write_folded(closed);
  for (const char* function : {"::first_site", "::second_site"}) {
    const auto open_lines = folded_lines_through(while_open, function);
    const auto closed_lines = folded_lines_through(closed.str(), function);
    EXPECT_EQ(open_lines.size(), 1u) << while_open;
    EXPECT_EQ(closed_lines.size(), 1u) << closed.str();
    if (open_lines.size() != 1 || closed_lines.size() != 1) break;
    EXPECT_EQ(open_lines[0].frames, closed_lines[0].frames);
    EXPECT_EQ(open_lines[0].bytes, closed_lines[0].bytes);
  }
  for (void* b : blocks) std::free(b);
  return true;
}

// A library closed, then another one loaded at the same address (the same
// code under other names, at other offsets): the first one's frames are
// named from its own file, never from the library that holds their
// addresses when the profile is written, and the second one's from it.
// Tried up to 8 times, as above.
bool another_library_at_the_same_address(std::uintptr_t& first_bias, std::uintptr_t& other_bias);

TEST(HeapProfileUnloadedLibrary, AnotherLibraryAtTheSameAddressDoesNotNameItsFrames) {
  std::uintptr_t first_bias = 0, other_bias = 0;
  for (int attempt = 0; attempt < 8; ++attempt) {
    if (another_library_at_the_same_address(first_bias, other_bias) ||
        ::testing::Test::HasFatalFailure()) {
      return;
    }
  }
  GTEST_SKIP() << "the loader put the other library elsewhere, 8 times (last: 0x" << std::hex
               << first_bias << ", then 0x" << other_bias << "): not the case under test";
}

// False, having checked nothing, when the other library was placed elsewhere.
bool another_library_at_the_same_address(std::uintptr_t& first_bias, std::uintptr_t& other_bias) {
  constexpr std::size_t count = 20, bytes = 2000;
  std::vector<void*> blocks;
  blocks.reserve(2 * count);
  heap_profile p(1.0, 32);
  warm_tracking(4 * count, bytes);
  memlimits_unloadable_lines first_lines{};
  {
    const std::unique_ptr<unloadable_library> first = open_quietly(MEMLIMITS_UNLOADABLE_LIB);
    first_lines = first->lines();
    first_bias = first->bias();
    first->allocate(1, blocks, count, bytes);
    EXPECT_TRUE(close_quietly(*first)) << "dlclose left the library mapped";
    if (::testing::Test::HasFailure()) return true;
  }
  const std::unique_ptr<unloadable_library> other_library =
      open_quietly(MEMLIMITS_UNLOADABLE_LIB_OTHER);
  unloadable_library& other = *other_library;
  other_bias = other.bias();
  if (other_bias != first_bias) {
    p.stop();
    for (void* b : blocks) std::free(b);
    EXPECT_TRUE(close_quietly(other));
    return false;
  }
  const memlimits_unloadable_lines other_lines = other.lines();
  other.allocate(1, blocks, count, bytes);
  p.stop();
  const long long site_bytes = static_cast<long long>(count * 8 * words(bytes));
  expect_one_stack_per_site(p, "unloadable_first", 1, first_lines, site_bytes);
  expect_one_stack_per_site(p, "unloadable_other", 1, other_lines, site_bytes);
  std::ostringstream folded;
  p.write_folded(folded);
  for (const folded_line& line : folded_lines_through(folded.str(), "unloadable_")) {
    const bool first = std::any_of(line.frames.begin(), line.frames.end(), [](const auto& f) {
      return f.find("unloadable_first::") != std::string::npos;
    });
    const bool second = std::any_of(line.frames.begin(), line.frames.end(), [](const auto& f) {
      return f.find("unloadable_other::") != std::string::npos;
    });
    EXPECT_FALSE(first && second) << joined(line.frames);
  }
  EXPECT_TRUE(close_quietly(other));
  for (void* b : blocks) std::free(b);
  return true;
}

// ---- the preload library: MEMLIMITS_HEAP_PROFILE on an unmodified program ----

#if defined(MEMLIMITS_SANITIZER_ALLOCATOR)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif

class HeapProfilePreload : public ::testing::Test {
 protected:
  void SetUp() override {
    if (sanitized) {
      GTEST_SKIP() << "a sanitizer runtime must come first in the library list; the preload "
                      "library is tested in the plain build";
    }
  }
  int run(const std::string& environment, const std::string& arguments) {
    const std::string line = environment + " LD_PRELOAD='" MEMLIMITS_PRELOAD_LIBRARY "' '" +
                             MEMLIMITS_HEAP_PROFILE_PROBE + "' " + arguments + " 2>'" +
                             (dir_ / "stderr.txt").string() + "'";
    const int status = std::system(line.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  std::string errors() const { return read_file(dir_ / "stderr.txt"); }

  scratch_dir dir_{"memlimits-heap-preload"};
};

// The probe keeps 2000 blocks of 1000 bytes (250000 words) live from
// hold_until_exit(), plus a 16000-byte array of their addresses, and frees
// as much from allocate_and_free(). At rate 0.01 the held samples are
// Binomial(252000, 0.01), mu = 2520; the bound of +-25% fails with
// probability <= 2 exp(-0.25^2 * 2520 / 3) < 1e-22 (Chernoff).
TEST_F(HeapProfilePreload, FoldedFileAtExitNamesTheAllocatingFunction) {
  const fs::path folded = dir_ / "heap.folded";
  ASSERT_EQ(run("MEMLIMITS_HEAP_PROFILE='" + folded.string() + "' MEMLIMITS_HEAP_PROFILE_RATE=0.01",
                "2000 1000"),
            0)
      << errors();
  const std::string text = read_file(folded);
  ASSERT_FALSE(text.empty()) << errors();
  check_folded(text);
  std::int64_t held = 0;
  for (const std::string& line : lines_of(text)) {
    const std::string stack = line.substr(0, line.rfind(' '));
    if (stack.find("hold_until_exit") != std::string::npos) {
      held += std::stoll(line.substr(line.rfind(' ') + 1));
      EXPECT_LT(stack.find("main"), stack.find("hold_until_exit")) << line;  // outermost first
    }
    EXPECT_EQ(stack.find("allocate_and_free"), std::string::npos) << "freed blocks at exit";
  }
  const double expected = 8.0 * (2000 * 125 + 2000);
  EXPECT_NEAR(static_cast<double>(held), expected, 0.25 * expected) << text;
  // The top table beside it, rank 1 the held blocks.
  const std::string top = read_file(folded.string() + ".top");
  const std::vector<std::string> lines = lines_of(top);
  ASSERT_GE(lines.size(), 3u) << top;
  EXPECT_NE(lines[0].find("memlimits heap profile"), std::string::npos) << top;
  EXPECT_NE(lines[2].find("hold_until_exit"), std::string::npos) << top;
}

// A name ending in ".pb.gz" gets pprof's format: a gzip stream that `go tool
// pprof` reads (when Go is installed), naming the function that holds the
// blocks; the top table is still written beside it.
TEST_F(HeapProfilePreload, PprofFileWhenTheNameEndsInPbGz) {
  ASSERT_EQ(run("MEMLIMITS_HEAP_PROFILE='" + (dir_ / "heap.%p.pb.gz").string() +
                    "' MEMLIMITS_HEAP_PROFILE_RATE=0.01",
                "2000 1000"),
            0)
      << errors();
  fs::path profile;
  for (const auto& entry : fs::directory_iterator(dir_.path())) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("heap.") && name.ends_with(".pb.gz")) profile = entry.path();
  }
  ASSERT_FALSE(profile.empty()) << errors();
  const std::string bytes = read_file(profile);
  ASSERT_GE(bytes.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(bytes[0]), 0x1f);  // gzip's magic number
  EXPECT_EQ(static_cast<unsigned char>(bytes[1]), 0x8b);
  EXPECT_NE(read_file(profile.string() + ".top").find("hold_until_exit"), std::string::npos);
  if (std::system("command -v go >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "go is not installed (Debian: golang-go): the profile was not read by pprof";
  }
  const fs::path raw = dir_ / "raw.txt";
  const std::string line = "HOME='" + dir_.path().string() + "' GOCACHE='" +
                           (dir_ / "gocache").string() +
                           "' go tool pprof -raw '" + profile.string() + "' >'" + raw.string() +
                           "' 2>&1";
  ASSERT_EQ(std::system(line.c_str()), 0) << read_file(raw);
  const std::string text = read_file(raw);
  EXPECT_NE(text.find("inuse_space/bytes"), std::string::npos) << text;
  EXPECT_NE(text.find("hold_until_exit"), std::string::npos) << text;
}

TEST_F(HeapProfilePreload, OtherThreadsStillAllocatingAtExit) {
  for (int round = 0; round < 5; ++round) {
    const fs::path folded = dir_ / ("heap-" + std::to_string(round) + ".folded");
    ASSERT_EQ(run("MEMLIMITS_HEAP_PROFILE='" + folded.string() +
                      "' MEMLIMITS_HEAP_PROFILE_RATE=0.5 MEMLIMITS_HEAP_PROFILE_TOP=0",
                  "500 100 3"),
              0)
        << errors();
    const std::string text = read_file(folded);
    check_folded(text);
    EXPECT_NE(text.find("hold_until_exit"), std::string::npos) << text;
    EXPECT_FALSE(fs::exists(folded.string() + ".top"));
  }
}

TEST_F(HeapProfilePreload, PidInThePathAndTheSummaryBeside) {
  const fs::path summary = dir_ / "summary.jsonl";
  ASSERT_EQ(run("MEMLIMITS_HEAP_PROFILE='" + (dir_ / "heap.%p.folded").string() +
                    "' MEMLIMITS_HEAP_PROFILE_DEPTH=8 MEMLIMITS_PROFILE_RATE=0.01"
                    " MEMLIMITS_PROFILE_OUTPUT='" +
                    summary.string() + "'",
                "1000 1000"),
            0)
      << errors();
  std::vector<std::string> folded_files;
  for (const auto& entry : fs::directory_iterator(dir_.path())) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 7 && name.ends_with(".folded") &&
        has_form(name.substr(0, name.size() - 7), "heap.", &is_digit)) {
      folded_files.push_back(name);
    }
  }
  ASSERT_EQ(folded_files.size(), 1u);
  const std::string text = read_file(dir_ / folded_files[0]);
  check_folded(text);
  EXPECT_NE(text.find("hold_until_exit"), std::string::npos) << text;
  for (const std::string& line : lines_of(text)) {
    const std::string stack = line.substr(0, line.rfind(' '));
    EXPECT_LE(std::count(stack.begin(), stack.end(), ';'), 7) << "deeper than 8 frames: " << line;
  }
  // The summary of MEMLIMITS_PROFILE_RATE still comes, once.
  const std::vector<std::string> summaries = lines_of(read_file(summary));
  ASSERT_EQ(summaries.size(), 1u);
  EXPECT_NE(summaries[0].find("\"rate\":0.01"), std::string::npos) << summaries[0];
}

TEST_F(HeapProfilePreload, BadVariablesAreReportedAndIgnored) {
  const fs::path folded = dir_ / "heap.folded";
  for (const std::string bad : {"MEMLIMITS_HEAP_PROFILE_DEPTH=0", "MEMLIMITS_HEAP_PROFILE_RATE=2",
                                "MEMLIMITS_HEAP_PROFILE_TOP=-1"}) {
    ASSERT_EQ(run("MEMLIMITS_HEAP_PROFILE='" + folded.string() + "' " + bad, "10 10"), 0);
    const std::string name = bad.substr(0, bad.find('='));
    EXPECT_NE(errors().find(name), std::string::npos) << errors();
    // Ignored as if unset: the profile is written with that setting's default.
    EXPECT_TRUE(fs::exists(folded)) << bad;
    fs::remove(folded);
  }
}

}  // namespace
