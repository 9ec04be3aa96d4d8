#!/usr/bin/env bash
# bench/preload_exec.sh — what libmemlimits_preload.so costs per exec: the
# time of N execs of /bin/true, and of a shell pipeline script (subshells,
# pipes, sort, wc, cut over a small generated file), plain and with the
# library in LD_PRELOAD (inherited by every process of the run), in paired
# rounds whose order alternates (plain first, then preloaded first, ...), so
# that drift in the machine's load falls on both alike. Prints, for the wall
# time and for the CPU time (user + system, all processes) of each workload,
# the median of each side, the median of the per-round ratios
# preloaded/plain with their smallest and largest, and the difference of the
# medians per exec.
#
# usage: bench/preload_exec.sh LIBRARY [N]
#   LIBRARY  path of libmemlimits_preload.so
#   N        execs of /bin/true per run [1000]
# Environment (defaults in brackets):
#   ROUNDS               paired rounds, at least 5 [7]
#   PIPELINE_ITERATIONS  iterations of the pipeline script per run [200]
#   INPUT_LINES          lines of the generated input of the pipeline [2000]
#
# The library is preloaded with no MEMLIMITS_* variable set: no summary, no
# profile, only the hooks at the default sampling rate; what is measured is
# loading and starting it in every process. Needs bash, GNU date (%N), awk,
# sort, wc, cut.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 LIBRARY [N]" >&2
  exit 2
fi
LIBRARY=$(readlink -f -- "$1")
N=${2:-1000}
ROUNDS=${ROUNDS:-7}
PIPELINE_ITERATIONS=${PIPELINE_ITERATIONS:-200}
INPUT_LINES=${INPUT_LINES:-2000}
if [[ ! -f $LIBRARY ]]; then
  echo "$0: no library at $1" >&2
  exit 2
fi
if ((ROUNDS < 5)); then
  echo "$0: ROUNDS must be at least 5" >&2
  exit 2
fi

# Only the library itself: none of its settings.
while IFS='=' read -r name _; do
  [[ $name == MEMLIMITS_* ]] && unset "$name"
done < <(env)
unset LD_PRELOAD

WORK=$(mktemp -d "${TMPDIR:-/tmp}/preload_exec.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT

# The loader ignores a library it cannot preload, with a message: check
# that it is really loaded, and silent.
if ! errors=$(LD_PRELOAD=$LIBRARY /bin/true 2>&1) || [[ -n $errors ]]; then
  echo "$0: /bin/true under LD_PRELOAD=$LIBRARY: ${errors:-failed}" >&2
  exit 1
fi
if ! LD_PRELOAD=$LIBRARY grep -q "$(basename -- "$LIBRARY")" /proc/self/maps; then
  echo "$0: $LIBRARY is not in the maps of a preloaded process" >&2
  exit 1
fi

# The pipeline's input: INPUT_LINES lines of "<word> <number> <word>".
awk -v lines="$INPUT_LINES" 'BEGIN {
  srand(1)
  for (i = 0; i < lines; ++i)
    printf "w%d %d x%d\n", int(rand() * 500), int(rand() * 100000), i % 37
}' >"$WORK/input.txt"

# The two workloads, each a bash script run as `bash -c`.
exec_script='for ((i = 0; i < '"$N"'; ++i)); do /bin/true; done'
pipeline_script='
input=$1
for ((i = 0; i < '"$PIPELINE_ITERATIONS"'; ++i)); do
  words=$(cut -d" " -f1 "$input" | sort | uniq -c | sort -rn | wc -l)
  total=$( (cut -d" " -f2 "$input" | sort -n | tail -n 1) | wc -c)
  (echo "$words $total" | cut -d" " -f1) >/dev/null
done'

# "<wall> <cpu>" seconds that `bash -c SCRIPT ARGS` takes, plain or with the
# library preloaded: wall-clock time, and the CPU time (user + system) of
# all its processes, which the load of other processes on a shared machine
# disturbs less.
run() {
  local preload=$1 script=$2
  shift 2
  local TIMEFORMAT='%R %U %S' times
  if [[ $preload == yes ]]; then
    times=$( { time LD_PRELOAD=$LIBRARY bash -c "$script" bash "$@" >/dev/null; } 2>&1)
  else
    times=$( { time bash -c "$script" bash "$@" >/dev/null; } 2>&1)
  fi
  awk '{ printf "%.3f %.3f\n", $1, $2 + $3 }' <<<"$times"
}

