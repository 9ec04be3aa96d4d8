// platform/x86_64_decode.hpp — the length and control flow of one x86-64
// instruction: enough to follow a landing pad's code from instruction to
// instruction (platform/handler_search.cpp), not a disassembler. Layer 1.
#pragma once

#include <cstddef>
#include <cstdint>

namespace memlimits::platform::x86_64 {

struct instruction {
  enum class flow : std::uint8_t {
    next,         // falls through to the next instruction
    call,         // a direct call to `target`, then (usually) the next
    jump,         // an unconditional direct jump to `target`
    branch,       // a conditional direct jump: `target` or the next
    end,          // ret, ud2, hlt, int3: the path ends here
    unknown,      // an indirect jump, or bytes not decoded: cannot follow
  };
  std::size_t length = 0;
  flow kind = flow::unknown;
  std::uintptr_t target = 0;
};

// Decodes the instruction at `at` (at least 15 readable bytes there, or up
// to the end of the code it lies in: the caller bounds `available`).
instruction decode(std::uintptr_t at, std::size_t available) noexcept;

}  // namespace memlimits::platform::x86_64
