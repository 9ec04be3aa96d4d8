// sandbox — runs untrusted Lua scripts inside one process, each under a
// memory limit (limit_memory), an allocation budget (limit_allocations) and
// an instruction budget (limit_with_token, set by a Lua count hook). Memory
// bombs, allocation loops, runaway recursion and busy loops are stopped and
// reported by the limit that stopped them; good scripts give their results;
// every lua_State is closed; the host goes on serving, from several threads.
// Prints one row per script and exits with 0 only if every outcome is the
// expected one (scripts.hpp). Uses the public API, the hooks, and Lua 5.4.
//
// How an allocation failure reaches Lua. Lua is C compiled without
// exceptions; it reports errors with longjmp, so a C++ exception must never
// unwind through its frames. Lua gets its memory from a custom lua_Alloc,
// lua_allocate() below, built on memlimits::resource(): the adapter raises
// limit_reached in an interrupted task, the allocator catches it in its own
// frame and returns NULL, and Lua raises its own "not enough memory"
// (LUA_ERRMEM). The alternative, settings::malloc_policy::fail with Lua's
// default realloc-based allocator, would work too, but it is a process-wide
// switch: every malloc of every interrupted task of the host would return
// NULL, whatever C library made it. Here only Lua's allocator refuses, only
// for the scripts, and the hooks need not be linked for it (they are, so
// that the host's own allocations count too). README.md says more.
#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <lua.hpp>

#include "memlimits/memlimits.hpp"
#include "scripts.hpp"

namespace {

using namespace memlimits::literals;
using sandbox::outcome;
using sandbox::script;

// The limits of every script. The budget is far above what a memory bomb
// allocates before the memory limit stops it (1-2x the limit), and
// the memory limit far above what the allocation loop keeps live (Lua's GC
// frees its strings), so each hostile script is stopped by the limit it
// targets. The memory limit is statistical: with the default sampling rate
// (one sample per ~78 KiB) it trips after 16 MiB +/- about 1 MiB of live
// data, and the good scripts stay under 4 MiB.
constexpr std::uint64_t memory_limit = 16_MiB;
constexpr std::uint64_t allocation_budget = 256_MiB;
// Lua VM instructions per script, counted by a hook every hook_interval.
constexpr std::uint64_t instruction_budget = 20'000'000;
constexpr int hook_interval = 1000;

constexpr std::size_t lua_alignment = alignof(std::max_align_t);  // what Lua's objects need

// What one lua_State's allocator and hook need: its lua_Alloc user data.
// Used only by the thread that runs the state.
struct lua_budget {
  const memlimits::token* fuel;    // set when the instruction budget is spent
  std::uint64_t instructions = 0;  // counted by the hook, in hook_interval steps
  std::int64_t live_bytes = 0;     // Lua's own count of what it holds
  std::int64_t peak_bytes = 0;
};

// lua_Alloc over memlimits' memory resource. Must not throw, and must not
// longjmp: Lua calls it from C. A limit (or the system) refusing a block is
// a NULL result, which Lua turns into LUA_ERRMEM after an emergency GC.
// Lua 5.4 accepts a failing shrink as well, so a reallocation is always a
// new block; a block is returned with the size Lua allocated it with.
void* lua_allocate(void* user_data, void* block, std::size_t old_size,
                   std::size_t new_size) noexcept {
  auto& budget = *static_cast<lua_budget*>(user_data);
  memlimits::memory_resource& memory = *memlimits::resource();
  if (block == nullptr) old_size = 0;  // Lua passes the kind of object being created there
  if (new_size == 0) {
    if (block != nullptr) memory.deallocate(block, old_size, lua_alignment);
    budget.live_bytes -= static_cast<std::int64_t>(old_size);
    return nullptr;
  }
  void* fresh = nullptr;
  try {
    fresh = memory.allocate(new_size, lua_alignment);
  } catch (const std::bad_alloc&) {  // limit_reached is one: caught here, never seen by Lua
    return nullptr;                  // the old block, if any, stays valid
  }
  if (block != nullptr) {
    std::memcpy(fresh, block, std::min(old_size, new_size));
    memory.deallocate(block, old_size, lua_alignment);
  }
  budget.live_bytes += static_cast<std::int64_t>(new_size) - static_cast<std::int64_t>(old_size);
  budget.peak_bytes = std::max(budget.peak_bytes, budget.live_bytes);
  return fresh;
}

// The registry key of the error the hook raises; its value is a string made
// when the state is set up, so that raising it allocates nothing.
const char interrupted_key = 0;

// Count hook, every hook_interval instructions (and every instruction once
// the task is interrupted). Spends the instruction budget: when it is gone,
// sets the token, which memlimits::is_interrupted() turns into a trip of the
// token guard. Then, in an interrupted task, raises a Lua error. It does so
// at every instruction from then on, so a script that catches the error with
// pcall cannot keep running: the first instruction after its pcall raises
// again, outside it. Lua code whose allocations fail (the usual way a limit
// shows) cannot catch its way out either. Lua longjmps out of this function:
// it holds no object with a destructor.
void count_hook(lua_State* L, lua_Debug*) {
  void* user_data = nullptr;
  lua_getallocf(L, &user_data);
  auto& budget = *static_cast<lua_budget*>(user_data);
  budget.instructions += hook_interval;
  if (budget.instructions > instruction_budget) budget.fuel->set();
  if (!memlimits::is_interrupted()) return;
  lua_sethook(L, &count_hook, LUA_MASKCOUNT, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &interrupted_key);
  lua_error(L);
}

// setmetatable without finalizers: Lua runs __gc metamethods with its hooks
// off, so a finalizer that loops without allocating could not be stopped.
// An object is marked for finalization only if its metatable has __gc when
// it is set, so refusing such metatables here is enough.
int sandboxed_setmetatable(lua_State* L) {
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L, "sandbox: __gc metamethods are not allowed");
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));  // the original setmetatable
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

