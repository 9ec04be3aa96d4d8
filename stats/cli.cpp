// memlimits-stats: the command line of stats/ (stats/README.md, "Using the CLI").
// Subcommands global, accuracy, min-rate, cumulative and memory print a
// readable table, or one JSON object per line with --json. Argument errors
// print a message naming the parameter and its value and exit with code 2;
// other failures exit with code 1. Depends on bounds.hpp, svg.hpp and the
// standard library; the JSON is written by hand (flat objects of numbers and
// strings, nothing to parse).
#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "stats/bounds.hpp"
#include "stats/svg.hpp"

namespace {

namespace ms = memlimits::stats;

// A mistake in the command line: exit code 2, like std::invalid_argument
// from the library.
struct usage_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

constexpr const char* general_usage = R"(usage: memlimits-stats <command> [options] [--json]

The probability bounds of memlimits' sampled limits (stats/README.md). Sizes
are in bytes (a number, optionally followed by B, KiB, MiB, GiB or TiB) or in
8-byte words; rates are samples per word, in (0, 1], default 1e-4.

commands:
  global      bytes past a global limit after which P(not interrupted) < T
  accuracy    safe allocation N of a sampled allocation limit of K samples
  min-rate    smallest rate keeping N words safe under a limit ratio * N
  cumulative  the curve P(n) of a sampled allocation limit (CSV or SVG)
  memory      limit_memory: overshoot above the limit, false trips below it

  memlimits-stats <command> --help   describes a command and its options.
With --json every command prints one JSON object per line instead of a table.
)";

const std::map<std::string, std::string, std::less<>> command_usage = {
    {"global", R"(usage: memlimits-stats global --target T [--rate R] [--json]
       memlimits-stats global --bytes B [--rate R] [--json]

Global limit (and any check made at every sample): after n words allocated
past the limit, P(not interrupted) = (1 - p)^n exactly (every word is sampled
independently with probability p), below memprof-limits' bound e^{-n/S}.
  --target T  in (0, 1): print the smallest n with (1 - p)^n < T.
              JSON keys: rate, target, words, bytes.
  --bytes B   print P(not interrupted) after B bytes (B / 8 words, rounded
              up). JSON keys: rate, words, bytes, probability, bound.
  --rate R    samples per word, in (0, 1]; default 1e-4.
)"},
    {"accuracy", R"(usage: memlimits-stats accuracy --samples K --target T [--rate R] [--json]

Sampled allocation limit of l = K / R words (trips at the K-th sample):
P(n) = I_p(K, n - K + 1) is the probability of having been interrupted after
n words. Prints the largest N with P(N) <= T (so that P(N + 1) > T), P(N) and
the relative error (l - N) / N (infinite, null in JSON, when N = 0).
  --samples K  integer >= 1.
  --target T   in (0, 1).
  --rate R     in (0, 1]; default 1e-4.
JSON keys: k, limit_words, safe_words, probability, relative_error.
)"},
    {"min-rate", R"(usage: memlimits-stats min-rate --safe-words N --target T [--ratio X] [--json]

The smallest rate p = k / l (k = 1, 2, ...) such that a sampled allocation
limit of l = X * N words interrupts a task before N words with probability
at most T (stats/README.md, section 3, says why p is searched as k / l).
  --safe-words N  integer >= 1.
  --target T      in (0, 1).
  --ratio X       > 1; default 10.
JSON keys: safe_words, target, ratio, limit_words, k, rate, probability.
)"},
    {"cumulative", R"(usage: memlimits-stats cumulative --samples K [--rate R] [--from A] [--to B]
                             [--points P] [--svg FILE] [--json]

The curve P(n) = I_p(K, n - K + 1) of a sampled allocation limit of
l = K / R words, at P evenly spaced n from A * l to B * l (default: from the
1e-6 to the 1 - 1e-6 quantile of the interruption point, rounded outwards;
401 points). Prints CSV (words,relative,probability; relative = n / l), one
JSON object per point with --json (keys: k, rate, words, relative,
probability), or writes an SVG plot to FILE with --svg.
)"},
    {"memory", R"(usage: memlimits-stats memory --limit BYTES [--rate R] [--target T]
                         [--fraction F --allocated BYTES] [--json]

limit_memory of BYTES (M = BYTES / 8 words): the estimate S * (samples in
live blocks) trips when the live samples reach K = floor(M p) + 1.
  Overshoot, when live memory only grows: the trip point is the K-th sample,
  so P(tripped by n words) = I_p(K, n - K + 1). Prints the largest n with
  P <= T (early_words), the smallest n with P(not tripped) < T (late_words),
  the mean K / p, and the overshoot past the limit at late_words.
  False trips, with --fraction F (0 < F <= 1) and --allocated BYTES: while
  live memory stays at most F * M words and the task allocates BYTES in all,
  P(false trip) <= A p * P(Binomial(L - 1, p) >= K - 1), L = floor(F M).
  --target T  in (0, 1); default 1e-9.
JSON keys: rate, limit_bytes, limit_words, k, target, early_words, late_words,
mean_words, overshoot_bytes, relative_overshoot; with --fraction also
fraction, allocated_bytes, live_words, expected_samples, per_check,
per_sample, false_trip_bound.
)"},
};

