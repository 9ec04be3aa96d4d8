// memlimits/limits.hpp — limit guards: run a task under an allocation,
// memory, global-memory or token limit, and get its result or the reason it
// was stopped.
//
//   using namespace memlimits::literals;
//   memlimits::result<int> r = memlimits::limit_memory(64_MiB, [] { return work(); });
//   if (!r) log(r.error().kind(), r.usage().memory_bytes);
//
// A task is the calling thread (or the memlimits::fiber it runs in). When a
// limit trips, the task is interrupted: its next eligible allocation point
// (a throwing operator new, memlimits::allocator, memlimits::memory_resource,
// or poll()) raises limit_reached, and so does every later one until the
// tripped guard exits; the guard then returns its error. Interruptions are
// deferred, never lost, while a memlimits::mask is alive, while an exception
// is in flight, inside memlimits' own callbacks, and wherever the throw
// would reach a noexcept boundary (a destructor, a noexcept function) before
// a handler: the allocation then succeeds. nothrow operator new
// returns nullptr instead; malloc only counts, or returns NULL with ENOMEM
// under malloc_policy::fail. Rules and rationale: README.md, "Exception-safe
// interruption".
//
// Units are bytes. Allocations count the bytes requested, each request
// rounded up to a multiple of 8 (the word the sampling core counts in).
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__GLIBCXX__)
#  include <cxxabi.h>  // abi::__forced_unwind
#endif

#include "memlimits/config.hpp"

namespace memlimits {

enum class limit_kind { global_memory, allocations, memory, token };

// "global_memory", "allocations", "memory", "token".
MEMLIMITS_API const char* to_string(limit_kind kind) noexcept;

// Raised at an allocation point of an interrupted task, and by poll().
class MEMLIMITS_API limit_reached : public std::bad_alloc {
 public:
  explicit limit_reached(limit_kind kind) noexcept : kind_(kind) {}
  limit_kind kind() const noexcept { return kind_; }
  // Names the limit, e.g. "memlimits: allocation limit reached".
  const char* what() const noexcept override;

 private:
  limit_kind kind_;
};

// Why a guarded task was stopped.
class interruption {
 public:
  interruption(limit_kind kind, std::exception_ptr escaped) noexcept
      : kind_(kind), exception_(std::move(escaped)) {}
  limit_kind kind() const noexcept { return kind_; }
  // What the task let escape (usually the limit_reached); null if it returned.
  std::exception_ptr exception() const noexcept { return exception_; }

 private:
  limit_kind kind_;
  std::exception_ptr exception_;
};

// What a task consumed, reported with either outcome.
struct usage {
  std::uint64_t allocated_bytes = 0;  // bytes requested by the task (exact, 8-byte words)
  std::uint64_t samples = 0;          // samples that fell in the task
  std::int64_t memory_bytes = 0;      // estimate of the task's live bytes when the guard exited
};

// result::value() of a result that holds an interruption.
class MEMLIMITS_API bad_result_access : public std::exception {
 public:
  explicit bad_result_access(interruption error) noexcept : error_(std::move(error)) {}
  const char* what() const noexcept override;
  const interruption& error() const noexcept { return error_; }

 private:
  interruption error_;
};

// The outcome of a guarded task: like std::expected<T, interruption>, plus
// the task's usage. T may be void or an lvalue reference.
template <class T>
class result {
  using stored = std::conditional_t<std::is_lvalue_reference_v<T>,
                                    std::remove_reference_t<T>*, T>;

 public:
  using value_type = T;
  using error_type = interruption;

  template <class... Args>
  result(std::in_place_t, const memlimits::usage& used, Args&&... args)
      : value_(std::in_place, std::forward<Args>(args)...), usage_(used) {}
  result(interruption error, const memlimits::usage& used)
      : error_(std::move(error)), usage_(used) {}

  bool has_value() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }

