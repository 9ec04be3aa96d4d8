#!/usr/bin/python3
"""CPython's own regression suites, plain and under the preload library.

Runs the same regrtest suites of Debian's python3.11 three times, side by
side, each in its own working directory under --work-dir:
  plain    no preload library;
  rate     LD_PRELOAD=<library> MEMLIMITS_PROFILE_RATE=1e-3 (the JSON summary,
           to memlimits.<pid>.json in the directory a process starts in);
  heap     LD_PRELOAD=<library> MEMLIMITS_HEAP_PROFILE=<dir>/heap.%p.<format>
           (a heap profile of every process at the default rate):
           test_subprocess writes pprof's format (.pb.gz), the other suites
           folded stacks (.folded), as two regrtest invocations.
and requires that every test case has the same outcome (passed, failed,
skipped, ...) in every run, that every test file has the same result, that
the preloaded runs alter no more of regrtest's saved environment than the
plain run does, and that the preloaded runs wrote their profiles: the library
must have been active in the main regrtest process and in its workers.

The suites are chosen for what the library hooks and for their run time:
  test_subprocess   fork/exec/posix_spawn of hundreds of children, descriptor
                    inheritance (pass_fds, close_fds), pipes, timeouts
  test_os           fork, exec, descriptors, environment, file system calls
  test_posix        posix_spawn, fork, wait, scheduling, low-level calls
  test_signal       handlers, signals across fork and exec, wakeup fds,
                    interrupted system calls, itimers
  test_threading    threads, locks, fork from threads, interpreter shutdown
  test_json         allocation-heavy parsing and encoding (C accelerator)
  test_gc           the cyclic collector: many small objects freed in bulk
  test_tracemalloc  Python's own allocation hooks stacked over malloc's
regrtest runs them with -j (one worker process per test file, results passed
back as JSON on the worker's standard output), so that anything the library
writes to a program's output or any descriptor it holds shows up as a broken
worker protocol or as a failing test (e.g. test_subprocess's
test_pass_fds_redirected, which counts inherited descriptors).

Left out: test_signal's SiginterruptTest.test_siginterrupt_off, which waits
for support.SHORT_TIMEOUT (30 s) by design in every run; its two siblings,
which interrupt a read() in a child process, stay. And test_signal's
StressTest.test_stress_modifying_handlers, which counts signals delivered
while another thread keeps swapping the handler and fails when the machine
is busy: it failed in the plain run, not the preloaded ones, with both
cores kept busy by other processes.

Test cases that fail in the plain run and in the preloaded runs alike
(because of the machine, e.g. running as root in a container without
network) pass the comparison. With Debian bookworm's python3.11 (3.11.2), as
root in a container without network and without a terminal, no test case of
these suites fails; the environment only makes some skip, in every run:
  test_os           ChownFileTests.test_chown_gid (needs 2 groups),
                    ChownFileTests.test_chown_without_permission (needs a
                    non-root account), DeviceEncodingTests and TermsizeTests
                    (need a terminal), FileTests.test_large_read (bigmem)
  test_subprocess   POSIXProcessTestCase.test_preexec_fork_failure
                    (RLIMIT_NPROC does not bind root), test_no_leaking (the
                    descriptor limit, 20000 here, is above the 1026 it opens)
  test_json         TestCEncodeBasestringAscii.test_overflow (bigmem)
The summary files that children write into their test's working directory
make regrtest report "env changed" for every test file of the rate run: that
is the library's default output, accepted here; any other change of regrtest's
saved environment that the plain run does not show is a difference.

Exit status: 0 when the runs agree, 1 when they differ (the differences are
printed), 77 when Debian's libpython3.11-testsuite is not installed (ctest's
SKIP_RETURN_CODE).
"""

import argparse
import ast
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

SKIP = 77