// ---------------------------------------------------------------------------
// Command-line parsing.

struct arguments {
  std::string command;
  std::map<std::string, std::string, std::less<>> values;  // by option name, with "--"
  bool json = false;
  bool help = false;

  bool has(std::string_view name) const { return values.find(name) != values.end(); }
  const std::string& get(std::string_view name) const {
    auto it = values.find(name);
    if (it == values.end()) {
      throw usage_error(command + " needs " + std::string(name) + " (see memlimits-stats " +
                        command + " --help)");
    }
    return it->second;
  }
};

arguments parse_arguments(int argc, char** argv, const std::set<std::string, std::less<>>& known) {
  arguments args;
  args.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string_view word = argv[i];
    if (word == "--json") {
      args.json = true;
      continue;
    }
    if (word == "--help" || word == "-h") {
      args.help = true;
      continue;
    }
    if (word.substr(0, 2) != "--") {
      throw usage_error("unexpected argument '" + std::string(word) + "' for " + args.command);
    }
    std::string name(word);
    std::string value;
    bool has_value = false;
    if (auto equals = name.find('='); equals != std::string::npos) {
      value = name.substr(equals + 1);
      name.resize(equals);
      has_value = true;
    }
    if (known.find(name) == known.end()) {
      throw usage_error("unknown option " + name + " for " + args.command +
                        " (see memlimits-stats " + args.command + " --help)");
    }
    if (!has_value) {
      if (i + 1 >= argc) throw usage_error(name + " needs a value");
      value = argv[++i];
    }
    if (!args.values.emplace(name, value).second) throw usage_error(name + " is given twice");
  }
  return args;
}

// A real number, the whole text of it; NaN and infinities are let through
// so that the range checks name them ("--rate must be in (0, 1], got nan").
double parse_real(std::string_view name, const std::string& text) {
  const char* begin = text.c_str();
  char* end = nullptr;
  errno = 0;
  double value = std::strtod(begin, &end);
  if (text.empty() || end != begin + text.size() ||
      std::isspace(static_cast<unsigned char>(text[0]))) {
    throw usage_error(std::string(name) + " must be a number, got '" + text + "'");
  }
  return value;
}

std::string format_double(double value) {
  char buffer[64];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, value);
  return error == std::errc{} ? std::string(buffer, end) : std::string("?");
}

// An integer count in [min, 2^53], written as an integer or as a real that
// is one ("1e6").
std::uint64_t parse_count(std::string_view name, const std::string& text, std::uint64_t min) {
  double value = parse_real(name, text);
  if (!std::isfinite(value) || value != std::floor(value) || value < static_cast<double>(min) ||
      value > static_cast<double>(ms::max_count)) {
    throw usage_error(std::string(name) + " must be an integer in [" + std::to_string(min) +
                      ", 2^53], got " + text);
  }
  return static_cast<std::uint64_t>(value);
}

