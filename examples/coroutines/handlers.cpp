// handlers.cpp — the request handlers of the coroutines example, each a
// coroutine under a memlimits::guard held in its frame, and their inputs
// with the answers worked out from what the inputs were generated from.
//
// Every handler has the same shape:
//
//   memlimits::guard g(j.limits);      // in the coroutine's frame
//   try {
//     ... a few hundred steps, co_await between them ...
//   } catch (const memlimits::limit_reached& e) {
//     if (!g.tripped()) throw;         // not its guard's
//     j.raised = e.kind();             // nothing that allocates before exit
//   }
//   j.finish(g);                       // g.exit(): the error, if a limit tripped
//
// The guard goes with the coroutine from thread to thread, because the
// executor makes the coroutine's task current around each resume().
#include "handlers.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <map>
#include <stdexcept>
#include <unordered_map>
#include <utility>
#include <variant>

namespace demo {

using namespace std::chrono_literals;
using memlimits::limit_kind;

// ---- job --------------------------------------------------------------------

job::job(std::string name_, std::string work_, std::string guard_text_, memlimits::limits limits_,
         std::optional<memlimits::limit_kind> must_stop_by_)
    : name(std::move(name_)),
      work(std::move(work_)),
      guard_text(std::move(guard_text_)),
      limits(std::move(limits_)),
      must_stop_by(must_stop_by_) {}

void job::finish(memlimits::guard& g) noexcept {
  const std::optional<memlimits::interruption> error = g.exit();
  used = g.usage();
  if (error) stopped_by = error->kind();
  ended_at = clock_type::now();
  ended.store(true, std::memory_order_release);
}

bool job::as_expected() const {
  if (!ended.load(std::memory_order_acquire) || !problem.empty()) return false;
  if (must_stop_by) return stopped_by == must_stop_by && raised == must_stop_by;
  return !stopped_by && !raised && out && out->key == expected &&
         info.awaits.load(std::memory_order_relaxed) >= 100;
}

namespace {

// ---- helpers ------------------------------------------------------------------

// The network's latency, now and then, between the chunks of a body.
constexpr auto network_latency = 500us;

// splitmix64: the inputs are the same at every run.
struct rng {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t n) { return next() % n; }
};

std::string with_commas(std::uint64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string dollars(std::uint64_t cents) {
  char frac[4];
  std::snprintf(frac, sizeof frac, ".%02u", static_cast<unsigned>(cents % 100));
  return "$" + with_commas(cents / 100) + frac;
}

std::uint64_t to_u64(std::string_view s) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) {
    throw std::runtime_error("not a number: " + std::string(s));
  }
  return v;
}

std::vector<std::string> split(std::string_view line, char sep) {
  std::vector<std::string> fields;
  for (std::size_t start = 0;;) {
    const std::size_t end = line.find(sep, start);
    fields.emplace_back(line.substr(start, end - start));
    if (end == std::string_view::npos) return fields;
    start = end + 1;
  }
}

// Appends `chunk` to `carry` and calls on_line for each complete line in it;
// keeps the incomplete rest for the next chunk.
template <class F>
void for_each_line(std::string& carry, std::string_view chunk, F&& on_line) {
  carry.append(chunk);
  std::size_t start = 0;
  for (std::size_t nl; (nl = carry.find('\n', start)) != std::string::npos; start = nl + 1) {
    on_line(std::string_view(carry).substr(start, nl - start));
  }
  carry.erase(0, start);
}

// A request body as it arrives: next() gives the next chunk (nullopt at the
// end), after waiting for the network before every `wait_every`-th one.
// next() is a coroutine of its own, awaited by the handler in its task.
class body_reader {
 public:
  body_reader(const executor& exec, std::string_view body, std::size_t chunk, int wait_every)
      : exec_(exec), body_(body), chunk_(chunk), wait_every_(wait_every) {}

  co<std::optional<std::string_view>> next() {
    if (++calls_ % wait_every_ == 0) co_await exec_.sleep_for(network_latency);
    if (position_ >= body_.size()) co_return std::nullopt;
    const std::string_view chunk = body_.substr(position_, chunk_);
    position_ += chunk.size();
    co_return chunk;
  }

 private:
  const executor& exec_;
  std::string_view body_;
  std::size_t chunk_;
  int wait_every_;
  int calls_ = 0;
  std::size_t position_ = 0;
};

// ---- orders: CSV ---------------------------------------------------------------

constexpr int order_count = 20'000;
constexpr int customer_count = 700;

std::string customer_name(std::uint64_t id) {
  char name[16];
  std::snprintf(name, sizeof name, "cust-%04u", static_cast<unsigned>(id));
  return name;
}

std::string orders_key(std::uint64_t rows, std::uint64_t revenue, std::size_t customers,
                       const std::string& top, std::uint64_t top_cents) {
  return "rows=" + std::to_string(rows) + " revenue=" + std::to_string(revenue) +
         " customers=" + std::to_string(customers) + " top=" + top + ":" +
         std::to_string(top_cents);
}