# The heap run's halves: test_subprocess, the longest test file, whose few
# hundred children each write a profile at exit, alone in one; the others in
# the other.
SUITES_PPROF = ["test_subprocess"]
SUITES_FOLDED = ["test_os", "test_posix", "test_json", "test_signal", "test_threading",
                 "test_gc", "test_tracemalloc"]
SUITES = SUITES_PPROF + SUITES_FOLDED
IGNORED = ["test.test_signal.SiginterruptTest.test_siginterrupt_off",
           "test.test_signal.StressTest.test_stress_modifying_handlers"]

# Differing test cases printed in full at most.
MAX_LISTED = 30

# regrtest kills a worker whose test file runs longer than this (seconds).
FILE_TIMEOUT = 150


def installed(package):
    """True when dpkg knows `package` as installed."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                             capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return False
    return out.returncode == 0 and out.stdout.strip() == "install ok installed"


def clean_environment():
    """The caller's environment without anything that changes the runs:
    no preload library or memlimits variable inherited from the caller, and
    no PYTHON* variable (path, warnings, hash seed) of the caller's shell."""
    env = {k: v for k, v in os.environ.items()
           if k != "LD_PRELOAD" and not k.startswith("MEMLIMITS_")
           and not k.startswith("PYTHON")}
    # The locale of the runs is fixed: test_os and test_subprocess look at
    # the file system encoding.
    env["LC_ALL"] = "C.UTF-8"
    return env


class Invocation:
    """One regrtest process: its suites, environment, outputs and result."""

    def __init__(self, name, directory, suites, env, jobs):
        self.name = name
        self.directory = directory
        self.suites = suites
        self.env = env
        self.jobs = jobs
        self.xml = os.path.join(directory, f"{name}.xml")
        self.log = os.path.join(directory, f"{name}.log")
        self.process = None
        self.log_file = None
        self.started = 0.0
        self.seconds = 0.0
        self.returncode = None
        self.timed_out = False

    def start(self, python):
        os.makedirs(self.directory, exist_ok=True)
        self.log_file = open(self.log, "w")
        command = [python, "-m", "test", f"-j{self.jobs}", "--timeout", str(FILE_TIMEOUT),
                   "--junit-xml", self.xml]
        for ignored in IGNORED:
            command += ["-i", ignored]
        command += self.suites
        print(f"== {self.name}: {' '.join(command)}", flush=True)
        self.started = time.monotonic()
        # Its own session, so that a stuck run can be stopped as a whole.
        self.process = subprocess.Popen(command, cwd=self.directory, env=self.env,
                                        stdin=subprocess.DEVNULL, stdout=self.log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self):
        return self.process.pid

    def finished(self):
        """True once the run has ended (its time taken then)."""
        if self.returncode is None and self.process.poll() is not None:
            self.returncode = self.process.returncode
            self.seconds = time.monotonic() - self.started
            self.log_file.close()
        return self.returncode is not None

    def stop(self):
        """Stops a run that went past the deadline."""
        if self.finished():
            return
        self.timed_out = True
        try:
            # SIGINT first: regrtest then kills its workers (own sessions).
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
        self.finished()

    def log_tail(self, lines=40):
        with open(self.log, errors="replace") as f:
            return "".join(f.readlines()[-lines:])


def xml_outcomes(path):
    """{test id: outcome} from regrtest's JUnit file; None when missing.

    A test case whose subtests failed gets no name in regrtest's file (its
    result is neither a success nor a plain failure): it is named after the
    test case before it in the same file. Ids seen twice (doctests run twice)
    get a #2 suffix."""
    if not os.path.exists(path):
        return None
    outcomes = {}
    previous = "(first test case)"
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for case in suite.iter("testcase"):
            name = case.get("name")
            if name is None:
                name = f"(test case with failing subtests, after {previous})"
                outcome = "failed"
            else:
                previous = name
                outcome = "passed"
                for child in case:
                    if child.tag in ("failure", "error", "skipped"):
                        outcome = {"failure": "failed", "error": "error",
                                   "skipped": "skipped"}[child.tag]
                    elif child.tag == "output":
                        outcome = "expected failure"
                    elif child.tag == "outcome":
                        outcome = "unexpected success"
            key, n = name, 1
            while key in outcomes:
                n += 1
                key = f"{name} #{n}"
            outcomes[key] = outcome
    return outcomes