// Bytes: a number with an optional unit B, KiB, MiB, GiB or TiB.
double parse_bytes(std::string_view name, const std::string& text) {
  static const std::pair<const char*, double> units[] = {{"TiB", 1024.0 * 1024 * 1024 * 1024},
                                                         {"GiB", 1024.0 * 1024 * 1024},
                                                         {"MiB", 1024.0 * 1024},
                                                         {"KiB", 1024.0},
                                                         {"B", 1.0}};
  std::string number = text;
  double scale = 1;
  for (const auto& [suffix, factor] : units) {
    std::size_t length = std::strlen(suffix);
    if (number.size() > length && number.compare(number.size() - length, length, suffix) == 0) {
      number.resize(number.size() - length);
      scale = factor;
      break;
    }
  }
  double value = parse_real(name, number) * scale;
  if (!(value > 0) || !std::isfinite(value)) {
    throw usage_error(std::string(name) + " must be a size > 0 in bytes, got " + text);
  }
  return value;
}

double parse_rate(const arguments& args) {
  if (!args.has("--rate")) return ms::default_rate;
  return ms::check_rate(parse_real("--rate", args.get("--rate")), "--rate");
}

double parse_target(const arguments& args, const char* fallback = nullptr) {
  if (!args.has("--target") && fallback != nullptr) return std::strtod(fallback, nullptr);
  return ms::check_target(parse_real("--target", args.get("--target")), "--target");
}

// ---------------------------------------------------------------------------
// Output.

// One flat JSON object on one line. Non-finite numbers become null (JSON
// has no infinity).
class json_line {
 public:
  json_line& add(std::string_view key, std::uint64_t value) {
    return raw(key, std::to_string(value));
  }
  json_line& add(std::string_view key, double value) {
    if (!std::isfinite(value)) return raw(key, "null");
    // Whole numbers as integers (200000, not the shortest form 2e+05).
    if (value == std::floor(value) && std::fabs(value) < 1e15) {
      char buffer[32];
      std::snprintf(buffer, sizeof buffer, "%.0f", value);
      return raw(key, buffer);
    }
    return raw(key, format_double(value));
  }
  json_line& add(std::string_view key, std::string_view value) {
    std::string quoted = "\"";
    for (char c : value) {
      switch (c) {
        case '"':
          quoted += "\\\"";
          break;
        case '\\':
          quoted += "\\\\";
          break;
        case '\n':
          quoted += "\\n";
          break;
        case '\t':
          quoted += "\\t";
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char escape[8];
            std::snprintf(escape, sizeof escape, "\\u%04x", c);
            quoted += escape;
          } else {
            quoted += c;
          }
      }
    }
    return raw(key, quoted + "\"");
  }
  void print() const { std::cout << '{' << body_ << "}\n"; }

 private:
  json_line& raw(std::string_view key, const std::string& value) {
    if (!body_.empty()) body_ += ',';
    body_ += '"';
    body_ += key;
    body_ += "\":";
    body_ += value;
    return *this;
  }
  std::string body_;
};

// A readable table: rows of name, value and an optional comment, aligned.
class table {
 public:
  explicit table(std::string heading) : heading_(std::move(heading)) {}
  table& row(std::string name, std::string value, std::string note = {}) {
    rows_.push_back({std::move(name), std::move(value), std::move(note)});
    return *this;
  }
  void print() const {
    std::size_t name_width = 0, value_width = 0;
    for (const auto& r : rows_) {
      name_width = std::max(name_width, r[0].size());
      value_width = std::max(value_width, r[1].size());
    }
    std::cout << heading_ << '\n';
    for (const auto& r : rows_) {
      std::string line = "  " + r[0] + std::string(name_width - r[0].size() + 2, ' ') + r[1];
      if (!r[2].empty()) line += std::string(value_width - r[1].size() + 2, ' ') + r[2];
      std::cout << line << '\n';
    }
  }

 private:
  std::string heading_;
  std::vector<std::array<std::string, 3>> rows_;
};

// Six significant digits, the precision of the tables.
std::string six(double value) {
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.6g", value);
  return buffer;
}

// A count exactly when it is an integer that a double holds exactly.
std::string count(double value) {
  if (value == std::floor(value) && std::fabs(value) <= static_cast<double>(ms::max_count)) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.0f", value);
    return buffer;
  }
  return six(value);
}

std::string human_bytes(double bytes) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  std::size_t unit = 0;
  double value = std::fabs(bytes);
  while (value >= 1024 && unit + 1 < std::size(units)) {
    value /= 1024;
    ++unit;
  }
  return (bytes < 0 ? "-" : "") + six(value) + " " + units[unit];
}

