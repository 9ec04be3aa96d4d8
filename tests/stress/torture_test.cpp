// tests/stress/torture_test.cpp — exception-safety torture of the limits
// engine (Seastar's alloc_failure_injector, with memlimits' exact allocation
// limits as the injector): for a workload on each of vector, string, map,
// unordered_map, deque, function, shared_ptr and regex, interrupt its k-th
// allocation for every k, and check that nothing leaks, that the containers
// keep their invariants (and, after a step that promises the strong
// guarantee, their exact previous state), and that std::terminate is never
// called.
//
// Method.
//  1. The workload is deterministic: it runs in numbered steps on containers
//     the test owns, each step marked with the guarantee the standard
//     library gives when one of its allocations fails. A first run records
//     a fingerprint of the containers after each step.
//  2. Under a profile at rate 1 every block is sampled (n_samples ==
//     ceil(size / 8)), so a tracker sees the workload's allocations in order:
//     sizes s_1..s_K (zero-byte requests are not blocks and count for
//     nothing). Each counts c_i = 8 * ceil(s_i / 8); prefix sums P_k.
//  3. For k = 1..K, limit_allocations(P_{k-1}) lets exactly k - 1
//     allocations through and interrupts the k-th (the exact limit). The
//     interruption is raised there unless raising would terminate: then the
//     allocation succeeds and is counted, and the raise is deferred to the
//     first later allocation where a handler would catch it, the j-th. The
//     workloads make such allocations on purpose: one step in three, and
//     some elements, end with a destructor (noexcept) that allocates a
//     string; the tracker marks those blocks, and the few standard library
//     calls in which the search defers (deferring_call). The guard must
//     return the allocations error with allocated_bytes == P_{j-1} plus the
//     blocks no limit refuses after it (malloc's, which malloc_policy::count
//     never refuses; destructors'), the tracker must have seen exactly
//     s_1..s_{j-1}, the allocations k..j-1 must all be destructors' or in
//     deferring calls, a destructor's allocation is never the one refused,
//     what escaped must be that limit_reached (or nothing, if no allocation
//     followed), the containers must hold their invariants, and, if the
//     step where it was raised is strong, equal the fingerprint before that
//     step. Some steps swallow the bad_alloc (vector's shrink_to_fit,
//     streams; stable_sort's nothrow buffer): the task stays interrupted and
//     its next allocation raises again; a basic step that swallowed it ends
//     the comparisons with the reference run. For k = K + 1 the workload
//     completes.
//  4. The same tracker counts the process's live bytes (every block is
//     sampled, and its free reported): once the containers are destroyed
//     they must be back to what they were before the iteration, exactly.
//     In the ASan build LSan checks for leaks again at exit.
//  5. The loop of 3 runs again without any profile (sampling at the
//     default rate): the exact limit then comes from the countdown's
//     deadline alone, the fast path: allocated_bytes >= P_{k-1}, and past
//     a destructor's k-th block; the summary counts the k where its usage
//     differs from the profiled run's.
// A std::terminate handler aborts the process with a message: the test
// fails if any interruption reaches it.
// GCC 12 with -fsanitize=address or thread warns that std::regex's
// std::function members "may be used uninitialized" inside <regex> (a false
// positive of its instrumented flow analysis); the plain build keeps the
// warning.
#if defined(__GNUC__) && !defined(__clang__) && \
    (defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__))
#  pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "core/sampler.hpp"
#include "memlimits/limits.hpp"
#include "memlimits/memprof.hpp"
#include "support/sequence_tracker.hpp"
#include "support/stress_common.hpp"

namespace {

namespace memprof = memlimits::memprof;
using memlimits::testing::scaled;

// ---- the tracker ----

// Set by the workloads' allocating destructors around their allocation,
// and by step() to the number of the step running: the tracker stamps each
// block with them.
thread_local bool in_allocating_destructor = false;
thread_local bool allocating_while_unwinding = false;
// Set around standard library calls whose allocations the handler search
// may find in noexcept context (it is conservative: a handler that may
// rethrow counts as a boundary).
thread_local bool in_deferring_call = false;
thread_local std::size_t current_step = 0;

struct recorded {
  std::size_t size;
  memprof::source origin;
  bool from_destructor;  // by an allocating_destructor (noexcept)
  bool unwinding;        // ... while an exception was in flight
  bool deferring_call;   // inside a deferring_call region
  std::size_t step;      // the step that made it
  friend bool operator==(const recorded&, const recorded&) = default;
};

std::uint64_t counted(std::size_t bytes) { return (static_cast<std::uint64_t>(bytes) + 7) / 8 * 8; }

// At rate 1: every live block of the process, and the recording thread's
// blocks in order, with the marks above.
inline recorded describe(const memprof::allocation& a) {
  return {a.size,           a.origin,          in_allocating_destructor, allocating_while_unwinding,
          in_deferring_call, current_step};
}
using torture_tracker = memlimits::testing::sequence_tracker<recorded>;

// ---- steps, fingerprints, texts ----

// What a step promises when one of its allocations fails: strong, the
// containers are as before the step; basic, they are valid.
enum class guarantee { strong, basic };

struct progress {
  std::size_t completed = 0;
  guarantee current = guarantee::strong;
  // A basic step swallowed an interruption (a stream, say) and went on:
  // from then on the containers may differ from the reference run's.
  bool diverged = false;
  std::vector<std::uint64_t>* snapshots = nullptr;  // the reference run's
};

// What allocating destructors write, so that their strings are made.
volatile std::size_t destructor_sink = 0;

void use_string(const std::string& s) {
  asm volatile("" : : "r"(s.data()) : "memory");  // the block escapes: not elided
  destructor_sink = destructor_sink + s.size() + static_cast<unsigned char>(s[s.size() / 2]);
}

[[gnu::noinline]] void make_string_out_of_line(std::size_t n) {
  std::string s(n, 'o');
  use_string(s);
}

// An object whose destructor (implicitly noexcept) allocates and frees a
// heap string of `n` bytes (none if n == 0): where that allocation is
// interrupted, raising would terminate, so the interruption must be
// deferred to a later allocation. Odd sizes allocate in the destructor's
// own frame, even ones one call deeper. Copyable (every copy allocates).
struct allocating_destructor {
  std::size_t n = 0;
  ~allocating_destructor() {
    if (n == 0) return;
    const bool outer = in_allocating_destructor;
    const bool outer_unwinding = allocating_while_unwinding;
    in_allocating_destructor = true;
    allocating_while_unwinding = std::uncaught_exceptions() > 0;
    if (n % 2 == 1) {
      std::string s(n, 'i');
      use_string(s);
    } else {
      make_string_out_of_line(n);
    }
    in_allocating_destructor = outer;
    allocating_while_unwinding = outer_unwinding;
  }
};
// Marks a standard library call in which an allocation may be deferred.
class deferring_call {
 public:
  deferring_call() { in_deferring_call = true; }
  ~deferring_call() { in_deferring_call = false; }
  deferring_call(const deferring_call&) = delete;
  deferring_call& operator=(const deferring_call&) = delete;
};

// Longer than the small-string buffer.
std::size_t destructor_bytes(std::size_t i) { return 24 + i % 41; }

// One step of a workload: State has `progress p` and `fingerprint()`. One
// step in three ends with an allocating destructor (at normal scope exit,
// or while the step's interruption unwinds).
template <class State, class F>
void step(State& s, guarantee g, F&& f) {
  s.p.current = g;
  current_step = s.p.completed;
  {
    const allocating_destructor at_exit{s.p.completed % 3 == 1 ? destructor_bytes(s.p.completed)
                                                                : 0};
    f();
    // Interrupted without an exception: a failure was swallowed, or an
    // allocation deferred, inside the step.
    if (g == guarantee::basic && memlimits::is_interrupted()) s.p.diverged = true;
  }
  ++s.p.completed;
  if (s.p.snapshots != nullptr) s.p.snapshots->push_back(s.fingerprint());
}

// FNV-1a over what the containers hold.
class fingerprinter {
 public:
  void add(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) byte(static_cast<unsigned char>(v >> (8 * i)));
  }
  void add(std::string_view s) {
    add(s.size());
    for (char c : s) byte(static_cast<unsigned char>(c));
  }
  std::uint64_t value() const { return h_; }