  decltype(auto) value() & { check(); return get(*value_); }
  decltype(auto) value() const& { check(); return get(*value_); }
  decltype(auto) value() && { check(); return take(); }
  decltype(auto) operator*() & noexcept { return get(*value_); }
  decltype(auto) operator*() const& noexcept { return get(*value_); }
  decltype(auto) operator*() && noexcept { return take(); }
  auto operator->() noexcept { return &get(*value_); }
  auto operator->() const noexcept { return &get(*value_); }
  template <class U>
  std::remove_cvref_t<T> value_or(U&& fallback) const& {
    return has_value() ? get(*value_) : static_cast<std::remove_cvref_t<T>>(std::forward<U>(fallback));
  }

  // Precondition: !has_value().
  const interruption& error() const& noexcept { return *error_; }
  const memlimits::usage& usage() const noexcept { return usage_; }

 private:
  void check() const {
    if (!has_value()) throw bad_result_access(*error_);
  }
  static T& get(stored& v) noexcept {
    if constexpr (std::is_lvalue_reference_v<T>) return *v; else return v;
  }
  static const std::remove_reference_t<T>& get(const stored& v) noexcept {
    if constexpr (std::is_lvalue_reference_v<T>) return *v; else return v;
  }
  decltype(auto) take() {
    if constexpr (std::is_lvalue_reference_v<T>) return get(*value_); else return std::move(*value_);
  }

  std::optional<stored> value_;
  std::optional<interruption> error_;
  memlimits::usage usage_;
};

template <>
class result<void> {
 public:
  using value_type = void;
  using error_type = interruption;

  result(std::in_place_t, const memlimits::usage& used) : usage_(used) {}
  result(interruption error, const memlimits::usage& used)
      : error_(std::move(error)), usage_(used) {}

  bool has_value() const noexcept { return !error_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }
  void value() const {
    if (!has_value()) throw bad_result_access(*error_);
  }
  void operator*() const noexcept {}
  const interruption& error() const& noexcept { return *error_; }
  const memlimits::usage& usage() const noexcept { return usage_; }

 private:
  std::optional<interruption> error_;
  memlimits::usage usage_;
};

class token;

namespace detail {

struct context;

// One active guard of the calling task, from entry to exit.
class MEMLIMITS_API guard_scope {
 public:
  // Enters a context of the calling task; std::invalid_argument on a bad
  // limit (naming `parameter`), std::bad_alloc without memory for it.
  guard_scope(limit_kind kind, std::uint64_t limit, const token* t, const char* parameter);
  ~guard_scope();  // exits the context if finish() was not called
  guard_scope(const guard_scope&) = delete;
  guard_scope& operator=(const guard_scope&) = delete;

  // Whether this guard's own limit has tripped (as of finish(), after it).
  bool tripped() const noexcept;
  // Exits the context; returns what the task used. Logs a tripped exit.
  memlimits::usage finish() noexcept;