def xml_details(path, test_id):
    """The failure or error text regrtest stored for `test_id`."""
    if not os.path.exists(path):
        return ""
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.get("name") == test_id.split(" #")[0]:
            texts = [child.text or child.get("message") or ""
                     for child in case if child.tag in ("failure", "error")]
            texts += [child.text or "" for child in case if child.tag == "system-err"]
            return "\n".join(t for t in texts if t)[-3000:]
    return ""


FILE_RESULT = re.compile(r"^\d+:\d+:\d+ .*?\] (test_\w+) (.*)$")
WARNING = re.compile(r"^Warning -- (.+) was modified by (test_\w+)$")
BEFORE = re.compile(r"^(?:Warning -- )?\s+Before: (.*)$")
AFTER = re.compile(r"^(?:Warning -- )?\s+After:\s+(.*?)\s*$")


def log_results(path):
    """({test file: result}, [(test file, resource, before, after)]) from
    regrtest's progress lines and its warnings on the saved environment."""
    results, changes = {}, []
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if m := FILE_RESULT.match(line):
            text = m.group(2).split(" -- ")[0]
            text = re.sub(r" \(\d+(\.\d+)? (sec|ms|min)\)$", "", text)
            text = re.sub(r" \(\d+ min \d+ sec\)$", "", text)
            results[m.group(1)] = text
        elif m := WARNING.match(line):
            before = after = None
            if i + 2 < len(lines) and (b := BEFORE.match(lines[i + 1])) and (
                    a := AFTER.match(lines[i + 2])):
                before, after = b.group(1), a.group(1)
            # regrtest prints a worker's warnings twice: keep one.
            if (m.group(2), m.group(1), before, after) not in changes:
                changes.append((m.group(2), m.group(1), before, after))
    return results, changes


def other_warnings(path):
    """regrtest's warnings in a log other than the saved-environment ones
    (dangling threads, reaped children, unraisable exceptions ...)."""
    found = []
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip()
            if (line.startswith("Warning -- ") and not WARNING.match(line)
                    and not BEFORE.match(line) and not AFTER.match(line)
                    and line not in found):
                found.append(line)
    return found[:20]


def library_messages(path):
    """{message with numbers as N: count} of the lines the library wrote."""
    messages = {}
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("memlimits: "):
                text = re.sub(r"\d+", "N", line.strip())[:300]
                messages[text] = messages.get(text, 0) + 1
    return messages


SUMMARY_FILE = re.compile(r"^memlimits\.(\d+)\.json$")


def only_summary_files(resource, before, after):
    """True when the change is regrtest's 'files' check seeing the summary
    files the library writes into the working directory by default."""
    if resource != "files" or before is None or after is None:
        return False
    try:
        added = set(ast.literal_eval(after)) - set(ast.literal_eval(before))
        removed = set(ast.literal_eval(before)) - set(ast.literal_eval(after))
    except (ValueError, SyntaxError):
        return False
    return not removed and all(SUMMARY_FILE.match(name) for name in added)


class Checker:
    def __init__(self):
        self.problems = []

    def fail(self, text):
        self.problems.append(text)
        print(f"FAILED: {text}", flush=True)


