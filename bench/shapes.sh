#!/usr/bin/env bash
# bench/shapes.sh — the allocation shapes of alloc_shapes.cpp, plain against
# hooks, on glibc and on every other allocator built beside it.
#
#   bench/shapes.sh BUILD_DIR [WORKLOAD...]      (default: all five)
#
# For each backend and workload:
#   instructions  one run of each binary under callgrind at the small scale
#                 (--small, or SCALE_CALLGRIND); the out file's totals (Ir).
#                 valgrind runs one thread at a time; the hooks run with
#                 MEMLIMITS_SEED=12345 so that their sampling is the same
#                 from one run to the next. The threaded workloads still vary
#                 a little from run to run with the interleaving (prodcons
#                 ~0.3%, threads ~0.1%, server ~0.01%); the waiting itself
#                 (alloc_shapes_wait_*) is under 0.5% of prodcons' count.
#   wall          PAIRS paired runs in alternating order (plain then hooks,
#                 then hooks then plain, ...), each pair after a quiet second
#                 if one comes within QUIET_WAIT s; the median of each
#                 binary's wall_s and the median of the per-pair ratios
#                 hooks / plain.
# Every run's checksum must be the same across plain, hooks and all runs
# (and backends): a mismatch is reported and the script exits with 1.
# Before a backend's runs, `--which` of its two binaries says which
# allocator served a block; a plain binary not served by its backend is
# reported, as is a hooks binary whose blocks come from another allocator
# (then its row compares two allocators, not the hooks).
#
# Knobs (environment):
#   BACKENDS="glibc jemalloc mimalloc tcmalloc"   skipped when not built
#   PAIRS=5             paired wall runs per backend and workload
#   CALLGRIND=1         0: no instruction counts
#   SCALE=              the wall runs' scale (empty: the program's default)
#   SCALE_CALLGRIND=    the callgrind runs' scale (empty: --small)
#   QUIET_WAIT=2        at most this many seconds waiting for a quiet second
#                       before each pair (0: never wait)
#   FOREIGN_MAX=10      "quiet": other processes used less than this % of the
#                       machine during the second
#   ALLOC_SHAPES_GLIBC_DEFAULTS=1   passed on: keep glibc's heap trimming
#                       (alloc_shapes.cpp switches it off otherwise)
set -euo pipefail

BACKENDS=${BACKENDS:-glibc jemalloc mimalloc tcmalloc}
PAIRS=${PAIRS:-5}
CALLGRIND=${CALLGRIND:-1}
SCALE=${SCALE:-}
SCALE_CALLGRIND=${SCALE_CALLGRIND:-}
QUIET_WAIT=${QUIET_WAIT:-2}
FOREIGN_MAX=${FOREIGN_MAX:-10}

if (($# < 1)); then
  echo "usage: [BACKENDS=...] [PAIRS=N] [CALLGRIND=0|1] [SCALE=S] [SCALE_CALLGRIND=S] $0 BUILD_DIR [WORKLOAD...]" >&2
  exit 2
fi
BUILD=$1
shift
WORKLOADS=${*:-lifo tight prodcons threads server}
BIN=$BUILD/bench
[[ -d $BIN ]] || BIN=$BUILD

echo "# BACKENDS=\"$BACKENDS\" PAIRS=$PAIRS CALLGRIND=$CALLGRIND SCALE=$SCALE" \
     "SCALE_CALLGRIND=$SCALE_CALLGRIND QUIET_WAIT=$QUIET_WAIT" \
     "${ALLOC_SHAPES_GLIBC_DEFAULTS:+ALLOC_SHAPES_GLIBC_DEFAULTS=$ALLOC_SHAPES_GLIBC_DEFAULTS }$0 $BUILD $WORKLOADS"
echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)," \
     "commit $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo '?')" \
     "$(git -C "$(dirname "$0")" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo '(+ uncommitted changes)')"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
START=$SECONDS
FAILED=0

