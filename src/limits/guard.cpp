// limits/guard.cpp — entering and leaving a guard (detail::guard_scope of
// <memlimits/limits.hpp>, memlimits::guard) and their argument checks; an
// interrupted guard's log line is limits/report.cpp's. Layer 5.
#include <cxxabi.h>

#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <typeinfo>

#include "core/limits_port.hpp"
#include "limits/budget.hpp"
#include "limits/engine.hpp"
#include "limits/registry.hpp"
#include "limits/report.hpp"
#include "limits/task_state.hpp"
#include "limits/timer.hpp"
#include "limits/token_state.hpp"
#include "memlimits/guard.hpp"
#include "memlimits/limits.hpp"
#include "platform/system_allocator.hpp"

namespace memlimits::detail {
namespace {

const char* guard_name(limit_kind kind) noexcept {
  switch (kind) {
    case limit_kind::allocations: return "memlimits::limit_allocations";
    case limit_kind::memory: return "memlimits::limit_memory";
    case limit_kind::global_memory: return "memlimits::limit_global_memory";
    case limit_kind::token: return "memlimits::limit_with_token";
  }
  return "memlimits";
}

[[noreturn]] void bad_limit(const char* function, const char* parameter, std::uint64_t limit) {
  throw std::invalid_argument(std::string(function) + ": " + parameter + " = " +
                              std::to_string(limit) + " is out of range (at most " +
                              std::to_string(INT64_MAX) +
                              " bytes; a negative value converted to unsigned?)");
}

}  // namespace

guard_scope::guard_scope(limit_kind kind, std::uint64_t limit, const token* t,
                         const char* parameter)
    : kind_(kind), function_(nullptr) {
  // The stack pointer of the frame that holds the guard (this function's
  // CFA): the guarded code makes its calls below it, that frame at it
  // (limits/raise_point.cpp stops the handler search there).
  enter(t, limit, parameter, reinterpret_cast<std::uintptr_t>(__builtin_dwarf_cfa()));
}

guard_scope::guard_scope(limit_kind kind, std::uint64_t limit, const token* t,
                         const char* parameter, const char* function,
                         std::uintptr_t frame_boundary)
    : kind_(kind), function_(function) {
  enter(t, limit, parameter, frame_boundary);
}

void guard_scope::enter(const token* t, std::uint64_t limit, const char* parameter,
                        std::uintptr_t frame_boundary) {
  parameter_ = parameter;
  const limit_kind kind = kind_;
  if ((kind == limit_kind::allocations || kind == limit_kind::memory) &&
      limit > static_cast<std::uint64_t>(INT64_MAX)) {
    bad_limit(function_ != nullptr ? function_ : guard_name(kind), parameter, limit);
  }
  if (kind == limit_kind::token && (t == nullptr || t->state_ == nullptr)) {
    throw std::invalid_argument(std::string(function_ != nullptr ? function_ : guard_name(kind)) +
                                ": " + parameter + " is null");
  }
  start_engine();
  task_state& owner = current_task();
  register_task(owner);

  void* memory = platform::system::memalign(alignof(context), sizeof(context));
  if (memory == nullptr) throw std::bad_alloc();
  auto* c = new (memory) context;
  c->kind = kind;
  c->limit = kind == limit_kind::allocations || kind == limit_kind::memory
                 ? static_cast<std::int64_t>(limit)
                 : -1;
  c->sampled = kind == limit_kind::allocations &&
               engine.sampled_allocation_limits.load(std::memory_order_relaxed);
  const double rate = engine.rate.load(std::memory_order_relaxed);
  c->rate = rate;
  c->sample_threshold = c->sampled                    ? sampled_threshold(limit, rate)
                        : kind == limit_kind::memory ? memory_threshold(limit, rate)
                                                      : 0;
  c->parent = nullptr;
  c->token = nullptr;
  if (kind == limit_kind::token) {
    resume_timer_after_fork();  // the token's deadline, in a child after fork()
    c->token = retain_token_state(t->state_);
    c->owner.token_watch = claim_watch(c->token->watchers, core::this_thread_alarm());
    // After watching: a set() from now on raises this thread's alarm.
    if (c->token->flag.load(std::memory_order_seq_cst)) {
      c->tripped.store(true, std::memory_order_relaxed);
    }
  }
  c->frame_boundary = frame_boundary;
  const std::uint64_t position = task_position(owner);
  c->owner.start = position;
  // Alone under it, the task's slice of an exact budget is all of it.
  c->owner.slice_end = position + (has_budget(*c) ? limit : 0);
  context_ = push_context(owner, c);
}

bool stack_unwind_in_flight() noexcept {
  // By the mangled name: the library does not depend on Boost, and a
  // program's Boost may be any version. Only a tripped guard asks.
  const std::type_info* type = abi::__cxa_current_exception_type();
  if (type == nullptr) return false;
  const char* name = type->name();
  if (*name == '*') ++name;  // a local type's name may start with '*'
  return std::strcmp(name, "N5boost7context6detail13forced_unwindE") == 0 ||
         std::strcmp(name, "N5boost10coroutines6detail13forced_unwindE") == 0;
}

guard_scope::~guard_scope() {
  if (!finished_) finish();
}

// Out of line, so that its CFA is its caller's stack pointer at the call.
__attribute__((noinline)) std::uintptr_t caller_stack_pointer() noexcept {
  return reinterpret_cast<std::uintptr_t>(__builtin_dwarf_cfa());
}

void guard_scope::set_frame_boundary(catching_frame_t, std::uintptr_t frame) noexcept {
  if (!finished_) context_->frame_boundary = frame;
}

bool guard_scope::tripped() const noexcept {
  return finished_ ? tripped_at_exit_ : context_->tripped.load(std::memory_order_relaxed);
}

usage guard_scope::usage() const noexcept {
  if (finished_) return used_;
  const context* c = context_;
  memlimits::usage used;
  used.allocated_bytes = allocated_with(*c, c->owner, task_position(current_task()));
  used.samples = c->samples.load(std::memory_order_relaxed);
  used.memory_bytes = c->live_bytes.load(std::memory_order_relaxed);
  return used;
}

usage guard_scope::finish() noexcept {
  task_state& owner = current_task();
  context* c = context_;
  const memlimits::usage used = usage();
  tripped_at_exit_ = c->tripped.load(std::memory_order_relaxed);
  trip_report report;
  if (tripped_at_exit_) {
    report.kind = c->kind;
    report.limit = c->kind == limit_kind::global_memory ? global_memory_limit() : c->limit;
    report.block = c->trip_block.load(std::memory_order_relaxed);
    report.used = c->trip_used.load(std::memory_order_relaxed);
    report.allocated = used.allocated_bytes;
    report.deadline = parameter_ != nullptr && std::strcmp(parameter_, "limits.deadline") == 0;
  }
  pop_context(owner, c);  // c may be gone now
  finished_ = true;
  used_ = used;
  if (tripped_at_exit_) {
    log_interrupted(function_ != nullptr ? function_ : guard_name(report.kind), report);
  }
  return used;
}

}  // namespace memlimits::detail

