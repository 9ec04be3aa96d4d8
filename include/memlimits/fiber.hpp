// memlimits/fiber.hpp — memlimits::fiber: a Boost.Context fiber whose body
// is a task of its own (link memlimits::fiber).
//
// It has the interface of boost::context::fiber (Boost 1.74): the same
// constructors (a body; std::allocator_arg_t with a stack allocator; with a
// preallocated stack), resume() &&, resume_with(fn) &&, operator bool,
// operator!, comparisons, swap and operator<<. A body is called as
// `memlimits::fiber body(memlimits::fiber&& caller)` and returns the fiber to
// resume when it ends.
//
// What it adds: while the body runs, the running thread's allocations are
// charged to the fiber's own task (<memlimits/task.hpp>), whichever thread
// resumes it. Guards entered in the body count only the body's allocations;
// a guard around code that resumes fibers is not charged for them; a token
// set while the fiber is suspended interrupts it at its next allocation
// after it resumes, on any thread; tasks() lists it with `fiber = true`.
// An interruption unwinds the body's stack like any exception.
//
// Given memlimits::inherit before its other arguments, the fiber's task is
// a child of the task that creates it (<memlimits/task.hpp>): its
// allocations also count toward every guard active there.
//
// Destroying a suspended fiber unwinds its stack, as boost's does, with
// boost::context::detail::forced_unwind: its guards exit (they never swallow
// that exception, even when tripped), and it is charged to the fiber. A
// fiber destroyed before it first ran is released without running. The
// exception is thrown (fiber_unwind) and caught (fiber_entry) in this
// header, in the program's NDEBUG mode, never in the library: see
// fiber_unwind.
//
// Every switch is announced to AddressSanitizer
// (__sanitizer_start/finish_switch_fiber) and ThreadSanitizer
// (__tsan_switch_to_fiber) when the library is built with them, so that
// fibers run under both.
//
// Built directly on Boost.Context's fcontext primitives (jump_fcontext,
// make_fcontext, ontop_fcontext), like boost::context::fiber itself, so
// that the switch and its announcements are one call.
// Layer 7 (src/fiber/).
#pragma once

#include <boost/context/detail/exception.hpp>
#include <boost/context/detail/fcontext.hpp>
#include <boost/context/fixedsize_stack.hpp>
#include <boost/context/preallocated.hpp>
#include <boost/context/stack_context.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <ostream>
#include <type_traits>
#include <utility>

#include "memlimits/config.hpp"
#include "memlimits/task.hpp"