 private:
  void byte(unsigned char b) { h_ = (h_ ^ b) * 1099511628211ull; }
  std::uint64_t h_ = 14695981039346656037ull;
};
std::uint64_t hash_of(std::string_view s) {
  fingerprinter f;
  f.add(s);
  return f.value();
}

constexpr std::string_view text_prefix = "text:";
constexpr std::string_view text_suffix = ":abcdefghijklmnopqrstuvwxyz;";

// A string too long for the small-string buffer: building it allocates.
std::string text(long id) {
  std::string s(text_prefix);
  s += std::to_string(id);
  s += text_suffix;
  return s;
}

// Parses one text at the start of `s`; returns its length, 0 if none.
std::size_t parse_text(std::string_view s, long* id = nullptr) {
  if (s.substr(0, text_prefix.size()) != text_prefix) return 0;
  std::size_t i = text_prefix.size();
  const std::size_t digits_from = i;
  if (i < s.size() && s[i] == '-') ++i;
  long value = 0;
  const std::size_t first_digit = i;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') value = value * 10 + (s[i++] - '0');
  if (i == first_digit) return 0;
  if (s[digits_from] == '-') value = -value;
  if (s.substr(i, text_suffix.size()) != text_suffix) return 0;
  if (id != nullptr) *id = value;
  return i + text_suffix.size();
}
// `s` is text(id) for some id.
bool is_text(std::string_view s, long* id = nullptr) {
  const std::size_t n = parse_text(s, id);
  return n != 0 && n == s.size();
}
// `s` is a concatenation of zero or more texts.
bool is_texts(std::string_view s) {
  while (!s.empty()) {
    const std::size_t n = parse_text(s);
    if (n == 0) return false;
    s.remove_prefix(n);
  }
  return true;
}
long text_id(std::string_view s) {
  long id = 0;
  parse_text(s, &id);
  return id;
}
// Start of the j-th text (mod their number) in a concatenation, without
// allocating; the string's size if it holds none.
std::size_t nth_text(std::string_view s, std::size_t j) {
  std::size_t count = 0;
  for (std::size_t p = s.find(text_prefix); p != std::string_view::npos;
       p = s.find(text_prefix, p + 1)) {
    ++count;
  }
  if (count == 0) return s.size();
  j %= count;
  std::size_t p = s.find(text_prefix);
  while (j-- > 0) p = s.find(text_prefix, p + 1);
  return p;
}

// ---- the workloads ----
//
// Each workload is a struct with `name`, a size `n`, a `state` (the
// containers, owned by the test, with `progress p`, `fingerprint()` and
// `check()`, which states the invariants with gtest assertions), and
// `run(state&)`, which does the work in steps. Optional: static
// `check_destroyed()`, after the state is gone.

struct vector_workload {
  static constexpr const char* name = "vector";
  int n;

  struct state {
    progress p;
    std::vector<int> ints;             // only ever push_back i, then shrunk
    std::vector<std::string> strings;  // concatenations of texts
    std::vector<std::string> copy;
    std::vector<std::vector<int>> rows;  // rows[i] == vector(i % 13, i)

    std::uint64_t fingerprint() const {
      fingerprinter f;
      f.add(ints.size());
      for (int i : ints) f.add(static_cast<std::uint64_t>(i));
      for (const auto* v : {&strings, &copy}) {
        f.add(v->size());
        for (const std::string& s : *v) f.add(s);
      }
      f.add(rows.size());
      for (const auto& r : rows) {
        f.add(r.size());
        for (int x : r) f.add(static_cast<std::uint64_t>(x));
      }
      return f.value();
    }

    void check() const {
      ASSERT_EQ(static_cast<std::size_t>(ints.end() - ints.begin()), ints.size());
      ASSERT_GE(ints.capacity(), ints.size());
      for (std::size_t i = 0; i < ints.size(); ++i) ASSERT_EQ(ints[i], static_cast<int>(i));
      for (const auto* v : {&strings, &copy}) {
        ASSERT_EQ(static_cast<std::size_t>(v->end() - v->begin()), v->size());
        ASSERT_GE(v->capacity(), v->size());
        for (const std::string& s : *v) ASSERT_TRUE(is_texts(s)) << s;
      }
      for (std::size_t i = 0; i < rows.size(); ++i) {
        ASSERT_EQ(rows[i], std::vector<int>(i % 13, static_cast<int>(i))) << "row " << i;
      }
    }
  };

  void run(state& s) const {
    for (int i = 0; i < n; ++i) step(s, guarantee::strong, [&] { s.ints.push_back(i); });
    for (int i = 0; i < n; ++i) {
      step(s, guarantee::strong, [&] { s.strings.push_back(text(i)); });
    }
    for (int i = 0; i < n / 4; ++i) {
      // A single rvalue insertion: no effect if an allocation fails.
      step(s, guarantee::strong,
           [&] { s.strings.insert(s.strings.begin() + (i * 7) % s.strings.size(), text(n + i)); });
    }
    step(s, guarantee::basic, [&] { s.copy = s.strings; });  // allocate and copy
    step(s, guarantee::strong, [&] {
      std::erase_if(s.strings, [](const std::string& x) { return text_id(x) % 3 == 0; });
    });
    for (std::size_t i = 0; i < s.strings.size(); i += 5) {
      step(s, guarantee::strong, [&] { s.strings[i] += text(-static_cast<long>(i)); });
    }
    // Element-wise assignment into a larger vector: some strings grow.
    step(s, guarantee::basic, [&] { s.copy = s.strings; });
    for (int i = 0; i < n / 8; ++i) {
      step(s, guarantee::strong, [&] { s.rows.emplace_back(i % 13, i); });
    }
    // get_temporary_buffer: nothrow new, refused in an interrupted task;
    // stable_sort then sorts in place and cannot fail.
    step(s, guarantee::strong, [&] { std::stable_sort(s.strings.begin(), s.strings.end()); });
    // shrink_to_fit swallows bad_alloc: the task stays interrupted and the
    // next allocation raises again.
    step(s, guarantee::strong, [&] {
      s.ints.resize(s.ints.size() / 2);
      s.ints.shrink_to_fit();
    });
    step(s, guarantee::strong, [&] { s.strings.reserve(2 * s.strings.size() + 1); });
    step(s, guarantee::basic, [&] {
      const std::size_t m = std::min(s.copy.size(), static_cast<std::size_t>(n / 4));
      s.strings.insert(s.strings.begin() + 1, s.copy.begin(), s.copy.begin() + m);
    });
    step(s, guarantee::strong, [&] {
      std::vector<std::string> fresh(s.strings);
      s.strings.swap(fresh);
    });
  }
};