void make_orders(inputs& in) {
  rng r{1};
  std::array<std::uint64_t, customer_count> revenue{};
  std::uint64_t total = 0;
  in.orders_csv = "order_id,customer,qty,unit_cents\n";
  for (int i = 0; i < order_count; ++i) {
    const std::uint64_t customer = r.below(customer_count);
    const std::uint64_t qty = 1 + r.below(9);
    const std::uint64_t unit = 99 + r.below(49'901);
    in.orders_csv += std::to_string(100'000 + i) + "," + customer_name(customer) + "," +
                     std::to_string(qty) + "," + std::to_string(unit) + "\n";
    revenue[customer] += qty * unit;
    total += qty * unit;
  }
  const auto top =
      std::max_element(revenue.begin(), revenue.end());  // the first: the smallest name
  const auto customers = static_cast<std::size_t>(
      std::count_if(revenue.begin(), revenue.end(), [](std::uint64_t c) { return c > 0; }));
  in.orders_answer =
      orders_key(order_count, total, customers,
                 customer_name(static_cast<std::uint64_t>(top - revenue.begin())), *top);
}

}  // namespace

co<void> orders_csv(const executor& exec, job& j, std::string_view body) {
  j.begin();
  memlimits::guard g(j.limits);  // in this coroutine's frame, across every co_await below
  try {
    body_reader reader(exec, body, 4096, 8);
    std::map<std::string, std::uint64_t> revenue;
    std::uint64_t rows = 0, total = 0;
    std::string carry;
    bool header = true;
    while (const std::optional<std::string_view> chunk = co_await reader.next()) {
      for_each_line(carry, *chunk, [&](std::string_view line) {
        if (std::exchange(header, false)) return;
        const std::vector<std::string> f = split(line, ',');
        const std::uint64_t cents = to_u64(f.at(2)) * to_u64(f.at(3));
        revenue[f.at(1)] += cents;
        total += cents;
        ++rows;
      });
      co_await exec.schedule();
    }
    const auto top =
        std::max_element(revenue.begin(), revenue.end(),
                         [](const auto& a, const auto& b) { return a.second < b.second; });
    j.out = answer{orders_key(rows, total, revenue.size(), top->first, top->second),
                   with_commas(rows) + " orders, revenue " + dollars(total) + " from " +
                       with_commas(revenue.size()) + " customers, the largest " + top->first +
                       " (" + dollars(top->second) + ")"};
  } catch (const memlimits::limit_reached& e) {
    if (!g.tripped()) throw;
    j.raised = e.kind();
  }
  j.finish(g);
}

// ---- catalog: NDJSON ---------------------------------------------------------

namespace {

constexpr int catalog_items = 4'000;
constexpr std::array<const char*, 5> tag_names{"sale", "new", "red", "blue", "eco"};

std::string catalog_key(std::uint64_t items, std::uint64_t in_stock, std::uint64_t stock_value,
                        std::uint64_t on_sale) {
  return "items=" + std::to_string(items) + " in_stock=" + std::to_string(in_stock) +
         " stock_value=" + std::to_string(stock_value) + " on_sale=" + std::to_string(on_sale);
}

void make_catalog(inputs& in) {
  rng r{2};
  std::uint64_t in_stock = 0, value = 0, on_sale = 0;
  for (int i = 0; i < catalog_items; ++i) {
    const std::uint64_t price = 100 + r.below(99'900);
    const std::uint64_t stock = r.below(4) == 0 ? 0 : r.below(60);
    std::string tags;
    bool sale = false;
    for (std::size_t t = 0; t < tag_names.size(); ++t) {
      if (r.below(3) != 0) continue;
      if (!tags.empty()) tags += ",";
      tags += std::string("\"") + tag_names[t] + "\"";
      sale = sale || t == 0;
    }
    char sku[16];
    std::snprintf(sku, sizeof sku, "SKU-%05d", i);
    in.catalog_ndjson += std::string("{\"sku\": \"") + sku + "\", \"name\": \"item " +
                         std::to_string(i) + "\", \"price_cents\": " + std::to_string(price) +
                         ", \"stock\": " + std::to_string(stock) + ", \"tags\": [" + tags + "]}\n";
    in_stock += stock > 0;
    value += price * stock;
    on_sale += sale;
  }
  in.catalog_answer = catalog_key(catalog_items, in_stock, value, on_sale);
}

// A JSON object of strings, non-negative integers and arrays of strings:
// what the catalog's lines hold.
using json_value = std::variant<std::uint64_t, std::string, std::vector<std::string>>;
using json_object = std::map<std::string, json_value>;

class json_parser {
 public:
  explicit json_parser(std::string_view text) : text_(text) {}

  json_object object() {
    json_object out;
    expect('{');
    if (peek() == '}') return ++at_, out;
    for (;;) {
      std::string key = string();
      expect(':');
      out.emplace(std::move(key), value());
      if (peek() == ',') {
        ++at_;
        continue;
      }
      expect('}');
      return out;
    }
  }

 private:
  char peek() {
    while (at_ < text_.size() && text_[at_] == ' ') ++at_;
    if (at_ == text_.size()) throw std::runtime_error("JSON: unexpected end");
    return text_[at_];
  }
  void expect(char c) {
    if (peek() != c) throw std::runtime_error(std::string("JSON: expected ") + c);
    ++at_;
  }
  std::string string() {
    expect('"');
    const std::size_t end = text_.find('"', at_);
    if (end == std::string_view::npos) throw std::runtime_error("JSON: unterminated string");
    std::string s(text_.substr(at_, end - at_));
    at_ = end + 1;
    return s;
  }
  json_value value() {
    const char c = peek();
    if (c == '"') return string();
    if (c == '[') {
      ++at_;
      std::vector<std::string> items;
      if (peek() == ']') return ++at_, items;
      for (;;) {
        items.push_back(string());
        if (peek() == ',') {
          ++at_;
          continue;
        }
        expect(']');
        return items;
      }
    }
    const std::size_t start = at_;
    while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') ++at_;
    return to_u64(text_.substr(start, at_ - start));
  }

  std::string_view text_;
  std::size_t at_ = 0;
};

}  // namespace

co<void> catalog_json(const executor& exec, job& j, std::string_view body) {
  j.begin();
  memlimits::guard g(j.limits);
  try {
    body_reader reader(exec, body, 2048, 8);
    std::uint64_t items = 0, in_stock = 0, value = 0, on_sale = 0;
    std::string carry;
    while (const std::optional<std::string_view> chunk = co_await reader.next()) {
      for_each_line(carry, *chunk, [&](std::string_view line) {
        const json_object item = json_parser(line).object();
        const std::uint64_t price = std::get<std::uint64_t>(item.at("price_cents"));
        const std::uint64_t stock = std::get<std::uint64_t>(item.at("stock"));
        const auto& tags = std::get<std::vector<std::string>>(item.at("tags"));
        ++items;
        in_stock += stock > 0;
        value += price * stock;
        on_sale += std::find(tags.begin(), tags.end(), "sale") != tags.end();
      });
      co_await exec.schedule();
    }
    j.out = answer{catalog_key(items, in_stock, value, on_sale),
                   with_commas(items) + " items, " + with_commas(in_stock) + " in stock worth " +
                       dollars(value) + ", " + with_commas(on_sale) + " on sale"};
  } catch (const memlimits::limit_reached& e) {
    if (!g.tripped()) throw;
    j.raised = e.kind();
  }
  j.finish(g);
}

// ---- words: a hash map of counts ------------------------------------------------

namespace {

constexpr int vocabulary = 3'000;
constexpr int word_total = 60'000;

// Three syllables a word, one per base-16 digit: distinct for distinct ids.
std::string word_of(int id) {
  static constexpr std::array<const char*, 16> syllables{"ka", "lo", "mi", "nu", "pe", "ra",
                                                         "so", "ti", "ve", "zu", "ba", "de",
                                                         "fo", "gi", "hu", "ja"};
  return std::string(syllables[(id >> 8) & 15]) + syllables[(id >> 4) & 15] + syllables[id & 15];
}

std::string words_key(std::uint64_t total, std::size_t distinct, const std::string& top,
                      int top_count) {
  return "words=" + std::to_string(total) + " distinct=" + std::to_string(distinct) +
         " top=" + top + ":" + std::to_string(top_count);
}

void make_words(inputs& in) {
  rng r{3};
  std::vector<int> counts(vocabulary, 0);
  for (int i = 0; i < word_total; ++i) {
    const int id = static_cast<int>(r.below(r.below(vocabulary) + 1));  // the small ids are common
    ++counts[id];
    in.text += word_of(id);
    in.text += (i % 12 == 11) ? '\n' : ' ';
  }
  int top = 0;
  for (int id = 1; id < vocabulary; ++id) {
    if (counts[id] > counts[top] || (counts[id] == counts[top] && word_of(id) < word_of(top)))
      top = id;
  }
  const auto distinct = static_cast<std::size_t>(
      std::count_if(counts.begin(), counts.end(), [](int c) { return c > 0; }));
  in.words_answer = words_key(word_total, distinct, word_of(top), counts[top]);
}

}  // namespace

co<void> word_index(const executor& exec, job& j, std::string_view body) {
  j.begin();
  memlimits::guard g(j.limits);
  try {
    body_reader reader(exec, body, 3072, 8);
    std::unordered_map<std::string, int> counts;
    std::uint64_t total = 0;
    std::string carry;
    while (const std::optional<std::string_view> chunk = co_await reader.next()) {
      for_each_line(carry, *chunk, [&](std::string_view line) {
        for (std::string& word : split(line, ' ')) {
          ++counts[std::move(word)];
          ++total;
        }
      });
      co_await exec.schedule();
    }
    auto top = counts.begin();
    for (auto it = counts.begin(); it != counts.end(); ++it) {
      if (it->second > top->second || (it->second == top->second && it->first < top->first))
        top = it;
    }
    j.out = answer{words_key(total, counts.size(), top->first, top->second),
                   with_commas(total) + " words, " + with_commas(counts.size()) +
                       " distinct, the commonest \"" + top->first + "\" " +
                       with_commas(static_cast<std::uint64_t>(top->second)) + " times"};
  } catch (const memlimits::limit_reached& e) {
    if (!g.tripped()) throw;
    j.raised = e.kind();
  }
  j.finish(g);
}

// ---- primes: a segmented sieve ---------------------------------------------------

namespace {

constexpr std::uint64_t prime_bound = 3'000'000;
constexpr std::uint64_t segment = 10'000;
// pi(3,000,000): the number of primes below 3 million, from the published
// tables of the prime-counting function (not computed here).
constexpr std::uint64_t published_prime_count = 216'816;

std::string primes_key(std::uint64_t count) {
  return "pi(" + std::to_string(prime_bound) + ")=" + std::to_string(count);
}

}  // namespace

co<void> prime_count(const executor& exec, job& j) {
  j.begin();
  memlimits::guard g(j.limits);
  try {
    // The base primes up to sqrt(bound), then one segment a step.
    const auto root = static_cast<std::uint64_t>(std::sqrt(static_cast<double>(prime_bound))) + 1;
    std::vector<char> small(root + 1, 1);
    std::vector<std::uint64_t> base;
    for (std::uint64_t i = 2; i <= root; ++i) {
      if (!small[i]) continue;
      base.push_back(i);
      for (std::uint64_t k = i * i; k <= root; k += i) small[k] = 0;
    }
    std::uint64_t count = 0;
    int step = 0;
    for (std::uint64_t low = 0; low < prime_bound; low += segment, ++step) {
      const std::uint64_t high = std::min(low + segment, prime_bound);  // [low, high)
      std::vector<char> is_prime(high - low, 1);
      for (const std::uint64_t p : base) {
        for (std::uint64_t k = std::max(p * p, (low + p - 1) / p * p); k < high; k += p) {
          is_prime[k - low] = 0;
        }
      }
      for (std::uint64_t n = low; n < high; ++n) count += n >= 2 && is_prime[n - low];
      if (step % 10 == 9) {
        co_await exec.sleep_for(200us);
      } else {
        co_await exec.schedule();
      }
    }
    j.out =
        answer{primes_key(count), with_commas(count) + " primes below " + with_commas(prime_bound) +
                                      ", in " + std::to_string(step) + " segments"};
  } catch (const memlimits::limit_reached& e) {
    if (!g.tripped()) throw;
    j.raised = e.kind();
  }
  j.finish(g);
}

// ---- Fibonacci: big integers ---------------------------------------------------

namespace {

constexpr int fibonacci_n = 10'000;

std::string fibonacci_key(std::size_t digits, std::string_view first8, std::string_view last9) {
  return "F(" + std::to_string(fibonacci_n) + "): digits=" + std::to_string(digits) +
         " first=" + std::string(first8) + " last=" + std::string(last9);
}

// F(n)'s digits and first 8 digits from Binet's formula (F(n) is the integer
// nearest phi^n / sqrt(5)), its last 9 from the recurrence modulo 10^9.
void make_fibonacci(inputs& in) {
  const long double phi = (1.0L + std::sqrt(5.0L)) / 2.0L;
  const long double exponent = fibonacci_n * std::log10(phi) - std::log10(std::sqrt(5.0L));
  const auto digits = static_cast<std::size_t>(std::floor(exponent)) + 1;
  const auto first8 = static_cast<std::uint64_t>(
      std::floor(std::pow(10.0L, exponent - std::floor(exponent) + 7.0L)));
  std::uint64_t a = 0, b = 1;
  for (int i = 0; i < fibonacci_n; ++i) a = std::exchange(b, (a + b) % 1'000'000'000);
  char last9[16];
  std::snprintf(last9, sizeof last9, "%09llu", static_cast<unsigned long long>(a));
  in.fibonacci_answer = fibonacci_key(digits, std::to_string(first8), last9);
}

// Little-endian limbs of 9 decimal digits.
using big = std::vector<std::uint32_t>;

big add(const big& a, const big& b) {
  big sum;
  sum.reserve(std::max(a.size(), b.size()) + 1);
  std::uint32_t carry = 0;
  for (std::size_t i = 0; i < std::max(a.size(), b.size()) || carry; ++i) {
    std::uint32_t limb = carry + (i < a.size() ? a[i] : 0) + (i < b.size() ? b[i] : 0);
    carry = limb >= 1'000'000'000u;
    if (carry) limb -= 1'000'000'000u;
    sum.push_back(limb);
  }
  return sum;
}

std::string decimal(const big& n) {
  std::string s = std::to_string(n.back());
  char limb[16];
  for (std::size_t i = n.size() - 1; i-- > 0;) {
    std::snprintf(limb, sizeof limb, "%09u", n[i]);
    s += limb;
  }
  return s;
}

}  // namespace

co<void> fibonacci(const executor& exec, job& j) {
  j.begin();
  memlimits::guard g(j.limits);
  try {
    big a{0}, b{1};
    constexpr int per_step = 50;
    for (int i = 0; i < fibonacci_n; i += per_step) {
      for (int k = 0; k < per_step; ++k) a = std::exchange(b, add(a, b));
      co_await exec.schedule();
    }
    const std::string digits = decimal(a);
    j.out =
        answer{fibonacci_key(digits.size(), digits.substr(0, 8), digits.substr(digits.size() - 9)),
               "F(" + with_commas(fibonacci_n) + ") has " + with_commas(digits.size()) +
                   " digits: " + digits.substr(0, 8) + "..." + digits.substr(digits.size() - 9)};
  } catch (const memlimits::limit_reached& e) {
    if (!g.tripped()) throw;
    j.raised = e.kind();
  }
  j.finish(g);
}

// ---- sort: sorted runs, merged ---------------------------------------------------

namespace {

constexpr std::size_t run_length = 1'000;
constexpr std::size_t run_count = 200;

std::string sort_key(const std::vector<std::uint32_t>& sorted) {
  std::uint64_t checksum = 0;
  for (std::size_t i = 0; i < sorted.size(); ++i) checksum += (i + 1) * sorted[i];
  return "n=" + std::to_string(sorted.size()) + " min=" + std::to_string(sorted.front()) +
         " median=" + std::to_string(sorted[sorted.size() / 2]) +
         " max=" + std::to_string(sorted.back()) + " checksum=" + std::to_string(checksum);
}

void make_numbers(inputs& in) {
  rng r{4};
  in.numbers.resize(run_length * run_count);
  for (std::uint32_t& v : in.numbers) v = static_cast<std::uint32_t>(r.next());
  std::vector<std::uint32_t> sorted = in.numbers;  // one std::sort of the whole
  std::sort(sorted.begin(), sorted.end());
  in.sort_answer = sort_key(sorted);
}

}  // namespace

co<void> sort_merge(const executor& exec, job& j, const std::vector<std::uint32_t>& numbers) {
  j.begin();
  memlimits::guard g(j.limits);
  try {
    std::deque<std::vector<std::uint32_t>> runs;
    for (std::size_t start = 0; start < numbers.size(); start += run_length) {
      const auto first = numbers.begin() + static_cast<std::ptrdiff_t>(start);
      std::vector<std::uint32_t> run(first, first + static_cast<std::ptrdiff_t>(run_length));
      std::sort(run.begin(), run.end());
      runs.push_back(std::move(run));
      co_await exec.schedule();
    }
    int merges = 0;
    while (runs.size() > 1) {  // the two oldest runs at a time
      std::vector<std::uint32_t> a = std::move(runs.front());
      runs.pop_front();
      std::vector<std::uint32_t> b = std::move(runs.front());
      runs.pop_front();
      std::vector<std::uint32_t> merged(a.size() + b.size());
      std::merge(a.begin(), a.end(), b.begin(), b.end(), merged.begin());
      runs.push_back(std::move(merged));
      ++merges;
      if (merges % 16 == 0) {
        co_await exec.sleep_for(200us);
      } else {
        co_await exec.schedule();
      }
    }
    const std::vector<std::uint32_t>& sorted = runs.front();
    j.out = answer{sort_key(sorted), with_commas(sorted.size()) + " numbers in " +
                                         std::to_string(run_count) + " runs, " +
                                         std::to_string(merges) + " merges, median " +
                                         with_commas(sorted[sorted.size() / 2])};
  } catch (const memlimits::limit_reached& e) {
    if (!g.tripped()) throw;
    j.raised = e.kind();
  }
  j.finish(g);
}

// ---- matrix: a product, a row a step ---------------------------------------------

namespace {

constexpr int matrix_n = 160;

std::int64_t a_entry(int i, int k) { return (i * 7 + k * 3) % 17 - 8; }
std::int64_t b_entry(int k, int j) { return (k * 5 + j * 11) % 13 - 6; }

std::string matrix_key(std::int64_t sum, std::int64_t trace) {
  return "sum=" + std::to_string(sum) + " trace=" + std::to_string(trace);
}

// Without the product: the sum of AB's entries is sum_k (column k of A's
// sum) * (row k of B's sum), and its trace sum_i sum_k A[i][k] * B[k][i].
void make_matrix(inputs& in) {
  std::int64_t sum = 0, trace = 0;
  for (int k = 0; k < matrix_n; ++k) {
    std::int64_t column = 0, row = 0;
    for (int i = 0; i < matrix_n; ++i) {
      column += a_entry(i, k);
      row += b_entry(k, i);
      trace += a_entry(i, k) * b_entry(k, i);
    }
    sum += column * row;
  }
  in.matrix_answer = matrix_key(sum, trace);
}

}  // namespace

co<void> matrix_product(const executor& exec, job& j) {
  j.begin();
  memlimits::guard g(j.limits);
  try {
    using matrix = std::vector<std::vector<std::int64_t>>;
    matrix a(matrix_n, std::vector<std::int64_t>(matrix_n)), b = a, c;
    for (int i = 0; i < matrix_n; ++i) {
      for (int k = 0; k < matrix_n; ++k) {
        a[i][k] = a_entry(i, k);
        b[i][k] = b_entry(i, k);
      }
    }
    for (int i = 0; i < matrix_n; ++i) {  // a row of AB a step
      std::vector<std::int64_t> row(matrix_n, 0);
      for (int k = 0; k < matrix_n; ++k) {
        for (int col = 0; col < matrix_n; ++col) row[col] += a[i][k] * b[k][col];
      }
      c.push_back(std::move(row));
      if (i % 16 == 15) {
        co_await exec.sleep_for(200us);
      } else {
        co_await exec.schedule();
      }
    }
    std::int64_t sum = 0, trace = 0;
    for (int i = 0; i < matrix_n; ++i) {
      for (int col = 0; col < matrix_n; ++col) sum += c[i][col];
      trace += c[i][i];
    }
    j.out =
        answer{matrix_key(sum, trace), std::to_string(matrix_n) + "x" + std::to_string(matrix_n) +
                                           " product: entries sum to " + std::to_string(sum) +
                                           ", trace " + std::to_string(trace)};
  } catch (const memlimits::limit_reached& e) {
    if (!g.tripped()) throw;
    j.raised = e.kind();
  }
  j.finish(g);
}

// ---- base64: encode, then decode back ---------------------------------------------

namespace {

constexpr std::size_t payload_size = 240'000;  // a multiple of 3: no padding
constexpr std::string_view payload_prefix = "memlimits";
constexpr std::string_view payload_prefix_base64 = "bWVtbGltaXRz";  // RFC 4648 of "memlimits"
constexpr std::string_view alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_key(std::size_t encoded, std::string_view prefix, bool identical) {
  return "encoded=" + std::to_string(encoded) + " prefix=" + std::string(prefix) +
         (identical ? " roundtrip=identical" : " roundtrip=different");
}

void make_payload(inputs& in) {
  rng r{5};
  in.payload.assign(payload_prefix.begin(), payload_prefix.end());
  while (in.payload.size() < payload_size)
    in.payload.push_back(static_cast<unsigned char>(r.next()));
  in.base64_answer = base64_key(4 * ((payload_size + 2) / 3), payload_prefix_base64, true);
}

// Whole groups of 3 bytes (the chunks are multiples of 3).
std::string encode(const unsigned char* bytes, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i + 3 <= n; i += 3) {
    const std::uint32_t v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) out += alphabet[(v >> shift) & 63];
  }
  return out;
}

std::vector<unsigned char> decode(std::string_view text) {
  std::vector<unsigned char> out;
  for (std::size_t i = 0; i + 4 <= text.size(); i += 4) {
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      const std::size_t digit = alphabet.find(text[i + k]);
      if (digit == std::string_view::npos) throw std::runtime_error("base64: bad character");
      v = (v << 6) | static_cast<std::uint32_t>(digit);
    }
    out.push_back(static_cast<unsigned char>(v >> 16));
    out.push_back(static_cast<unsigned char>(v >> 8));
    out.push_back(static_cast<unsigned char>(v));
  }
  return out;
}

}  // namespace

