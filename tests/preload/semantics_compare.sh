#!/bin/sh
# tests/preload/semantics_compare.sh WORK_DIR REFERENCE_PRELOAD REFERENCE COMMAND...
# Runs REFERENCE (semantics_probe, without memlimits: no MEMLIMITS_*
# variable, and LD_PRELOAD only REFERENCE_PRELOAD, "-" for none) and COMMAND
# (the probe under memlimits: an env(1) command line with LD_PRELOAD, or a
# build linked with the hooks), each in WORK_DIR emptied first (the preload
# library may write memlimits.<pid>.json there), and requires both to
# succeed with the same standard output (and, with a REFERENCE_PRELOAD, that
# library to change the probe's lines). On a difference, prints the first
# differing lines (diff -u) and their count; standard error is shown but not
# compared.
set -u
work_dir=$1
reference_preload=$2
reference=$3
shift 3

rm -rf "$work_dir"
mkdir -p "$work_dir" || exit 1
cd "$work_dir" || exit 1

if [ "$reference_preload" = - ]; then
  env -u LD_PRELOAD -u MEMLIMITS_PROFILE_RATE -u MEMLIMITS_HEAP_PROFILE \
    "$reference" > system.out 2> system.err
else
  env -u MEMLIMITS_PROFILE_RATE -u MEMLIMITS_HEAP_PROFILE LD_PRELOAD="$reference_preload" \
    "$reference" > system.out 2> system.err
fi
status=$?
if [ $status -ne 0 ]; then
  echo "the probe without memlimits failed (status $status):"
  cat system.err
  exit 1
fi
"$@" > memlimits.out 2> memlimits.err
status=$?
if [ -s memlimits.err ]; then
  echo "standard error of the run under memlimits (not compared):"
  head -n 20 memlimits.err
fi
if [ $status -ne 0 ]; then
  echo "the probe under memlimits failed (status $status): $*"
  exit 1
fi

if [ "$reference_preload" != - ]; then
  # The library preloaded for the reference must change something, or the
  # comparison would say nothing of it.
  env -u LD_PRELOAD -u MEMLIMITS_PROFILE_RATE -u MEMLIMITS_HEAP_PROFILE \
    "$reference" > plain.out 2> plain.err
  if cmp -s plain.out system.out; then
    echo "LD_PRELOAD=$reference_preload changes none of the probe's lines"
    exit 1
  fi
fi

lines=$(wc -l < system.out)
if [ "$lines" -lt 1000 ]; then
  echo "the probe without memlimits printed only $lines lines"
  exit 1
fi
if cmp -s system.out memlimits.out; then
  echo "$lines lines, the same as the system's own: $*"
  exit 0
fi
differing=$(diff system.out memlimits.out | grep -c '^<')
echo "the probe under memlimits differs from the system's C library in $differing of $lines lines: $*"
echo "(--- the system's own, +++ under memlimits; first differences)"
diff -u system.out memlimits.out | head -n 60
exit 1