struct string_workload {
  static constexpr const char* name = "string";
  int n;

  struct state {
    progress p;
    std::string a, b, joined;  // concatenations of texts
    std::vector<std::string> parts;
    std::string streamed;  // a prefix of the parts' concatenation

    std::uint64_t fingerprint() const {
      fingerprinter f;
      f.add(a);
      f.add(b);
      f.add(joined);
      f.add(streamed);
      f.add(parts.size());
      for (const std::string& s : parts) f.add(s);
      return f.value();
    }

    void check() const {
      for (const std::string* s : {&a, &b, &joined}) {
        ASSERT_GE(s->capacity(), s->size());
        ASSERT_EQ(s->c_str()[s->size()], '\0');
        ASSERT_TRUE(is_texts(*s)) << *s;
      }
      std::string all;
      for (const std::string& s : parts) {
        ASSERT_TRUE(is_texts(s)) << s;
        all += s;
      }
      ASSERT_EQ(all.compare(0, streamed.size(), streamed), 0) << streamed;
    }
  };

  void run(state& s) const {
    for (int i = 0; i < n; ++i) step(s, guarantee::strong, [&] { s.a += text(i); });
    for (int i = 0; i < n / 4; ++i) {
      step(s, guarantee::strong, [&] { s.a.insert(nth_text(s.a, i * 3), text(-i)); });
    }
    for (int i = 0; i < n / 4; ++i) {
      step(s, guarantee::strong, [&] {
        const std::size_t at = nth_text(s.a, i * 5);
        s.a.replace(at, parse_text(std::string_view(s.a).substr(at)), text(n + i));
      });
    }
    for (int i = 0; i < n / 8; ++i) {
      step(s, guarantee::strong, [&] {
        const std::size_t at = nth_text(s.a, i * 11);
        s.a.erase(at, parse_text(std::string_view(s.a).substr(at)));
      });
    }
    step(s, guarantee::strong, [&] { s.b = s.a.substr(nth_text(s.a, n / 2)); });
    for (int i = 0; i < n / 4; ++i) {
      step(s, guarantee::strong, [&] {
        const std::size_t at = nth_text(s.a, i * 7);
        s.parts.push_back(s.a.substr(at, parse_text(std::string_view(s.a).substr(at))));
      });
    }
    step(s, guarantee::basic, [&] {
      for (const std::string& part : s.parts) s.joined += part;
    });
    // An ostream swallows the bad_alloc of its buffer (badbit) and keeps
    // what it wrote so far; the task stays interrupted and str() raises,
    // unless that fits the small-string buffer.
    step(s, guarantee::basic, [&] {
      std::ostringstream out;
      for (const std::string& part : s.parts) out << part;
      s.streamed = out.str();
    });
    // noexcept; its reserve() swallows bad_alloc, but rethrows forced_unwind
    // from its handler: the search stops there, so its allocation is
    // deferred rather than raised and swallowed.
    step(s, guarantee::strong, [&] {
      const deferring_call noexcept_region;
      s.a.shrink_to_fit();
    });
    step(s, guarantee::strong, [&] {
      s.b.reserve(2 * s.a.size());
      s.b.assign(s.a);
    });
    step(s, guarantee::strong, [&] { s.joined = s.a + s.b + s.joined; });
  }
};

struct map_workload {
  static constexpr const char* name = "map";
  int n;

  struct state {
    progress p;
    std::map<int, std::string> m, copy;  // m[k] == text(k)
    std::map<std::string, int> names;    // names[text(i)] == i

    std::uint64_t fingerprint() const {
      fingerprinter f;
      for (const auto* x : {&m, &copy}) {
        f.add(x->size());
        for (const auto& [k, v] : *x) {
          f.add(static_cast<std::uint64_t>(k));
          f.add(v);
        }
      }
      f.add(names.size());
      for (const auto& [k, v] : names) {
        f.add(k);
        f.add(static_cast<std::uint64_t>(v));
      }
      return f.value();
    }

    void check() const {
      for (const auto* x : {&m, &copy}) {
        ASSERT_EQ(static_cast<std::size_t>(std::distance(x->begin(), x->end())), x->size());
        ASSERT_EQ(static_cast<std::size_t>(std::distance(x->rbegin(), x->rend())), x->size());
        ASSERT_TRUE(std::is_sorted(x->begin(), x->end(),
                                   [](const auto& l, const auto& r) { return l.first < r.first; }));
        for (auto it = x->begin(); it != x->end(); ++it) {
          ASSERT_EQ(x->find(it->first), it);
          ASSERT_EQ(x->count(it->first), 1u);
          long id = 0;
          ASSERT_TRUE(is_text(it->second, &id)) << it->second;
          ASSERT_EQ(id, it->first);
        }
      }
      ASSERT_EQ(static_cast<std::size_t>(std::distance(names.begin(), names.end())), names.size());
      for (auto it = names.begin(); it != names.end(); ++it) {
        if (it != names.begin()) {
          ASSERT_LT(std::prev(it)->first, it->first);
        }
        ASSERT_EQ(names.find(it->first), it);
        long id = 0;
        ASSERT_TRUE(is_text(it->first, &id)) << it->first;
        ASSERT_EQ(id, it->second);
      }
    }
  };