namespace memlimits {

guard::guard(const limits& l) {
  // No frame catches for a guard held in a scope: its handler searches go
  // to the end of the stack (run_in_scope sets one for memlimits::limit).
  constexpr std::uintptr_t frame_boundary = 0;
  // Checked before anything is entered, so that a bad limit changes nothing.
  if (l.allocations.has_value() && *l.allocations > static_cast<std::uint64_t>(INT64_MAX)) {
    detail::bad_limit("memlimits::guard", "limits.allocations", *l.allocations);
  }
  if (l.memory.has_value() && *l.memory > static_cast<std::uint64_t>(INT64_MAX)) {
    detail::bad_limit("memlimits::guard", "limits.memory", *l.memory);
  }
  if (l.deadline.has_value()) {
    deadline_.emplace();
    deadline_->set_after(*l.deadline);  // may throw: nothing entered yet
  }
  const bool measure_only = !l.allocations && !l.memory && !l.global_memory && !l.token &&
                            !l.deadline;
  try {
    constexpr const char* name = "memlimits::guard";
    if (l.global_memory) {
      scopes_[0].emplace(limit_kind::global_memory, 0, nullptr, "limits.global_memory", name,
                         frame_boundary);
    }
    if (l.token.has_value()) {
      scopes_[1].emplace(limit_kind::token, 0, &*l.token, "limits.token", name, frame_boundary);
    }
    if (deadline_.has_value()) {
      scopes_[2].emplace(limit_kind::token, 0, &*deadline_, "limits.deadline", name,
                         frame_boundary);
    }
    if (l.memory.has_value()) {
      scopes_[3].emplace(limit_kind::memory, *l.memory, nullptr, "limits.memory", name,
                         frame_boundary);
    }
    if (l.allocations.has_value() || measure_only) {
      // Without limits, an allocation limit that cannot trip measures.
      scopes_[4].emplace(limit_kind::allocations,
                         l.allocations.value_or(static_cast<std::uint64_t>(INT64_MAX)), nullptr,
                         "limits.allocations", name, frame_boundary);
    }
  } catch (...) {
    for (int i = max_scopes; i-- > 0;) scopes_[i].reset();  // innermost first
    throw;
  }
}

guard::~guard() { exit(); }

void guard::set_frame_boundary(detail::catching_frame_t tag, std::uintptr_t frame) noexcept {
  for (auto& scope : scopes_) {
    if (scope.has_value()) scope->set_frame_boundary(tag, frame);
  }
}

bool guard::tripped() const noexcept {
  if (exited_) return error_kind_.has_value();
  for (const auto& scope : scopes_) {
    if (scope.has_value() && scope->tripped()) return true;
  }
  return false;
}

std::optional<interruption> guard::error() const noexcept {
  if (exited_) {
    if (!error_kind_.has_value()) return std::nullopt;
    return interruption(*error_kind_, nullptr);
  }
  for (int i = max_scopes; i-- > 0;) {
    if (scopes_[i].has_value() && scopes_[i]->tripped()) return interruption(scopes_[i]->kind(), nullptr);
  }
  return std::nullopt;
}

usage guard::usage() const noexcept {
  if (exited_) return used_;
  for (int i = max_scopes; i-- > 0;) {
    if (scopes_[i].has_value()) return scopes_[i]->usage();  // the innermost's counts are the guard's
  }
  return {};
}

std::optional<interruption> guard::exit() noexcept {
  if (exited_) return error();
  // Its contexts were entered in a row: each counts the same allocations
  // and samples, the innermost is read.
  bool innermost = true;
  for (int i = max_scopes; i-- > 0;) {
    if (!scopes_[i].has_value()) continue;
    const std::optional<interruption> e = scopes_[i]->exit();
    if (innermost) used_ = scopes_[i]->usage();
    innermost = false;
    if (e.has_value() && !error_kind_.has_value()) error_kind_ = e->kind();
  }
  exited_ = true;
  return error();
}

}  // namespace memlimits
