// platform/handler_search.hpp — would a C++ exception thrown here be caught,
// or would it reach a noexcept boundary and call std::terminate?
//
// The first (search) phase of the Itanium C++ ABI's two-phase unwinding,
// run on its own: the frames of the calling thread are walked with the
// unwinder (_Unwind_Backtrace), and each C++ frame's call-site entry is
// read from its LSDA (.gcc_except_table), as __gxx_personality_v0 reads it;
// where the tables leave the answer open (a cleanup or a catch-all that may
// terminate, a handler that may rethrow), the landing pad's code is
// followed (x86_64_decode.hpp). Nothing is unwound, no exception object exists, nothing allocates (after
// the unwinder's first use in the process, see prepare_unwinder()).
// Why this design and how each compiler marks noexcept: README.md here.
// Layer 1.
#pragma once

#include <cstdint>
#include <typeinfo>

namespace memlimits::platform {

struct handler_query {
  // The return address of the frame the throw would leave first: the search
  // starts at the frame that called the throwing function (the frames below
  // it, the library's own, are skipped).
  const void* from = nullptr;
  // The exception: its type, and an object of that type (for base-class
  // adjustment during matching; it is only read).
  const std::type_info* type = nullptr;
  void* object = nullptr;
  // Where a handler is known to end the search: the first frame whose stack
  // pointer at its call is at or above `stop_above` (the frame that called a
  // function whose CFA was `stop_above`, or one of its callers) and that has
  // a handler for the call site. 0: none.
  std::uintptr_t stop_above = 0;
};

enum class throw_outcome : std::uint8_t {
  caught,      // a handler would catch it before any noexcept boundary
  terminates,  // std::terminate would be called
};

struct handler_answer {
  throw_outcome outcome = throw_outcome::terminates;
  bool from_found = false;  // false: `from` is not on the stack (then: terminates)
  unsigned frames = 0;      // frames examined from `from` on
  // The outermost frame below the stop that would terminate (outcome
  // terminates; with no stop, the first one found): its stack pointer at the
  // call it is making, and the return address of that call, as stored on
  // the stack (0 where they are not known). While both still match, that
  // frame is still making that call, and every throw below it terminates or
  // is caught before it.
  std::uintptr_t boundary_sp = 0;
  std::uintptr_t boundary_return = 0;
  // The same for the frame that called it (its return address is the
  // boundary frame's own): a second word that must still match, so that a
  // stale copy of the first one in a reused stack slot is not taken for it.
  std::uintptr_t caller_sp = 0;
  std::uintptr_t caller_return = 0;
};

// Handlers that catch and rethrow are common (libstdc++ wraps construction
// in catch (...) { destroy; throw; }): the handler's code is followed, and a
// handler that may rethrow does not end the search, which goes on above it;
// the answer is then `terminates` if any later frame would terminate. A
// handler that never throws, or any handler above `stop_above`, ends it. At
// the end of the stack, the answer is `caught` iff some handler was seen.
handler_answer search_handler(const handler_query& query) noexcept;

// The return address of the call made by the frame whose stack pointer at
// that call was `sp`, where the ABI puts it at a fixed place (x86-64: the
// word below); 0 elsewhere. The caller guarantees that the word is in a live
// stack; it may be a stale word of a frame that has returned (the reader
// checks), which AddressSanitizer is told not to mind.
std::uintptr_t return_address_at(std::uintptr_t sp) noexcept;

}  // namespace memlimits::platform