  void run(state& s) const {
    for (int i = 0; i < n; ++i) {
      const int key = (i * 37) % (2 * n);
      step(s, guarantee::strong, [&] { s.m.emplace(key, text(key)); });
    }
    for (int i = 0; i < n / 2; ++i) {
      const int key = (i * 53) % (3 * n);
      step(s, guarantee::strong, [&] { s.m[key] = text(key); });
    }
    for (int i = 0; i < n / 4; ++i) {
      step(s, guarantee::strong, [&] { s.m.erase((i * 29) % (2 * n)); });
    }
    step(s, guarantee::basic, [&] { s.copy = s.m; });  // into an empty map
    for (int i = 0; i < n / 4; ++i) {
      step(s, guarantee::strong, [&] { s.names.insert({text(i), i}); });
    }
    step(s, guarantee::strong, [&] { s.m.erase(s.m.begin(), std::next(s.m.begin(), n / 8)); });
    step(s, guarantee::basic, [&] { s.copy = s.m; });  // reuses the old nodes
    step(s, guarantee::strong, [&] {
      std::map<int, std::string> fresh(s.m);
      s.copy.swap(fresh);
    });
    step(s, guarantee::basic, [&] {
      std::vector<std::pair<const int, std::string>> more;
      for (int i = 0; i < n / 4; ++i) more.emplace_back(4 * n + i, text(4 * n + i));
      s.m.insert(more.begin(), more.end());
    });
    // Node handles move between maps without allocating.
    step(s, guarantee::strong, [&] {
      for (int i = 0; i < n / 8; ++i) {
        auto node = s.m.extract(4 * n + i);
        if (!node.empty()) s.copy.insert(std::move(node));
      }
    });
  }
};

struct unordered_map_workload {
  static constexpr const char* name = "unordered_map";
  int n;

  struct state {
    progress p;
    std::unordered_map<int, std::string> u, copy;              // u[k] == text(k)
    std::unordered_map<std::string, std::vector<int>> groups;  // text(i % 17) -> i...

    std::uint64_t fingerprint() const {
      fingerprinter f;
      for (const auto* x : {&u, &copy}) {
        // Order-independent: the iteration order follows the buckets.
        std::uint64_t sum = 0;
        for (const auto& [k, v] : *x) sum += hash_of(v) * 31 + static_cast<std::uint64_t>(k);
        f.add(x->size());
        f.add(sum);
      }
      std::uint64_t sum = 0;
      for (const auto& [k, v] : groups) {
        fingerprinter g;
        g.add(k);
        for (int i : v) g.add(static_cast<std::uint64_t>(i));
        sum += g.value();
      }
      f.add(groups.size());
      f.add(sum);
      return f.value();
    }

    template <class Map>
    static void check_buckets(const Map& x) {
      ASSERT_EQ(static_cast<std::size_t>(std::distance(x.begin(), x.end())), x.size());
      ASSERT_GT(x.bucket_count(), 0u);
      std::size_t in_buckets = 0;
      for (std::size_t b = 0; b < x.bucket_count(); ++b) {
        for (auto it = x.begin(b); it != x.end(b); ++it) {
          ASSERT_EQ(x.bucket(it->first), b);
          ++in_buckets;
        }
      }
      ASSERT_EQ(in_buckets, x.size());
      for (auto it = x.begin(); it != x.end(); ++it) {
        ASSERT_EQ(x.find(it->first), it);  // every element findable
        ASSERT_EQ(x.count(it->first), 1u);
      }
    }

    void check() const {
      for (const auto* x : {&u, &copy}) {
        ASSERT_NO_FATAL_FAILURE(check_buckets(*x));
        for (const auto& [k, v] : *x) {
          long id = 0;
          ASSERT_TRUE(is_text(v, &id)) << v;
          ASSERT_EQ(id, k);
        }
      }
      ASSERT_NO_FATAL_FAILURE(check_buckets(groups));
      for (const auto& [k, v] : groups) {
        long id = 0;
        ASSERT_TRUE(is_text(k, &id)) << k;
        for (int i : v) ASSERT_EQ(i % 17, id);
      }
    }
  };

  void run(state& s) const {
    for (int i = 0; i < n; ++i) {
      step(s, guarantee::strong, [&] { s.u.emplace(i * 7, text(i * 7)); });  // rehashes
    }
    step(s, guarantee::strong, [&] { s.u.reserve(4 * n); });
    step(s, guarantee::strong, [&] { s.u.rehash(8 * n); });
    for (int i = 0; i < n / 4; ++i) step(s, guarantee::strong, [&] { s.u.erase(i * 21); });
    step(s, guarantee::strong, [&] { s.u.max_load_factor(0.25f); });  // rehashes
    for (int i = 0; i < n / 2; ++i) {
      // Two steps: the node (with an empty vector), then the element.
      step(s, guarantee::strong, [&] { s.groups[text(i % 17)]; });
      step(s, guarantee::strong, [&] { s.groups.find(text(i % 17))->second.push_back(i); });
    }
    step(s, guarantee::basic, [&] { s.copy = s.u; });
    for (int i = 0; i < n / 4; ++i) {
      step(s, guarantee::strong, [&] { s.u.insert_or_assign(i * 7 + 1, text(i * 7 + 1)); });
    }
    step(s, guarantee::basic, [&] { s.copy = s.u; });
    step(s, guarantee::strong, [&] {
      std::unordered_map<int, std::string> fresh(s.u);
      s.copy.swap(fresh);
    });
  }
};

struct deque_workload {
  static constexpr const char* name = "deque";
  int n;

  struct state {
    progress p;
    std::deque<std::string> d, copy;  // texts or empty strings
    std::deque<int> ints;             // ints[j] == j

    std::uint64_t fingerprint() const {
      fingerprinter f;
      for (const auto* x : {&d, &copy}) {
        f.add(x->size());
        for (const std::string& s : *x) f.add(s);
      }
      f.add(ints.size());
      for (int i : ints) f.add(static_cast<std::uint64_t>(i));
      return f.value();
    }

    void check() const {
      for (const auto* x : {&d, &copy}) {
        ASSERT_EQ(static_cast<std::size_t>(x->end() - x->begin()), x->size());
        ASSERT_EQ(static_cast<std::size_t>(std::distance(x->begin(), x->end())), x->size());
        for (std::size_t i = 0; i < x->size(); ++i) {
          ASSERT_EQ(&(*x)[i], &*(x->begin() + static_cast<std::ptrdiff_t>(i)));  // indexable
          ASSERT_TRUE((*x)[i].empty() || is_text((*x)[i])) << (*x)[i];
        }
      }
      ASSERT_EQ(static_cast<std::size_t>(ints.end() - ints.begin()), ints.size());
      for (std::size_t i = 0; i < ints.size(); ++i) ASSERT_EQ(ints[i], static_cast<int>(i));
    }
  };