std::string rate_note(double rate) {
  return "per word: one sample per " + six(1 / rate) + " words (" + human_bytes(8 / rate) +
         ") on average";
}

// ---------------------------------------------------------------------------
// Commands.

int run_global(const arguments& args) {
  const double rate = parse_rate(args);
  if (args.has("--target") == args.has("--bytes")) {
    throw usage_error(
        "global needs exactly one of --target and --bytes (see memlimits-stats "
        "global --help)");
  }
  if (args.has("--bytes")) {
    const double bytes = parse_bytes("--bytes", args.get("--bytes"));
    const double words_real = std::ceil(bytes / ms::word_bytes);
    if (words_real > static_cast<double>(ms::max_count)) {
      throw usage_error("--bytes must be at most 2^56 bytes, got " + args.get("--bytes"));
    }
    const auto words = static_cast<std::uint64_t>(words_real);
    const double probability = ms::global_not_interrupted(words, rate);
    const double bound = ms::global_not_interrupted_bound(words, rate);
    if (args.json) {
      json_line()
          .add("rate", rate)
          .add("words", words)
          .add("bytes", words * ms::word_bytes)
          .add("probability", probability)
          .add("bound", bound)
          .print();
      return 0;
    }
    table("global limit: P(not interrupted) after a given allocation past the limit")
        .row("rate", six(rate), rate_note(rate))
        .row("words", std::to_string(words))
        .row("bytes", std::to_string(words * ms::word_bytes),
             human_bytes(static_cast<double>(words) * 8))
        .row("probability", six(probability), "(1 - p)^n: not interrupted yet")
        .row("interrupted", six(-std::expm1(static_cast<double>(words) * std::log1p(-rate))),
             "1 - (1 - p)^n")
        .row("bound", six(bound), "e^{-n/S}, memprof-limits' bound")
        .print();
    return 0;
  }
  const double target = parse_target(args);
  const auto r = ms::global_limit(target, rate);
  if (args.json) {
    json_line()
        .add("rate", r.rate)
        .add("target", r.target)
        .add("words", r.words)
        .add("bytes", r.bytes)
        .print();
    return 0;
  }
  table("global limit: allocation past the limit after which P(not interrupted) < target")
      .row("rate", six(rate), rate_note(rate))
      .row("target", six(target))
      .row("words", std::to_string(r.words), "smallest n with (1 - p)^n < target")
      .row("bytes", std::to_string(r.bytes), human_bytes(static_cast<double>(r.bytes)))
      .row("bound words", std::to_string(r.bound_words), "smallest n with e^{-n/S} < target")
      .row("bound bytes", std::to_string(r.bound_words * ms::word_bytes),
           human_bytes(static_cast<double>(r.bound_words) * 8))
      .print();
  return 0;
}

int run_accuracy(const arguments& args) {
  const std::uint64_t k = parse_count("--samples", args.get("--samples"), 1);
  const double target = parse_target(args);
  const double rate = parse_rate(args);
  const auto r = ms::accuracy(k, target, rate);
  if (args.json) {
    json_line()
        .add("k", r.k)
        .add("limit_words", r.limit_words)
        .add("safe_words", r.safe_words)
        .add("probability", r.probability)
        .add("relative_error", r.relative_error)
        .print();
    return 0;
  }
  table("sampled allocation limit: largest allocation N with P(N) <= target")
      .row("k", std::to_string(k), "samples that trip the limit")
      .row("rate", six(rate), rate_note(rate))
      .row("target", six(target))
      .row("limit_words", count(r.limit_words),
           "l = k / p (" + human_bytes(r.limit_words * 8) + ")")
      .row("safe_words", std::to_string(r.safe_words),
           "N (" + human_bytes(static_cast<double>(r.safe_words) * 8) + ")")
      .row("probability", six(r.probability), "P(N) <= target")
      .row("next", six(r.next_probability), "P(N + 1) > target")
      .row("relative_error", six(r.relative_error), "(l - N) / N")
      .print();
  return 0;
}

