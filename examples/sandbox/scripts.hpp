// examples/sandbox/scripts.hpp — the Lua scripts the sandbox example runs,
// each with the outcome the host must see: good scripts with their exact
// result, hostile ones with the limit that must stop them, broken ones with
// the Lua error they must raise. Plain data; sandbox.cpp runs and checks them.
#pragma once

#include <array>
#include <string_view>

namespace sandbox {

enum class outcome {
  result,             // the script returned; its value, as a string, is checked
  memory_limit,       // stopped by limit_memory
  allocation_limit,   // stopped by limit_allocations
  instruction_limit,  // stopped by the instruction budget (a token set by the count hook)
  lua_error,          // the script raised a Lua error; its message is checked
};

struct script {
  std::string_view name;
  std::string_view code;
  outcome expected;
  // outcome::result: the exact value returned; outcome::lua_error: a part of
  // the message; otherwise unused.
  std::string_view expected_text = {};
  bool good = false;  // well-behaved: run again after the hostile ones
};

// Well-behaved scripts: each computes something whose value is known.
inline constexpr std::string_view primes = R"lua(
  -- Sieve of Eratosthenes: how many primes below 100000 (9592).
  local n, composite, count = 100000, {}, 0
  for i = 2, n do
    if not composite[i] then
      count = count + 1
      for j = i * i, n, i do composite[j] = true end
    end
  end
  return count
)lua";

inline constexpr std::string_view word_count = R"lua(
  local text = string.rep("the quick brown fox jumps over the lazy dog ", 500) .. "The end"
  local counts, total = {}, 0
  for word in text:gmatch("%a+") do
    word = word:lower()
    counts[word] = (counts[word] or 0) + 1
    total = total + 1
  end
  local words = {}
  for word in pairs(counts) do words[#words + 1] = word end
  table.sort(words, function(a, b)
    if counts[a] ~= counts[b] then return counts[a] > counts[b] end
    return a < b
  end)
  local top = {}
  for i = 1, 3 do top[i] = words[i] .. "=" .. counts[words[i]] end
  return total .. " words, " .. #words .. " distinct: " .. table.concat(top, " ")
)lua";

inline constexpr std::string_view string_building = R"lua(
  -- The squares 1..10000 joined by commas: length and a polynomial hash.
  local parts = {}
  for i = 1, 10000 do parts[#parts + 1] = tostring(i * i) end
  local s = table.concat(parts, ",")
  local hash = 0
  for i = 1, #s do hash = (hash * 31 + s:byte(i)) % 1000000007 end
  return #s .. " " .. hash
)lua";