  void run(state& s) const {
    for (int i = 0; i < n; ++i) {
      step(s, guarantee::strong, [&] {
        if (i % 2 == 0) {
          s.d.push_back(text(i));
        } else {
          s.d.push_front(text(i));
        }
      });
    }
    // 4 * n ints: a new 512-byte node every 128, and map growth.
    for (int i = 0; i < 4 * n; ++i) step(s, guarantee::strong, [&] { s.ints.push_back(i); });
    for (int i = 0; i < n / 4; ++i) {
      step(s, guarantee::strong, [&] {
        if (i % 2 == 0) {
          s.d.pop_front();
        } else {
          s.d.pop_back();
        }
      });
    }
    for (int i = 0; i < n / 8; ++i) {
      step(s, guarantee::basic, [&] { s.d.insert(s.d.begin() + s.d.size() / 3, text(-i)); });
    }
    step(s, guarantee::strong, [&] { s.d.resize(s.d.size() + n / 4); });  // empty strings
    step(s, guarantee::strong, [&] { s.d.shrink_to_fit(); });             // swallows bad_alloc
    step(s, guarantee::basic, [&] { s.copy = s.d; });
    for (int i = 0; i < n / 4; ++i) {
      step(s, guarantee::strong, [&] { s.copy.emplace_front(text(n + i)); });
    }
    step(s, guarantee::basic, [&] { s.copy = s.d; });  // assigns into existing elements
    step(s, guarantee::strong, [&] {
      std::deque<std::string> fresh(s.d.begin(), s.d.end());
      s.d.swap(fresh);
    });
  }
};

struct function_workload {
  static constexpr const char* name = "function";
  int n;

  // Larger than std::function's small-object buffer: stored on the heap.
  struct payload {
    std::array<long, 8> values;
  };

  struct state {
    progress p;
    // fs[i](x) == x + i for every i.
    std::vector<std::function<long(long)>> fs;
    std::function<std::string()> f, g;   // empty, or return a text
    std::function<long(long)> composed;  // empty, or sums fs

    std::uint64_t fingerprint() const {
      fingerprinter h;
      h.add(fs.size());
      for (const auto& x : fs) h.add(static_cast<std::uint64_t>(x(1)));
      h.add(f ? f() : std::string("<empty>"));
      h.add(g ? g() : std::string("<empty>"));
      h.add(composed ? static_cast<std::uint64_t>(composed(2)) : 0u);
      return h.value();
    }

    void check() const {
      for (std::size_t i = 0; i < fs.size(); ++i) {
        ASSERT_TRUE(static_cast<bool>(fs[i])) << i;
        ASSERT_EQ(fs[i](10), 10 + static_cast<long>(i)) << i;
      }
      for (const auto* x : {&f, &g}) {
        if (*x) {
          ASSERT_TRUE(is_texts((*x)()));
        }
      }
      if (composed) {
        long expected = 0;
        for (const auto& x : fs) expected += x(0);
        // composed captured a copy of fs when it was made: a prefix of fs.
        const long got = composed(0);
        ASSERT_LE(got, expected);
      }
    }
  };

  void run(state& s) const {
    for (int i = 0; i < n; ++i) {
      step(s, guarantee::strong, [&] {
        payload data{};
        data.values[3] = static_cast<long>(s.fs.size());
        s.fs.push_back([data](long x) { return x + data.values[3]; });
      });
    }
    for (int i = 0; i < n / 4; ++i) {
      step(s, guarantee::strong, [&] {
        // The captured string is copied into the function's heap storage.
        // One in two also holds an allocating destructor, run by every
        // copy's destruction inside std::function and std::vector.
        std::string name = text(static_cast<long>(s.fs.size()));
        const allocating_destructor d{i % 2 == 0 ? destructor_bytes(s.fs.size()) : 0};
        s.fs.emplace_back([name, d](long x) {
          (void)d;
          return x + text_id(name);
        });
      });
    }
    for (int i = 0; i < n / 4; ++i) {
      step(s, guarantee::strong, [&] {
        // The old target's destructor allocates inside operator=.
        s.f = [name = text(i), d = allocating_destructor{destructor_bytes(i)}] {
          (void)d;
          return name + name;
        };
      });
    }
    step(s, guarantee::strong, [&] { s.g = s.f; });
    step(s, guarantee::strong, [&] {
      s.composed = [all = s.fs](long x) {
        long sum = 0;
        for (const auto& h : all) sum += h(x);
        return sum;
      };
    });
    step(s, guarantee::strong, [&] { s.f = nullptr; });
    step(s, guarantee::strong, [&] {
      auto shared = std::make_shared<std::string>(text(n));
      s.f = [shared, data = payload{}] { return *shared; };
    });
    step(s, guarantee::strong, [&] {
      std::vector<std::function<long(long)>> fresh(s.fs);
      s.fs.swap(fresh);
    });
    step(s, guarantee::strong, [&] { s.g = std::bind(&text, static_cast<long>(n + 1)); });
  }
};

// Counts its constructions and destructions (the torture runs on one thread).
struct node {
  static inline long live = 0;
  static inline long made_negative = 0;  // with id < 0
  long id;
  std::string name;
  // One node in four allocates when destroyed: inside shared_ptr's
  // release, a vector's erase, or the catch block of a shared_ptr whose
  // control block could not be allocated.
  allocating_destructor on_destroy;
  explicit node(long i)
      : id(i), name(text(i)), on_destroy{i % 4 == 0 ? destructor_bytes(static_cast<std::size_t>(i)) : 0} {
    ++live;
    if (i < 0) ++made_negative;
  }
  ~node() { --live; }
  node(const node&) = delete;
  node& operator=(const node&) = delete;
};

struct shared_ptr_workload {
  static constexpr const char* name = "shared_ptr";
  int n;

  struct state {
    progress p;
    std::vector<std::shared_ptr<node>> owners;
    std::shared_ptr<node> a, b;
    std::shared_ptr<const std::string> alias;  // shares ownership of a node
    std::weak_ptr<node> weak;
    long deleted = 0;  // by b's custom deleters (nodes with id < 0)
    long negative_at_start = node::made_negative;

    std::uint64_t fingerprint() const {
      fingerprinter f;
      f.add(owners.size());
      for (const auto& o : owners) {
        f.add(static_cast<std::uint64_t>(o->id));
        f.add(static_cast<std::uint64_t>(o.use_count()));
      }
      for (const auto* x : {&a, &b}) {
        f.add(*x ? static_cast<std::uint64_t>((*x)->id) : 0xffffu);
        f.add(static_cast<std::uint64_t>(x->use_count()));
      }
      f.add(alias ? *alias : std::string("<none>"));
      f.add(weak.expired());
      // Not `deleted`: a failed shared_ptr(p, d) calls d(p) (checked below).
      return f.value();
    }

    void check() const {
      // use_count == the number of holders in the state, per control block.
      std::map<std::shared_ptr<const void>, long, std::owner_less<>> holders;
      for (const auto& o : owners) {
        ASSERT_NE(o, nullptr);
        ++holders[o];
      }
      if (a) ++holders[a];
      if (b) ++holders[b];
      if (alias) ++holders[alias];
      // The map holds one more reference to each.
      for (const auto& [owner, count] : holders) ASSERT_EQ(owner.use_count(), count + 1);
      for (const auto& o : owners) {
        long id = 0;
        ASSERT_TRUE(is_text(o->name, &id)) << o->name;
        ASSERT_EQ(id, o->id);
      }
      for (const auto* x : {&a, &b}) {
        if (*x) {
          ASSERT_TRUE(is_text((*x)->name));
        }
      }
      if (alias) {
        ASSERT_TRUE(is_text(*alias));
      }
      // weak observes a node iff someone in the state still owns it.
      if (auto locked = weak.lock()) {
        ASSERT_EQ(holders.count(locked), 1u);
      }
      // Every node alive is owned by the state (no leaked control block).
      ASSERT_EQ(node::live, static_cast<long>(holders.size()));
      // b's deleter ran once for every node made for b but the one it holds,
      // including those whose control block could not be allocated.
      ASSERT_EQ(deleted, node::made_negative - negative_at_start - (b ? 1 : 0));
    }
  };

