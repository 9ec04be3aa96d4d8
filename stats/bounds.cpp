// The probability bounds of bounds.hpp, on Boost.Math's incomplete beta
// function (ibeta, ibetac and their inverses in b) and exponential
// distribution. Depends on Boost.Math and the standard library only.
//
// How the integer answers are exact. Every count this file returns is the
// extreme integer of a monotone predicate ("P(n) <= t" holds up to N and
// fails from N + 1 on). The inverses of Boost.Math give a real-valued guess;
// last_true() then gallops from the guess and bisects, evaluating the
// predicate itself at every step, so the answer never depends on the
// inverse's accuracy, only on ibeta's (close to double precision, many
// orders of magnitude finer than the step from P(N) to P(N + 1) in every
// table of stats/README.md).
#include "stats/bounds.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include <boost/math/distributions/exponential.hpp>
#include <boost/math/special_functions/beta.hpp>

namespace memlimits::stats {
namespace {

// The shortest text that reads back as `value` ("1e-09", not
// "1.0000000000000001e-09"), so that a message shows what the user typed.
std::string format_value(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buffer[64];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, value);
  return error == std::errc{} ? std::string(buffer, end) : std::string("?");
}

[[noreturn]] void reject(const char* name, const std::string& requirement, double value) {
  throw std::invalid_argument(std::string(name) + " must be " + requirement + ", got " +
                              format_value(value));
}

[[noreturn]] void reject_count(const char* name, const std::string& requirement,
                               std::uint64_t value) {
  throw std::invalid_argument(std::string(name) + " must be " + requirement + ", got " +
                              std::to_string(value));
}

// An answer beyond max_count words cannot be stepped exactly in doubles.
[[noreturn]] void too_large(const std::string& what) {
  throw std::invalid_argument(what + ": the answer exceeds 2^53 words");
}

double check_finite_positive(double value, const char* name) {
  if (!(value > 0) || !std::isfinite(value)) reject(name, "finite and > 0", value);
  return value;
}

// The largest n in [lo, hi] with pred(n), for a predicate that holds up to
// some n and fails beyond; pred(lo) must hold (the callers know it does).
// Gallops from `guess` (doubling steps) to bracket the answer, then bisects.
template <class Pred>
std::uint64_t last_true(Pred&& pred, std::uint64_t lo, std::uint64_t hi, std::uint64_t guess) {
  guess = std::clamp(guess, lo, hi);
  std::uint64_t good = lo;  // pred(good) holds
  std::uint64_t bad = 0;    // pred(bad) fails, once found
  if (pred(guess)) {
    good = guess;
    for (std::uint64_t step = 1;; step *= 2) {
      if (good == hi) return hi;
      std::uint64_t candidate = hi - good <= step ? hi : good + step;
      if (!pred(candidate)) {
        bad = candidate;
        break;
      }
      good = candidate;
    }
  } else {
    bad = guess;
    for (std::uint64_t step = 1;; step *= 2) {
      if (bad - lo <= step) break;  // good = lo
      std::uint64_t candidate = bad - step;
      if (pred(candidate)) {
        good = candidate;
        break;
      }
      bad = candidate;
    }
  }
  while (bad - good > 1) {
    std::uint64_t middle = good + (bad - good) / 2;
    (pred(middle) ? good : bad) = middle;
  }
  return good;
}

// A real-valued guess turned into a count, clamped to [lo, max_count].
std::uint64_t guess_count(double value, std::uint64_t lo) {
  if (!(value >= static_cast<double>(lo))) return lo;
  if (value >= static_cast<double>(max_count)) return max_count;
  return static_cast<std::uint64_t>(value);
}

}  // namespace

double check_rate(double rate, const char* name) {
  if (!(rate > 0 && rate <= 1)) reject(name, "in (0, 1]", rate);
  return rate;
}

double check_target(double target, const char* name) {
  if (!(target > 0 && target < 1)) reject(name, "in (0, 1)", target);
  return target;
}

std::uint64_t check_samples(std::uint64_t k, const char* name) {
  if (k < 1 || k > max_count) reject_count(name, "an integer in [1, 2^53]", k);
  return k;
}

// ---------------------------------------------------------------------------
// Global limit.

