// limits/guard.cpp — entering and leaving a guard (detail::guard_scope of
// <memlimits/limits.hpp>), argument checks, and the one log line of an
// interrupted guard. Layer 5.
#include <spdlog/cfg/env.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cxxabi.h>

#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <typeinfo>

#include "core/limits_port.hpp"
#include "limits/engine.hpp"
#include "limits/registry.hpp"
#include "limits/task_state.hpp"
#include "limits/timer.hpp"
#include "limits/token_state.hpp"
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

// The "memlimits" logger of spdlog's registry: the user's, if they
// registered one under that name, else a colour stderr logger whose level
// SPDLOG_LEVEL sets (e.g. SPDLOG_LEVEL=memlimits=warn).
std::shared_ptr<spdlog::logger> logger() {
  if (auto mine = spdlog::get("memlimits")) return mine;
  try {
    auto made = spdlog::stderr_color_mt("memlimits");
    spdlog::cfg::load_env_levels();
    return made;
  } catch (const spdlog::spdlog_ex&) {
    return spdlog::get("memlimits");  // registered meanwhile
  }
}

void log_interrupted(limit_kind kind, std::int64_t limit, const usage& used) noexcept {
  // Outside the task's accounting, and never interrupted.
  core::sampling_off off;
  try {
    auto out = logger();
    if (!out) return;
    if (kind == limit_kind::allocations || kind == limit_kind::memory) {
      out->info("{} ended interrupted: {} limit {} B reached; allocated {} B, {} samples, live {} B",
                guard_name(kind), to_string(kind), limit, used.allocated_bytes, used.samples,
                used.memory_bytes);
    } else if (kind == limit_kind::global_memory) {
      out->info("{} ended interrupted: global memory limit {} B reached; allocated {} B, "
                "{} samples, live {} B",
                guard_name(kind), global_memory_limit(), used.allocated_bytes, used.samples,
                used.memory_bytes);
    } else {
      out->info("{} ended interrupted: token set; allocated {} B, {} samples, live {} B",
                guard_name(kind), used.allocated_bytes, used.samples, used.memory_bytes);
    }
  } catch (...) {
    // Diagnostics never change the outcome.
  }
}

[[noreturn]] void bad_limit(limit_kind kind, const char* parameter, std::uint64_t limit) {
  throw std::invalid_argument(std::string(guard_name(kind)) + ": " + parameter + " = " +
                              std::to_string(limit) + " is out of range (at most " +
                              std::to_string(INT64_MAX) +
                              " bytes; a negative value converted to unsigned?)");
}

}  // namespace

guard_scope::guard_scope(limit_kind kind, std::uint64_t limit, const token* t,
                         const char* parameter) {
  if ((kind == limit_kind::allocations || kind == limit_kind::memory) &&
      limit > static_cast<std::uint64_t>(INT64_MAX)) {
    bad_limit(kind, parameter, limit);
  }
  if (kind == limit_kind::token && (t == nullptr || t->state_ == nullptr)) {
    throw std::invalid_argument(std::string(guard_name(kind)) + ": " + parameter + " is null");
  }
  start_engine();
  task_state& owner = current_task();
  register_task(owner);

  void* memory = platform::system::malloc(sizeof(context));
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
  c->watch = nullptr;
  if (kind == limit_kind::token) {
    resume_timer_after_fork();  // the token's deadline, in a child after fork()
    c->token = retain_token_state(t->state_);
    c->watch = watch_token(*c->token);
    // After watching: a set() from now on raises this thread's alarm.
    if (c->token->flag.load(std::memory_order_seq_cst)) {
      c->tripped.store(true, std::memory_order_relaxed);
    }
  }
  // The stack pointer of the frame that holds the guard (this function's
  // CFA): the guarded code makes its calls below it, that frame at it
  // (limits/raise_point.cpp stops the handler search there).
  c->frame_boundary = reinterpret_cast<std::uintptr_t>(__builtin_dwarf_cfa());
  c->start_position = task_position(owner);
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

bool guard_scope::tripped() const noexcept {
  return finished_ ? tripped_at_exit_ : context_->tripped.load(std::memory_order_relaxed);
}

usage guard_scope::finish() noexcept {
  task_state& owner = current_task();
  context* c = context_;
  usage used;
  used.allocated_bytes = task_position(owner) - c->start_position;
  used.samples = c->samples.load(std::memory_order_relaxed);
  used.memory_bytes = c->live_bytes.load(std::memory_order_relaxed);
  c->allocated.store(used.allocated_bytes, std::memory_order_relaxed);
  tripped_at_exit_ = c->tripped.load(std::memory_order_relaxed);
  const limit_kind kind = c->kind;
  const std::int64_t limit = c->limit;
  pop_context(owner, c);  // c may be gone now
  finished_ = true;
  if (tripped_at_exit_) log_interrupted(kind, limit, used);
  return used;
}

}  // namespace memlimits::detail