# A warm-up of each, so that the first round does not pay for cold caches.
run no "$exec_script" >/dev/null
run yes "$exec_script" >/dev/null
run no "$pipeline_script" "$WORK/input.txt" >/dev/null
run yes "$pipeline_script" "$WORK/input.txt" >/dev/null

# Per workload and side, one "<wall> <cpu>" per round.
declare -a exec_plain exec_preloaded pipeline_plain pipeline_preloaded
for ((round = 0; round < ROUNDS; ++round)); do
  if ((round % 2 == 0)); then order="no yes"; else order="yes no"; fi
  for preload in $order; do
    t=$(run "$preload" "$exec_script")
    if [[ $preload == yes ]]; then exec_preloaded+=("$t"); else exec_plain+=("$t"); fi
  done
  for preload in $order; do
    t=$(run "$preload" "$pipeline_script" "$WORK/input.txt")
    if [[ $preload == yes ]]; then pipeline_preloaded+=("$t"); else pipeline_plain+=("$t"); fi
  done
  printf 'round %d (wall cpu, s): exec plain %s preloaded %s; pipeline plain %s preloaded %s\n' \
    "$((round + 1))" "${exec_plain[round]}" "${exec_preloaded[round]}" \
    "${pipeline_plain[round]}" "${pipeline_preloaded[round]}" >&2
done

# The median of the arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
  print (NR % 2 == 1) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# One line of the report: workload, measure (1 wall, 2 cpu), executions per
# run, then the rounds' "<wall> <cpu>" of plain, then of preloaded.
report() {
  local name=$1 field=$2 per_run=$3 count=$4
  shift 4
  local plain=() preloaded=() ratios=() i a b
  for ((i = 0; i < count; ++i)); do
    a=$(cut -d' ' -f"$field" <<<"${@:i+1:1}")
    b=$(cut -d' ' -f"$field" <<<"${@:count+i+1:1}")
    plain+=("$a")
    preloaded+=("$b")
    ratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", b / a }')")
  done
  local plain_median preloaded_median ratio_median smallest largest
  plain_median=$(median "${plain[@]}")
  preloaded_median=$(median "${preloaded[@]}")
  ratio_median=$(median "${ratios[@]}")
  smallest=$(printf '%s\n' "${ratios[@]}" | sort -g | head -n 1)
  largest=$(printf '%s\n' "${ratios[@]}" | sort -g | tail -n 1)
  awk -v name="$name" -v per_run="$per_run" -v p="$plain_median" -v q="$preloaded_median" \
      -v r="$ratio_median" -v lo="$smallest" -v hi="$largest" 'BEGIN {
    printf "%-30s %9.3f s %9.3f s   %6.3fx (%.3f..%.3f)   %+8.1f us per exec\n",
           name, p, q, r, lo, hi, (q - p) / per_run * 1e6 }'
}

# Programs exec'ed per pipeline iteration (the rest are builtins and forked
# subshells): cut x3, sort x3, uniq, wc x2, tail.
pipeline_execs=$((PIPELINE_ITERATIONS * 10))
echo "libmemlimits_preload.so: $LIBRARY ($(stat -c %s -- "$LIBRARY") bytes)"
echo "N=$N execs of /bin/true; pipeline: $PIPELINE_ITERATIONS iterations (~$pipeline_execs execs) over $INPUT_LINES lines; $ROUNDS paired rounds"
printf '%-30s %11s %11s   %s\n' "workload" "plain" "preloaded" \
  "preloaded/plain: median of the rounds' ratios (min..max); difference of the medians"
report "exec /bin/true x$N, wall" 1 "$N" "$ROUNDS" "${exec_plain[@]}" "${exec_preloaded[@]}"
report "exec /bin/true x$N, cpu" 2 "$N" "$ROUNDS" "${exec_plain[@]}" "${exec_preloaded[@]}"
report "pipeline x$PIPELINE_ITERATIONS, wall" 1 "$pipeline_execs" "$ROUNDS" \
  "${pipeline_plain[@]}" "${pipeline_preloaded[@]}"
report "pipeline x$PIPELINE_ITERATIONS, cpu" 2 "$pipeline_execs" "$ROUNDS" \
  "${pipeline_plain[@]}" "${pipeline_preloaded[@]}"