  static void check_destroyed() { ASSERT_EQ(node::live, 0) << "nodes leaked or destroyed twice"; }

  void run(state& s) const {
    for (int i = 0; i < n; ++i) {
      step(s, guarantee::strong, [&] { s.owners.push_back(std::make_shared<node>(i)); });
    }
    for (int i = 0; i < n / 2; ++i) {
      // A copy of one of its own elements, across reallocations.
      step(s, guarantee::strong, [&] { s.owners.push_back(s.owners[(i * 5) % s.owners.size()]); });
    }
    for (int i = 0; i < n / 4; ++i) {
      // The control block's allocation may fail: the node is deleted.
      step(s, guarantee::strong, [&] { s.a = std::shared_ptr<node>(new node(n + i)); });
    }
    for (int i = 0; i < n / 4; ++i) {
      step(s, guarantee::strong, [&] {
        // ... and with a custom deleter, which is then called.
        s.b = std::shared_ptr<node>(new node(-1 - i), [counter = &s.deleted](node* x) {
          ++*counter;
          delete x;
        });
      });
    }
    step(s, guarantee::strong, [&] { s.weak = s.a; });
    for (int i = 0; i < n / 4; ++i) {
      step(s, guarantee::strong, [&] {
        const auto& owner = s.owners[(i * 3) % s.owners.size()];
        s.alias = std::shared_ptr<const std::string>(owner, &owner->name);
      });
    }
    step(s, guarantee::strong,
         [&] { s.a = std::allocate_shared<node>(std::allocator<node>(), 7 * n); });
    step(s, guarantee::basic, [&] {
      const std::vector<std::shared_ptr<node>> more(s.owners.begin(), s.owners.begin() + n / 4);
      s.owners.insert(s.owners.end(), more.begin(), more.end());
    });
    step(s, guarantee::strong, [&] { s.owners.erase(s.owners.begin(), s.owners.begin() + n / 8); });
    step(s, guarantee::strong, [&] {
      std::vector<std::shared_ptr<node>> fresh(s.owners);
      s.owners.swap(fresh);
    });
  }
};

struct regex_workload {
  static constexpr const char* name = "regex";
  int n;         // texts in the subject
  int compiled;  // patterns compiled, at most std::size(patterns)

  static constexpr const char* patterns[] = {
      "text:(-?[0-9]+):([a-z]+);",    "(a|b|c|d|e)+[0-9]{1,3}(x|y)?", "\\b(?:foo|bar|baz)\\b",
      "([[:alpha:]]+)([[:digit:]]*)", "(t)(e)(x)(t):([0-9]{2})",
  };
  static constexpr const char* probes[] = {"text:12:abc;", "abcde123x", "foo bar", "zz9", ""};
  // The workload's last regex.
  static std::regex last() {
    return std::regex(patterns[0], std::regex::ECMAScript | std::regex::icase);
  }

  struct state {
    progress p;
    std::string subject;  // texts and words, set once
    std::regex r;         // default, or compiled from one of the patterns
    std::smatch m;
    std::vector<std::string> found;  // substrings of subject
    std::string replaced;

    // What r does: marks, flags, and its matches on the probes.
    static std::uint64_t behaviour(const std::regex& x) {
      fingerprinter f;
      f.add(x.mark_count());
      f.add(static_cast<std::uint64_t>(x.flags()));
      for (const char* probe : probes) {
        std::cmatch found;
        const bool hit = std::regex_search(probe, found, x);
        f.add(hit);
        if (hit) f.add(found.str(0));
      }
      return f.value();
    }

    std::uint64_t fingerprint() const {
      fingerprinter f;
      f.add(subject);
      f.add(behaviour(r));
      f.add(m.ready());
      if (m.ready()) {
        f.add(m.size());
        for (std::size_t i = 0; i < m.size(); ++i) f.add(m.str(i));
      }
      f.add(found.size());
      for (const std::string& s : found) f.add(s);
      f.add(replaced);
      return f.value();
    }

    // The behaviours r may have. Built on first use, by the reference run,
    // so that it is not counted as a leak of an interrupted run.
    static const std::vector<std::uint64_t>& known_behaviours() {
      static const std::vector<std::uint64_t> known = [] {
        std::vector<std::uint64_t> all{behaviour(std::regex()), behaviour(last())};
        for (const char* pattern : patterns) all.push_back(behaviour(std::regex(pattern)));
        return all;
      }();
      return known;
    }

    void check() const {
      // r behaves as a default regex or one compiled from a pattern.
      const std::vector<std::uint64_t>& known = known_behaviours();
      ASSERT_NE(std::find(known.begin(), known.end(), behaviour(r)), known.end())
          << "the regex is neither default nor one of the patterns";
      if (m.ready() && !m.empty()) {
        for (std::size_t i = 0; i < m.size(); ++i) {
          if (!m[i].matched) continue;
          ASSERT_LE(subject.begin(), m[i].first);
          ASSERT_LE(m[i].first, m[i].second);
          ASSERT_LE(m[i].second, subject.end());
        }
      }
      for (const std::string& s : found) {
        ASSERT_NE(subject.find(s), std::string::npos) << s;
      }
    }
  };

  void run(state& s) const {
    step(s, guarantee::strong, [&] {
      std::string subject;
      for (int i = 0; i < n; ++i) {
        subject += text(i * 13);
        subject += i % 3 == 0 ? " foo abc12x " : " bar zz ";
      }
      s.subject = std::move(subject);
    });
    for (int index = 0; index < compiled; ++index) {
      const char* pattern = patterns[index];
      // assign(string): compiles a new regex, then swaps.
      step(s, guarantee::strong, [&] { s.r.assign(pattern); });
      step(s, guarantee::basic, [&] { std::regex_search(s.subject, s.m, s.r); });
      step(s, guarantee::strong, [&] {
        if (s.m.size() > 1 && s.m[1].matched) s.found.push_back(s.m.str(1));
      });
      step(s, guarantee::basic, [&] {
        int taken = 0;
        for (std::sregex_iterator it(s.subject.begin(), s.subject.end(), s.r), end;
             it != end && taken < 6; ++it, ++taken) {
          s.found.push_back(it->str());
        }
      });
      if (index % 2 == 0) {
        step(s, guarantee::strong,
             [&] { s.replaced = std::regex_replace(s.subject, s.r, "[$1]"); });
      }
    }
    step(s, guarantee::strong, [&] { s.r = last(); });
  }
};

