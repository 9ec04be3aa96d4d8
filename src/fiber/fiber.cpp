// fiber/fiber.cpp — the switches of memlimits::fiber (<memlimits/fiber.hpp>):
// each fiber's control block and task, and the one function that jumps.
//
// A switch, from the context that leaves (L) to the target (T):
//  1. L describes itself in this thread's hand-off (its task, its stack's
//     fiber if any, where AddressSanitizer saved its fake stack, its
//     ThreadSanitizer context), makes T's task current (limits/task_state.cpp:
//     switch_task) and announces the switch to the sanitizers;
//  2. it jumps (Boost.Context's jump_fcontext, or ontop_fcontext to run a
//     function on top of T first);
//  3. T, arriving, completes the announcement and reads the hand-off: that
//     is the continuation it was given. If L was a fiber that ended, T
//     releases it (its record, its stack, its task); if L is destroying T,
//     T remembers L as where its unwinding ends.
// Everything between the jump and the arrival runs on the same thread, so a
// thread-local hand-off is enough. The hand-off is read and written only in
// functions that do not jump (leave, arrive): a thread-local address kept in
// a register across a jump would be the old thread's after a migration.
// Layer 7.
#include "memlimits/fiber.hpp"

#include <new>

#include "core/check.hpp"
#include "fiber/sanitizer_switch.hpp"
#include "limits/registry.hpp"
#include "limits/lineage.hpp"
#include "limits/task_state.hpp"
#include "platform/platform.hpp"
#include "platform/system_allocator.hpp"

