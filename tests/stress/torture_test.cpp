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
//     allocations through and interrupts the k-th (the exact limit): the
//     guard must return the allocations error with allocated_bytes ==
//     P_{k-1}, the tracker must have seen exactly s_1..s_{k-1} (then only
//     malloc blocks, which malloc_policy::count never refuses), what
//     escaped must be that limit_reached, the containers must hold their
//     invariants, and, if the step that was interrupted is strong, equal
//     the fingerprint before that step. Some steps swallow the bad_alloc
//     (shrink_to_fit, streams; stable_sort's nothrow buffer): the task stays
//     interrupted and its next allocation raises again; a basic step that
//     swallowed it ends the comparisons with the reference run. For
//     k = K + 1 the workload completes.
//  4. The same tracker counts the process's live bytes (every block is
//     sampled, and its free reported): once the containers are destroyed
//     they must be back to what they were before the iteration, exactly.
//     In the ASan build LSan checks for leaks again at exit.
//  5. The loop of 3 runs again without any profile (sampling at the
//     default rate): the exact limit then comes from the countdown's
//     deadline alone, the fast path, and must be as exact.
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
#include "support/stress_common.hpp"

namespace {

namespace memprof = memlimits::memprof;
using memlimits::testing::scaled;

// ---- the tracker ----

struct recorded {
  std::size_t size;
  memprof::source origin;
  friend bool operator==(const recorded&, const recorded&) = default;
};

std::uint64_t counted(std::size_t bytes) { return (static_cast<std::uint64_t>(bytes) + 7) / 8 * 8; }

// At rate 1: counts every live block of the process (bytes and blocks), and,
// while recording, appends the calling thread's blocks to storage reserved
// up front. Its callbacks never allocate.
class torture_tracker final : public memprof::tracker {
 public:
  explicit torture_tracker(std::size_t capacity)
      : blocks_(std::make_unique<recorded[]>(capacity)), capacity_(capacity) {}

  void* on_alloc(const memprof::allocation& a) override {
    live_bytes_.fetch_add(static_cast<std::int64_t>(a.size), std::memory_order_relaxed);
    live_blocks_.fetch_add(1, std::memory_order_relaxed);
    if (recording_.load(std::memory_order_relaxed) && std::this_thread::get_id() == owner_) {
      if (count_ < capacity_) blocks_[count_] = {a.size, a.origin};
      ++count_;
    }
    // size >= 1 (the block has a sample): the cookie is never null.
    return reinterpret_cast<void*>(static_cast<std::uintptr_t>(a.size));
  }
  void on_free(void* cookie) noexcept override {
    live_bytes_.fetch_sub(static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(cookie)),
                          std::memory_order_relaxed);
    live_blocks_.fetch_sub(1, std::memory_order_relaxed);
  }

  // RAII: records the calling thread's blocks while alive, from the start.
  class recording {
   public:
    explicit recording(torture_tracker& t) : t_(t) {
      t_.owner_ = std::this_thread::get_id();
      t_.count_ = 0;
      t_.recording_.store(true, std::memory_order_relaxed);
    }
    ~recording() { t_.recording_.store(false, std::memory_order_relaxed); }
    recording(const recording&) = delete;
    recording& operator=(const recording&) = delete;

   private:
    torture_tracker& t_;
  };

  std::size_t count() const { return count_; }
  bool overflowed() const { return count_ > capacity_; }
  const recorded& at(std::size_t i) const { return blocks_[i]; }
  std::vector<recorded> copy() const {
    return {blocks_.get(), blocks_.get() + std::min(count_, capacity_)};
  }
  std::int64_t live_bytes() const { return live_bytes_.load(std::memory_order_relaxed); }
  std::int64_t live_blocks() const { return live_blocks_.load(std::memory_order_relaxed); }

 private:
  std::unique_ptr<recorded[]> blocks_;
  std::size_t capacity_;
  std::size_t count_ = 0;
  std::thread::id owner_;
  std::atomic<bool> recording_{false};
  std::atomic<std::int64_t> live_bytes_{0};
  std::atomic<std::int64_t> live_blocks_{0};
};

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

// One step of a workload: State has `progress p` and `fingerprint()`.
template <class State, class F>
void step(State& s, guarantee g, F&& f) {
  s.p.current = g;
  f();
  if (g == guarantee::basic && memlimits::is_interrupted()) s.p.diverged = true;
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
    step(s, guarantee::strong, [&] { s.a.shrink_to_fit(); });  // swallows bad_alloc
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
        std::string name = text(static_cast<long>(s.fs.size()));
        s.fs.emplace_back([name](long x) { return x + text_id(name); });
      });
    }
    for (int i = 0; i < n / 4; ++i) {
      step(s, guarantee::strong, [&] { s.f = [name = text(i)] { return name + name; }; });
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
  explicit node(long i) : id(i), name(text(i)) {
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
      torture_tracker tracker(std::size_t{1} << 16);
      memprof::profile profile(tracker, 1.0);
      ASSERT_NO_FATAL_FAILURE(record(tracker));
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
    std::printf(
        "[ torture  ] %s: %zu steps, %zu allocations (%llu bytes), each interrupted twice; "
        "%zu times in a strong step (state unchanged), %zu times swallowed to the end\n",
        W::name, steps_, sizes_.size(), static_cast<unsigned long long>(prefix_.back()),
        strong_checked_, swallowed_);
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
  void interrupt(std::size_t k, torture_tracker* tracker) {
    const std::size_t total = sizes_.size();
    const std::uint64_t limit = prefix_[k - 1];
    const bool completes = k == total + 1;
    const auto where = [&] {
      std::string text = std::string(W::name) + ", allocation k = " + std::to_string(k) + " of " +
                         std::to_string(total) + (tracker != nullptr ? " (rate-1 profile)" : "");
      if (!completes) text += ", " + std::to_string(sizes_[k - 1].size) + " bytes";
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

      // What the tracker saw: the first k - 1 blocks, then only malloc
      // blocks (malloc_policy::count never fails because of a limit).
      std::uint64_t extra = 0;
      if (tracker != nullptr) {
        const std::size_t seen = tracker->count();
        ASSERT_FALSE(tracker->overflowed()) << where();
        ASSERT_GE(seen, std::min(k - 1, total)) << where();
        for (std::size_t i = 0; i < std::min(k - 1, total); ++i) {
          ASSERT_EQ(tracker->at(i).size, sizes_[i].size) << where() << ": block " << i;
        }
        for (std::size_t i = k - 1; i < seen; ++i) {
          ASSERT_EQ(tracker->at(i).origin, memprof::source::malloc)
              << where() << ": block " << i << " of " << tracker->at(i).size
              << " bytes was allocated after the interruption";
          extra += counted(tracker->at(i).size);
        }
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
        if (tracker != nullptr || !has_malloc_) {
          ASSERT_EQ(r.usage().allocated_bytes, limit + extra)
              << where() << ": the interrupted allocation is not the k-th";
        } else {
          ASSERT_GE(r.usage().allocated_bytes, limit) << where();
        }
        ASSERT_LE(r.usage().allocated_bytes - extra, limit) << where();
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
          // streams) and returned: the guard still reports its trip.
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