namespace memlimits {

class fiber;

namespace detail {

namespace fcontext = boost::context::detail;
struct task_state;
struct fiber_control;  // one per fiber: its task and stack (src/fiber/)

// A suspended execution context as a switch to it needs it: the task to
// make current and what the sanitizers must be told.
struct fiber_peer {
  detail::task_state* task = nullptr;  // made current when it resumes
  fiber_control* control = nullptr;  // a memlimits::fiber's stack; null: a thread's stack
  void** fake_stack = nullptr;       // AddressSanitizer: where it saved its fake stack
  const void* stack_bottom = nullptr;
  std::size_t stack_size = 0;
  void* tsan_fiber = nullptr;        // ThreadSanitizer's fiber
};

// What a switch returns in the context that made it, once resumed.
struct fiber_arrival {
  fcontext::fcontext_t fctx;  // the context that resumed this one (null: it ended)
  fiber_peer from;
};

// Filled by fiber_jump for a function run on top of the target
// (resume_with, unwinding): a derived struct carries the function.
struct fiber_ontop_header {
  void* target_fake_stack = nullptr;
};

// What a fiber's first entry receives: its record, and the function to run
// first if it is started by resume_with (on top of a context that has never
// run, the entry runs it itself).
struct fiber_start {
  void* record;
  fcontext::transfer_t (*ontop)(fcontext::transfer_t);
  fiber_ontop_header* args;
};

// A new fiber's control block, owning its task: `record` is destroyed by
// `destroy` (which also releases the stack) once the fiber has ended.
// `inherit`: the lineage its task joins (null: a task of its own).
MEMLIMITS_API fiber_control* fiber_create(void* record, void (*destroy)(void*) noexcept,
                                          const void* stack_bottom, std::size_t stack_size,
                                          lineage* inherit);
MEMLIMITS_API fiber_peer fiber_first_peer(fiber_control* control) noexcept;

// The one switch: from the calling context to `to` (its `target`), running
// `ontop(args)` on top of it first if given. Returns when the calling
// context is resumed. `unwinding`: the target is being destroyed.
MEMLIMITS_API fiber_arrival fiber_jump(fcontext::fcontext_t to, const fiber_peer& target,
                                       fcontext::transfer_t (*ontop)(fcontext::transfer_t),
                                       fiber_ontop_header* args, fiber_control* unwinding);
// In a function run on top of a target, first: completes the switch.
MEMLIMITS_API fiber_peer fiber_arrive_ontop(fiber_ontop_header* args) noexcept;
// In it, last: what the target's resume() will say resumed it.
MEMLIMITS_API void fiber_handback(const fiber_peer& from) noexcept;
// A fiber's first instruction: completes the switch into it.
MEMLIMITS_API fiber_peer fiber_arrive_first() noexcept;
// Who is destroying the (unwinding) fiber.
MEMLIMITS_API fiber_peer fiber_unwinder(fiber_control* self) noexcept;
// A fiber's last switch, to `to`: the context arriving there releases it.
[[noreturn]] MEMLIMITS_API void fiber_exit(fcontext::fcontext_t to, fiber_control* self,
                                           const fiber_peer& target) noexcept;
// Destroys the context `fctx`: runs `unwind` (fiber_unwind) on top of it,
// or releases a fiber that never ran.
MEMLIMITS_API void fiber_destroy(fcontext::fcontext_t fctx, const fiber_peer& peer,
                                 fcontext::transfer_t (*unwind)(fcontext::transfer_t)) noexcept;

// Run on top of a fiber being destroyed: completes the switch, then unwinds
// the fiber's stack from where it was suspended, as boost::context does; the
// exception ends in fiber_entry, which switches back to the destroyer.
//
// Thrown here, not in the library, because forced_unwind's layout depends on
// NDEBUG: with assertions on, Boost adds a `caught` flag, which the handler
// sets, and a destructor that asserts it. Throw and catch must see the same
// type, so both live in this header and are compiled in the program's mode.
// If the throw moves into the library, Debug/Release mixes break: a Debug
// program with a release library writes `caught` past the thrown object,
// and a release program with a Debug library fails the assertion
// (tests/unit/fiber_mode_test.cpp).
inline fcontext::transfer_t fiber_unwind(fcontext::transfer_t t) {
  fiber_arrive_ontop(static_cast<fiber_ontop_header*>(t.data));
  throw fcontext::forced_unwind(t.fctx);
}

template <class StackAlloc, class Fn>
struct fiber_record {
  boost::context::stack_context stack;
  StackAlloc allocator;
  Fn body;
  fiber_control* control = nullptr;

  // noexcept, as boost::context's: a body whose move throws terminates.
  template <class A, class F>
  fiber_record(boost::context::stack_context s, A&& a, F&& f) noexcept
      : stack(s), allocator(std::forward<A>(a)), body(std::forward<F>(f)) {}

  static void destroy(void* p) noexcept {
    auto* record = static_cast<fiber_record*>(p);
    StackAlloc allocator = std::move(record->allocator);
    boost::context::stack_context stack = record->stack;
    record->~fiber_record();
    allocator.deallocate(stack);
  }
};

template <class Record>
void fiber_entry(fcontext::transfer_t t) noexcept;

// Builds a fiber on `stack` (owned from here: released if this throws), at
// the top of which its record is placed, as boost::context does.
template <class StackAlloc, class Fn>
fcontext::fcontext_t make_fiber(boost::context::stack_context stack, void* top,
                                StackAlloc&& allocator, Fn&& body, fiber_peer& peer,
                                lineage* inherit = nullptr) {
  using record_type = fiber_record<std::decay_t<StackAlloc>, std::decay_t<Fn>>;
  void* storage = reinterpret_cast<void*>(
      (reinterpret_cast<std::uintptr_t>(top) - sizeof(record_type)) & ~std::uintptr_t{0xff});
  auto* record = new (storage) record_type(stack, std::forward<StackAlloc>(allocator),
                                           std::forward<Fn>(body));
  // 64 bytes between the record and the first frame, 16-byte aligned.
  auto* stack_top = static_cast<char*>(storage) - 64;
  auto* stack_bottom = static_cast<char*>(stack.sp) - stack.size;
  const auto size = static_cast<std::size_t>(stack_top - stack_bottom);
  try {
    record->control =
        fiber_create(record, &record_type::destroy, stack_bottom, stack.size, inherit);
  } catch (...) {
    record_type::destroy(record);
    throw;
  }
  peer = fiber_first_peer(record->control);
  return fcontext::make_fcontext(stack_top, size, &fiber_entry<record_type>);
}

template <class Fn>
struct fiber_ontop_call : fiber_ontop_header {
  Fn* fn;
};

}  // namespace detail

class fiber {
 public:
  fiber() noexcept = default;

