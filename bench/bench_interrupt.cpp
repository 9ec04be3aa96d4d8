// bench/bench_interrupt.cpp — what an interruption costs now that the
// library searches for a handler before raising it (commit f03248a,
// src/platform/handler_search.cpp, src/limits/raise_point.cpp), and what the
// search costs in its worst case, a noexcept region that keeps allocating
// while the task is interrupted. Linked with memlimits and its hooks.
//
//   bench_interrupt                          # Google Benchmark, all cases
//   bench_interrupt --count CASE DEPTH N     # N iterations of one case, for callgrind
//
// Interruption at a depth (Google Benchmark `Interrupt<how>/depth`): one
// iteration makes a token, enters limit_with_token(t, ...), sets t inside
// the task (a token set before entry does not run the task), recurses
// `depth` noinline frames without cleanups and then
//   OperatorNew  calls ::operator new(64): the library searches the stack
//                for a handler (caught, by the guard) and raises;
//   ByHand       throws memlimits::limit_reached(token) itself: the same
//                throw and catch without the search;
//   Poll         calls memlimits::poll(): search, then raise;
//   NoThrow      returns (the token is never set): guard, token and
//                recursion only, the floor under the three others.
// The guard catches the exception and returns the interruption.
//
// Worst case (`TreeDestroy/<order>/<interrupted>`): a 100,000-node balanced
// binary tree of unique_ptr children, destroyed by a noexcept destructor;
// each node's destructor builds a 48-character std::string (a heap
// allocation), before destroying its children (order 0, pre-order) or after
// (order 1, post-order). interrupted = 1: the tree is destroyed inside
// limit_with_token with the token set (every allocation takes the slow
// path, finds or remembers the noexcept boundary, and is deferred);
// interrupted = 0: the same inside a guard whose token is not set. Only the
// destruction is timed (manual time); the tree is built before, in the
// guard, untimed.
//
// The "memlimits" spdlog logger is registered with level off, so that the
// one log line of a tripped guard is not written (its level check remains).
#include <benchmark/benchmark.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "memlimits/limits.hpp"