loud() { printf '\n!!! %s\n\n' "$*" | tee -a "$TMP/alerts" >&2; FAILED=1; }

field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

median() {  # the median of the numbers on stdin
  sort -g | awk '{ v[++n] = $1 } END { if (!n) { print "nan"; exit }
                   print (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }'
}

# busy_ticks, TICK_MS, CORES, wait_quiet.
# shellcheck source=bench/quiet.sh
source "$(dirname "${BASH_SOURCE[0]}")/quiet.sh"

plain_of() { [[ $1 == glibc ]] && echo "$BIN/alloc_shapes_plain" || echo "$BIN/alloc_shapes_plain_$1"; }
hooks_of() { [[ $1 == glibc ]] && echo "$BIN/alloc_shapes_hooks" || echo "$BIN/alloc_shapes_hooks_$1"; }

# The first checksum of a workload at a scale ("$TMP/sum.WORKLOAD.SCALE") is
# the one every later run, of any binary, must print.
check_sum() {  # check_sum WORKLOAD WHAT LINE SCALE-CLASS BACKEND
  local sum expected
  sum=$(field checksum "$3")
  if [[ -z $sum ]]; then
    loud "no checksum from $2 ($1): '$3'"
    return
  fi
  if [[ ! -f $TMP/sum.$1.$4 ]]; then
    echo "$sum" >"$TMP/sum.$1.$4"
    return
  fi
  expected=$(cat "$TMP/sum.$1.$4")
  if [[ $sum != "$expected" ]]; then
    loud "CHECKSUM MISMATCH: $1 $2 printed $sum, an earlier run $expected"
    echo MISMATCH >"$TMP/mismatch.$1.${5:-}"
  fi
}

if ((CALLGRIND)) && ! command -v valgrind >/dev/null; then
  echo "# no valgrind: CALLGRIND=0" >&2
  CALLGRIND=0
fi
small_arg=${SCALE_CALLGRIND:---small}