double global_not_interrupted(std::uint64_t words, double rate) {
  check_rate(rate);
  if (words == 0) return 1;
  if (rate == 1) return 0;  // log1p(-1) = -inf
  // (1 - p)^n without forming 1 - p, which loses the low digits of small p.
  return std::exp(static_cast<double>(words) * std::log1p(-rate));
}

double global_not_interrupted_bound(std::uint64_t words, double rate) {
  check_rate(rate);
  // e^{-n/S}: the complement of the exponential law of rate p at n, the
  // continuous approximation of the geometric law of the first sample.
  return boost::math::cdf(boost::math::complement(
      boost::math::exponential_distribution<double>(rate), static_cast<double>(words)));
}

global_result global_limit(double target, double rate) {
  check_target(target);
  check_rate(rate);
  const double log_target = std::log(target);
  global_result result{rate, target, 1, word_bytes, 1};
  if (rate < 1) {
    // (1 - p)^n >= T  <=>  n log1p(-p) >= log T: compared in logs, so that
    // no power underflows whatever the target.
    const double log_survival = std::log1p(-rate);
    auto survives = [&](std::uint64_t n) {
      return static_cast<double>(n) * log_survival >= log_target;
    };
    std::uint64_t last =
        last_true(survives, 0, max_count, guess_count(log_target / log_survival, 0));
    if (last >= max_count)
      too_large("global_limit(target = " + format_value(target) + ", rate = " + format_value(rate) +
                ")");
    result.words = last + 1;
  }
  // e^{-n p} >= T  <=>  n p <= -log T.
  auto bound_survives = [&](std::uint64_t n) {
    return static_cast<double>(n) * rate <= -log_target;
  };
  std::uint64_t last = last_true(bound_survives, 0, max_count, guess_count(-log_target / rate, 0));
  result.bound_words = last + 1;
  result.bytes = result.words * word_bytes;
  return result;
}

// ---------------------------------------------------------------------------
// Sampled allocation limit.

double interrupted(std::uint64_t k, std::uint64_t words, double rate) {
  check_samples(k);
  check_rate(rate);
  if (words < k) return 0;
  // P(Binomial(n, p) >= k) = I_p(k, n - k + 1) (Abramowitz & Stegun 26.5.24).
  return boost::math::ibeta(static_cast<double>(k), static_cast<double>(words - k + 1), rate);
}

double not_interrupted(std::uint64_t k, std::uint64_t words, double rate) {
  check_samples(k);
  check_rate(rate);
  if (words < k) return 1;
  return boost::math::ibetac(static_cast<double>(k), static_cast<double>(words - k + 1), rate);
}

double limit_words(std::uint64_t k, double rate) {
  check_samples(k);
  check_rate(rate);
  return static_cast<double>(k) / rate;
}

std::uint64_t safe_words(std::uint64_t k, double target, double rate) {
  check_samples(k);
  check_target(target);
  check_rate(rate);
  double guess = static_cast<double>(k - 1);
  if (rate < 1) {
    try {
      // b with I_p(k, b) = t, so n = k - 1 + b. Only a starting point.
      guess += boost::math::ibeta_invb(static_cast<double>(k), rate, target);
    } catch (const std::exception&) {
      // No usable guess (e.g. b out of Boost's range): start from k - 1.
    }
  }
  auto safe = [&](std::uint64_t n) { return interrupted(k, n, rate) <= target; };
  std::uint64_t n = last_true(safe, k - 1, max_count, guess_count(guess, k - 1));
  if (n >= max_count)
    too_large("safe_words(k = " + std::to_string(k) + ", target = " + format_value(target) +
              ", rate = " + format_value(rate) + ")");
  return n;
}

std::uint64_t sure_words(std::uint64_t k, double target, double rate) {
  check_samples(k);
  check_target(target);
  check_rate(rate);
  double guess = static_cast<double>(k - 1);
  if (rate < 1) {
    try {
      // b with 1 - I_p(k, b) = t, from the complement so that a tiny target
      // is not lost in 1 - t.
      guess += boost::math::ibetac_invb(static_cast<double>(k), rate, target);
    } catch (const std::exception&) {
    }
  }
  auto unsure = [&](std::uint64_t n) { return not_interrupted(k, n, rate) >= target; };
  std::uint64_t n = last_true(unsure, k - 1, max_count, guess_count(guess, k - 1));
  if (n >= max_count)
    too_large("sure_words(k = " + std::to_string(k) + ", target = " + format_value(target) +
              ", rate = " + format_value(rate) + ")");
  return n + 1;
}

