// platform/environment.hpp — settings read from environment variables,
// parsed strictly: a value is taken only when the whole text is a value of
// the expected kind; otherwise the caller reports it (one line on standard
// error naming the variable and the value) and ignores it, as if unset.
// Nothing here allocates: the parsers run inside allocations (the sampling
// core seeds its first thread from MEMLIMITS_SEED in the slow path).
// Layer 1; uses only the C library.
#pragma once

#include <cstdint>

namespace memlimits::platform {

// An unsigned integer in C's notation (decimal, 0x hexadecimal, 0 octal),
// with no sign, no blank and nothing after it, that fits 64 bits.
bool parse_unsigned(const char* text, std::uint64_t& value) noexcept;

// A finite floating-point number (strtod's syntax) with no blank and
// nothing after it.
bool parse_number(const char* text, double& value) noexcept;

// "memlimits: ignoring NAME=VALUE: expected EXPECTED\n" on standard error
// (VALUE quoted and cut at 200 characters), in one write.
void report_ignored_variable(const char* name, const char* value, const char* expected) noexcept;

}  // namespace memlimits::platform