int run_min_rate(const arguments& args) {
  const std::uint64_t safe = parse_count("--safe-words", args.get("--safe-words"), 1);
  const double target = parse_target(args);
  double ratio = 10;
  if (args.has("--ratio")) {
    ratio = parse_real("--ratio", args.get("--ratio"));
    if (!(ratio > 1) || !std::isfinite(ratio)) {
      throw usage_error("--ratio must be finite and > 1, got " + args.get("--ratio"));
    }
  }
  const auto r = ms::min_rate(safe, target, ratio);
  if (args.json) {
    json_line()
        .add("safe_words", r.safe_words)
        .add("target", r.target)
        .add("ratio", r.ratio)
        .add("limit_words", r.limit_words)
        .add("k", r.k)
        .add("rate", r.rate)
        .add("probability", r.probability)
        .print();
    return 0;
  }
  table("minimal rate: smallest p = k / l keeping N words safe under a limit l = ratio * N")
      .row("safe_words", std::to_string(safe),
           "N (" + human_bytes(static_cast<double>(safe) * 8) + ")")
      .row("target", six(target))
      .row("ratio", six(ratio))
      .row("limit_words", count(r.limit_words), "l (" + human_bytes(r.limit_words * 8) + ")")
      .row("k", std::to_string(r.k), "samples that trip the limit")
      .row("rate", six(r.rate), rate_note(r.rate))
      .row("probability", six(r.probability), "P(N) at this rate, <= target")
      .print();
  return 0;
}

int run_cumulative(const arguments& args) {
  const std::uint64_t k = parse_count("--samples", args.get("--samples"), 1);
  const double rate = parse_rate(args);
  const auto automatic = ms::default_cumulative_range(k, rate);
  const double from =
      args.has("--from") ? parse_real("--from", args.get("--from")) : automatic.from;
  const double to = args.has("--to") ? parse_real("--to", args.get("--to")) : automatic.to;
  if (!(from >= 0) || !std::isfinite(from)) {
    throw usage_error("--from must be finite and >= 0, got " + format_double(from));
  }
  if (!(to > from) || !std::isfinite(to)) {
    throw usage_error("--to must be finite and > --from (" + format_double(from) + "), got " +
                      format_double(to));
  }
  const std::uint64_t points =
      args.has("--points") ? parse_count("--points", args.get("--points"), 2) : 401;
  if (points > 1000000) {
    throw usage_error("--points must be an integer in [2, 1000000], got " + args.get("--points"));
  }
  const auto c = ms::cumulative(k, rate, from, to, static_cast<std::size_t>(points));
  if (args.has("--svg")) {
    const std::string& path = args.get("--svg");
    std::ostringstream svg;
    ms::write_svg(svg, ms::cumulative_plot(c, from, to));
    std::ofstream file(path, std::ios::binary);
    file << svg.str();
    file.close();
    if (!file) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
    if (args.json) {
      json_line()
          .add("k", k)
          .add("rate", rate)
          .add("svg", path)
          .add("points", static_cast<std::uint64_t>(c.points.size()))
          .add("from", from)
          .add("to", to)
          .print();
    } else {
      std::cout << "wrote " << path << ": P(n) for k = " << k << " at rate " << six(rate) << ", "
                << c.points.size() << " points, n / l from " << six(from) << " to " << six(to)
                << '\n';
    }
    return 0;
  }
  if (!args.json) std::cout << "words,relative,probability\n";
  for (const auto& point : c.points) {
    const double relative = static_cast<double>(point.words) / c.limit_words;
    if (args.json) {
      json_line()
          .add("k", k)
          .add("rate", rate)
          .add("words", point.words)
          .add("relative", relative)
          .add("probability", point.probability)
          .print();
    } else {
      std::cout << point.words << ',' << format_double(relative) << ','
                << format_double(point.probability) << '\n';
    }
  }
  return 0;
}