def check_summaries(checker, run, pid, files):
    """The summaries of the rate run: one JSON line per process in
    memlimits.<pid>.json of the working directory (the library's default
    output), for the main regrtest process and for each test file's worker
    (workers exit in the directory regrtest started in)."""
    found = {}
    for name in sorted(os.listdir(run.directory)):
        if m := SUMMARY_FILE.match(name):
            path = os.path.join(run.directory, name)
            with open(path, errors="replace") as f:
                text = f.read()
            try:
                lines = [json.loads(line) for line in text.splitlines()]
            except json.JSONDecodeError:
                checker.fail(f"{run.name}: {name} is not JSON lines: {text[:300]!r}")
                continue
            if (len(lines) != 1 or lines[0].get("pid") != int(m.group(1))
                    or lines[0].get("rate") != 1e-3 or "samples" not in lines[0]):
                checker.fail(f"{run.name}: {name} is not one summary of its process at rate "
                             f"1e-3: {text[:300]!r}")
                continue
            found[int(m.group(1))] = lines[0]
    print(f"   {run.name}: {len(found)} summary files", flush=True)
    if pid not in found:
        checker.fail(f"{run.name}: no summary memlimits.{pid}.json of the main regrtest process "
                     f"in {run.directory}")
    elif found[pid]["samples"] <= 0:
        checker.fail(f"{run.name}: the main regrtest process's summary has no samples: "
                     f"{found[pid]}")
    if len(found) < files + 1:
        checker.fail(f"{run.name}: {len(found)} summary files, expected at least {files + 1} "
                     f"(the main process and one worker per test file)")


