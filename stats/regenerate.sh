#!/usr/bin/env bash
# Regenerates what stats/README.md shows from the memlimits-stats CLI: the
# sections between "<!-- generated:NAME begin -->" and "<!-- generated:NAME
# end -->" markers, and the plots stats/cumulative_k20.svg and
# stats/cumulative_k1000.svg. Every figure comes from a public subcommand
# with --json; this script only lays the numbers out (6 significant digits).
#
#   stats/regenerate.sh build/stats-dev/stats/memlimits-stats
#
# Depends on bash, sed and awk. Edits files in stats/ only.
set -euo pipefail
export LC_ALL=C

if [[ $# -ne 1 || ! -x $1 ]]; then
  echo "usage: $0 path/to/memlimits-stats" >&2
  exit 2
fi
cli=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readme=$here/README.md
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# field JSON KEY: the value of KEY in one flat JSON object printed by the CLI.
field() {
  local value
  value=$(sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1")
  if [[ -z $value ]]; then
    echo "$0: no key $2 in: $1" >&2
    exit 1
  fi
  printf '%s' "$value"
}
# Six significant digits; null (an infinite relative error) as ∞.
six() { if [[ $1 == null ]]; then printf '∞'; else printf '%.6g' "$1"; fi; }
# A bound that may be below the range of doubles: the CLI prints 0 when
# P(Binomial(L - 1, p) >= K - 1) underflows (< 2.2e-308), and the bound,
# that times A p <= 1.4e7 here, is then below 1e-300.
six_tail() { if [[ $1 == 0 ]]; then printf '< 1e-300'; else six "$1"; fi; }
# Bytes in the largest binary unit that keeps the number >= 1.
human() {
  awk -v b="$1" 'BEGIN {
    split("B KiB MiB GiB TiB PiB", unit, " "); u = 1
    while (b >= 1024 && u < 6) { b /= 1024; u++ }
    printf "%.6g %s", b, unit[u] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6g", a / b }'; }

# replace NAME FILE: the generated section NAME of the README becomes FILE.
replace() {
  local begin="<!-- generated:$1 begin -->" end="<!-- generated:$1 end -->"
  if ! grep -qxF "$begin" "$readme" || ! grep -qxF "$end" "$readme"; then
    echo "$0: $readme lacks the markers of section $1" >&2
    exit 1
  fi
  awk -v begin="$begin" -v end="$end" -v file="$2" '
    $0 == begin { print; while ((getline line < file) > 0) print line; skipping = 1; next }
    $0 == end { skipping = 0 }
    !skipping { print }' "$readme" >"$work/readme"
  cat "$work/readme" >"$readme"
}

# --- memprof-limits' published claims (global limit), p = 1e-4 ------------
{
  echo "| memprof-limits' claim (p = 1e-4, 64-bit) | at the published size: exact (1-p)^n | bound e^{-n/S} | smallest size with the exact law |"
  echo "|---|--:|--:|--:|"
  json=$("$cli" global --bytes 80KiB --json)
  printf '| more than 64%% interrupted after 80 KiB | P(interrupted) = %s | %s | |\n' \
    "$(awk -v q="$(field "$json" probability)" 'BEGIN { printf "%.6g", 1 - q }')" \
    "$(awk -v q="$(field "$json" bound)" 'BEGIN { printf "%.6g", 1 - q }')"
  for claim in "1e-9 1.62MiB 1.62 MiB" "1e-14 2.5MiB 2.5 MiB" "1e-50 8.8MiB 8.8 MiB"; do
    read -r target size shown <<<"$claim"
    at=$("$cli" global --bytes "$size" --json)
    exact=$("$cli" global --target "$target" --json)
    printf '| P(not interrupted) < %s after %s | %s | %s | %s words = %s |\n' \
      "$target" "$shown" "$(six "$(field "$at" probability)")" "$(six "$(field "$at" bound)")" \
      "$(field "$exact" words)" "$(human "$(field "$exact" bytes)")"
  done
} >"$work/published"
replace published "$work/published"

# --- accuracy of the sampled allocation limit, p = 1e-4 --------------------
{
  echo "| k | l = k S (words) | N, t = 1e-9 | (l-N)/N | N, t = 4e-15 | (l-N)/N | N, t = 1e-50 | (l-N)/N |"
  echo "|--:|--:|--:|--:|--:|--:|--:|--:|"
  for k in 1 2 5 10 20 50 100 200 500 1000 2000 5000 10000 20000 50000 100000 200000 500000 1000000; do
    row="| $k"
    first=1
    for t in 1e-9 4e-15 1e-50; do
      json=$("$cli" accuracy --samples "$k" --target "$t" --json)
      if ((first)); then
        row+=" | $(printf '%.0f' "$(field "$json" limit_words)")"
        first=0
      fi
      row+=" | $(field "$json" safe_words) | $(six "$(field "$json" relative_error)")"
    done
    echo "$row |"
  done
} >"$work/accuracy"
replace accuracy "$work/accuracy"

# --- minimal rate, ratio 10 ------------------------------------------------
{
  echo "| safe size N | N (words) | rate, t = 1e-9 | k | rate, t = 1e-14 | k | rate, t = 1e-50 | k |"
  echo "|--:|--:|--:|--:|--:|--:|--:|--:|"
  for size in "1 KiB 1024" "10 KiB 10240" "100 KiB 102400" "1 MiB 1048576" "10 MiB 10485760" \
    "100 MiB 104857600" "1 GiB 1073741824" "10 GiB 10737418240" "100 GiB 107374182400" \
    "1 TiB 1099511627776"; do
    read -r number unit bytes <<<"$size"
    words=$((bytes / 8))
    row="| $number $unit | $words"
    for t in 1e-9 1e-14 1e-50; do
      json=$("$cli" min-rate --safe-words "$words" --target "$t" --ratio 10 --json)
      row+=" | $(six "$(field "$json" rate)") | $(field "$json" k)"
    done
    echo "$row |"
  done
} >"$work/min-rate"
replace min-rate "$work/min-rate"

# --- limit_memory: overshoot, p = 1e-4, t = 1e-9 ---------------------------
{
  echo "| limit M | K | early: P(trip before) <= 1e-9 | mean trip point | late: P(no trip yet) < 1e-9 | overshoot at late |"
  echo "|--:|--:|--:|--:|--:|--:|"
  for limit in 1MiB 16MiB 256MiB 4GiB 64GiB; do
    json=$("$cli" memory --limit "$limit" --target 1e-9 --json)
    m=$(field "$json" limit_words)
    printf '| %s | %s | %s M | %s M | %s M | %s |\n' "$(human "$(field "$json" limit_bytes)")" \
      "$(field "$json" k)" "$(ratio "$(field "$json" early_words)" "$m")" \
      "$(ratio "$(field "$json" mean_words)" "$m")" "$(ratio "$(field "$json" late_words)" "$m")" \
      "$(human "$(field "$json" overshoot_bytes)")"
  done
} >"$work/memory-overshoot"
replace memory-overshoot "$work/memory-overshoot"

# --- limit_memory: false trips, p = 1e-4, 1 TiB allocated ------------------
{
  echo "| limit M | K | f = 0.5 | f = 0.8 | f = 0.9 | f = 0.95 |"
  echo "|--:|--:|--:|--:|--:|--:|"
  for limit in 1MiB 16MiB 256MiB 4GiB 64GiB; do
    row=""
    for f in 0.5 0.8 0.9 0.95; do
      json=$("$cli" memory --limit "$limit" --fraction "$f" --allocated 1TiB --json)
      [[ -n $row ]] || row="| $(human "$(field "$json" limit_bytes)") | $(field "$json" k)"
      row+=" | $(six_tail "$(field "$json" false_trip_bound)")"
    done
    echo "$row |"
  done
} >"$work/memory-false-trip"
replace memory-false-trip "$work/memory-false-trip"

# --- plots ----------------------------------------------------------------
"$cli" cumulative --samples 20 --svg "$here/cumulative_k20.svg" >/dev/null
"$cli" cumulative --samples 1000 --svg "$here/cumulative_k1000.svg" >/dev/null
echo "regenerated $readme, $here/cumulative_k20.svg and $here/cumulative_k1000.svg"