namespace {

enum class how : int { operator_new, by_hand, poll, no_throw };

[[gnu::noinline]] int at_bottom(how h) {
  switch (h) {
    case how::operator_new: {
      void* p = ::operator new(64);
      benchmark::DoNotOptimize(p);
      ::operator delete(p);
      return 0;
    }
    case how::by_hand:
      throw memlimits::limit_reached(memlimits::limit_kind::token);
    case how::poll:
      memlimits::poll();
      return 0;
    case how::no_throw:
      return 0;
  }
  return 0;
}

// `depth` frames of this function above at_bottom; no cleanups, so no LSDA
// entry for the call; the addition after the call keeps it from being a
// tail call.
[[gnu::noinline]] int descend(int depth, how h) {
  if (depth == 0) return at_bottom(h);
  int r = descend(depth - 1, h);
  benchmark::DoNotOptimize(r);
  return r + 1;
}

// One interruption (or, no_throw, one guarded call that is not interrupted).
[[gnu::noinline]] void one_interruption(int depth, how h) {
  memlimits::token t;
  auto r = memlimits::limit_with_token(t, [&] {
    if (h != how::no_throw) {
      t.set();
      if (!memlimits::is_interrupted()) std::abort();
    }
    return descend(depth, h);
  });
  if (static_cast<bool>(r) != (h == how::no_throw)) {
    std::fprintf(stderr, "bench_interrupt: unexpected outcome\n");
    std::abort();
  }
  benchmark::DoNotOptimize(r);
}

// ---- the worst case: a tree destroyed in a noexcept destructor -------------

struct node {
  std::unique_ptr<node> left;
  std::unique_ptr<node> right;
  bool post_order = false;
  // Implicitly noexcept: an interruption raised here would terminate.
  ~node() {
    if (post_order) {
      left.reset();
      right.reset();
    }
    std::string s(48, 'x');  // longer than the small-string buffer: allocates
    benchmark::DoNotOptimize(s.data());
  }
};

std::unique_ptr<node> build(int n, bool post_order) {
  if (n == 0) return nullptr;
  auto p = std::make_unique<node>();
  p->post_order = post_order;
  const int left = (n - 1) / 2;
  p->left = build(left, post_order);
  p->right = build(n - 1 - left, post_order);
  return p;
}

struct tree {
  std::unique_ptr<node> root;
  ~tree() noexcept { root.reset(); }
};

constexpr int tree_nodes = 100'000;

// Destroys the tree: the region the measurements cover.
extern "C" [[gnu::noinline]] void bench_interrupt_destroy_tree(tree* t) noexcept { t->~tree(); }

// Builds a tree in a guard, sets the token if `interrupted`, and destroys the
// tree; returns the destruction's wall time in seconds.
double one_tree(bool post_order, bool interrupted) {
  memlimits::token t;
  double seconds = 0;
  auto r = memlimits::limit_with_token(t, [&] {
    alignas(tree) unsigned char storage[sizeof(tree)];
    tree* owner = new (storage) tree{build(tree_nodes, post_order)};
    if (interrupted) {
      t.set();
      if (!memlimits::is_interrupted()) std::abort();
    }
    const auto start = std::chrono::steady_clock::now();
    bench_interrupt_destroy_tree(owner);
    const auto end = std::chrono::steady_clock::now();
    seconds = std::chrono::duration<double>(end - start).count();
    return 0;
  });
  if (static_cast<bool>(r) == interrupted) {
    std::fprintf(stderr, "bench_interrupt: unexpected tree outcome\n");
    std::abort();
  }
  return seconds;
}

// ---- Google Benchmark -------------------------------------------------------

template <how H>
void Interrupt(benchmark::State& state) {
  const int depth = static_cast<int>(state.range(0));
  for (auto _ : state) one_interruption(depth, H);
}
BENCHMARK(Interrupt<how::operator_new>)->Name("InterruptOperatorNew")->Arg(10)->Arg(100)->Arg(1000);
BENCHMARK(Interrupt<how::by_hand>)->Name("InterruptByHand")->Arg(10)->Arg(100)->Arg(1000);
BENCHMARK(Interrupt<how::poll>)->Name("InterruptPoll")->Arg(10)->Arg(100)->Arg(1000);
BENCHMARK(Interrupt<how::no_throw>)->Name("NoThrow")->Arg(10)->Arg(100)->Arg(1000);

void TreeDestroy(benchmark::State& state) {
  const bool post_order = state.range(0) != 0;
  const bool interrupted = state.range(1) != 0;
  // No user counter: the CSV reporter (run_paired.sh) needs the same
  // columns in every benchmark. Per node: divide by tree_nodes.
  for (auto _ : state) state.SetIterationTime(one_tree(post_order, interrupted));
}
BENCHMARK(TreeDestroy)
    ->ArgNames({"post_order", "interrupted"})
    ->Args({0, 0})
    ->Args({0, 1})
    ->Args({1, 0})
    ->Args({1, 1})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

// ---- counting mode, for callgrind --------------------------------------------
//
// valgrind --tool=callgrind --collect-atstart=no
//   --toggle-collect=bench_interrupt_measured bench_interrupt --count new 100 1000
// counts the instructions of N iterations (after 20 unmeasured ones, which
// warm the unwinder's caches). CASE: new, hand, poll, none; tree-pre,
// tree-post (DEPTH: 1 interrupted, 0 not; N trees, toggle on
// bench_interrupt_destroy_tree instead to count the destruction alone).

extern "C" [[gnu::noinline]] void bench_interrupt_measured(int depth, int kind, long n) {
  for (long i = 0; i < n; ++i) one_interruption(depth, static_cast<how>(kind));
}

extern "C" [[gnu::noinline]] void bench_interrupt_measured_trees(bool post_order,
                                                                 bool interrupted, long n) {
  for (long i = 0; i < n; ++i) benchmark::DoNotOptimize(one_tree(post_order, interrupted));
}

namespace {

int count_mode(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s --count new|hand|poll|none|tree-pre|tree-post DEPTH N\n",
                 argv[0]);
    return 2;
  }
  const char* name = argv[2];
  const int depth = std::atoi(argv[3]);
  const long n = std::atol(argv[4]);
  if (std::strncmp(name, "tree-", 5) == 0) {
    const bool post_order = std::strcmp(name, "tree-post") == 0;
    benchmark::DoNotOptimize(one_tree(post_order, depth != 0));  // warm-up
    bench_interrupt_measured_trees(post_order, depth != 0, n);
    std::printf("case=%s interrupted=%d trees=%ld nodes=%d\n", name, depth, n, tree_nodes);
    return 0;
  }
  how h;
  if (std::strcmp(name, "new") == 0) h = how::operator_new;
  else if (std::strcmp(name, "hand") == 0) h = how::by_hand;
  else if (std::strcmp(name, "poll") == 0) h = how::poll;
  else if (std::strcmp(name, "none") == 0) h = how::no_throw;
  else return 2;
  for (int i = 0; i < 20; ++i) one_interruption(depth, h);  // warm-up
  bench_interrupt_measured(depth, static_cast<int>(h), n);
  std::printf("case=%s depth=%d iterations=%ld\n", name, depth, n);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto quiet = std::make_shared<spdlog::logger>("memlimits",
                                                std::make_shared<spdlog::sinks::null_sink_mt>());
  quiet->set_level(spdlog::level::off);
  spdlog::register_logger(quiet);
  if (argc > 1 && std::strcmp(argv[1], "--count") == 0) return count_mode(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