// ---- the driver ----

template <class W>
class torture {
 public:
  using state = typename W::state;

  explicit torture(W workload) : workload_(workload) {}

  void run() {
    // First use of the standard library's lazily built parts (locale
    // facets, ...) happens here, not in the recorded runs.
    {
      state s;
      workload_.run(s);
    }
    ASSERT_NO_FATAL_FAILURE(reference());
    {
      torture_tracker tracker(std::size_t{1} << 16, &describe);
      memprof::profile profile(tracker, 1.0);
      ASSERT_NO_FATAL_FAILURE(record(tracker));
      // Allocated before the leak checks start counting.
      profiled_bytes_.assign(sizes_.size() + 2, 0);
      deferred_steps_.reserve(sizes_.size() + 1);
      for (std::size_t k = 1; k <= sizes_.size() + 1; ++k) {
        interrupt(k, &tracker);
        if (::testing::Test::HasFailure()) return;
      }
    }
    // Without the profile: the limit comes from the countdown's deadline.
    // (Seeded: the samples the default rate draws meanwhile do not change
    // an exact limit, but a failure should be reproducible.)
    memlimits::core::reseed(0x70a7);
    for (std::size_t k = 1; k <= sizes_.size() + 1; ++k) {
      interrupt(k, nullptr);
      if (::testing::Test::HasFailure()) return;
    }
    const auto in_destructors = static_cast<std::size_t>(std::count_if(
        sizes_.begin(), sizes_.end(), [](const recorded& b) { return b.from_destructor; }));
    ASSERT_GT(in_destructors, 0u) << W::name << ": no allocation in a destructor was recorded";
    std::sort(deferred_steps_.begin(), deferred_steps_.end());
    deferred_steps_.erase(std::unique(deferred_steps_.begin(), deferred_steps_.end()),
                          deferred_steps_.end());
    std::string other_steps;
    for (std::size_t i = 0; i < deferred_steps_.size() && i < 8; ++i) {
      other_steps += (i == 0 ? "" : ",") + std::to_string(deferred_steps_[i]);
    }
    if (deferred_steps_.size() > 8) other_steps += ",...";
    std::printf(
        "[ torture  ] %s: %zu steps, %zu allocations (%llu bytes, %zu in destructors), each "
        "interrupted twice; %zu times in a strong step (state unchanged), %zu times swallowed "
        "to the end; %zu k deferred (%zu from a destructor, %zu elsewhere in steps {%s}; %zu "
        "with no raise after); %zu k where the unprofiled run's usage differs\n",
        W::name, steps_, sizes_.size(), static_cast<unsigned long long>(prefix_.back()),
        in_destructors, strong_checked_, swallowed_, deferred_, deferred_from_destructor_,
        deferred_ - deferred_from_destructor_, other_steps.c_str(), deferred_past_end_,
        differs_from_profiled_);
  }

 private:
  // The fingerprints after each step, in an uninterrupted run.
  void reference() {
    state s;
    snapshots_.push_back(s.fingerprint());
    s.p.snapshots = &snapshots_;
    workload_.run(s);
    s.p.snapshots = nullptr;
    steps_ = snapshots_.size() - 1;
    ASSERT_EQ(s.p.completed, steps_);
    ASSERT_NO_FATAL_FAILURE(s.check());
  }

  std::vector<recorded> record_once(torture_tracker& tracker) {
    state s;
    auto r = memlimits::limit_allocations(static_cast<std::uint64_t>(INT64_MAX), [&] {
      torture_tracker::recording on(tracker);
      workload_.run(s);
    });
    EXPECT_TRUE(r.has_value());
    EXPECT_FALSE(tracker.overflowed());
    std::vector<recorded> blocks = tracker.copy();
    std::uint64_t total = 0;
    for (const recorded& b : blocks) total += counted(b.size);
    EXPECT_EQ(r.usage().allocated_bytes, total) << "usage() differs from the blocks requested";
    return blocks;
  }

  // The workload's allocations, in order; twice, to check it is deterministic.
  void record(torture_tracker& tracker) {
    sizes_ = record_once(tracker);
    ASSERT_FALSE(::testing::Test::HasFailure());
    const std::vector<recorded> again = record_once(tracker);
    ASSERT_FALSE(::testing::Test::HasFailure());
    ASSERT_EQ(sizes_.size(), again.size()) << W::name << ": the workload is not deterministic";
    ASSERT_TRUE(sizes_ == again) << W::name << ": the workload is not deterministic";
    ASSERT_GE(sizes_.size(), 100u) << W::name << ": too small a workload";
    prefix_.assign(1, 0);
    for (const recorded& b : sizes_) {
      prefix_.push_back(prefix_.back() + counted(b.size));
      has_malloc_ = has_malloc_ || b.origin == memprof::source::malloc;
    }
  }

