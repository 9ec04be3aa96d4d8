// handlers.hpp — the coroutines of the coroutines example and what they are
// checked against: a job per coroutine (its name, its limits, how it must
// end, and how it did end), the inputs with the answers worked out from them
// beforehand, and the request handlers. Each handler is a coroutine that
// holds a memlimits::guard in its frame across a few hundred co_awaits.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "executor.hpp"
#include "memlimits/memlimits.hpp"

namespace demo {

// What a good handler computed: `key` is compared with the answer worked out
// from its input beforehand; `text` says it in words.
struct answer {
  std::string key;
  std::string text;
};

// One coroutine: what it is, how it must end, and how it ended.
struct job {
  job(std::string name, std::string work, std::string guard_text, memlimits::limits limits,
      std::optional<memlimits::limit_kind> must_stop_by);

  const std::string name;
  const std::string work;        // what it does, in a few words
  const std::string guard_text;  // its guard, in a few words
  const memlimits::limits limits;
  // Set: a runaway, which must be stopped by this limit. Unset: a good one,
  // which must end with the answer `expected`.
  const std::optional<memlimits::limit_kind> must_stop_by;
  std::string expected;
  // A top-level coroutine's task (a child's task is made by its parent,
  // inside the parent's coroutine, and lives in the parent's frame).
  std::optional<memlimits::task> task;
  coroutine_info info;  // the executor's counters

  // Written by the coroutine (nothing that allocates between a trip and
  // finish()), read once it has ended.
  clock_type::time_point started{}, ended_at{};
  std::atomic<bool> ended{false};  // set last, by finish()
  std::optional<memlimits::limit_kind>
      stopped_by;  // its guard's error (a child: the limit that reached it)
  std::optional<memlimits::limit_kind> raised;  // the kind of the limit_reached it caught
  std::optional<answer> out;                    // a good one's answer
  std::uint64_t count = 0;                      // a runaway's progress, in its own unit
  std::string problem;                          // a self-check that failed, or what escaped

  memlimits::usage used{};

  void begin() noexcept { started = clock_type::now(); }
  // Exits the guard first (before anything that allocates: until then, the
  // task of a tripped guard is interrupted at every allocation), then
  // records its error and usage.
  void finish(memlimits::guard& g) noexcept;
  bool as_expected() const;
};

// The requests, built before any guard is entered, and the answers worked
// out from what they were generated from (never by the handlers' code).
struct inputs {
  std::string orders_csv;              // 20,000 orders
  std::string catalog_ndjson;          // 4,000 items, one JSON object a line
  std::string text;                    // 60,000 words
  std::vector<std::uint32_t> numbers;  // 200,000, to sort
  std::vector<unsigned char> payload;  // 240,000 bytes, to base64
  std::string access_log;              // 12,000 requests

  std::string orders_answer, catalog_answer, words_answer, primes_answer, fibonacci_answer,
      sort_answer, matrix_answer, base64_answer, log_answer, log_index_answer;
};
inputs make_inputs();

// The good handlers: each ends with an answer.
co<void> orders_csv(const executor& exec, job& j, std::string_view body);
co<void> catalog_json(const executor& exec, job& j, std::string_view body);
co<void> word_index(const executor& exec, job& j, std::string_view body);
co<void> prime_count(const executor& exec, job& j);
co<void> fibonacci(const executor& exec, job& j);
co<void> sort_merge(const executor& exec, job& j, const std::vector<std::uint32_t>& numbers);
co<void> matrix_product(const executor& exec, job& j);
co<void> base64_roundtrip(const executor& exec, job& j, const std::vector<unsigned char>& payload);
// Parses the log, then indexes its paths in a child coroutine whose task
// inherits this coroutine's guard (child: the child's job).
co<void> log_stats(const executor& exec, job& j, job& child, std::string_view body);

// The runaway ones, each stopped by one limit.
co<void> endless_upload(const executor& exec, job& j);  // allocations
co<void> session_cache(const executor& exec, job& j);   // memory
co<void> slow_report(const executor& exec, job& j);     // its deadline (token)
co<void> live_feed(const executor& exec, job& j);       // a token set from main
// Exports rows through a child coroutine that never stops: the child's
// allocations count toward this coroutine's guard, which stops both.
co<void> export_report(const executor& exec, job& j, job& child);

}  // namespace demo
