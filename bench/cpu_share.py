#!/usr/bin/python3
"""cpu_share.py -- CMD...: runs one benchmark client and says where the CPU went.

Runs CMD (a txbench or sqlalchemy_twophase.py run that prints one
`txbench ... tps=X ...` line), passes its output through, and appends to
that line the CPU per transaction of each process group over the run, in
milliseconds, read from /proc before and after (clock ticks):

  cpu_client_ms   CMD itself (its rusage: the load generator)
  cpu_txcoord_ms  every process named txcoord
  cpu_pg_ms       PostgreSQL: every postgres process, plus what the
                  postmaster reaped meanwhile (backends of connections that
                  opened and closed during the run, as direct modes do)
  cpu_maria_ms    every mariadbd process
  cpu_other_ms    everything else, kernel threads included
  cpu_busy_pct    share of all cores busy (/proc/stat, iowait counted idle)
  cs_txcoord      context switches per transaction of every txcoord process
                  (`perf stat -e context-switches` attached to them for the
                  run, threads they start included; absent without perf)
  txcoord_threads threads of the txcoord that used the most CPU in the run,
                  at its end

Per transaction = CPU over the whole run (connecting, warm-up and the
measured seconds) / (tps x the run's wall time): the warm-up is assumed to
run at the measured rate. Exits with CMD's status.
"""
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")
GROUPS = {"txcoord": "txcoord", "postgres": "pg", "mariadbd": "maria"}


def snapshot():
    """{group: ticks} over live processes, and (busy, total) ticks of /proc/stat."""
    ticks = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                raw = f.read()
        except OSError:
            continue  # exited meanwhile
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()
        # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
        own = int(fields[11]) + int(fields[12])
        group = GROUPS.get(comm, "other")
        if group == "pg":
            own += int(fields[13]) + int(fields[14])  # backends the postmaster reaped
        ticks[(int(pid), group)] = own
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    idle = cpu[3] + cpu[4]
    return ticks, (sum(cpu[:8]) - idle, sum(cpu[:8]))


def start_perf(pids):
    """perf stat counting context switches of `pids` (and threads they start), or None."""
    if not pids:
        return None
    out = tempfile.NamedTemporaryFile(prefix="cpu_share_perf_", delete=False)
    out.close()
    try:
        proc = subprocess.Popen(["perf", "stat", "-e", "context-switches", "-x", ",", "-o", out.name,
                                 "-p", ",".join(str(p) for p in pids)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        os.unlink(out.name)
        return None
    time.sleep(0.2)  # attached before the load starts
    return proc, out.name


def stop_perf(perf):
    """The context switches perf counted, or None."""
    if perf is None:
        return None
    proc, path = perf
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    count = None
    try:
        with open(path) as f:
            for line in f:
                fields = line.strip().split(",")
                if len(fields) > 2 and fields[2] == "context-switches" and fields[0].isdigit():
                    count = int(fields[0])
    finally:
        os.unlink(path)
    return count


def threads_of(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def main():
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.exit("usage: cpu_share.py -- CMD...")
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    perf = start_perf(sorted(pid for pid, group in snapshot()[0] if group == "txcoord"))
    before, (busy0, total0) = snapshot()
    start = time.monotonic()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    out, _ = child.communicate()  # waits for CMD and reaps it
    wall = time.monotonic() - start
    after, (busy1, total1) = snapshot()
    switches = stop_perf(perf)
    busiest = max(((t - before.get(key, 0), key[0]) for key, t in after.items() if key[1] == "txcoord"),
                  default=None)
    threads = threads_of(busiest[1]) if busiest else None
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_s = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    per_group = {}
    for key, t in after.items():
        per_group[key[1]] = per_group.get(key[1], 0) + t - before.get(key, 0)
    lines = out.splitlines()
    for i, line in enumerate(lines):
        m = re.search(r"\btps=([0-9.]+)", line)
        if not line.startswith("txbench ") or not m or float(m.group(1)) <= 0:
            continue
        txns = float(m.group(1)) * wall
        extra = " cpu_client_ms=%.3f" % (client_s * 1000 / txns)
        for g in ("txcoord", "pg", "maria", "other"):
            extra += " cpu_%s_ms=%.3f" % (g, max(per_group.get(g, 0), 0) * 1000 / TICK / txns)
        if switches is not None:
            extra += " cs_txcoord=%.2f" % (switches / txns)
        if threads is not None:
            extra += " txcoord_threads=%d" % threads
        if total1 > total0:
            extra += " cpu_busy_pct=%.0f" % (100.0 * (busy1 - busy0) / (total1 - total0))
        lines[i] = line + extra
    sys.stdout.write("\n".join(lines) + ("\n" if lines else ""))
    sys.exit(child.returncode)


if __name__ == "__main__":
    main()
