#!/usr/bin/env bash
# bench/run_paired.sh — runs every benchmark of bench/ in its plain and hooks
# builds side by side, alternating the two so that drift in the machine's
# load falls on both alike, and prints medians of the per-pair ratios.
#
# usage: bench/run_paired.sh [BUILD_DIR]        (default: build-bench)
# Build first:
#   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=RelWithDebInfo
#   cmake --build build-bench -j2 --target memlimits_bench
#
# Environment (defaults in brackets):
#   SECTIONS         which parts to run ["workload memory gbench"]; also "guards"
#                    and "fibers" (bench_fiber: memlimits::fiber beside
#                    boost::context::fiber), "interrupt" (bench_interrupt: wall time of an interruption
#                    at a stack depth, with and without the handler search, and
#                    of an allocating noexcept destructor under interruption) and
#                    "interrupt-instructions" (the same under callgrind)
#   CALLGRIND_N      iterations counted per case by interrupt-instructions,
#                    at depth 10 and 100; a tenth of it at 1000 [1000]
#   PAIRS            paired runs of the workload and of the memory test [11]
#   WORKLOAD_ARGS    extra arguments of both workload binaries [""]
#   PROFILE_DEPTH    callstack size of the profiled workload configuration [16]
#   CONFIGS          workload configurations run against BASELINE ["hooks profile"]:
#                      plain    workload_plain (no memlimits)
#                      hooks    workload_hooks (default rate, no profile)
#                      profile  workload_hooks --profile-depth $PROFILE_DEPTH
#                      fastpath workload_hooks --base-rate 1e-12 (a diagnostic:
#                               no block is ever sampled, fast paths only)
#                      guard-K  workload_hooks --guard K, K one of allocations
#                               memory global token all (every round inside
#                               guards that never trip)
#   BASELINE         the configuration the others are compared with [plain];
#                    BASELINE=hooks CONFIGS="guard-allocations ..." measures
#                    what the guards add to the hooks
#   LIVE_MIB         live heap of memory_overhead, MiB [1024]
#   MEMORY_ARGS      extra arguments of both memory_overhead binaries [""]
#   GBENCH_ROUNDS    alternating rounds of the two Google Benchmark binaries [3]
#   GBENCH_REPS      --benchmark_repetitions per round [5]
#   GBENCH_MIN_TIME  --benchmark_min_time, seconds [0.1]
#   GBENCH_FILTER    --benchmark_filter [.]
#   FOREIGN_MAX      a workload round is discarded and run again when, during
#                    one of its runs, other processes used more than this
#                    percentage of the machine's CPU (from /proc/stat) [5];
#                    at most 4 * PAIRS rounds are attempted
#   QUIET_WAIT       before each round (each section), wait up to this many
#                    seconds for a second in which other processes use less
#                    than FOREIGN_MAX percent of the machine [120]
#
# The machine may be shared: every workload run also reports the CPU time
# that other processes took while it ran (foreign=, in % of the machine), and
# rounds disturbed by more than FOREIGN_MAX percent are run again.
# Nothing is pinned: the runs alternate (and the order inside a pair flips
# from one pair to the next) so that slow drift cancels; the ratio of each
# pair is computed first and the median of the ratios is reported, with the
# smallest and largest to show the spread and, for the workload, the
# median's 95% confidence interval and a count of the rounds slower than plain.
set -euo pipefail

BUILD_DIR=${1:-build-bench}
BIN=$BUILD_DIR/bench
SECTIONS=${SECTIONS:-"workload memory gbench"}
PAIRS=${PAIRS:-11}
WORKLOAD_ARGS=${WORKLOAD_ARGS:-}
PROFILE_DEPTH=${PROFILE_DEPTH:-16}
CONFIGS=${CONFIGS:-"hooks profile"}
BASELINE=${BASELINE:-plain}
LIVE_MIB=${LIVE_MIB:-1024}
MEMORY_ARGS=${MEMORY_ARGS:-}
GBENCH_ROUNDS=${GBENCH_ROUNDS:-3}
GBENCH_REPS=${GBENCH_REPS:-5}
GBENCH_MIN_TIME=${GBENCH_MIN_TIME:-0.1}
GBENCH_FILTER=${GBENCH_FILTER:-.}
FOREIGN_MAX=${FOREIGN_MAX:-5}
QUIET_WAIT=${QUIET_WAIT:-120}
CALLGRIND_N=${CALLGRIND_N:-1000}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# The binaries the requested sections run.
needed=""
for section in $SECTIONS; do
  case $section in
    workload) needed+=" workload_plain workload_hooks" ;;
    memory) needed+=" memory_overhead_plain memory_overhead_hooks" ;;
    gbench) needed+=" bench_alloc_plain bench_alloc_hooks" ;;
    guards) needed+=" bench_guards" ;;
    fibers) needed+=" bench_fiber" ;;
    interrupt | interrupt-instructions) needed+=" bench_interrupt" ;;
  esac
