// platform/environment.cpp — strict parsers of environment settings and the
// line that reports an ignored value. Layer 1.
#include "platform/environment.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "platform/platform.hpp"

namespace memlimits::platform {
namespace {

// strtoull and strtod skip leading blanks and strtoull takes a sign ("-1"
// is 2^64 - 1): a value must start with what the number starts with.
bool starts_like_a_number(const char* text) noexcept {
  const char c = text[0];
  return (c >= '0' && c <= '9') || c == '.';
}

}  // namespace

bool parse_unsigned(const char* text, std::uint64_t& value) noexcept {
  if (text == nullptr || !starts_like_a_number(text)) return false;
  const int saved_errno = errno;
  errno = 0;
  char* end = nullptr;
  const unsigned long long parsed = std::strtoull(text, &end, 0);
  const bool whole = end != text && *end == '\0' && errno == 0;
  errno = saved_errno;
  if (!whole) return false;
  value = static_cast<std::uint64_t>(parsed);
  return true;
}

bool parse_number(const char* text, double& value) noexcept {
  if (text == nullptr) return false;
  const char c = text[0];
  if (!starts_like_a_number(text) && c != '-' && c != '+') return false;
  if ((c == '-' || c == '+') && !starts_like_a_number(text + 1)) return false;
  const int saved_errno = errno;
  errno = 0;
  char* end = nullptr;
  const double parsed = std::strtod(text, &end);
  const bool whole = end != text && *end == '\0' && errno == 0 && std::isfinite(parsed);
  errno = saved_errno;
  if (!whole) return false;
  value = parsed;
  return true;
}

void report_ignored_variable(const char* name, const char* value, const char* expected) noexcept {
  char line[512];
  const int length = std::snprintf(line, sizeof line, "memlimits: ignoring %s=\"%.200s\": expected %s\n",
                                   name, value, expected);
  if (length <= 0) return;
  const auto size = static_cast<std::size_t>(length) < sizeof line
                        ? static_cast<std::size_t>(length) : sizeof line - 1;
  write_stderr(line, size);
}

}  // namespace memlimits::platform