namespace memlimits::detail {

struct fiber_control {
  task_state own;  // the fiber's task
  void* record;
  void (*destroy_record)(void*) noexcept;
  const void* stack_bottom;
  std::size_t stack_size;
  void* tsan_context;
  bool started = false;  // jumped to at least once
  fiber_peer unwinder;   // while it unwinds: who is destroying it
};

namespace {

struct hand_off {
  fiber_peer from;                      // the context that switched to this one
  bool pending = false;                 // the sanitizers' switch is not finished
  bool from_ended = false;              // `from` ended: the arriving context releases it
  fiber_control* unwinding = nullptr;   // `from` is destroying this fiber
};

constinit thread_local hand_off handoff MEMLIMITS_TLS_MODEL{};
// The fiber whose stack runs on this thread (null: the thread's own stack).
constinit thread_local fiber_control* running MEMLIMITS_TLS_MODEL = nullptr;

void release(fiber_control* control) noexcept {
  MEMLIMITS_CHECK(control != nullptr, "memlimits::fiber: an ended context that is not a fiber");
  // The body's captures are destroyed here, and the stack released, in the
  // context the fiber switched to last.
  control->destroy_record(control->record);
  fiber_sanitizer::destroy_context(control->tsan_context);
  MEMLIMITS_CHECK(control->own.depth == control->own.inherited,
                  "memlimits::fiber ended with an active guard");
  leave_lineage(control->own);
  unregister_task(control->own);
  control->~fiber_control();
  platform::system::free(control);
}

// Step 1, in the context that leaves. `save`: where AddressSanitizer keeps
// this context's fake stack while it is suspended (null: it ends). The
// caller then announces the switch (fiber_sanitizer::start_switch).
[[gnu::noinline]] void leave(void** save, const fiber_peer& target, bool ending,
                             fiber_control* unwinding) noexcept {
  hand_off& h = handoff;
  h.from = fiber_peer{};
  h.from.task = &current_task();
  h.from.control = running;
  h.from.fake_stack = save;
  h.from.tsan_fiber = fiber_sanitizer::current_context();
  h.pending = true;
  h.from_ended = ending;
  h.unwinding = unwinding;
  running = target.control;
  switch_task(target.task);
}

// Step 3, in the context that arrives. `saved`: its fake stack, as saved
// when it left. Returns who switched here; a null task if that one ended.
[[gnu::noinline]] fiber_peer arrive(void* saved) noexcept {
  hand_off& h = handoff;
  if (h.pending) {
    h.pending = false;
    fiber_sanitizer::finish_switch(saved, &h.from.stack_bottom, &h.from.stack_size);
  }
  if (h.unwinding != nullptr) {
    h.unwinding->unwinder = h.from;
    h.unwinding = nullptr;
  }
  if (h.from_ended) {
    h.from_ended = false;
    fiber_control* const ended = h.from.control;
    h.from = fiber_peer{};
    release(ended);
    return fiber_peer{};
  }
  return h.from;
}

// A fiber's first entry receives its record: marks it started.
void* first_entry(const fiber_peer& target) noexcept {
  if (target.control == nullptr || target.control->started) return nullptr;
  target.control->started = true;
  return target.control->record;
}

}  // namespace

fiber_control* fiber_create(void* record, void (*destroy)(void*) noexcept, const void* stack_bottom,
                            std::size_t stack_size, lineage* inherit) {
  void* memory = platform::system::malloc(sizeof(fiber_control));
  if (memory == nullptr) throw std::bad_alloc();
  auto* control = new (memory) fiber_control{};
  control->own.kind = task_kind::fiber;
  control->own.stack_low = reinterpret_cast<std::uintptr_t>(stack_bottom);
  control->own.stack_high = control->own.stack_low + stack_size;
  control->record = record;
  control->destroy_record = destroy;
  control->stack_bottom = stack_bottom;
  control->stack_size = stack_size;
  if (inherit != nullptr) {
    try {
      join_lineage(control->own, *inherit);
    } catch (...) {
      control->~fiber_control();
      platform::system::free(control);
      throw;
    }
  }
  control->tsan_context = fiber_sanitizer::create_context();
  return control;
}

fiber_peer fiber_first_peer(fiber_control* control) noexcept {
  fiber_peer peer;
  peer.task = &control->own;
  peer.control = control;
  peer.stack_bottom = control->stack_bottom;
  peer.stack_size = control->stack_size;
  peer.tsan_fiber = control->tsan_context;
  return peer;
}

fiber_arrival fiber_jump(fcontext::fcontext_t to, const fiber_peer& target,
                         fcontext::transfer_t (*ontop)(fcontext::transfer_t),
                         fiber_ontop_header* args, fiber_control* unwinding) {
  MEMLIMITS_CHECK(to != nullptr && target.task != nullptr, "resume() of an empty memlimits::fiber");
  void* const record = first_entry(target);
  fiber_start start{record, ontop, args};
  void* fake_stack = nullptr;
  void* const tsan_target = target.tsan_fiber;
  if (ontop != nullptr) {
    args->target_fake_stack = target.fake_stack != nullptr ? *target.fake_stack : nullptr;
  }
  leave(&fake_stack, target, false, unwinding);
  fiber_sanitizer::start_switch(&fake_stack, target.stack_bottom, target.stack_size);
  fiber_sanitizer::switch_to(tsan_target);
  // A context that never ran has no frame to run a function on top of:
  // its entry runs it.
  const fcontext::transfer_t t =
      record != nullptr   ? fcontext::jump_fcontext(to, &start)
      : ontop != nullptr  ? fcontext::ontop_fcontext(to, args, ontop)
                          : fcontext::jump_fcontext(to, nullptr);
  const fiber_peer from = arrive(fake_stack);
  return {from.task != nullptr ? t.fctx : nullptr, from};
}

fiber_peer fiber_arrive_ontop(fiber_ontop_header* args) noexcept {
  return arrive(args->target_fake_stack);
}

void fiber_handback(const fiber_peer& from) noexcept { handoff.from = from; }

fiber_peer fiber_arrive_first() noexcept { return arrive(nullptr); }

fiber_peer fiber_unwinder(fiber_control* self) noexcept { return self->unwinder; }

// Not instrumented by AddressSanitizer: announcing the last switch destroys
// the fiber's fake stack (detect_stack_use_after_return), so this function's
// own frame, which the target reads, must be on the real stack.
__attribute__((no_sanitize("address"))) void fiber_exit(fcontext::fcontext_t to,
                                                          fiber_control* self,
                                                          const fiber_peer& target) noexcept {
  MEMLIMITS_CHECK(to != nullptr && target.task != nullptr,
                  "a memlimits::fiber's body returned an empty fiber");
  // Read by the target's entry before it releases this stack.
  fiber_start start{first_entry(target), nullptr, nullptr};
  void* const tsan_target = target.tsan_fiber;
  const void* const bottom = target.stack_bottom;
  const std::size_t size = target.stack_size;
  MEMLIMITS_CHECK(self == running, "a memlimits::fiber ended on a stack that is not its own");
  leave(nullptr, target, true, nullptr);  // `target` may be on the fake stack: read before
  fiber_sanitizer::start_switch(nullptr, bottom, size);
  fiber_sanitizer::switch_to(tsan_target);
  fcontext::jump_fcontext(to, start.record != nullptr ? &start : nullptr);
  MEMLIMITS_CHECK(false, "an ended memlimits::fiber was resumed");
  __builtin_unreachable();
}

// `unwind` is the header's fiber_unwind, which throws forced_unwind. It is
// passed in rather than defined here so that the exception is thrown and
// caught in the program's NDEBUG mode: forced_unwind's layout depends on it,
// and if the throw moves into the library, Debug/Release mixes break (a
// write past the exception, or Boost's assertion on `caught`).
void fiber_destroy(fcontext::fcontext_t fctx, const fiber_peer& peer,
                   fcontext::transfer_t (*unwind)(fcontext::transfer_t)) noexcept {
  if (peer.control != nullptr && !peer.control->started) {
    release(peer.control);  // never ran: nothing on its stack
    return;
  }
  fiber_ontop_header args;
  fiber_jump(fctx, peer, unwind, &args, peer.control);
}

}  // namespace memlimits::detail