done
for binary in $needed; do
  if [[ ! -x $BIN/$binary ]]; then
    echo "run_paired.sh: $BIN/$binary not built (cmake --build $BUILD_DIR --target memlimits_bench)" >&2
    exit 1
  fi
done

# The value of key=value in a line of output.
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# busy_ticks, TICK_MS, wait_quiet.
# shellcheck source=bench/quiet.sh
source "$(dirname "${BASH_SOURCE[0]}")/quiet.sh"

# stdin: "key value" lines; stdout: "key median min max count", keys sorted.
stats_by_key() {
  sort -k1,1 -k2,2g | awk '
    function flush() {
      if (n == 0) return
      med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      printf "%s %.6g %.6g %.6g %d\n", key, med, v[1], v[n], n
    }
    $1 != key { flush(); key = $1; n = 0 }
    { v[++n] = $2 }
    END { flush() }'
}

echo "# run_paired.sh on $(hostname), $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------
if [[ " $SECTIONS " == *" workload "* ]]; then
  echo
  echo "== workload: $PAIRS rounds of ($BASELINE $CONFIGS), order reversed every other round;" \
       "profile = --profile-depth $PROFILE_DEPTH =="
  : >"$TMP/workload"
  checksum=""
  forward="$BASELINE $CONFIGS"
  backward=$(tr ' ' '\n' <<<"$forward" | tac | tr '\n' ' ')
  discarded=0
  attempts=0
  for ((i = 1; i <= PAIRS; i++)); do
    if ((i % 2)); then order=$forward; else order=$backward; fi
    declare -A wall=() cpu=()
    worst=0
    wait_quiet
    for config in $order; do
      before=$(busy_ticks)
      case $config in
        plain) line=$("$BIN/workload_plain" $WORKLOAD_ARGS) ;;
        hooks) line=$("$BIN/workload_hooks" $WORKLOAD_ARGS) ;;
        profile) line=$("$BIN/workload_hooks" $WORKLOAD_ARGS --profile-depth "$PROFILE_DEPTH") ;;
        fastpath) line=$("$BIN/workload_hooks" $WORKLOAD_ARGS --base-rate 1e-12) ;;
        guard-*) line=$("$BIN/workload_hooks" $WORKLOAD_ARGS --guard "${config#guard-}") ;;
        *) echo "unknown configuration $config" >&2; exit 2 ;;
      esac
      after=$(busy_ticks)
      sum=$(field checksum "$line")
      if [[ -z $checksum ]]; then checksum=$sum; fi
      if [[ $sum != "$checksum" ]]; then
        echo "checksum mismatch: $config printed $sum, expected $checksum" >&2
        exit 1
      fi
      wall[$config]=$(field wall_ms "$line")
      cpu[$config]=$(field cpu_ms "$line")
      foreign=$(awk -v b="$before" -v a="$after" -v t="$TICK_MS" -v c="${cpu[$config]}" \
                    -v w="${wall[$config]}" -v n="$CORES" \
                    'BEGIN { f = ((a - b) * t - c) / (w * n) * 100; printf "%.1f", f < 0 ? 0 : f }')
      worst=$(awk -v x="$foreign" -v y="$worst" 'BEGIN { print (x + 0 > y + 0) ? x : y }')
      printf '  run %2d %-8s %s foreign=%s%%\n' "$i" "$config" "$line" "$foreign"
    done
    attempts=$((attempts + 1))
    if awk -v x="$worst" -v m="$FOREIGN_MAX" 'BEGIN { exit !(x > m) }'; then
      if ((attempts < 4 * PAIRS)); then
        echo "  (round $i discarded: other processes took $worst% of the machine)"
        discarded=$((discarded + 1))
        i=$((i - 1))
        unset wall cpu
        continue
      fi
      echo "  (round $i kept although disturbed: $((4 * PAIRS)) rounds attempted)"
    fi
    for config in $BASELINE $CONFIGS; do
      echo "wall_ms:$config ${wall[$config]}" >>"$TMP/workload"
      echo "cpu_ms:$config ${cpu[$config]}" >>"$TMP/workload"
    done
    for config in $CONFIGS; do
      awk -v a="${wall[$config]}" -v b="${wall[$BASELINE]}" -v c="$config" \
        'BEGIN { printf "wall_ratio:%s %.6f\n", c, a / b }' >>"$TMP/workload"
      awk -v a="${cpu[$config]}" -v b="${cpu[$BASELINE]}" -v c="$config" \
        'BEGIN { printf "cpu_ratio:%s %.6f\n", c, a / b }' >>"$TMP/workload"
    done
    unset wall cpu
  done
  echo
  echo "checksum (identical in every run): $checksum"
  echo "rounds discarded for foreign load above $FOREIGN_MAX%: $discarded"
  stats_by_key <"$TMP/workload" | awk '
    BEGIN { printf "%-22s %12s %12s %12s\n", "measure:config", "median", "min", "max" }
    { printf "%-22s %12.4f %12.4f %12.4f\n", $1, $2, $3, $4 }'
  # The median's distribution-free 95% confidence interval: the order
  # statistics n/2 -+ 0.98 sqrt(n) of the ratios.
  grep '_ratio:' "$TMP/workload" | sort -k1,1 -k2,2g | awk '
    function out(  lo, hi, med) {
      lo = int(n / 2 - 0.98 * sqrt(n)); hi = int(n / 2 + 0.98 * sqrt(n)) + 1
      if (lo < 1) lo = 1
      if (hi > n) hi = n
      med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      printf "overhead %-18s median %+.2f%%  (95%% CI of the median %+.2f%% .. %+.2f%%)\n",
             key, (med - 1) * 100, (v[lo] - 1) * 100, (v[hi] - 1) * 100
    }
    $1 != key { if (n) out(); key = $1; n = 0 }
    { v[++n] = $2 }
    END { if (n) out() }'
  # A sign test: in how many rounds the configuration was the slower one.
  awk -v base="$BASELINE" '$1 ~ /_ratio:/ { n[$1]++; if ($2 > 1) slower[$1]++ }
       END { for (k in n) printf "slower than %s %-18s in %d of %d rounds\n", base, k, slower[k], n[k] }' \
    "$TMP/workload" | sort