// Sets up the sandbox and runs the script, in protected mode (everything
// here may raise a Lua error, a memory error included; unprotected, Lua
// would call its panic function and abort). Argument: the script, as light
// userdata. Returns the script's first result, converted to a string.
int run_protected(lua_State* L) {
  const auto* job = static_cast<const script*>(lua_touserdata(L, 1));

  // The safe libraries only: no io, os, package, debug.
  luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
  luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
  luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
  luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
  luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
  luaL_requiref(L, LUA_COLIBNAME, luaopen_coroutine, 1);
  lua_settop(L, 1);
  // Base functions that reach files, load binary chunks or write to stdout.
  static constexpr std::array<const char*, 5> removed{"dofile", "loadfile", "load", "print",
                                                      "collectgarbage"};
  for (const char* name : removed) {
    lua_pushnil(L);
    lua_setglobal(L, name);
  }
  lua_getglobal(L, "setmetatable");
  lua_pushcclosure(L, &sandboxed_setmetatable, 1);
  lua_setglobal(L, "setmetatable");
  lua_pushliteral(L, "sandbox: interrupted by a limit");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &interrupted_key);

  // Text only ("t"): precompiled chunks can crash the VM.
  lua_pushliteral(L, "=");
  lua_pushlstring(L, job->name.data(), job->name.size());
  lua_concat(L, 2);
  const char* chunk_name = lua_tostring(L, -1);
  if (luaL_loadbufferx(L, job->code.data(), job->code.size(), chunk_name, "t") != LUA_OK) {
    return lua_error(L);  // the syntax error
  }
  lua_call(L, 0, 1);
  luaL_tolstring(L, -1, nullptr);
  return 1;
}

// The result or Lua's error message, truncated: copied without allocating.
using text_buffer = std::array<char, 160>;

// What one run of a script gave.
struct run_report {
  outcome got = outcome::result;
  int lua_status = LUA_OK;
  text_buffer text{};
  memlimits::usage used;            // from the outermost guard
  std::int64_t lua_peak_bytes = 0;  // Lua's own count
  std::int64_t lua_live_after_close = 0;
  bool escaped = false;  // a C++ exception left the task (never expected)
};

// Copies the value on top of the stack, if a string, without allocating:
// Lua converts numbers in place, which could raise an error outside any
// protected call.
void copy_top(lua_State* L, text_buffer& text) {
  if (lua_type(L, -1) == LUA_TSTRING) {
    std::size_t length = 0;
    const char* s = lua_tolstring(L, -1, &length);
    length = std::min(length, text.size() - 1);
    std::memcpy(text.data(), s, length);
    text[length] = '\0';
  } else {
    std::snprintf(text.data(), text.size(), "(error object is a %s value)",
                  lua_typename(L, lua_type(L, -1)));
  }
}