inline constexpr std::string_view json = R"lua(
  -- A JSON serializer: objects with sorted keys, arrays, escapes.
  local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\t'] = '\\t' }
  local function escape(c) return escapes[c] or string.format("\\u%04x", c:byte()) end
  local function serialize(value, out)
    local kind = type(value)
    if kind == "table" then
      if #value > 0 or next(value) == nil then
        out[#out + 1] = "["
        for i, item in ipairs(value) do
          if i > 1 then out[#out + 1] = "," end
          serialize(item, out)
        end
        out[#out + 1] = "]"
      else
        local keys = {}
        for key in pairs(value) do keys[#keys + 1] = key end
        table.sort(keys)
        out[#out + 1] = "{"
        for i, key in ipairs(keys) do
          if i > 1 then out[#out + 1] = "," end
          serialize(key, out)
          out[#out + 1] = ":"
          serialize(value[key], out)
        end
        out[#out + 1] = "}"
      end
    elseif kind == "string" then
      out[#out + 1] = '"' .. (value:gsub('[%c"\\]', escape)) .. '"'
    elseif math.type(value) == "integer" then
      out[#out + 1] = string.format("%d", value)
    elseif kind == "number" then
      out[#out + 1] = string.format("%.14g", value)
    else
      out[#out + 1] = tostring(value)
    end
  end
  local out = {}
  serialize({ name = "sandbox", version = 5.4, tags = { "lua", "memlimits" },
              nested = { ok = true, none = false, quote = 'say "hi"\n' }, empty = {} }, out)
  return table.concat(out)
)lua";

inline constexpr std::string_view fibonacci = R"lua(
  -- A coroutine generator: the 90th Fibonacci number (fits in 64 bits).
  local fib = coroutine.wrap(function()
    local a, b = 0, 1
    while true do
      coroutine.yield(a)
      a, b = b, a + b
    end
  end)
  local last
  for _ = 0, 90 do last = fib() end
  return last
)lua";

// Hostile scripts.
inline constexpr std::string_view memory_bomb = R"lua(
  local t = {}
  while true do t[#t + 1] = string.rep('x', 1000) end
)lua";

inline constexpr std::string_view table_bomb = R"lua(
  local t, i = {}, 0
  while true do
    i = i + 1
    t[i] = { i, i, i }
  end
)lua";

inline constexpr std::string_view string_doubling = R"lua(
  local s = 'x'
  while true do s = s .. s end
)lua";

inline constexpr std::string_view deep_recursion = R"lua(
  -- Not a tail call: every level keeps a frame on the Lua stack.
  local function depth(n) return 1 + depth(n + 1) end
  return depth(1)
)lua";

inline constexpr std::string_view allocation_loop = R"lua(
  -- Allocates and drops a string per iteration: little is ever live, so the
  -- memory limit never trips; the allocation budget does.
  local i = 0
  while true do
    i = i + 1
    local s = string.rep('y', 1000) .. i
  end
)lua";

inline constexpr std::string_view swallow_errors = R"lua(
  -- Catches its own "not enough memory" and tries again, forever.
  local function bomb()
    local t = {}
    while true do t[#t + 1] = string.rep('z', 1000) end
  end
  while true do pcall(bomb) end
)lua";

inline constexpr std::string_view busy_loop = R"lua(
  -- Never allocates: only the instruction budget can stop it.
  local i = 0
  while true do i = i + 1 end
)lua";

inline constexpr std::string_view busy_coroutine = R"lua(
  -- Coroutines inherit the hook of the state that creates them.
  coroutine.wrap(function() while true do end end)()
)lua";

inline constexpr std::string_view huge_string = R"lua(
  -- One request of 1 GiB: refused before it is made, the budget being exact.
  return #string.rep('x', 1 << 30)
)lua";

inline constexpr std::string_view metamethod_recursion = R"lua(
  -- Recursion through a metamethod goes through C: Lua's C-stack limit.
  local t = setmetatable({}, { __index = function(t, k) return t[k] end })
  return t.anything
)lua";

inline constexpr std::string_view finalizer = R"lua(
  -- A finalizer runs with Lua's hooks off: the sandbox refuses __gc.
  setmetatable({}, { __gc = function() while true do end end })
  return "unreachable"
)lua";

inline constexpr std::string_view escape_attempt = R"lua(
  return io.open("/etc/passwd"):read("a")
)lua";

inline constexpr std::string_view error_call = R"lua(
  error("boom")
)lua";

inline constexpr std::string_view syntax_error = R"lua(
  return 1 +
)lua";

inline constexpr std::array scripts{
    script{"primes", primes, outcome::result, "9592", true},
    script{"word count", word_count, outcome::result,
           "4502 words, 9 distinct: the=1001 brown=500 dog=500", true},
    script{"string building", string_building, outcome::result, "85381 127754281", true},
    script{"json", json, outcome::result,
           R"({"empty":[],"name":"sandbox","nested":{"none":false,"ok":true,)"
           R"("quote":"say \"hi\"\n"},"tags":["lua","memlimits"],"version":5.4})",
           true},
    script{"fibonacci", fibonacci, outcome::result, "2880067194370816120", true},
    script{"memory bomb", memory_bomb, outcome::memory_limit},
    script{"table bomb", table_bomb, outcome::memory_limit},
    script{"string doubling", string_doubling, outcome::memory_limit},
    script{"deep recursion", deep_recursion, outcome::memory_limit},
    script{"allocation loop", allocation_loop, outcome::allocation_limit},
    script{"swallow errors", swallow_errors, outcome::memory_limit},
    script{"busy loop", busy_loop, outcome::instruction_limit},
    script{"busy coroutine", busy_coroutine, outcome::instruction_limit},
    script{"huge string", huge_string, outcome::allocation_limit},
    script{"metamethod recursion", metamethod_recursion, outcome::lua_error, "stack overflow"},
    script{"finalizer", finalizer, outcome::lua_error, "__gc metamethods are not allowed"},
    script{"escape attempt", escape_attempt, outcome::lua_error,
           "attempt to index a nil value (global 'io')"},
    script{"error call", error_call, outcome::lua_error, "boom"},
    script{"syntax error", syntax_error, outcome::lua_error, "unexpected symbol"},
};

}  // namespace sandbox