fi

# ---------------------------------------------------------------------------
if [[ " $SECTIONS " == *" memory "* ]]; then
  echo
  echo "== memory_overhead: $PAIRS pairs of (plain, hooks), ${LIVE_MIB} MiB live $MEMORY_ARGS =="
  : >"$TMP/memory"
  for ((i = 1; i <= PAIRS; i++)); do
    if ((i % 2)); then order="plain hooks"; else order="hooks plain"; fi
    wait_quiet
    for config in $order; do
      line=$("$BIN/memory_overhead_$config" --live-mib "$LIVE_MIB" $MEMORY_ARGS)
      printf '  run %2d %-6s %s\n' "$i" "$config" "$line"
      if [[ $config == plain ]]; then plain_line=$line; else hooks_line=$line; fi
    done
    live=$(field live_bytes "$plain_line")
    awk -v live="$live" \
        -v rp="$(field rss_delta "$plain_line")" -v rh="$(field rss_delta "$hooks_line")" \
        -v fp="$(field heap_free "$plain_line")" -v fh="$(field heap_free "$hooks_line")" \
        -v meta="$(field metadata_bytes "$hooks_line")" \
        -v tracked="$(field tracked_blocks "$hooks_line")" \
        -v est="$(field live_estimate "$hooks_line")" \
        -v live_h="$(field live_bytes "$hooks_line")" '
      BEGIN {
        if (live != live_h) { print "live_bytes differ between builds" > "/dev/stderr"; exit 1 }
        printf "rss_overhead_pct %.6f\n", (rh - rp) / live * 100
        printf "heap_free_overhead_pct %.6f\n", (fh - fp) / live * 100
        printf "metadata_pct %.6f\n", meta / live * 100
        printf "metadata_MiB %.6f\n", meta / 1048576
        printf "tracked_blocks %d\n", tracked
        printf "live_estimate_error_pct %.6f\n", (est - live) / live * 100
        printf "rss_plain_MiB %.3f\n", rp / 1048576
        printf "rss_hooks_MiB %.3f\n", rh / 1048576
        printf "live_MiB %.3f\n", live / 1048576
      }' >>"$TMP/memory"
  done
  echo
  stats_by_key <"$TMP/memory" | awk '
    BEGIN { printf "%-26s %12s %12s %12s\n", "measure", "median", "min", "max" }
    { printf "%-26s %12.4f %12.4f %12.4f\n", $1, $2, $3, $4 }'
  echo "(rss_overhead_pct = (RSS_hooks - RSS_plain) / live bytes; heap_free_overhead_pct: the same"
  echo " for glibc's free bytes inside its heaps (mallinfo2 fordblks); metadata_pct ="
  echo " tracking::stats().metadata_bytes / live bytes; live_estimate_error_pct: the base"
  echo " accounting's live-heap estimate against the truth, which includes blocks"
  echo " allocated before main)"