accuracy_result accuracy(std::uint64_t k, double target, double rate) {
  const double limit = limit_words(k, rate);
  if (limit > static_cast<double>(max_count)) {
    too_large("accuracy(k = " + std::to_string(k) + ", rate = " + format_value(rate) + ")");
  }
  accuracy_result result{};
  result.k = k;
  result.rate = rate;
  result.target = target;
  result.limit_words = limit;
  result.safe_words = safe_words(k, target, rate);
  result.probability = interrupted(k, result.safe_words, rate);
  result.next_probability = interrupted(k, result.safe_words + 1, rate);
  const double n = static_cast<double>(result.safe_words);
  result.relative_error =
      result.safe_words == 0 ? std::numeric_limits<double>::infinity() : (limit - n) / n;
  return result;
}

// ---------------------------------------------------------------------------
// Minimal rate.

min_rate_result min_rate(std::uint64_t safe, double target, double ratio) {
  if (safe < 1 || safe > max_count) reject_count("safe_words", "an integer in [1, 2^53]", safe);
  check_target(target);
  if (!(ratio > 1) || !std::isfinite(ratio)) reject("ratio", "finite and > 1", ratio);
  const double limit = ratio * static_cast<double>(safe);
  if (limit > static_cast<double>(max_count)) {
    reject("ratio * safe_words", "at most 2^53 words", limit);
  }
  // p = k / l <= 1: at k = floor(l) the rate is at most 1, and at rate 1 the
  // limit is exact, so some k <= floor(l) works unless floor(l) = N.
  const auto max_k = static_cast<std::uint64_t>(std::floor(limit));
  auto rate_of = [&](std::uint64_t k) { return static_cast<double>(k) / limit; };
  auto safe_at = [&](std::uint64_t k) { return interrupted(k, safe, rate_of(k)) <= target; };
  // P_{k/l}(N) = P(Binomial(N, k/l) >= k) decreases in k (its Chernoff
  // exponent grows like k (ln r - 1 + 1/r)); the unit tests check it for
  // every k up to the tables' range. So the smallest k is found by doubling
  // then bisecting, and the bisection itself shows P > t at k - 1.
  std::uint64_t bad = 0;  // unsafe (k = 0 stands for "no sample", never a limit)
  std::uint64_t good = 1;
  while (!safe_at(good)) {
    bad = good;
    if (good == max_k) {
      throw std::invalid_argument("ratio = " + format_value(ratio) + " is too close to 1 for " +
                                  "safe_words = " + std::to_string(safe) + " and target = " +
                                  format_value(target) + ": no rate in (0, 1] is safe");
    }
    good = std::min(max_k, good * 2);
  }
  while (good - bad > 1) {
    std::uint64_t middle = bad + (good - bad) / 2;
    (safe_at(middle) ? good : bad) = middle;
  }
  return {safe, target, ratio, limit, good, rate_of(good), interrupted(good, safe, rate_of(good))};
}

// ---------------------------------------------------------------------------
// Curves.

curve cumulative(std::uint64_t k, double rate, double from, double to, std::size_t points) {
  const double limit = limit_words(k, rate);
  if (!(from >= 0) || !std::isfinite(from)) reject("from", "finite and >= 0", from);
  if (!(to > from) || !std::isfinite(to)) reject("to", "finite and > from", to);
  if (points < 2 || points > 1000000) {
    reject_count("points", "in [2, 1000000]", static_cast<std::uint64_t>(points));
  }
  if (to * limit > static_cast<double>(max_count))
    reject("to * limit_words", "<= 2^53", to * limit);
  curve result{k, rate, limit, {}};
  result.points.reserve(points);
  for (std::size_t i = 0; i < points; ++i) {
    const double x = from + (to - from) * static_cast<double>(i) / static_cast<double>(points - 1);
    const auto words = static_cast<std::uint64_t>(std::llround(x * limit));
    // Small limits round several points to the same word count: keep one.
    if (!result.points.empty() && result.points.back().words == words) continue;
    result.points.push_back({words, interrupted(k, words, rate)});
  }
  return result;
}