def check_heap_profiles(checker, run, pid, suffix, files):
    """The heap profiles of one heap invocation: heap.<pid>.<suffix> and its
    .top table for the main regrtest process, and at least one per test
    file's worker; every one in its format (gzip data for pprof, lines of
    'frames count' for folded stacks)."""
    directory = run.directory
    pattern = re.compile(r"^heap\.(\d+)\." + re.escape(suffix) + "$")
    pids = []
    for name in sorted(os.listdir(directory)):
        if not (m := pattern.match(name)):
            continue
        pids.append(int(m.group(1)))
        path = os.path.join(directory, name)
        try:
            if suffix == "pb.gz":
                with gzip.open(path) as f:
                    data = f.read()
                if not data:
                    checker.fail(f"{run.name}: {name} holds an empty profile")
            else:
                with open(path, errors="replace") as f:
                    for line in f:
                        if not re.match(r"^\S.* \d+$", line.rstrip("\n")):
                            checker.fail(f"{run.name}: {name}: not a folded stack: {line[:200]!r}")
                            break
        except (OSError, EOFError) as e:
            checker.fail(f"{run.name}: {name} is not readable: {e}")
    print(f"   {run.name}: {len(pids)} heap profiles (.{suffix})", flush=True)
    main = os.path.join(directory, f"heap.{pid}.{suffix}")
    if pid not in pids:
        checker.fail(f"{run.name}: no heap profile {main} of the main regrtest process")
    elif os.path.getsize(main) == 0:
        checker.fail(f"{run.name}: the heap profile {main} of the main regrtest process is empty")
    top = main + ".top"
    if not os.path.exists(top) or os.path.getsize(top) == 0:
        checker.fail(f"{run.name}: no top table {top} of the main regrtest process")
    if len(pids) < files + 1:
        checker.fail(f"{run.name}: {len(pids)} heap profiles, expected at least {files + 1} "
                     f"(the main process and one worker per test file)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", required=True, help="libmemlimits_preload.so")
    parser.add_argument("--work-dir", required=True, help="scratch directory (emptied)")
    parser.add_argument("--python", default="/usr/bin/python3.11")
    parser.add_argument("--jobs", type=int, default=2, help="regrtest workers per run")
    parser.add_argument("--budget", type=float, default=250,
                        help="seconds for all runs; a run still going is stopped")
    args = parser.parse_args()

    if not installed("libpython3.11-testsuite") or not os.access(args.python, os.X_OK):
        print("SKIPPED: Debian's libpython3.11-testsuite and python3.11 are not installed "
              "(apt-get install libpython3.11-testsuite python3.11; .ci/test.sh does)")
        return SKIP
    library = os.path.abspath(args.library)
    if not os.path.isfile(library):
        print(f"FAILED: no preload library at {library}")
        return 1

    work = os.path.abspath(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    deadline = time.monotonic() + args.budget
    base = clean_environment()
    preload = dict(base, LD_PRELOAD=library)
    heap_dir = os.path.join(work, "heap")

    plain = Invocation("plain", os.path.join(work, "plain"), SUITES, base, args.jobs)
    rate = Invocation("rate", os.path.join(work, "rate"), SUITES,
                      dict(preload, MEMLIMITS_PROFILE_RATE="1e-3"), args.jobs)
    heap_pprof = Invocation(
        "heap-pprof", heap_dir, SUITES_PPROF,
        dict(preload, MEMLIMITS_HEAP_PROFILE=os.path.join(heap_dir, "heap.%p.pb.gz")), 1)
    heap_folded = Invocation(
        "heap-folded", heap_dir, SUITES_FOLDED,
        dict(preload, MEMLIMITS_HEAP_PROFILE=os.path.join(heap_dir, "heap.%p.folded")), args.jobs)

    total_start = time.monotonic()
    # The runs go side by side: most of their time is spent waiting (sleeps,
    # timeouts, children), and the runs then see the same load of the
    # machine, so that a timing-sensitive test is as likely to fail in the
    # plain run as in the preloaded ones.
    invocations = [plain, rate, heap_pprof, heap_folded]
    for invocation in invocations:
        invocation.start(args.python)
    running = list(invocations)
    while running and time.monotonic() < deadline:
        time.sleep(0.2)
        for invocation in [i for i in running if i.finished()]:
            running.remove(invocation)
            print(f"   {invocation.name}: exit status {invocation.returncode}, "
                  f"{invocation.seconds:.1f} s", flush=True)
    for invocation in running:
        invocation.stop()
        print(f"   {invocation.name}: stopped at the deadline", flush=True)
    total = time.monotonic() - total_start

    checker = Checker()
    runs = {"plain": [plain], "rate": [rate], "heap": [heap_pprof, heap_folded]}
    outcomes, file_results, changes = {}, {}, {}
    for run_name, invocations in runs.items():
        outcomes[run_name], file_results[run_name], changes[run_name] = {}, {}, []
        for invocation in invocations:
            if invocation.timed_out:
                checker.fail(f"{invocation.name}: stopped after {invocation.seconds:.0f} s "
                             f"(budget {args.budget:.0f} s for all runs)")
            found = xml_outcomes(invocation.xml)
            if found is None:
                checker.fail(f"{invocation.name}: regrtest wrote no results (exit status "
                             f"{invocation.returncode}); the end of its output:\n"
                             f"{invocation.log_tail()}")
                found = {}
            outcomes[run_name].update(found)
            results, altered = log_results(invocation.log)
            file_results[run_name].update(results)
            changes[run_name] += altered
            # The library's own messages on a program's standard error (a
            # profile it could not write, e.g. from a child that a test runs
            # as another user in a directory that user cannot write): shown,
            # not failures by themselves.
            messages = library_messages(invocation.log)
            for text, count in sorted(messages.items()):
                print(f"   note: {invocation.name}: {count} x {text}", flush=True)

    # The plain run is the reference: it must have run every suite.
    missing = [suite for suite in SUITES if file_results["plain"].get(suite) is None]
    if missing:
        checker.fail(f"plain: no result for {', '.join(missing)}; the end of its output:\n"
                     f"{plain.log_tail()}")
    not_passing = {t: o for t, o in outcomes["plain"].items()
                   if o not in ("passed", "skipped", "expected failure")}
    if not_passing:
        print("   not passing in the plain run (the environment):", flush=True)
        for test_id, outcome in sorted(not_passing.items()):
            print(f"     {outcome}: {test_id}", flush=True)

    for run_name in ("rate", "heap"):
        if not outcomes[run_name]:
            # Reported above with the end of regrtest's output.
            print(f"   {run_name}: no test case results to compare", flush=True)
            continue
        invocation_of = {s: i for i in runs[run_name] for s in i.suites}
        # The summary files the library writes by default into the directory
        # a process starts in appear in the working directory of the test
        # files whose children start there: regrtest reports "env changed"
        # for them. That is the library's documented default, not a
        # difference; any other change of the saved environment is.
        plain_changes = {(t, r) for t, r, _, _ in changes["plain"]}
        littered, altered = {}, set()
        for test, resource, before, after in changes[run_name]:
            if (test, resource) in plain_changes:
                continue
            if only_summary_files(resource, before, after):
                added = set(ast.literal_eval(after)) - set(ast.literal_eval(before))
                littered[test] = littered.get(test, set()) | added
                continue
            altered.add(test)
            checker.fail(f"{run_name}: {test} modified {resource} (not in the plain run)\n"
                         f"  before: {before}\n  after:  {after}")
        if littered:
            print(f"   note: {run_name}: summary files left in the working directory of "
                  + ", ".join(f"{t} ({len(n)})" for t, n in sorted(littered.items())),
                  flush=True)
        for suite in SUITES:
            want, got = file_results["plain"].get(suite), file_results[run_name].get(suite)
            if got == "failed (env changed)" and want == "passed":
                if suite in littered and suite not in altered:
                    continue
                warnings = other_warnings(invocation_of[suite].log)
                checker.fail(f"{run_name}: {suite} {got!r}, plain run: {want!r}"
                             + "".join(f"\n  {w}" for w in warnings))
            # A test file that altered the environment in the plain run (a
            # dangling thread, say) may not do so again.
            elif want == "failed (env changed)" and got == "passed":
                continue
            elif want != got:
                checker.fail(f"{run_name}: {suite} {got!r}, plain run: {want!r}")
        ids = sorted(set(outcomes["plain"]) | set(outcomes[run_name]))
        differing = [t for t in ids if outcomes["plain"].get(t) != outcomes[run_name].get(t)]
        agreeing = len(ids) - len(differing)
        absent = [t for t in differing if t not in outcomes[run_name]]
        if len(absent) > MAX_LISTED:
            checker.fail(f"{run_name}: {len(absent)} test cases of the plain run did not run, "
                         f"e.g. {', '.join(absent[:5])}")
            differing = [t for t in differing if t in outcomes[run_name]]
        for test_id in differing[:MAX_LISTED]:
            suite = test_id.split(".")[1] if test_id.startswith("test.") else ""
            xml = invocation_of[suite].xml if suite in invocation_of else runs[run_name][0].xml
            details = xml_details(xml, test_id)
            checker.fail(f"{run_name}: {test_id}: {outcomes[run_name].get(test_id, 'not run')}, "
                         f"plain run: {outcomes['plain'].get(test_id, 'not run')}"
                         + (f"\n{details}" if details else ""))
        if len(differing) > MAX_LISTED:
            checker.fail(f"{run_name}: and {len(differing) - MAX_LISTED} more test cases differ "
                         f"(see {runs[run_name][0].directory})")
        print(f"   {run_name}: {agreeing} of {len(ids)} test cases agree "
              f"with the plain run", flush=True)

    check_summaries(checker, rate, rate.pid, len(SUITES))
    check_heap_profiles(checker, heap_pprof, heap_pprof.pid, "pb.gz", len(SUITES_PPROF))
    check_heap_profiles(checker, heap_folded, heap_folded.pid, "folded", len(SUITES_FOLDED))

    counts = {o: list(outcomes["plain"].values()).count(o) for o in set(outcomes["plain"].values())}
    print(f"== {len(outcomes['plain'])} test cases in the plain run {counts}; "
          f"plain {plain.seconds:.1f} s, rate {rate.seconds:.1f} s, heap "
          f"{max(heap_pprof.seconds, heap_folded.seconds):.1f} s, total {total:.1f} s", flush=True)
    if checker.problems:
        print(f"== {len(checker.problems)} differences from the plain run or missing profiles "
              f"(outputs in {work})", flush=True)
        return 1
    print("== the preloaded runs agree with the plain run", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