 private:
  context* context_;
  bool finished_ = false;
  bool tripped_at_exit_ = false;
};

// Whether the exception in flight (called inside a handler) unwinds a
// stack that is being destroyed: Boost.Context's forced_unwind (destroying
// a suspended fiber or continuation, also under Boost.Coroutine2) or the
// old Boost.Coroutine's. A guard never swallows one, tripped or not: its
// catcher must see it, or the fiber's stack is never released.
MEMLIMITS_API bool stack_unwind_in_flight() noexcept;

template <class F>
using guarded_result = result<std::invoke_result_t<F&>>;

// no_sanitize("undefined"): GCC 12's UBSan reports the binding of the
// caught abi::__forced_unwind reference as a null reference, and aborts
// ("null" alone is not honoured once inlined at -O2). The task's own code,
// even inlined here, keeps its checks: UBSan instruments each function
// before inlining.
template <class F>
#if defined(__GNUC__)
__attribute__((no_sanitize("undefined")))
#endif
guarded_result<F> run_guarded(limit_kind kind, std::uint64_t limit, const token* t,
                              const char* parameter, F& task) {
  using R = std::invoke_result_t<F&>;
  static_assert(!std::is_rvalue_reference_v<R>, "a guarded task may not return an rvalue reference");
  guard_scope guard(kind, limit, t, parameter);
  if (guard.tripped()) {  // a token set before entry: the task does not run
    const memlimits::usage used = guard.finish();
    return guarded_result<F>(interruption(kind, nullptr), used);
  }
  using stored = std::conditional_t<std::is_void_v<R>, bool,
                                    std::conditional_t<std::is_lvalue_reference_v<R>,
                                                       std::remove_reference_t<R>*, R>>;
  std::optional<stored> value;
  std::exception_ptr escaped;
  try {
    if constexpr (std::is_void_v<R>) {
      std::invoke(task);
      value.emplace(true);
    } else if constexpr (std::is_lvalue_reference_v<R>) {
      value.emplace(&std::invoke(task));
    } else {
      value.emplace(std::invoke(task));
    }
#if defined(__GLIBCXX__)
  } catch (abi::__forced_unwind&) {
    throw;  // thread cancellation: never swallowed
#endif
  } catch (...) {
    // The guard decides by its own flag: another limit's interruption, or
    // any other exception, passes through (`throw;` does not allocate).
    // A tripped guard reports whatever escaped it as its interruption,
    // except a fiber's forced unwinding.
    if (!guard.tripped() || stack_unwind_in_flight()) throw;
    escaped = std::current_exception();
  }
  const memlimits::usage used = guard.finish();
  if (guard.tripped()) return guarded_result<F>(interruption(kind, std::move(escaped)), used);
  if constexpr (std::is_void_v<R>) {
    return guarded_result<F>(std::in_place, used);
  } else if constexpr (std::is_lvalue_reference_v<R>) {
    return guarded_result<F>(std::in_place, used, *value);
  } else {
    return guarded_result<F>(std::in_place, used, std::move(*value));
  }
}

}  // namespace detail

// Runs task() under a limit of `limit` bytes allocated (frees ignored). Exact
// by default: the allocation that would take the total above `limit` is the
// one interrupted. settings::sampled_allocation_limits: memprof-limits'
// statistical limit (stats/README.md).
template <class F>
auto limit_allocations(std::uint64_t limit, F&& task) -> result<std::invoke_result_t<F&>> {
  return detail::run_guarded(limit_kind::allocations, limit, nullptr, "limit", task);
}

// Runs task() under a limit of `limit` live bytes: bytes it allocated and
// nobody freed yet, estimated from samples. Frees by any thread, at any time,
// are credited to the task that allocated.
template <class F>
auto limit_memory(std::uint64_t limit, F&& task) -> result<std::invoke_result_t<F&>> {
  return detail::run_guarded(limit_kind::memory, limit, nullptr, "limit", task);
}

// Runs task() under the process-wide limit of set_global_memory_limit(),
// checked at the task's samples.
template <class F>
auto limit_global_memory(F&& task) -> result<std::invoke_result_t<F&>> {
  return detail::run_guarded(limit_kind::global_memory, 0, nullptr, "limit", task);
}

// Runs task() until t.set() is called: the task is interrupted at its next
// allocation after that, or not run if t is already set.
template <class F>
auto limit_with_token(const token& t, F&& task) -> result<std::invoke_result_t<F&>> {
  return detail::run_guarded(limit_kind::token, 0, &t, "token", task);
}

// Negative: no limit (the default).
MEMLIMITS_API void set_global_memory_limit(std::int64_t limit);
MEMLIMITS_API std::int64_t global_memory_limit() noexcept;
// The value the global limit is compared with, from settings::global_source.
MEMLIMITS_API std::uint64_t global_memory_usage();

namespace detail {
struct token_state;
}

// A cancellation flag. Copies share one flag; set once, never unset.
class MEMLIMITS_API token {
 public:
  token();  // std::bad_alloc without memory
  token(const token& other) noexcept;
  token& operator=(const token& other) noexcept;
  ~token();

  void set() const noexcept;  // any thread; async-signal-safe
  bool is_set() const noexcept;

 private:
  friend class detail::guard_scope;
  detail::token_state* state_;
};

// The current task has a tripped context.
MEMLIMITS_API bool is_interrupted() noexcept;
// Throws limit_reached if the current task is interrupted, not masked, no
// exception is in flight, and a handler would catch it before a noexcept
// boundary; otherwise returns.
MEMLIMITS_API void poll();