int run_memory(const arguments& args) {
  const double limit = parse_bytes("--limit", args.get("--limit"));
  const double rate = parse_rate(args);
  const double target = parse_target(args, "1e-9");
  if (args.has("--fraction") != args.has("--allocated")) {
    throw usage_error(
        "memory needs --fraction and --allocated together (see memlimits-stats "
        "memory --help)");
  }
  const auto o = ms::memory_overshoot(limit, target, rate);
  json_line line;
  line.add("rate", o.rate)
      .add("limit_bytes", o.limit_bytes)
      .add("limit_words", o.limit_words)
      .add("k", o.k)
      .add("target", o.target)
      .add("early_words", o.early_words)
      .add("late_words", o.late_words)
      .add("mean_words", o.mean_words)
      .add("overshoot_bytes", o.overshoot_bytes)
      .add("relative_overshoot", o.relative_overshoot);
  table t("limit_memory: trips when the live samples reach K = floor(M p) + 1");
  t.row("rate", six(rate), rate_note(rate))
      .row("limit", count(o.limit_bytes) + " B",
           human_bytes(o.limit_bytes) + ", M = " + count(o.limit_words) + " words")
      .row("k", std::to_string(o.k), "live samples that trip the limit")
      .row("target", six(target))
      .row("early_words", std::to_string(o.early_words),
           "no trip before this with P >= 1 - target (" +
               six(static_cast<double>(o.early_words) / o.limit_words) + " M)")
      .row("mean_words", count(o.mean_words),
           "mean trip point K / p (" + six(o.mean_words / o.limit_words) + " M)")
      .row("late_words", std::to_string(o.late_words),
           "tripped by then with P > 1 - target (" +
               six(static_cast<double>(o.late_words) / o.limit_words) + " M)")
      .row("overshoot", human_bytes(o.overshoot_bytes),
           "past the limit at late_words, relative " + six(o.relative_overshoot));
  if (args.has("--fraction")) {
    const double fraction = parse_real("--fraction", args.get("--fraction"));
    if (!(fraction > 0 && fraction <= 1)) {
      throw usage_error("--fraction must be in (0, 1], got " + args.get("--fraction"));
    }
    const double allocated = parse_bytes("--allocated", args.get("--allocated"));
    const auto f = ms::memory_false_trip(limit, fraction, allocated, rate);
    line.add("fraction", f.fraction)
        .add("allocated_bytes", f.allocated_bytes)
        .add("live_words", f.live_words)
        .add("expected_samples", f.expected_samples)
        .add("per_check", f.per_check)
        .add("per_sample", f.per_sample)
        .add("false_trip_bound", f.false_trip_bound);
    t.row("fraction", six(fraction), "live memory at most fraction * M")
        .row("allocated", human_bytes(f.allocated_bytes), "allocated in all by the task")
        .row("live_words", std::to_string(f.live_words), "L = floor(fraction * M)")
        .row("expected_samples", six(f.expected_samples), "A p: checks made")
        .row("per_check", six(f.per_check), "P(Binomial(L, p) >= K): one snapshot")
        .row("per_sample", six(f.per_sample), "P(Binomial(L - 1, p) >= K - 1)")
        .row("false_trip_bound", six(f.false_trip_bound), ">= P(false trip), A p * per_sample");
  }
  if (args.json) {
    line.print();
  } else {
    t.print();
  }
  return 0;
}

struct command {
  int (*run)(const arguments&);
  std::set<std::string, std::less<>> options;
};

const std::map<std::string, command, std::less<>> commands = {
    {"global", {run_global, {"--target", "--rate", "--bytes"}}},
    {"accuracy", {run_accuracy, {"--samples", "--target", "--rate"}}},
    {"min-rate", {run_min_rate, {"--safe-words", "--target", "--ratio"}}},
    {"cumulative",
     {run_cumulative, {"--samples", "--rate", "--from", "--to", "--points", "--svg"}}},
    {"memory", {run_memory, {"--limit", "--rate", "--target", "--fraction", "--allocated"}}},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << general_usage;
    return 2;
  }
  std::string_view name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    std::cout << general_usage;
    return 0;
  }
  auto it = commands.find(name);
  if (it == commands.end()) {
    std::cerr << "memlimits-stats: unknown command '" << name << "'\n\n" << general_usage;
    return 2;
  }
  try {
    const arguments args = parse_arguments(argc, argv, it->second.options);
    if (args.help) {
      std::cout << command_usage.find(name)->second;
      return 0;
    }
    return it->second.run(args);
  } catch (const std::invalid_argument& error) {
    // usage_error and the library's argument checks alike.
    std::cerr << "memlimits-stats " << name << ": " << error.what() << '\n';
    return 2;
  } catch (const std::exception& error) {
    std::cerr << "memlimits-stats " << name << ": error: " << error.what() << '\n';
    return 1;
  }
}
