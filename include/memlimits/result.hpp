// memlimits/result.hpp — what a guard gives back: the limit kinds, the
// limit_reached exception raised in an interrupted task, and result<T>, the
// task's value or the interruption that stopped it, with what it used.
// Depends on config.hpp; the guards that produce results are in guards.hpp.
#pragma once

#include <cstdint>
#include <exception>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

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

}  // namespace memlimits
