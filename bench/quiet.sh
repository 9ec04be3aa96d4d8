# shellcheck shell=bash
# bench/quiet.sh — sourced by the benchmark scripts (run_paired.sh,
# shapes.sh): how busy the machine is, and a wait for a quiet second.
# The caller sets QUIET_WAIT (seconds) and FOREIGN_MAX (percent).

CORES=$(nproc)

# CPU time used by the whole machine so far, in clock ticks (user nice system
# irq softirq steal).
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
TICK_MS=$(awk -v hz="$(getconf CLK_TCK)" 'BEGIN { print 1000 / hz }')

# Waits (at most QUIET_WAIT seconds) for a second in which the machine is
# busy less than FOREIGN_MAX percent; nothing is run meanwhile.
wait_quiet() {
  local waited=0 before after
  while ((waited < QUIET_WAIT)); do
    before=$(busy_ticks)
    sleep 1
    after=$(busy_ticks)
    if awk -v b="$before" -v a="$after" -v t="$TICK_MS" -v n="$CORES" -v m="$FOREIGN_MAX" \
         'BEGIN { exit !((a - b) * t / (1000 * n) * 100 <= m) }'; then
      return
    fi
    waited=$((waited + 1))
  done
}