fi

# ---------------------------------------------------------------------------
if [[ " $SECTIONS " == *" gbench "* ]]; then
  echo
  echo "== bench_alloc: $GBENCH_ROUNDS alternating rounds x $GBENCH_REPS repetitions," \
       "min_time $GBENCH_MIN_TIME s =="
  echo "(medians of all repetitions; real time in ns per allocation+free: a *_batch iteration,"
  echo " 64 allocations then 64 frees, is divided by 64; with 2 threads, wall time over the"
  echo " pairs of both threads, so that 2 threads with no contention show half the time)"
  : >"$TMP/gbench"
  for ((i = 1; i <= GBENCH_ROUNDS; i++)); do
    if ((i % 2)); then order="plain hooks"; else order="hooks plain"; fi
    for config in $order; do
      wait_quiet
      echo "  round $i: bench_alloc_$config" >&2
      "$BIN/bench_alloc_$config" --benchmark_filter="$GBENCH_FILTER" \
          --benchmark_repetitions="$GBENCH_REPS" --benchmark_min_time="$GBENCH_MIN_TIME" \
          --benchmark_format=csv 2>/dev/null |
        awk -F, -v c="$config" '
          NR > 1 && $1 !~ /_(mean|median|stddev|cv)"$/ {
            name = $1; gsub(/"/, "", name); sub(/\/real_time/, "", name)
            print name "@" c, $3
          }' >>"$TMP/gbench"
    done
  done
  stats_by_key <"$TMP/gbench" >"$TMP/gbench.stats"
  # batch=64 is batch_size in bench_alloc.cpp: change both together.
  printf "%-36s %10s %10s %8s\n" "benchmark" "plain ns" "hooks ns" "ratio"
  awk '
    { split($1, k, "@"); med[k[1], k[2]] = $2; if (!(k[1] in seen)) { seen[k[1]] = 1; order[++n] = k[1] } }
    END {
      for (i = 1; i <= n; i++) {
        b = order[i]
        split(b, part, "/")  # function/size/threads:N
        per = (part[1] ~ /_batch$/) ? batch : 1  # a batch iteration is `batch` pairs
        printf "%s\t%s\t%d\t%-36s %10.2f %10.2f %8.3f\n", part[1], part[3], part[2], b,
               med[b, "plain"] / per, med[b, "hooks"] / per, med[b, "hooks"] / med[b, "plain"]
      }
    }' batch=64 "$TMP/gbench.stats" | sort -t"$(printf '\t')" -k1,1 -k2,2 -k3,3n | cut -f4-
fi

# ---------------------------------------------------------------------------
# Entering and leaving each guard (bench_guards; memlimits only, so no pair:
# "Direct" is the same empty task called without a guard).
if [[ " $SECTIONS " == *" guards "* ]]; then
  echo
  echo "== bench_guards: median of $GBENCH_REPS repetitions =="
  wait_quiet
  "$BIN/bench_guards" --benchmark_repetitions="$GBENCH_REPS" \
      --benchmark_min_time="$GBENCH_MIN_TIME" --benchmark_format=csv 2>/dev/null |
    awk -F, 'NR > 1 && $1 ~ /_median"$/ {
               name = $1; gsub(/"/, "", name); sub(/_median$/, "", name)
               printf "%-24s %8.1f ns\n", name, $3
             }'
fi