co<void> base64_roundtrip(const executor& exec, job& j, const std::vector<unsigned char>& payload) {
  j.begin();
  memlimits::guard g(j.limits);
  try {
    constexpr std::size_t chunk = 2'400;
    std::string encoded;
    for (std::size_t at = 0; at < payload.size(); at += chunk) {
      encoded += encode(payload.data() + at, std::min(chunk, payload.size() - at));
      co_await exec.schedule();
    }
    std::vector<unsigned char> decoded;
    for (std::size_t at = 0; at < encoded.size(); at += chunk / 3 * 4) {
      const std::vector<unsigned char> part =
          decode(std::string_view(encoded).substr(at, chunk / 3 * 4));
      decoded.insert(decoded.end(), part.begin(), part.end());
      co_await exec.schedule();
    }
    const bool identical = decoded == payload;
    const std::string prefix = encoded.substr(0, payload_prefix_base64.size());
    j.out = answer{base64_key(encoded.size(), prefix, identical),
                   with_commas(payload.size()) + " bytes to " + with_commas(encoded.size()) +
                       " characters (\"" + prefix + "...\") and back, " +
                       (identical ? "identical" : "different")};
  } catch (const memlimits::limit_reached& e) {
    if (!g.tripped()) throw;
    j.raised = e.kind();
  }
  j.finish(g);
}