  // Runs the workload with its k-th allocation interrupted (k = K + 1: none).
  //
  // The limit trips at the k-th allocation. The first allocation from there
  // that may be refused (not malloc's) is the "target"; it is refused unless
  // a throw from it would terminate (an allocating destructor's, or one the
  // handler search finds in noexcept context): then it succeeds, is counted,
  // and the interruption is deferred to a later allocation, the j-th, the
  // first that is refused. With the tracker, the blocks seen are the
  // reference run's s_1..s_{j-1} in order, then only blocks that no limit
  // refuses: malloc's, allocating destructors' (deferred again, or run
  // while the interruption unwinds) and those of deferring calls (after an
  // interruption swallowed by an earlier step); allocated_bytes is P_{j-1}
  // plus those.
  void interrupt(std::size_t k, torture_tracker* tracker) {
    const std::size_t total = sizes_.size();
    const std::uint64_t limit = prefix_[k - 1];
    const bool completes = k == total + 1;
    // 0-based index of the target (total if none).
    std::size_t target = k - 1;
    while (target < total && sizes_[target].origin == memprof::source::malloc) ++target;
    const bool target_in_destructor = target < total && sizes_[target].from_destructor;
    const auto where = [&] {
      std::string text = std::string(W::name) + ", allocation k = " + std::to_string(k) + " of " +
                         std::to_string(total) + (tracker != nullptr ? " (rate-1 profile)" : "");
      if (!completes) {
        text += ", " + std::to_string(sizes_[k - 1].size) + " bytes in step " +
                std::to_string(sizes_[k - 1].step);
        if (sizes_[k - 1].from_destructor) text += " (an allocating destructor's)";
      }
      return text;
    };
    const std::int64_t live_bytes = tracker != nullptr ? tracker->live_bytes() : 0;
    const std::int64_t live_blocks = tracker != nullptr ? tracker->live_blocks() : 0;
    {
      state s;
      memlimits::result<void> r = memlimits::limit_allocations(limit, [&] {
        std::optional<torture_tracker::recording> on;
        if (tracker != nullptr) on.emplace(*tracker);
        workload_.run(s);
      });

      std::uint64_t extra = 0;
      if (tracker != nullptr) {
        const std::size_t seen = tracker->count();
        ASSERT_FALSE(tracker->overflowed()) << where();
        // j - 1: the blocks seen as in the reference run, in order.
        std::size_t same = 0;
        while (same < std::min(seen, total) && tracker->at(same) == sizes_[same]) ++same;
        ASSERT_GE(same, std::min(k - 1, total))
            << where() << ": block " << same << " differs from the reference run's";
        for (std::size_t i = same; i < seen; ++i) {
          const recorded& b = tracker->at(i);
          ASSERT_TRUE(b.origin == memprof::source::malloc || b.from_destructor ||
                      b.deferring_call)
              << where() << ": block " << i << " of " << b.size << " bytes (step " << b.step
              << ") was allocated after the interruption was raised at allocation " << same + 1;
          extra += counted(b.size);
        }
        if (!completes) {
          if (target_in_destructor) {
            ASSERT_GT(same, target)
                << where() << ": an allocation in a destructor was refused (raising terminates)";
          }
          if (same < total) {
            ASSERT_FALSE(sizes_[same].from_destructor)
                << where() << ": allocation " << same + 1 << " refused in a destructor";
          }
          // Only allocations that raising would terminate from are deferred.
          for (std::size_t i = target; i < same; ++i) {
            const recorded& b = sizes_[i];
            ASSERT_TRUE(b.origin == memprof::source::malloc || b.from_destructor ||
                        b.deferring_call)
                << where() << ": allocation " << i + 1 << " of " << b.size << " bytes (step "
                << b.step << ") was deferred, outside destructors and deferring calls";
          }
          if (same > target) {
            ++deferred_;
            if (target_in_destructor) {
              ++deferred_from_destructor_;
            } else {
              deferred_steps_.push_back(sizes_[target].step);
            }
            if (same == total) ++deferred_past_end_;
          }
        }
        ASSERT_EQ(r.usage().allocated_bytes, prefix_[same] + extra)
            << where() << ": usage() differs from the blocks seen";
        profiled_bytes_[k] = r.usage().allocated_bytes;
      } else if (r.usage().allocated_bytes != profiled_bytes_[k]) {
        // Informational: the two runs are expected to defer alike.
        ++differs_from_profiled_;
      }

      if (completes) {
        ASSERT_TRUE(r.has_value()) << where() << ": interrupted at its own total";
        ASSERT_EQ(r.usage().allocated_bytes, limit) << where();
        ASSERT_EQ(s.p.completed, steps_) << where();
        ASSERT_NO_FATAL_FAILURE(s.check()) << where();
        ASSERT_EQ(s.fingerprint(), snapshots_.back()) << where();
      } else {
        ASSERT_FALSE(r.has_value()) << where() << ": not interrupted";
        EXPECT_EQ(r.error().kind(), memlimits::limit_kind::allocations) << where();
        ASSERT_GE(r.usage().allocated_bytes, limit) << where();
        if (target_in_destructor) {
          // The destructor's block was allocated and counted.
          ASSERT_GE(r.usage().allocated_bytes, prefix_[target + 1])
              << where() << ": an allocation in a destructor was refused";
        }
        const std::exception_ptr escaped = r.error().exception();
        if (escaped != nullptr) {
          try {
            std::rethrow_exception(escaped);
          } catch (const memlimits::limit_reached& e) {
            EXPECT_EQ(e.kind(), memlimits::limit_kind::allocations) << where();
          } catch (const std::exception& e) {
            ADD_FAILURE() << where() << ": the task let escape " << e.what();
          } catch (...) {
            ADD_FAILURE() << where() << ": the task let escape a foreign exception";
          }
          ASSERT_LT(s.p.completed, steps_) << where();
          ASSERT_NO_FATAL_FAILURE(s.check())
              << where() << ", in step " << s.p.completed << " of " << steps_;
          if (s.p.current == guarantee::strong && !s.p.diverged) {
            ++strong_checked_;
            ASSERT_EQ(s.fingerprint(), snapshots_[s.p.completed])
                << where() << ": step " << s.p.completed
                << " promises the strong guarantee but changed the containers";
          }
        } else {
          // The workload swallowed every interruption (shrink_to_fit,
          // streams) or none followed a deferred one, and returned: the
          // guard still reports its trip, by its own flag.
          ++swallowed_;
          ASSERT_EQ(s.p.completed, steps_) << where();
          ASSERT_NO_FATAL_FAILURE(s.check()) << where();
        }
      }
    }
    if constexpr (requires { W::check_destroyed(); }) {
      ASSERT_NO_FATAL_FAILURE(W::check_destroyed()) << where();
    }
    if (tracker != nullptr) {
      ASSERT_EQ(tracker->live_blocks(), live_blocks) << where() << ": blocks leaked";
      ASSERT_EQ(tracker->live_bytes(), live_bytes) << where() << ": bytes leaked";
    }
  }

  W workload_;
  std::vector<std::uint64_t> snapshots_;
  std::size_t steps_ = 0;
  std::vector<recorded> sizes_;
  std::vector<std::uint64_t> prefix_;
  bool has_malloc_ = false;
  std::size_t strong_checked_ = 0;
  std::size_t swallowed_ = 0;
  // Of the rate-1 run's interruptions:
  std::size_t deferred_ = 0;                  // the target allocated, the raise later
  std::size_t deferred_from_destructor_ = 0;  // ... the target an allocating destructor's
  std::size_t deferred_past_end_ = 0;         // ... and no allocation refused after it
  std::vector<std::size_t> deferred_steps_;   // where the others were
  std::vector<std::uint64_t> profiled_bytes_;  // allocated_bytes by k, rate-1 run
  std::size_t differs_from_profiled_ = 0;     // k where the unprofiled run differs
};

template <class W>
void torture_workload(W workload) {
  torture<W>(workload).run();
}

class Torture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { memlimits::testing::prepare_stress_process(); }
};

TEST_F(Torture, Vector) { torture_workload(vector_workload{static_cast<int>(scaled(300, 150))}); }
TEST_F(Torture, String) { torture_workload(string_workload{static_cast<int>(scaled(300, 150))}); }
TEST_F(Torture, Map) { torture_workload(map_workload{static_cast<int>(scaled(300, 150))}); }
TEST_F(Torture, UnorderedMap) {
  torture_workload(unordered_map_workload{static_cast<int>(scaled(300, 150))});
}
TEST_F(Torture, Deque) { torture_workload(deque_workload{static_cast<int>(scaled(300, 150))}); }
TEST_F(Torture, Function) {
  torture_workload(function_workload{static_cast<int>(scaled(300, 150))});
}
TEST_F(Torture, SharedPtr) {
  torture_workload(shared_ptr_workload{static_cast<int>(scaled(300, 150))});
}
TEST_F(Torture, Regex) {
  torture_workload(regex_workload{static_cast<int>(scaled(20, 6)), static_cast<int>(scaled(5, 2))});
}

}  // namespace