// Interruptions of the current task are deferred while one is alive.
class MEMLIMITS_API mask {
 public:
  mask() noexcept;
  ~mask();
  mask(const mask&) = delete;
  mask& operator=(const mask&) = delete;
};
MEMLIMITS_API bool is_masked() noexcept;

// acquire() and release(resource) run masked; release runs iff acquire
// returned, whether scope(resource) returns or throws; scope is not masked
// (beyond the caller's own masks). With a void acquire, scope and release
// take no argument.
template <class Acquire, class Scope, class Release>
decltype(auto) with_resource(Acquire&& acquire, Scope&& scope, Release&& release) {
  using R = std::invoke_result_t<Acquire&>;
  if constexpr (std::is_void_v<R>) {
    {
      mask masked;
      std::invoke(acquire);
    }
    auto finish = [&] {
      mask masked;
      std::invoke(release);
    };
    using S = std::invoke_result_t<Scope&>;
    try {
      if constexpr (std::is_void_v<S>) {
        std::invoke(scope);
        finish();
      } else {
        std::conditional_t<std::is_rvalue_reference_v<S>, std::remove_cvref_t<S>, S> out =
            std::invoke(scope);
        finish();
        return out;
      }
    } catch (...) {
      finish();
      throw;
    }
  } else {
    auto acquired = [&]() -> R {
      mask masked;
      return std::invoke(acquire);
    };
    R resource = acquired();
    auto finish = [&] {
      mask masked;
      std::invoke(release, resource);
    };
    using S = std::invoke_result_t<Scope&, std::remove_reference_t<R>&>;
    try {
      if constexpr (std::is_void_v<S>) {
        std::invoke(scope, resource);
        finish();
      } else {
        std::conditional_t<std::is_rvalue_reference_v<S>, std::remove_cvref_t<S>, S> out =
            std::invoke(scope, resource);
        finish();
        return out;
      }
    } catch (...) {
      finish();
      throw;
    }
  }
}

enum class memory_source { heap, rss, cgroup };  // what "global memory" measures
enum class malloc_policy { count, fail };        // malloc in an interrupted task

struct settings {
  double sampling_rate = 1e-4;                   // samples per 8-byte word, in (0, 1]
  memory_source global_source = memory_source::heap;
  malloc_policy on_malloc = malloc_policy::count;
  bool sampled_allocation_limits = false;        // true: memprof-limits' statistical limits
};
// std::invalid_argument on bad values (nothing changed); std::runtime_error
// when global_source is cgroup and the process has no cgroup memory file.
// Guards already active keep their allocation-limit mode.
MEMLIMITS_API void configure(const settings& s);
MEMLIMITS_API settings current_settings();

// Monitoring, from any thread.
struct context_info {
  limit_kind kind;
  std::int64_t limit;  // bytes; -1 for token, the global limit for global_memory
  std::int64_t used;   // allocations: bytes (as of the task's last slow path or
                       // suspension);
                       // memory: live estimate; global_memory: global usage; token: 0
  bool tripped;
};
struct task_info {
  std::thread::id thread;              // where the task runs now
  bool fiber;                          // a memlimits::fiber rather than a thread
  std::vector<context_info> contexts;  // outermost first
};
// Every task that has an active guard.
MEMLIMITS_API std::vector<task_info> tasks();

// 64_KiB, 16_MiB, 2_GiB. A value that does not fit in 64 bits does not
// compile (and throws std::overflow_error if evaluated at run time).
namespace literals {
namespace detail {
constexpr std::uint64_t scale(unsigned long long n, int shift) {
  if (n > (~std::uint64_t{0} >> shift)) throw std::overflow_error("memlimits: size literal overflows");
  return static_cast<std::uint64_t>(n) << shift;
}
}  // namespace detail
constexpr std::uint64_t operator""_KiB(unsigned long long n) { return detail::scale(n, 10); }
constexpr std::uint64_t operator""_MiB(unsigned long long n) { return detail::scale(n, 20); }
constexpr std::uint64_t operator""_GiB(unsigned long long n) { return detail::scale(n, 30); }
}  // namespace literals

}  // namespace memlimits