# ---------------------------------------------------------------------------
# A fiber switch (bench_fiber): memlimits::fiber beside boost::context::fiber
# in one binary, their repetitions interleaved at random.
if [[ " $SECTIONS " == *" fibers "* ]]; then
  echo
  echo "== bench_fiber: median of $GBENCH_REPS interleaved repetitions =="
  wait_quiet
  "$BIN/bench_fiber" --benchmark_repetitions="$GBENCH_REPS" \
      --benchmark_enable_random_interleaving=true \
      --benchmark_min_time="$GBENCH_MIN_TIME" --benchmark_format=csv 2>/dev/null |
    awk -F, 'NR > 1 && $1 ~ /_median"$/ {
               name = $1; gsub(/"/, "", name); sub(/_median$/, "", name)
               per = name ~ /^Switch/ ? 2 : 1   # a round trip is two switches
               ns[name] = $3 / per
               printf "%-36s %9.1f ns per %s\n", name, ns[name], per == 2 ? "switch" : "fiber"
             }
             END {
               b = "Switch<boost::context::fiber>"; m = "Switch<memlimits::fiber>"
               if (ns[b] > 0) printf "switch: memlimits::fiber / boost::context::fiber = %.2f (+%.1f ns)\n", ns[m] / ns[b], ns[m] - ns[b]
               b = "Create<boost::context::fiber>"; m = "Create<memlimits::fiber>"
               if (ns[b] > 0) printf "create+run+release: memlimits::fiber / boost::context::fiber = %.2f (+%.1f ns)\n", ns[m] / ns[b], ns[m] - ns[b]
             }'
fi

