#!/bin/sh
# tests/preload/backend_preload.sh WORK_DIR LIBRARY BACKEND BACKEND_LIBRARY PROBE
# Unmodified programs under the preload library with an allocator backend
# preloaded after it, LD_PRELOAD="LIBRARY BACKEND_LIBRARY" (BACKEND glibc and
# BACKEND_LIBRARY "-": the preload library alone), and a profile summary
# (MEMLIMITS_PROFILE_RATE) that must show sampled blocks:
#  1. /usr/bin/sort on 200,000 generated lines: the same output as the plain
#     run, exit 0.
#  2. python3 building, encoding and decoding a large JSON document: the
#     same output as the plain run, exit 0, and the backend's own statistics
#     at exit on stderr (jemalloc MALLOC_CONF=stats_print:true, mimalloc
#     MIMALLOC_SHOW_STATS=1, gperftools MALLOCSTATS=1): it was loaded and
#     used. sort closes its stderr before the backend would print them.
#  3. PROBE (backend_probe.cpp): at least 90% of the bytes of its blocks are
#     the backend's, by the backend's own account, and glibc's heap did not
#     grow by them (rate 0.001: few sampled blocks).
set -u
work=$1 library=$2 backend=$3 backend_library=$4 probe=$5
rm -rf "$work" && mkdir -p "$work" || exit 1
cd "$work" || exit 1
preload=$library
[ "$backend_library" = - ] || preload="$library $backend_library"
failures=0
fail() { echo "FAILED: $*"; failures=$((failures + 1)); }

# The summary's sampled_blocks (0 when there is none).
sampled_blocks() {
  [ -s "$1" ] || { echo 0; return; }
  sed -n 's/.*"sampled_blocks":\([0-9]*\).*/\1/p' "$1" | tail -n 1
}

# 1. sort
awk 'BEGIN { srand(7); for (i = 0; i < 200000; i++) printf "%d %s-%d\n", int(rand() * 1e9), substr("abcdefghij", 1 + i % 10), i }' > input.txt
/usr/bin/sort input.txt > sort.plain; plain_status=$?
env LD_PRELOAD="$preload" MEMLIMITS_PROFILE_RATE=0.01 MEMLIMITS_PROFILE_OUTPUT="$work/sort.json" \
  /usr/bin/sort input.txt > sort.preloaded 2> sort.stderr
status=$?
[ $plain_status -eq 0 ] || fail "plain sort exited with $plain_status"
[ $status -eq 0 ] || fail "sort under '$preload' exited with $status: $(cat sort.stderr)"
cmp -s sort.plain sort.preloaded || fail "sort's output differs under '$preload'"
blocks=$(sampled_blocks sort.json)
[ "${blocks:-0}" -gt 0 ] || fail "sort's summary shows no sampled blocks: $(cat sort.json 2>/dev/null)"
echo "sort: $(wc -l < sort.preloaded) lines, same output, $blocks sampled blocks"

# 2. python3
script='import json
d = {str(i): [i, str(i) * 3, {"k": i % 7}] for i in range(60000)}
s = json.dumps(d, sort_keys=True)
back = json.loads(s)
print(len(s), sum(len(v[1]) for v in back.values()), sorted(back)[:3])'
case $backend in
  jemalloc) stats_env="MALLOC_CONF=stats_print:true" stats_text="Begin jemalloc statistics" ;;
  mimalloc) stats_env="MIMALLOC_SHOW_STATS=1" stats_text="heap stats:" ;;
  tcmalloc) stats_env="MALLOCSTATS=1" stats_text="Bytes in use by application" ;;
  *) stats_env="MEMLIMITS_BACKEND_TEST=glibc" stats_text="" ;;
esac
if [ -x /usr/bin/python3 ]; then
  /usr/bin/python3 -c "$script" > python.plain 2>&1
  env LD_PRELOAD="$preload" MEMLIMITS_PROFILE_RATE=0.01 \
    MEMLIMITS_PROFILE_OUTPUT="$work/python.json" "$stats_env" \
    /usr/bin/python3 -c "$script" > python.preloaded 2> python.stderr
  status=$?
  [ $status -eq 0 ] || fail "python3 under '$preload' exited with $status: $(tail -n 5 python.stderr)"
  cmp -s python.plain python.preloaded || fail "python3's output differs under '$preload'"
  if [ -n "$stats_text" ] && ! grep -q "$stats_text" python.stderr; then
    fail "no $backend statistics on python3's stderr ($stats_env)"
  fi
  blocks=$(sampled_blocks python.json)
  [ "${blocks:-0}" -gt 0 ] || fail "python3's summary shows no sampled blocks"
  echo "python3: same output, $blocks sampled blocks${stats_text:+, $backend statistics printed}"
else
  echo "python3: not installed, skipped"
fi

# 3. the probe
env LD_PRELOAD="$preload" MEMLIMITS_PROFILE_RATE=0.001 MEMLIMITS_PROFILE_OUTPUT="$work/probe.json" \
  "$probe" "$backend" > probe.out 2>&1
status=$?
cat probe.out
[ $status -eq 0 ] || fail "backend_probe $backend under '$preload' exited with $status"
blocks=$(sampled_blocks probe.json)
[ "${blocks:-0}" -gt 0 ] || fail "the probe's summary shows no sampled blocks"

[ $failures -eq 0 ] && echo "ok: $backend under the preload library"
exit $failures
