// workloads.hpp — the real work that the worker_pool demo's jobs do: a CSV
// parser, a JSON parser, sorting, word and session maps, URL deduplication,
// a proof-of-work search, hash joins; and the deterministic inputs they are
// fed, with the answers a correct run must give. Nothing here knows about
// memlimits: this is ordinary code, that a limit guard runs unchanged.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace demo {

// ---- plumbing --------------------------------------------------------------

// splitmix64: small, fast, and the same sequence on every platform.
class random_numbers {
 public:
  explicit random_numbers(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  std::uint64_t below(std::uint64_t n) { return next() % n; }

 private:
  std::uint64_t state_;
};

// FNV-1a, and a combiner for answers made of several numbers.
std::uint64_t fnv1a(std::string_view text, std::uint64_t h = 14695981039346656037ull);
std::uint64_t combine(std::uint64_t seed, std::uint64_t value);

// How far a job got, readable from any thread while it runs (the progress
// line) and after it was stopped ("held 412,000 rows"). `cap` is the demo's
// own safety net: a runaway job that memlimits did not stop gives up there
// with safety_cap_reached, so that a failure is reported, not an exhausted
// machine.
struct progress {
  std::atomic<std::uint64_t> items{0};
  std::uint64_t cap = std::numeric_limits<std::uint64_t>::max();
  void advance(std::uint64_t n = 1);
};
struct safety_cap_reached : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Text read chunk by chunk, as from a file or a socket; an empty chunk is
// the end of the input.
class chunk_source {
 public:
  virtual ~chunk_source() = default;
  virtual std::string_view next() = 0;
};

// A text held in memory, handed out in fixed-size slices.
class text_chunks final : public chunk_source {
 public:
  explicit text_chunks(std::string_view text, std::size_t chunk_size = 64 * 1024)
      : text_(text), chunk_size_(chunk_size) {}
  std::string_view next() override;

 private:
  std::string_view text_;
  std::size_t chunk_size_;
};

// An input that never ends: produce(buffer) writes the next piece each time
// (a client that keeps sending, a log that keeps growing).
class endless_chunks final : public chunk_source {
 public:
  explicit endless_chunks(std::function<void(std::string&)> produce)
      : produce_(std::move(produce)) {}
  std::string_view next() override;

 private:
  std::function<void(std::string&)> produce_;
  std::string buffer_;
};

// ---- CSV: orders -----------------------------------------------------------

struct order {
  std::uint64_t id = 0;
  std::string customer;
  std::string product;
  std::uint32_t quantity = 0;
  std::uint64_t price_cents = 0;
};

// Appends the CSV line of order number `id` (deterministic in `id`), and
// returns its amount, quantity * price.
std::uint64_t append_order_line(std::string& out, std::uint64_t id, std::uint64_t customers);
inline constexpr std::string_view orders_header = "id,customer,product,quantity,price_cents\n";

// A CSV upload that never ends: the header, then order after order.
endless_chunks endless_orders_csv(std::uint64_t customers);

// Parses "id,customer,product,quantity,price_cents" lines (after the
// header); std::runtime_error on a malformed line. Counts rows in `seen`.
std::vector<order> parse_orders(chunk_source& in, progress& seen);

// ---- JSON ------------------------------------------------------------------

// A document as a flat array of nodes in document order, each knowing the
// index one past its last descendant (`end`): a tree of any depth is built,
// walked and freed without recursion. An object's children alternate
// key (a string node), value.
struct json_node {
  enum class type : std::uint8_t { null, boolean, number, string, array, object };
  type kind = type::null;
  bool boolean = false;
  double number = 0;
  std::string text;
  std::uint32_t end = 0;
};
struct json_document {
  std::vector<json_node> nodes;
};

// Iterative, so that hostile nesting cannot overflow the stack; counts
// nodes in `seen`. std::runtime_error on malformed input.
json_document parse_json(chunk_source& in, progress& seen);

// A document nested without end: {"child":[{"child":[{"child":[...
endless_chunks endless_nested_json();

// ---- fixtures: the inputs, built before any guard, with their answers -----

struct catalog_answer {
  std::uint64_t items = 0;
  std::uint64_t in_stock = 0;
  std::uint64_t in_stock_value_cents = 0;
};
struct words_answer {
  std::uint64_t total = 0;
  std::uint64_t distinct = 0;
  std::uint64_t most_frequent = 0;  // occurrences of the most frequent word
};
struct customer {
  std::string name;  // the key of the orders' customer column
  std::string region;
};

struct fixtures {
  std::uint64_t customer_count = 0;
  std::string orders_csv;
  std::uint64_t order_count = 0;
  std::uint64_t revenue_cents = 0;
  std::vector<customer> customers;
  std::vector<std::string> region_names;

  std::string catalog_json;
  catalog_answer catalog;

  std::vector<std::string> words_to_sort;
  std::uint64_t sorted_distinct = 0;
  std::uint64_t sorted_checksum = 0;  // of the distinct words in order

  std::string text;  // words separated by spaces
  words_answer text_words;

  std::vector<std::string> urls;
  std::uint64_t distinct_urls = 0;
};

fixtures make_fixtures();

// ---- the jobs' work --------------------------------------------------------
// Each returns what the job computed; the demo compares it with the fixture.

struct orders_total {
  std::uint64_t rows = 0;
  std::uint64_t revenue_cents = 0;
};
orders_total total_orders(chunk_source& csv, progress& seen);

catalog_answer summarize_catalog(chunk_source& json, progress& seen);

struct sorted_words {
  std::uint64_t distinct = 0;
  std::uint64_t checksum = 0;
};
sorted_words sort_words(const std::vector<std::string>& words, progress& seen);
// The reference answer, by another route (an ordered set).
sorted_words sort_words_reference(const std::vector<std::string>& words);

words_answer index_words(std::string_view text, progress& seen);
std::uint64_t count_distinct_urls(const std::vector<std::string>& urls, progress& seen);

// Region -> revenue by a hash join of the orders with the customers.
struct region_revenue {
  std::uint64_t regions = 0;
  std::uint64_t revenue_cents = 0;
};
region_revenue revenue_by_region(const fixtures& f, progress& seen);

// ---- runaway work: correct code, fed or written so that it never stops ----

// A leaderboard kept sorted as it grows: each batch of scores is sorted and
// merged into a new, larger vector.
void keep_sorted_leaderboard(progress& seen);
// A session cache that is never evicted.
void cache_sessions_forever(progress& seen);
// A proof-of-work search for a nonce whose hash has 60 leading zero bits:
// about 2^60 candidates, each one a new string.
std::uint64_t search_nonce(progress& seen);
// Joins every order with every customer of the same region (the wrong
// key): the output grows as orders x customers.
std::uint64_t join_on_region(const fixtures& f, progress& seen);

}  // namespace demo