: >"$TMP/rows"
for backend in $BACKENDS; do
  plain=$(plain_of "$backend")
  hooks=$(hooks_of "$backend")
  if [[ ! -x $plain || ! -x $hooks ]]; then
    echo "# $backend: $(basename "$plain") or $(basename "$hooks") not built, skipped"
    continue
  fi
  want=$backend
  for config in plain hooks; do
    bin=$([[ $config == plain ]] && echo "$plain" || echo "$hooks")
    which_line=$("$bin" --which) || which_line="(--which failed)"
    echo "# $(basename "$bin") --which: $which_line"
    served=$(field served_by "$which_line")
    if [[ $served != "$want" ]]; then
      if [[ $config == plain ]]; then
        loud "$(basename "$bin"): malloc is served by '$served', not $want: the plain binary does not use the backend"
      else
        loud "$(basename "$bin"): the hooks hand blocks to '$served', not $want: this backend's rows compare $want (plain) with $served under the hooks"
      fi
    fi
  done

  for w in $WORKLOADS; do
    ir_plain="-"; ir_hooks="-"; cg_seconds=0
    if ((CALLGRIND)); then
      t0=$SECONDS
      for config in plain hooks; do
        bin=$([[ $config == plain ]] && echo "$plain" || echo "$hooks")
        out="$TMP/cg.$backend.$w.$config"
        rc=0
        line=$(MEMLIMITS_SEED=12345 valgrind --tool=callgrind --callgrind-out-file="$out" \
                 "$bin" "$w" "$small_arg" 2>"$out.log") || rc=$?
        if ((rc != 0)); then
          loud "callgrind run of $(basename "$bin") $w failed (exit $rc): $(tail -3 "$out.log" | tr '\n' ' ')"
          continue
        fi
        check_sum "$w" "$(basename "$bin") under callgrind" "$line" small "$backend"
        ir=$(awk '/^totals:/ { t = $2 } /^summary:/ { s = $2 } END { print (t != "" ? t : s) }' "$out")
        if [[ $config == plain ]]; then ir_plain=$ir; else ir_hooks=$ir; fi
        rm -f "$out"
      done
      cg_seconds=$((SECONDS - t0))
      echo "  $backend $w callgrind: Ir plain $ir_plain, hooks $ir_hooks (${cg_seconds} s)" >&2
    fi

    t0=$SECONDS
    : >"$TMP/wall"
    for ((i = 1; i <= PAIRS; i++)); do
      if ((i % 2)); then order="plain hooks"; else order="hooks plain"; fi
      wait_quiet
      for config in $order; do
        bin=$([[ $config == plain ]] && echo "$plain" || echo "$hooks")
        rc=0
        line=$("$bin" "$w" ${SCALE:+"$SCALE"}) || rc=$?
        if ((rc != 0)); then
          loud "$(basename "$bin") $w failed (exit $rc)"
          line=""
        fi
        check_sum "$w" "$(basename "$bin") (pair $i)" "$line" full "$backend"
        if [[ $config == plain ]]; then wp=$(field wall_s "$line"); else wh=$(field wall_s "$line"); fi
      done
      {
        echo "plain $wp"
        echo "hooks $wh"
        awk -v p="$wp" -v h="$wh" 'BEGIN { if (p > 0 && h > 0) printf "ratio %.6f\n", h / p }'
      } >>"$TMP/wall"
      echo "  $backend $w pair $i: plain ${wp}s hooks ${wh}s" >&2
    done
    wall_seconds=$((SECONDS - t0))
    mp=$(awk '$1 == "plain" { print $2 }' "$TMP/wall" | median)
    mh=$(awk '$1 == "hooks" { print $2 }' "$TMP/wall" | median)
    mr=$(awk '$1 == "ratio" { print $2 }' "$TMP/wall" | median)
    sums="ok"
    [[ -f $TMP/mismatch.$w.$backend ]] && sums="MISMATCH"
    echo "$backend $w $ir_plain $ir_hooks $mp $mh $mr $sums $cg_seconds $wall_seconds" >>"$TMP/rows"
  done
done

echo
echo "| backend | workload | Ir plain | Ir hooks | Δ instr | wall plain (median s) | wall hooks (median s) | Δ wall (median of $PAIRS paired ratios) | checksums |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---|"
awk '
  function pct(r) { return sprintf("%+.1f%%", (r - 1) * 100) }
  function commas(x,   s, r) { if (x == "-") return x; s = sprintf("%.0f", x); r = ""
    while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
    return s r }
  { di = ($3 != "-" && $4 != "-" && $3 > 0) ? pct($4 / $3) : "-"
    printf "| %s | %s | %s | %s | %s | %.3f | %.3f | %s | %s |\n",
           $1, $2, commas($3), commas($4), di, $5, $6, pct($7), $8 }' "$TMP/rows"
echo
awk '{ if ($7 > 0) { s[$1] += log($7); n[$1]++ }
       if ($3 != "-" && $4 != "-" && $3 > 0) { si[$1] += log($4 / $3); ni[$1]++ }
       if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
     END { for (i = 1; i <= k; i++) { b = order[i]
             if (!n[b]) continue
             printf "geometric mean of the wall ratios, %s: %+.1f%%", b, (exp(s[b] / n[b]) - 1) * 100
             if (ni[b]) printf " (instructions: %+.1f%%)", (exp(si[b] / ni[b]) - 1) * 100
             printf " over %d workloads\n", n[b] } }' "$TMP/rows"
echo
awk '{ cg[$1] += $9; wall[$1] += $10 } END { for (b in cg) printf "# time, %s: callgrind %d s, wall runs %d s\n", b, cg[b], wall[b] }' "$TMP/rows" | sort
echo "# total $((SECONDS - START)) s; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -s $TMP/alerts ]]; then
  echo
  echo "# alerts:"
  sed -n 's/^!!! /# !!! /p' "$TMP/alerts"
fi
exit "$FAILED"