std::atomic<std::uint64_t> states_opened{0};
std::atomic<std::uint64_t> states_closed{0};

run_report run_script(const script& job) {
  run_report report;
  memlimits::token fuel;  // before the guards: a fresh token per run
  lua_budget budget{.fuel = &fuel};

  // The whole life of the lua_State is inside the guards: lua_close() too,
  // so that everything the script made is freed while it is still counted.
  // Nothing in here throws: Lua's errors end at lua_pcall, the allocator
  // catches the limits' exceptions.
  auto run = [&]() noexcept {
    lua_State* L = lua_newstate(&lua_allocate, &budget);
    if (L == nullptr) {
      report.lua_status = LUA_ERRMEM;
      std::snprintf(report.text.data(), report.text.size(), "cannot create a Lua state");
      return;
    }
    states_opened.fetch_add(1, std::memory_order_relaxed);
    lua_sethook(L, &count_hook, LUA_MASKCOUNT, hook_interval);
    lua_pushcfunction(L, &run_protected);
    lua_pushlightuserdata(L, const_cast<script*>(&job));
    report.lua_status = lua_pcall(L, 1, 1, 0);
    copy_top(L, report.text);
    lua_close(L);
    states_closed.fetch_add(1, std::memory_order_relaxed);
  };
  const auto guarded = memlimits::limit_allocations(allocation_budget, [&] {
    return memlimits::limit_memory(memory_limit,
                                   [&] { return memlimits::limit_with_token(fuel, run); });
  });

  // The guards say which limit stopped the script, whatever Lua reported.
  report.used = guarded.usage();
  if (!guarded) {
    report.got = outcome::allocation_limit;
    report.escaped = guarded.error().exception() != nullptr;
  } else if (!*guarded) {
    report.got = outcome::memory_limit;
    report.escaped = guarded->error().exception() != nullptr;
  } else if (!**guarded) {
    report.got = outcome::instruction_limit;
    report.escaped = (*guarded)->error().exception() != nullptr;
  } else {
    report.got = report.lua_status == LUA_OK ? outcome::result : outcome::lua_error;
  }
  report.lua_peak_bytes = budget.peak_bytes;
  report.lua_live_after_close = budget.live_bytes;
  return report;
}

const char* describe(outcome o) {
  switch (o) {
    case outcome::result:
      return "result";
    case outcome::memory_limit:
      return "stopped: memory limit";
    case outcome::allocation_limit:
      return "stopped: allocation limit";
    case outcome::instruction_limit:
      return "stopped: instruction limit";
    case outcome::lua_error:
      return "Lua error";
  }
  return "?";
}

// Empty if the run is as expected, else what is wrong.
std::string check(const script& job, const run_report& r) {
  const std::string_view text(r.text.data());
  if (r.got != job.expected) return std::string("expected ") + describe(job.expected);
  if (r.escaped) return "a C++ exception escaped into the guard";
  if (r.lua_live_after_close != 0) {
    return "Lua still holds " + std::to_string(r.lua_live_after_close) + " B after lua_close";
  }
  if (r.got == outcome::result && text != job.expected_text) {
    return "expected the result " + std::string(job.expected_text);
  }
  if (r.got == outcome::lua_error && text.find(job.expected_text) == std::string_view::npos) {
    return "expected an error with " + std::string(job.expected_text);
  }
  return {};
}

std::string bytes(std::int64_t n) {
  char out[32];
  if (n < 1024 && n > -1024) {
    std::snprintf(out, sizeof out, "%lld B", static_cast<long long>(n));
  } else if (n < 1024 * 1024 && n > -1024 * 1024) {
    std::snprintf(out, sizeof out, "%.1f KiB", static_cast<double>(n) / 1024);
  } else {
    std::snprintf(out, sizeof out, "%.1f MiB", static_cast<double>(n) / (1024 * 1024));
  }
  return out;
}

void print_header() {
  std::printf("%-21s %-27s %11s %11s %9s  %s\n", "script", "outcome", "allocated", "Lua peak",
              "live", "result / Lua's message");
}