// ---- log statistics, with a child coroutine that indexes the paths ---------------

namespace {

constexpr int log_lines = 12'000;
constexpr int path_count = 300;

std::string path_of(std::uint64_t id) { return "/api/v2/catalog/items/" + std::to_string(id); }

std::string index_key(std::size_t distinct, const std::string& top, int hits) {
  return "paths=" + std::to_string(distinct) + " top=" + top + ":" + std::to_string(hits);
}

std::string log_key(std::uint64_t requests, std::uint64_t bytes,
                    const std::array<std::uint64_t, 6>& classes, const std::string& index) {
  std::string key = "requests=" + std::to_string(requests) + " bytes=" + std::to_string(bytes);
  for (int c = 2; c <= 5; ++c) key += " " + std::to_string(c) + "xx=" + std::to_string(classes[c]);
  return key + " " + index;
}

void make_log(inputs& in) {
  rng r{6};
  static constexpr std::array<int, 7> statuses{200, 200, 200, 200, 304, 404, 500};
  std::vector<int> hits(path_count, 0);
  std::array<std::uint64_t, 6> classes{};
  std::uint64_t bytes = 0;
  for (int i = 0; i < log_lines; ++i) {
    const std::uint64_t path = r.below(r.below(path_count) + 1);
    const int status = statuses[r.below(statuses.size())];
    const std::uint64_t size = status == 200 ? 200 + r.below(19'800) : r.below(500);
    in.access_log += std::string(r.below(5) == 0 ? "POST " : "GET ") + path_of(path) + " " +
                     std::to_string(status) + " " + std::to_string(size) + "\n";
    ++hits[path];
    ++classes[static_cast<std::size_t>(status / 100)];
    bytes += size;
  }
  int top = 0;
  for (int p = 1; p < path_count; ++p) {
    if (hits[p] > hits[top] || (hits[p] == hits[top] && path_of(p) < path_of(top))) top = p;
  }
  const auto distinct = static_cast<std::size_t>(
      std::count_if(hits.begin(), hits.end(), [](int h) { return h > 0; }));
  in.log_index_answer = index_key(distinct, path_of(top), hits[top]);
  in.log_answer = log_key(log_lines, bytes, classes, in.log_index_answer);
}

struct path_index {
  std::size_t distinct = 0;
  std::string top;
  int hits = 0;
};

// The child: counts the hits of each path, parsing the log again from its
// own reader. Its task is a child of the parent's
// (memlimits::task(memlimits::inherit)), so whatever it allocates counts
// toward the parent's guard too.
co<path_index> index_paths(const executor& exec, job& j, std::string_view body) {
  j.begin();
  // No limits: it only measures this task's own allocations. What limits
  // this task is the guard it inherits from its parent.
  memlimits::guard measured(memlimits::limits{});
  path_index index;
  try {
    body_reader reader(exec, body, 2048, 8);
    std::map<std::string, int> hits;
    std::uint64_t lines = 0;
    std::string carry;
    while (const std::optional<std::string_view> chunk = co_await reader.next()) {
      for_each_line(carry, *chunk, [&](std::string_view line) {
        ++hits[split(line, ' ').at(1)];
        ++lines;
      });
      co_await exec.schedule();
    }
    auto top = hits.begin();  // in order: the first of the most hit is the smallest path
    for (auto it = hits.begin(); it != hits.end(); ++it) {
      if (it->second > top->second) top = it;
    }
    index = path_index{hits.size(), top->first, top->second};
    j.out = answer{index_key(index.distinct, index.top, index.hits),
                   with_commas(lines) + " lines indexed: " + with_commas(index.distinct) +
                       " distinct paths, the most requested " + index.top + " (" +
                       with_commas(static_cast<std::uint64_t>(index.hits)) + " times)"};
  } catch (const memlimits::limit_reached& e) {
    j.finish(measured);
    j.stopped_by = j.raised = e.kind();
    throw;  // an inherited guard's: the parent reports it
  }
  j.finish(measured);
  co_return index;
}

}  // namespace

co<void> log_stats(const executor& exec, job& j, job& child, std::string_view body) {
  j.begin();
  memlimits::guard g(j.limits);
  try {
    body_reader reader(exec, body, 2048, 8);
    std::array<std::uint64_t, 6> classes{};
    std::uint64_t requests = 0, bytes = 0;
    std::string carry;
    while (const std::optional<std::string_view> chunk = co_await reader.next()) {
      for_each_line(carry, *chunk, [&](std::string_view line) {
        const std::vector<std::string> f = split(line, ' ');
        const std::uint64_t status = to_u64(f.at(2));
        if (status < 200 || status >= 600) throw std::runtime_error("bad status: " + f.at(2));
        ++classes[status / 100];
        bytes += to_u64(f.at(3));
        ++requests;
      });
      co_await exec.schedule();
    }

    // The index of paths is a child coroutine's work, in a task of its own
    // that inherits this task's guards: resumed by the executor like any
    // coroutine, its allocations count toward g (its limits, and its usage).
    const std::uint64_t before = g.usage().allocated_bytes;
    memlimits::task child_task(memlimits::inherit);  // made here, while this task is current
    const path_index index =
        co_await exec.run_child(index_paths(exec, child, body), child_task, child.info);
    const std::uint64_t counted = g.usage().allocated_bytes - before;
    const std::uint64_t childs_own = child.used.allocated_bytes;  // its own guard's measure
    if (counted < childs_own) {
      j.problem = "the child's " + std::to_string(childs_own) +
                  " bytes are not all in the parent's guard (+" + std::to_string(counted) + ")";
    }

    char share[96];
    std::snprintf(share, sizeof share, "; the child's %.2f MiB counted in this guard (+%.2f MiB)",
                  static_cast<double>(childs_own) / (1 << 20),
                  static_cast<double>(counted) / (1 << 20));
    j.out =
        answer{log_key(requests, bytes, classes, index_key(index.distinct, index.top, index.hits)),
               with_commas(requests) + " requests, " + with_commas(bytes) + " bytes, " +
                   with_commas(classes[4] + classes[5]) + " errors, " +
                   with_commas(index.distinct) + " paths" + share};
  } catch (const memlimits::limit_reached& e) {
    if (!g.tripped()) throw;
    j.raised = e.kind();
  }
  j.finish(g);
}

// ---- the runaways ------------------------------------------------------------------

namespace {

// 32 KiB of an upload that never ends: CSV rows, as a client sends them.
std::string upload_chunk(std::uint64_t n) {
  std::string chunk;
  chunk.reserve(32 * 1024);
  rng r{n};
  while (chunk.size() + 64 < 32 * 1024) {
    chunk += std::to_string(r.below(1'000'000)) + "," + customer_name(r.below(customer_count)) +
             "," + std::to_string(1 + r.below(9)) + "," + std::to_string(99 + r.below(49'901)) +
             "\n";
  }
  return chunk;
}

}  // namespace

co<void> endless_upload(const executor& exec, job& j) {
  j.begin();
  memlimits::guard g(j.limits);
  std::uint64_t rows = 0;
  try {
    std::string carry;
    // The bound is a safety net, far past the allocation limit: 100,000
    // chunks of 32 KiB.
    for (std::uint64_t n = 0; n < 100'000; ++n) {
      if (n % 8 == 7) co_await exec.sleep_for(network_latency);
      const std::string chunk = upload_chunk(n);
      for_each_line(carry, chunk,
                    [&](std::string_view line) { rows += split(line, ',').size() == 4; });
      co_await exec.schedule();
    }
  } catch (const memlimits::limit_reached& e) {
    if (!g.tripped()) throw;
    j.raised = e.kind();
  }
  j.count = rows;
  j.finish(g);
}

co<void> session_cache(const executor& exec, job& j) {
  j.begin();
  memlimits::guard g(j.limits);
  // Never evicted: held across every co_await, and still held when the
  // memory limit stops it (its live bytes are then in the guard's usage).
  std::unordered_map<std::uint64_t, std::string> sessions;
  try {
    rng r{7};
    for (int step = 0; step < 5'000; ++step) {  // a safety net: 300 MiB
      for (int i = 0; i < 100; ++i) {
        const std::uint64_t id = r.next();
        sessions.emplace(id, "session " + std::to_string(id) + ": " + std::string(560, 'x'));
      }
      if (step % 16 == 15) {
        co_await exec.sleep_for(200us);
      } else {
        co_await exec.schedule();
      }
    }
  } catch (const memlimits::limit_reached& e) {
    if (!g.tripped()) throw;
    j.raised = e.kind();
  }
  j.count = sessions.size();
  j.finish(g);
}

co<void> slow_report(const executor& exec, job& j) {
  j.begin();
  memlimits::guard g(j.limits);
  std::uint64_t rows_done = 0;
  try {
    std::vector<std::string> rows;
    for (std::uint64_t row = 0; row < 1'000'000;
         ++row) {                    // about 17 minutes: its deadline stops it
      co_await exec.sleep_for(1ms);  // the slow upstream, for each row
      rows.push_back("row " + std::to_string(row) + ": " + std::string(40, '.'));
      ++rows_done;
      co_await exec.schedule();
    }
  } catch (const memlimits::limit_reached& e) {
    if (!g.tripped()) throw;
    j.raised = e.kind();
  }
  j.count = rows_done;
  j.finish(g);
}

co<void> live_feed(const executor& exec, job& j) {
  j.begin();
  memlimits::guard g(j.limits);
  std::uint64_t sent = 0;
  try {
    std::deque<std::string> recent;                  // the last 64 messages
    for (std::uint64_t n = 0; n < 1'000'000; ++n) {  // until cancelled
      co_await exec.sleep_for(1ms);                  // the next event
      recent.push_back("event " + std::to_string(n) + ": " + std::string(100, '~'));
      if (recent.size() > 64) recent.pop_front();
      ++sent;
      co_await exec.schedule();
    }
  } catch (const memlimits::limit_reached& e) {
    if (!g.tripped()) throw;
    j.raised = e.kind();
  }
  j.count = sent;
  j.finish(g);
}

namespace {

// The child of export_report: formats rows forever, 2,000 a batch, each
// batch dropped once written.
co<std::uint64_t> export_rows(const executor& exec, job& j) {
  j.begin();
  memlimits::guard measured(memlimits::limits{});  // measures only, as index_paths'
  std::uint64_t rows = 0;
  try {
    for (std::uint64_t batch = 0; batch < 1'000'000; ++batch) {  // a safety net: 200 GiB
      std::string text;
      for (int i = 0; i < 2'000; ++i) {
        text +=
            "export," + std::to_string(rows) + "," + customer_name(rows % customer_count) + "\n";
        ++rows;
      }
      co_await exec.schedule();
    }
  } catch (const memlimits::limit_reached& e) {
    j.count = rows;
    j.finish(measured);
    j.stopped_by = j.raised = e.kind();
    throw;  // the inherited guard's: the parent reports it
  }
  j.count = rows;
  j.finish(measured);
  co_return rows;
}

}  // namespace

co<void> export_report(const executor& exec, job& j, job& child) {
  j.begin();
  memlimits::guard g(j.limits);
  try {
    // First the ids to export, a page a step.
    std::vector<std::uint64_t> ids;
    for (int page = 0; page < 120; ++page) {
      for (std::uint64_t i = 0; i < 100; ++i)
        ids.push_back(static_cast<std::uint64_t>(page) * 100 + i);
      co_await exec.schedule();
    }
    // Then the rows, by a child coroutine in a task that inherits g.
    memlimits::task child_task(memlimits::inherit);
    j.count = co_await exec.run_child(export_rows(exec, child), child_task, child.info);
    j.out = answer{"rows=" + std::to_string(j.count), with_commas(j.count) + " rows exported"};
  } catch (const memlimits::limit_reached& e) {
    if (!g.tripped()) throw;
    j.raised = e.kind();
  }
  j.finish(g);
}

inputs make_inputs() {
  inputs in;
  make_orders(in);
  make_catalog(in);
  make_words(in);
  in.primes_answer = primes_key(published_prime_count);
  make_fibonacci(in);
  make_numbers(in);
  make_matrix(in);
  make_payload(in);
  make_log(in);
  return in;
}

}  // namespace demo