range default_cumulative_range(std::uint64_t k, double rate) {
  const double limit = limit_words(k, rate);
  const double lo = static_cast<double>(safe_words(k, 1e-6, rate)) / limit;
  const double hi = static_cast<double>(sure_words(k, 1e-6, rate)) / limit;
  // A round step, m * 10^e with m in {1, 2, 5}, about a tenth of the span.
  const double raw = (hi - lo) / 10;
  int exponent = static_cast<int>(std::floor(std::log10(raw)));
  double mantissa = 10;
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * std::pow(10, exponent) >= raw) {
      mantissa = m;
      break;
    }
  }
  // i * step as (i * m) / 10^-e when e < 0: one rounding, so that 0.85 is
  // printed as 0.85 and not 0.8500000000000001.
  auto multiple = [&](double i) {
    return exponent < 0 ? i * mantissa / std::pow(10, -exponent)
                        : i * mantissa * std::pow(10, exponent);
  };
  const double step = multiple(1);
  return {std::max(0.0, multiple(std::floor(lo / step))), multiple(std::ceil(hi / step))};
}

// ---------------------------------------------------------------------------
// limit_memory.

std::uint64_t memory_trip_samples(double limit_bytes, double rate) {
  check_finite_positive(limit_bytes, "limit_bytes");
  check_rate(rate);
  double samples = limit_bytes / static_cast<double>(word_bytes) * rate;  // M p
  const double nearest = std::nearbyint(samples);
  if (std::fabs(samples - nearest) <= 1e-9 * std::max(1.0, samples)) samples = nearest;
  // estimate = S * samples > M  <=>  samples > M p  <=>  samples >= floor(M p) + 1.
  const double k = std::floor(samples) + 1;
  if (k > static_cast<double>(max_count)) reject("limit_bytes * rate / 8", "< 2^53", samples);
  return static_cast<std::uint64_t>(k);
}

memory_overshoot_result memory_overshoot(double limit_bytes, double target, double rate) {
  check_target(target);
  memory_overshoot_result result{};
  result.rate = rate;
  result.limit_bytes = limit_bytes;
  result.k = memory_trip_samples(limit_bytes, rate);
  result.limit_words = limit_bytes / static_cast<double>(word_bytes);
  result.target = target;
  result.early_words = safe_words(result.k, target, rate);
  result.late_words = sure_words(result.k, target, rate);
  result.mean_words = static_cast<double>(result.k) / rate;
  result.overshoot_bytes =
      static_cast<double>(result.late_words) * static_cast<double>(word_bytes) - limit_bytes;
  result.relative_overshoot =
      (static_cast<double>(result.late_words) - result.limit_words) / result.limit_words;
  return result;
}

memory_false_trip_result memory_false_trip(double limit_bytes, double fraction,
                                           double allocated_bytes, double rate) {
  if (!(fraction > 0 && fraction <= 1)) reject("fraction", "in (0, 1]", fraction);
  if (!(allocated_bytes >= 0) || !std::isfinite(allocated_bytes)) {
    reject("allocated_bytes", "finite and >= 0", allocated_bytes);
  }
  memory_false_trip_result result{};
  result.rate = rate;
  result.limit_bytes = limit_bytes;
  result.k = memory_trip_samples(limit_bytes, rate);
  result.fraction = fraction;
  result.allocated_bytes = allocated_bytes;
  const double live = std::floor(fraction * limit_bytes / static_cast<double>(word_bytes));
  if (live > static_cast<double>(max_count)) reject("fraction * limit_bytes / 8", "<= 2^53", live);
  result.live_words = static_cast<std::uint64_t>(live);
  // Blocks are counted in whole words: A bytes are at least ceil(A / 8) words.
  const double allocated_words = std::ceil(allocated_bytes / static_cast<double>(word_bytes));
  result.expected_samples = allocated_words * rate;
  const std::uint64_t k = result.k;
  const std::uint64_t l = result.live_words;
  result.per_check = l == 0 ? 0 : interrupted(k, l, rate);
  // Given that one word is sampled, the other live words (at most L - 1)
  // must hold K - 1 samples.
  if (l == 0) {
    result.per_sample = 0;
  } else if (k == 1) {
    result.per_sample = 1;
  } else {
    result.per_sample = interrupted(k - 1, l - 1, rate);
  }
  result.false_trip_bound = std::min(1.0, result.expected_samples * result.per_sample);
  return result;
}

}  // namespace memlimits::stats
