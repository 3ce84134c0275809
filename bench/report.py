#!/usr/bin/python3
"""Turns bench/run's result lines into a report and data for bench/plot.gp.

  --report FILE     the run's report (markdown): the tables, the plot's
                    reference (benchmarks.png beside FILE) and the raw lines
  --plot-data DIR   one data file per mode for bench/plot.gp
  --doc FILE        optional (bench/run --update-docs): replaces the part of
                    FILE between the bench:table markers with the tables;
                    the rest of the page is kept, and FILE must have both
                    markers."""
import argparse
import datetime
import os
import re
import sys

BEGIN = "<!-- bench:table:begin -->"
END = "<!-- bench:table:end -->"
# The markers count only on lines of their own.
SECTION = re.compile(r"^%s\n.*?^%s$" % (re.escape(BEGIN), re.escape(END)), re.M | re.S)
MODES = ["txcoord-oneshot", "txcoord-session", "txcoord-oneshot-lr", "txcoord-session-lr", "txcoord-oneshot-odbc",
         "txcoord-session-odbc", "txcoord-oneshot-base", "txcoord-session-base", "direct-2pc", "direct-1pc",
         "sqlalchemy-twophase", "grpc-health", "sync-rpc", "cluster-etcd1", "cluster-etcd3"]
WORKLOADS = ["transfer", "transfer3", "single", "readonly", "noop", "ping"]


def parse(path):
    runs, engine, adoption = [], [], []
    for line in open(path):
        kv = dict(re.findall(r"(\w+)=(\S+)", line))
        if line.startswith("txbench "):
            runs.append(kv)
        elif line.startswith("engine_bench "):
            engine.append(kv)
        elif line.startswith("adoption "):
            adoption.append(kv)
    return runs, engine, adoption