  template <class Fn, class = std::enable_if_t<!std::is_same_v<std::decay_t<Fn>, fiber>>>
  fiber(Fn&& body)  // NOLINT(google-explicit-constructor): as boost::context::fiber
      : fiber(std::allocator_arg, boost::context::fixedsize_stack(), std::forward<Fn>(body)) {}

  template <class StackAlloc, class Fn>
  fiber(std::allocator_arg_t, StackAlloc&& allocator, Fn&& body) {
    const boost::context::stack_context stack = allocator.allocate();
    fctx_ = detail::make_fiber(stack, stack.sp, std::forward<StackAlloc>(allocator),
                               std::forward<Fn>(body), peer_);
  }

  template <class StackAlloc, class Fn>
  fiber(std::allocator_arg_t, boost::context::preallocated preallocated, StackAlloc&& allocator,
        Fn&& body) {
    fctx_ = detail::make_fiber(preallocated.sctx, preallocated.sp,
                               std::forward<StackAlloc>(allocator), std::forward<Fn>(body), peer_);
  }

  // The same, with the fiber's task a child of the calling task.
  template <class Fn>
  fiber(inherit_t, Fn&& body)
      : fiber(inherit, std::allocator_arg, boost::context::fixedsize_stack(),
              std::forward<Fn>(body)) {}

  template <class StackAlloc, class Fn>
  fiber(inherit_t, std::allocator_arg_t, StackAlloc&& allocator, Fn&& body) {
    const detail::lineage_ref lineage = detail::lineage_ref::capture();
    const boost::context::stack_context stack = allocator.allocate();
    fctx_ = detail::make_fiber(stack, stack.sp, std::forward<StackAlloc>(allocator),
                               std::forward<Fn>(body), peer_, lineage.get());
  }

  template <class StackAlloc, class Fn>
  fiber(inherit_t, std::allocator_arg_t, boost::context::preallocated preallocated,
        StackAlloc&& allocator, Fn&& body) {
    const detail::lineage_ref lineage = detail::lineage_ref::capture();
    fctx_ = detail::make_fiber(preallocated.sctx, preallocated.sp,
                               std::forward<StackAlloc>(allocator), std::forward<Fn>(body), peer_,
                               lineage.get());
  }

  ~fiber() {
    if (fctx_ != nullptr) {
      detail::fiber_destroy(std::exchange(fctx_, nullptr), peer_, &detail::fiber_unwind);
    }
  }

  fiber(fiber&& other) noexcept { swap(other); }
  fiber& operator=(fiber&& other) noexcept {
    if (this != &other) {
      fiber old = std::move(other);
      swap(old);
    }
    return *this;
  }
  fiber(const fiber&) = delete;
  fiber& operator=(const fiber&) = delete;

  // Switches to this fiber; returns the context that switched back (empty
  // if it ended). Precondition: *this is not empty.
  fiber resume() && {
    const detail::fiber_arrival back = detail::fiber_jump(
        std::exchange(fctx_, nullptr), std::exchange(peer_, {}), nullptr, nullptr, nullptr);
    return fiber(back.fctx, back.from);
  }