// One row: the guard's usage (bytes allocated, live estimate at exit), Lua's
// own peak, and what Lua returned or raised.
void print_row(const script& job, const run_report& r, const std::string& problem) {
  std::string detail(r.text.data());
  std::replace(detail.begin(), detail.end(), '\n', ' ');
  if (detail.size() > 60) detail = detail.substr(0, 57) + "...";
  const auto allocated = static_cast<std::int64_t>(r.used.allocated_bytes);
  std::printf("%-21.*s %-27s %11s %11s %9s  %s\n", static_cast<int>(job.name.size()),
              job.name.data(), describe(r.got), bytes(allocated).c_str(),
              bytes(r.lua_peak_bytes).c_str(), bytes(r.used.memory_bytes).c_str(), detail.c_str());
  if (!problem.empty()) std::printf("  UNEXPECTED: %s\n", problem.c_str());
}

// Runs every script from `threads` threads, `rounds` times each, each
// thread in its own order. Returns the number of unexpected outcomes.
int run_concurrently(int threads, int rounds) {
  std::mutex lock;
  int unexpected = 0;
  {
    std::vector<std::jthread> workers;
    for (int w = 0; w < threads; ++w) {
      workers.emplace_back([&, w] {
        for (int round = 0; round < rounds; ++round) {
          for (std::size_t i = 0; i < sandbox::scripts.size(); ++i) {
            const script& job = sandbox::scripts[(i * (w + 1) + round) % sandbox::scripts.size()];
            const run_report r = run_script(job);
            const std::string problem = check(job, r);
            if (!problem.empty()) {
              const std::lock_guard guard(lock);
              ++unexpected;
              std::printf("thread %d: ", w);
              print_row(job, r, problem);
            }
          }
        }
      });
    }
  }
  return unexpected;
}

}  // namespace

int main() {
  // The table below reports every interruption; the library's own log line
  // per interrupted guard is at info level (SPDLOG_LEVEL=memlimits=info).
  setenv("SPDLOG_LEVEL", "memlimits=warn", /*overwrite=*/0);

  std::printf("Each script: limit_memory(%s), limit_allocations(%s), %llu Lua instructions.\n\n",
              bytes(memory_limit).c_str(), bytes(allocation_budget).c_str(),
              static_cast<unsigned long long>(instruction_budget));
  int unexpected = 0;
  print_header();
  for (const script& job : sandbox::scripts) {
    const run_report r = run_script(job);
    const std::string problem = check(job, r);
    if (!problem.empty()) ++unexpected;
    print_row(job, r, problem);
  }

  std::printf(
      "\nallocated, live: the guards' usage() (bytes allocated; live estimate when the\n"
      "guard exited, after lua_close). Lua peak: the most Lua held, by its own count.\n");

  // The host keeps serving: the good scripts again, after the hostile ones.
  int good = 0;
  int good_ok = 0;
  for (const script& job : sandbox::scripts) {
    if (!job.good) continue;
    ++good;
    const run_report r = run_script(job);
    const std::string problem = check(job, r);
    if (problem.empty()) {
      ++good_ok;
    } else {
      ++unexpected;
      print_row(job, r, problem);
    }
  }
  std::printf("\nafter the hostile scripts: %d of %d good scripts gave their results\n", good_ok,
              good);

  constexpr int threads = 4;
  constexpr int rounds = 2;
  const int concurrent_unexpected = run_concurrently(threads, rounds);
  const int concurrent_runs = threads * rounds * static_cast<int>(sandbox::scripts.size());
  std::printf("concurrently, %d threads x %d rounds x %zu scripts: %d of %d runs as expected\n",
              threads, rounds, sandbox::scripts.size(), concurrent_runs - concurrent_unexpected,
              concurrent_runs);
  unexpected += concurrent_unexpected;

  const auto opened = states_opened.load();
  const auto closed = states_closed.load();
  std::printf("Lua states opened %llu, closed %llu\n", static_cast<unsigned long long>(opened),
              static_cast<unsigned long long>(closed));
  if (opened != closed) ++unexpected;

  if (unexpected == 0) {
    std::printf("all outcomes as expected\n");
    return EXIT_SUCCESS;
  }
  std::printf("%d unexpected outcomes\n", unexpected);
  return EXIT_FAILURE;
}