def fmt_int(x):
    return "{:,}".format(int(round(float(x))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--report", required=True)
    ap.add_argument("--doc", default="")
    ap.add_argument("--plot-data", required=True)
    ap.add_argument("--quick", default="0")
    ap.add_argument("--seconds", default="")
    ap.add_argument("--host", default="")
    ap.add_argument("--commit", default="")
    a = ap.parse_args()
    if a.doc:
        doc = open(a.doc).read()
        if not SECTION.search(doc):
            sys.exit("report.py: %s has no %s ... %s section (each marker on a line of its own)"
                     % (a.doc, BEGIN, END))
    runs, engine, adoption = parse(a.results)
    clients = sorted({int(r["clients"]) for r in runs})
    # Several rounds of a (workload, mode, clients) run (TXC_BENCH_ROUNDS):
    # the round with the median throughput stands for it, its latencies and
    # CPU figures with it (the lower middle one of an even count).
    rounds = {}
    for r in runs:
        rounds.setdefault((r["workload"], r["mode"], int(r["clients"])), []).append(r)
    get = {}
    for key, rs in rounds.items():
        rs = sorted(rs, key=lambda r: float(r["tps"]))
        get[key] = rs[(len(rs) - 1) // 2]
    n_rounds = max((len(rs) for rs in rounds.values()), default=1)

    out = []
    out.append("Run of %s%s (%s; `bench/run%s`, %s s per run after 0.5 s warm-up, 10,000 accounts "
               "per database, modes alternating at each client count). Each cell: "
               "transactions/s · p50 ms · p99 ms; errors are shown when not 0.%s"
               % (datetime.date.today().isoformat(), " at " + a.commit if a.commit else "", a.host,
                  " --quick" if a.quick == "1" else "", a.seconds,
                  "" if n_rounds == 1 else
                  " %d rounds (every mode once per round, in turn): each cell is the round with the "
                  "median throughput, with that round's latencies." % n_rounds))
    out.append("")
    out.append("### Throughput and latency")
    out.append("")
    for w in WORKLOADS:
        modes = [m for m in MODES if any((w, m, c) in get for c in clients)]
        if not modes:
            continue
        out.append("**%s**" % w)
        out.append("")
        out.append("| mode | " + " | ".join("%d client%s" % (c, "" if c == 1 else "s") for c in clients) + " |")
        out.append("|---|" + "---:|" * len(clients))
        for m in modes:
            cells = []
            for c in clients:
                r = get.get((w, m, c))
                if not r:
                    cells.append("—")
                    continue
                cell = "%s · %s · %s" % (fmt_int(r["tps"]), r["p50_ms"], r["p99_ms"])
                if r.get("errors", "0") != "0":
                    cell += " (%s err)" % r["errors"]
                cells.append(cell)
            out.append("| %s | %s |" % (m, " | ".join(cells)))
        out.append("")

    # The targets, at 32 clients (or the largest client count run).
    c = 32 if 32 in clients else (max(clients) if clients else 0)

    def tps(w, m):
        r = get.get((w, m, c))
        return float(r["tps"]) if r and float(r["tps"]) > 0 else None

    def p99(w, m):
        r = get.get((w, m, c))
        return float(r["p99_ms"]) if r else None

    def field(w, m, name):
        r = get.get((w, m, c))
        return float(r[name]) if r and name in r else None

    def cpu(w, m, part):
        return field(w, m, "cpu_%s_ms" % part)

    def ratio(x, y):
        return None if x is None or y is None or y == 0 else x / y

    goals = [
        ("transfer: txcoord-oneshot / direct-2pc throughput", ratio(tps("transfer", "txcoord-oneshot"), tps("transfer", "direct-2pc")), 1.0, True),
        ("transfer: txcoord-oneshot / direct-2pc p99", ratio(p99("transfer", "txcoord-oneshot"), p99("transfer", "direct-2pc")), 1.2, False),
        ("transfer: txcoord-oneshot-lr (pg as last resource) / direct-2pc throughput", ratio(tps("transfer", "txcoord-oneshot-lr"), tps("transfer", "direct-2pc")), 1.0, True),
        ("transfer: txcoord-oneshot-lr / direct-2pc p99", ratio(p99("transfer", "txcoord-oneshot-lr"), p99("transfer", "direct-2pc")), 1.2, False),
        ("transfer: txcoord-session / direct-2pc throughput", ratio(tps("transfer", "txcoord-session"), tps("transfer", "direct-2pc")), 0.8, True),
        ("transfer: txcoord-session-lr / direct-2pc throughput", ratio(tps("transfer", "txcoord-session-lr"), tps("transfer", "direct-2pc")), 0.8, True),
        ("transfer: txcoord-session / sqlalchemy-twophase throughput", ratio(tps("transfer", "txcoord-session"), tps("transfer", "sqlalchemy-twophase")), 3.0, True),
        ("single: txcoord-oneshot / direct-1pc throughput", ratio(tps("single", "txcoord-oneshot"), tps("single", "direct-1pc")), 0.9, True),
        ("single: txcoord-session / direct-1pc throughput", ratio(tps("single", "txcoord-session"), tps("single", "direct-1pc")), 0.9, True),
        ("noop: txcoord-oneshot / ping throughput", ratio(tps("noop", "txcoord-oneshot"), tps("ping", "grpc-health")), 0.7, True),
        ("transfer: 3 nodes on a 1-member etcd (cluster-etcd1) / single node (txcoord-oneshot) throughput",
         ratio(tps("transfer", "cluster-etcd1"), tps("transfer", "txcoord-oneshot")), 0.7, True),
        ("transfer: MariaDB CPU per transfer, txcoord-oneshot / direct-2pc",
         ratio(cpu("transfer", "txcoord-oneshot", "maria"), cpu("transfer", "direct-2pc", "maria")), 1.1, False),
        ("transfer: txcoord CPU per transfer (ms), txcoord-oneshot", cpu("transfer", "txcoord-oneshot", "txcoord"),
         0.25, False),
        ("transfer: txcoord CPU per transfer, txcoord-oneshot / the baseline engine (bench/run --baseline)",
         ratio(cpu("transfer", "txcoord-oneshot", "txcoord"), cpu("transfer", "txcoord-oneshot-base", "txcoord")),
         0.3, False),
        ("single: txcoord CPU per transaction (ms)", cpu("single", "txcoord-oneshot", "txcoord"), 0.08, False),
        ("noop: txcoord CPU per transaction (ms)", cpu("noop", "txcoord-oneshot", "txcoord"), 0.07, False),
        ("transfer: txcoord context switches per transfer", field("transfer", "txcoord-oneshot", "cs_txcoord"), 4,
         False),
        ("transfer: threads of txcoord (32 clients)", field("transfer", "txcoord-oneshot", "txcoord_threads"), 16,
         False),
    ]
    out.append("### Against the targets (%d clients, ratios from this run)" % c)
    out.append("")
    out.append("| goal | measured | target | met |")
    out.append("|---|---:|---:|:---:|")
    for name, v, target, at_least in goals:
        if v is None:
            out.append("| %s | — | %s %g | — |" % (name, "≥" if at_least else "≤", target))
            continue
        met = v >= target if at_least else v <= target
        out.append("| %s | %.2f | %s %g | %s |" % (name, v, "≥" if at_least else "≤", target, "yes" if met else "**no**"))
    floor = ratio(tps("ping", "sync-rpc"), tps("ping", "grpc-health"))
    if floor is not None:
        noop_on_floor = ratio(tps("noop", "txcoord-oneshot"), tps("ping", "sync-rpc"))
        out.append("")
        out.append("Context, not a target: the cheapest call of txcoord's own services (`ping` mode "
                   "`sync-rpc`: a malformed GetTransaction, handed to a loop and back) runs at %.2f× the health "
                   "check, which txcoord answers on its gRPC thread; `noop` runs at %s× that floor."
                   % (floor, "—" if noop_on_floor is None else "%.2f" % noop_on_floor))
    cpu_rows = [(w, m) for w, m in [("transfer", "direct-2pc"), ("transfer", "txcoord-oneshot"),
                                    ("transfer", "txcoord-oneshot-lr"), ("transfer", "txcoord-oneshot-odbc"),
                                    ("transfer", "txcoord-oneshot-base"), ("transfer", "txcoord-session"),
                                    ("transfer", "txcoord-session-odbc"), ("transfer", "txcoord-session-base"),
                                    ("transfer", "sqlalchemy-twophase"), ("transfer", "cluster-etcd1"),
                                    ("transfer", "cluster-etcd3"), ("single", "direct-1pc"),
                                    ("single", "txcoord-oneshot"), ("single", "txcoord-oneshot-base"),
                                    ("noop", "txcoord-oneshot"), ("noop", "txcoord-oneshot-base"),
                                    ("ping", "grpc-health"), ("ping", "sync-rpc")]
                if "cpu_client_ms" in get.get((w, m, c), {})]
    if cpu_rows:
        out.append("")
        out.append("### CPU per transaction by process (%d clients)" % c)
        out.append("")
        out.append("Milliseconds (bench/cpu_share.py: /proc ticks over the run / (tps × the run's wall time); "
                   "client = txbench or the SQLAlchemy script). txcoord cs: context switches per transaction "
                   "of the txcoord processes (`perf stat`); threads: of the busiest txcoord at the run's end.")
        out.append("")
        out.append("| workload | mode | tps | client | txcoord | PostgreSQL | MariaDB | other | all | cores busy "
                   "| txcoord cs | threads |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for w, m in cpu_rows:
            r = get[(w, m, c)]
            parts = [float(r.get("cpu_%s_ms" % k, 0)) for k in ("client", "txcoord", "pg", "maria", "other")]
            out.append("| %s | %s | %s | %s | %.2f | %s%% | %s | %s |" % (
                w, m, fmt_int(r["tps"]), " | ".join("%.2f" % x for x in parts), sum(parts),
                r.get("cpu_busy_pct", "—"), r.get("cs_txcoord", "—"), r.get("txcoord_threads", "—")))
    for ad in adoption:
        out.append("")
        out.append("### Adoption (cluster-etcd1, a node SIGKILLed under 32 clients of transfers)")
        out.append("")
        secs = float(ad.get("adoption_seconds", "-1"))
        ttl = float(ad.get("lease_ttl_s", "0"))
        out.append("| branches prepared at the kill | adoption_seconds (kill → nothing of it prepared or undecided) "
                   "| target ≤ lease TTL + 5 s | decisions left |")
        out.append("|---:|---:|---:|---:|")
        out.append("| %s | %s | %.0f s: %s | %s |" % (
            ad.get("prepared_at_kill", "?"), "not settled" if secs < 0 else "%.2f" % secs, ttl + 5,
            "yes" if 0 <= secs <= ttl + 5 else "**no**", ad.get("decisions_left", "?")))
    if engine:
        out.append("")
        out.append("### Engine alone (`engine_bench`)")
        out.append("")
        out.append("In process, 2 noop binds, real fsynced journal; target ≥ 100,000 commits/s.")
        out.append("")
        out.append("| runs on | concurrent transactions | commits/s | p50 µs | p99 µs |")
        out.append("|---|---:|---:|---:|---:|")
        for e in engine:
            out.append("| %s | %s | %s | %s | %s |" % (e.get("runs_on", "threads"), e["concurrency"],
                                                    fmt_int(e["commits_per_s"]), e["p50_us"], e["p99_us"]))
    section = "\n".join(out)

    report = ["# txcoord benchmark run", "", section, "",
              "![throughput and p99 versus clients](benchmarks.png)", "",
              "Raw lines of this run (also in results.txt):", "", "```"]
    report.extend(l.rstrip("\n") for l in open(a.results) if l.strip())
    report += ["```", ""]
    open(a.report, "w").write("\n".join(report))

    if a.doc:
        block = BEGIN + "\n\n" + section + "\n\n" + END
        open(a.doc, "w").write(SECTION.sub(lambda _: block, doc, count=1))

    os.makedirs(a.plot_data, exist_ok=True)
    for m in MODES:
        w = "ping" if m in ("grpc-health", "sync-rpc") else "transfer"
        rows = [(cc, get[(w, m, cc)]) for cc in clients if (w, m, cc) in get]
        with open(os.path.join(a.plot_data, m + ".dat"), "w") as f:
            for cc, r in rows:
                f.write("%d %s %s\n" % (cc, r["tps"], r["p99_ms"]))
    rows = [(cc, get[("noop", "txcoord-oneshot", cc)]) for cc in clients if ("noop", "txcoord-oneshot", cc) in get]
    with open(os.path.join(a.plot_data, "noop-oneshot.dat"), "w") as f:
        for cc, r in rows:
            f.write("%d %s %s\n" % (cc, r["tps"], r["p99_ms"]))


if __name__ == "__main__":
    main()