  // Switches to this fiber and runs `fn(caller)` there first, as
  // boost::context::fiber::resume_with: what fn returns is what the
  // fiber's pending resume() returns.
  template <class Fn>
  fiber resume_with(Fn&& fn) && {
    detail::fiber_ontop_call<std::remove_reference_t<Fn>> call;
    call.fn = std::addressof(fn);
    const detail::fiber_arrival back =
        detail::fiber_jump(std::exchange(fctx_, nullptr), std::exchange(peer_, {}),
                           &run_ontop<std::remove_reference_t<Fn>>, &call, nullptr);
    return fiber(back.fctx, back.from);
  }

  explicit operator bool() const noexcept { return fctx_ != nullptr; }
  bool operator!() const noexcept { return fctx_ == nullptr; }
  bool operator==(const fiber& other) const noexcept { return fctx_ == other.fctx_; }
  bool operator!=(const fiber& other) const noexcept { return fctx_ != other.fctx_; }
  bool operator<(const fiber& other) const noexcept { return fctx_ < other.fctx_; }
  bool operator>(const fiber& other) const noexcept { return other.fctx_ < fctx_; }
  bool operator<=(const fiber& other) const noexcept { return !(*this > other); }
  bool operator>=(const fiber& other) const noexcept { return !(*this < other); }

  template <class Char, class Traits>
  friend std::basic_ostream<Char, Traits>& operator<<(std::basic_ostream<Char, Traits>& os,
                                                      const fiber& f) {
    if (f.fctx_ != nullptr) return os << f.fctx_;
    return os << "{not-a-context}";
  }

  void swap(fiber& other) noexcept {
    std::swap(fctx_, other.fctx_);
    std::swap(peer_, other.peer_);
  }

 private:
  template <class Record>
  friend void detail::fiber_entry(detail::fcontext::transfer_t) noexcept;

  // A context that arrived from an ended fiber has no task: it is empty.
  fiber(detail::fcontext::fcontext_t fctx, const detail::fiber_peer& peer) noexcept
      : fctx_(peer.task != nullptr ? fctx : nullptr),
        peer_(fctx_ != nullptr ? peer : detail::fiber_peer{}) {}

  template <class Fn>
  static detail::fcontext::transfer_t run_ontop(detail::fcontext::transfer_t t) {
    auto* call = static_cast<detail::fiber_ontop_call<Fn>*>(t.data);
    Fn& fn = *call->fn;  // `call` lives in a frame that fn may resume: read it first
    fiber caller(t.fctx, detail::fiber_arrive_ontop(call));
    fiber result = std::invoke(std::forward<Fn>(fn), std::move(caller));
    detail::fiber_handback(result.peer_);
    return {std::exchange(result.fctx_, nullptr), nullptr};
  }

  detail::fcontext::fcontext_t fctx_ = nullptr;
  detail::fiber_peer peer_;
};

inline void swap(fiber& a, fiber& b) noexcept { a.swap(b); }

namespace detail {

// A fiber's outermost frame: runs the body, then switches for the last time
// to the fiber it returned, or back to whoever destroyed it.
template <class Record>
void fiber_entry(fcontext::transfer_t t) noexcept {
  const fiber_start start = *static_cast<fiber_start*>(t.data);  // in the frame that jumped
  auto* record = static_cast<Record*>(start.record);
  fiber_control* const self = record->control;
  if (start.ontop != nullptr) t = start.ontop({t.fctx, start.args});
  fcontext::fcontext_t next_fctx = nullptr;
  fiber_peer next_peer;
  try {
    fiber caller(t.fctx, fiber_arrive_first());
    fiber next = std::invoke(record->body, std::move(caller));
    next_fctx = std::exchange(next.fctx_, nullptr);
    next_peer = next.peer_;
  } catch (const fcontext::forced_unwind& unwinding) {
    // Thrown by fiber_unwind, in this same mode: `caught` exists here exactly
    // when it exists in the thrown object.
    // Leave the handler before switching: the exception is then released.
    next_fctx = unwinding.fctx;
    next_peer = fiber_unwinder(self);
#ifndef BOOST_ASSERT_IS_VOID
    const_cast<fcontext::forced_unwind&>(unwinding).caught = true;
#endif
  }
  fiber_exit(next_fctx, self, next_peer);
}

}  // namespace detail

}  // namespace memlimits