# ---------------------------------------------------------------------------
# An interruption at a stack depth (bench_interrupt): operator new (handler
# search, then the throw), the same limit_reached thrown by hand (no search),
# poll(); and the worst case of the search, a 100,000-node tree destroyed by
# a noexcept destructor whose nodes allocate, interrupted or not. In each
# round every benchmark runs GBENCH_REPS repetitions, interleaved at random;
# the round's medians give one ratio per pair (OperatorNew/ByHand etc.), and
# the medians over the rounds are reported.
if [[ " $SECTIONS " == *" interrupt "* ]]; then
  echo
  echo "== bench_interrupt: $GBENCH_ROUNDS rounds x $GBENCH_REPS interleaved repetitions," \
       "min_time $GBENCH_MIN_TIME s =="
  : >"$TMP/interrupt"
  for ((i = 1; i <= GBENCH_ROUNDS; i++)); do
    wait_quiet
    echo "  round $i: bench_interrupt" >&2
    "$BIN/bench_interrupt" --benchmark_repetitions="$GBENCH_REPS" \
        --benchmark_enable_random_interleaving=true --benchmark_filter="$GBENCH_FILTER" \
        --benchmark_min_time="$GBENCH_MIN_TIME" --benchmark_format=csv 2>/dev/null |
      awk -F, -v round="$i" '
        NR > 1 && $1 !~ /_(mean|median|stddev|cv)"$/ {
          name = $1; gsub(/"/, "", name); sub(/\/manual_time/, "", name)
          unit = $5; gsub(/"/, "", unit)
          scale = unit == "ms" ? 1e6 : unit == "us" ? 1e3 : 1   # to ns
          print round, name, $3 * scale, $4 * scale
        }' >>"$TMP/interrupt"
  done
  # Per round: the median of each benchmark's repetitions (wall, CPU).
  awk '{ print $1 "@" $2 " " $3; print "cpu:" $1 "@" $2 " " $4 }' "$TMP/interrupt" |
    stats_by_key >"$TMP/interrupt.rounds"
  # Over the rounds: the median of the per-round medians, and of the ratios.
  awk '
    { cpu = sub(/^cpu:/, "", $1); split($1, k, "@"); r = k[1]; b = k[2]
      if (cpu) c[r, b] = $2; else w[r, b] = $2
      rounds[r] = 1; if (!(b in seen)) { seen[b] = 1; order[++n] = b } }
    END {
      for (r in rounds) {
        for (i = 1; i <= n; i++) {
          b = order[i]
          print "wall@" b, w[r, b]; print "cpu@" b, c[r, b]
          if (b ~ /^InterruptOperatorNew\// || b ~ /^InterruptPoll\//) {
            d = b; sub(/^[^\/]*\//, "", d); h = "InterruptByHand/" d
            if (w[r, h] > 0) {
              print "ratio_wall@" b "_vs_ByHand", w[r, b] / w[r, h]
              print "search_wall@" b "_minus_ByHand", w[r, b] - w[r, h]
              print "ratio_cpu@" b "_vs_ByHand", c[r, b] / c[r, h]
            }
          }
          if (b ~ /interrupted:1$/) {
            u = b; sub(/interrupted:1$/, "interrupted:0", u)
            if (w[r, u] > 0) {
              print "ratio_wall@" b "_vs_not_interrupted", w[r, b] / w[r, u]
              print "ratio_cpu@" b "_vs_not_interrupted", c[r, b] / c[r, u]
            }
          }
        }
      }
    }' "$TMP/interrupt.rounds" | stats_by_key |
    awk 'BEGIN { printf "%-70s %12s %12s %12s\n", "measure@benchmark (ns, or ratio)", "median", "min", "max" }
         { printf "%-70s %12.4g %12.4g %12.4g\n", $1, $2, $3, $4 }'
  echo "(wall/cpu: ns per iteration, median over the rounds of each round's median; an"
  echo " Interrupt* iteration is one interruption, a TreeDestroy one destruction of"
  echo " 100,000 nodes; ratios and differences are taken inside each round)"
fi

# ---------------------------------------------------------------------------
# The same under callgrind: instructions of CALLGRIND_N iterations of each
# case (a tenth of it at depth 1000; one tree per tree case), counted only
# inside bench_interrupt_measured* (--toggle-collect) after unmeasured
# warm-up iterations, divided by the iterations; and how many times the
# handler search ran (calls of platform::search_handler, and of
# may_raise_here, which may answer from the deferral cache without a walk;
# callgrind counts calls made outside the collected region too, so the
# warm-up iterations are included in the counts and divided out).
if [[ " $SECTIONS " == *" interrupt-instructions "* ]]; then
  echo
  echo "== bench_interrupt under callgrind (instructions, exact) =="
  calls_of() {  # calls_of FILE FUNCTION-PATTERN: calls of the function, from all callers
    callgrind_annotate --inclusive=yes --tree=caller "$1" 2>/dev/null |
      awk -v f="$2" '$0 ~ "<.*" f && match($0, /\([0-9,]+x\)/) {
                       v = substr($0, RSTART + 1, RLENGTH - 3); gsub(/,/, "", v); s += v }
                     END { print s + 0 }'
  }
  run_count() {  # run_count TOGGLE ARGS...: prints "instructions file"
    local out="$TMP/cg.$RANDOM"
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect="$1" \
        --callgrind-out-file="$out" "$BIN/bench_interrupt" --count "${@:2}" >/dev/null 2>&1
    echo "$(awk '/^totals:/ { print $2 }' "$out") $out"
  }
  printf "%-10s %6s %8s %16s %14s %10s\n" case depth iters "instructions" "per iteration" "searches"
  for depth in 10 100 1000; do
    n=$CALLGRIND_N
    if ((depth >= 1000)); then n=$((CALLGRIND_N / 10)); fi
    for c in none hand new poll; do
      read -r total file < <(run_count bench_interrupt_measured "$c" "$depth" "$n")
      searches=$(calls_of "$file" 'search_handler\(')
      # 20 warm-up iterations before the n counted ones
      awk -v c="$c" -v d="$depth" -v n="$n" -v t="$total" -v s="$searches" 'BEGIN {
        printf "%-10s %6d %8d %16.0f %14.0f %10.2f\n", c, d, n, t, t / n, s / (n + 20) }'
      echo "instr@$c/$depth $(awk -v t="$total" -v n="$n" 'BEGIN { print t / n }')" >>"$TMP/cg.summary"
    done
  done
  echo "(searches: per iteration)"
  awk '{ split($1, k, "@"); split(k[2], cd, "/"); v[cd[1], cd[2]] = $2 }
       END { for (d = 10; d <= 1000; d *= 10)
               printf "depth %4d: operator new - by hand = %.0f instructions (the search and the slow path), poll - by hand = %.0f\n",
                      d, v["new", d] - v["hand", d], v["poll", d] - v["hand", d] }' "$TMP/cg.summary"
  echo
  printf "%-10s %12s %16s %10s %12s %12s\n" tree interrupted "destruction" "per node" "searches" "may_raise"
  for c in tree-pre tree-post; do
    for interrupted in 0 1; do
      read -r total file < <(run_count bench_interrupt_destroy_tree "$c" "$interrupted" 1)
      searches=$(calls_of "$file" 'search_handler\(')
      raises=$(calls_of "$file" 'may_raise_here\(')
      # one warm-up tree before the counted one: both in the call counts
      awk -v c="$c" -v i="$interrupted" -v t="$total" -v s="$searches" -v m="$raises" 'BEGIN {
        printf "%-10s %12d %16.0f %10.1f %12.0f %12.0f\n", c, i, t, t / 100000, s / 2, m / 2 }'
    done
  done
  echo "(instructions of one bench_interrupt_destroy_tree: 100,000 nodes, each allocating"
  echo " and freeing a 49-byte string; searches and may_raise_here calls per tree)"
fi

echo
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
