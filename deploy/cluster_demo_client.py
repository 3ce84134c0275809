#!/usr/bin/python3
"""The client of deploy/cluster-demo.sh (run it with /usr/bin/python3).

  cluster_demo_client.py transfers --node n1=ADDRESS_FILE ... --out RESULTS.json
        [--seconds 20] [--threads 6] [--accounts 10] [--run-id ID]
  cluster_demo_client.py verify --results RESULTS.json --bind NAME=BALANCES.tsv:LEDGER.tsv ...
        [--accounts 10] [--initial 1000]

transfers: money transfers between the three databases (binds pg, pg2 and
maria of the demo's nodes), each one SessionService.RunTransaction with work
on two binds: debit an account of one database and credit one of another,
and on each side a ledger row naming the transfer. The calls are spread
over the nodes round-robin from several threads. Each thread moves money
between its own accounts only (account i belongs to thread (i-1) mod
threads in every database): txcoord runs a transaction's binds in parallel
and prepares each as soon as its statements ran, so two transfers taking
the same rows in two databases in opposite orders would wait for each other
where no database can see it (a distributed deadlock, broken only by the
transaction timeout). The one wait left is the demo's point: a transfer
asked again after its node died waits for the rows that node's prepared
branch holds until the adoption rolls it back. A node's address is read
from its address file at every call, so a node that is down (no file) is
passed over and a restarted one (a new port) is used again.

Each attempt has its own idempotency key. A call that fails without a
definitive answer (UNAVAILABLE: the node died, the connection broke) is
asked again with the SAME key on the next node, until a node answers
definitively or the tries run out (then the transfer counts as "unknown").
A call that timed out (DEADLINE_EXCEEDED) or whose key is still running
there (FAILED_PRECONDITION) is asked again on the SAME node, which knows the
key is running; another node would not (keys are recorded with the
decision), so moving on could run the transfer twice. Only an answer ABORTED
(rolled back, nothing committed) lets the transfer be tried again with a new
key. The results (the acknowledged keys, the aborted ones, the unknown ones)
go to --out as JSON.

verify: checks the databases' contents (tab-separated dumps: balances
"id<TAB>balance", ledger "key<TAB>leg<TAB>account<TAB>amount") against
the results: every account's balance is its initial balance plus its ledger
rows; every transfer in the ledgers has exactly its debit and its credit
(no half transfer, none applied twice); every acknowledged transfer is
there; no aborted one is. Prints what it found; exit code 0 when all
holds, 1 otherwise. The last line is "verify-summary ACKED FAILED UNKNOWN
UNKNOWN_COMMITTED OK" for the script.
"""
from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import random
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients", "python"))

# The account and ledger tables the script creates in each database.
ACCOUNTS = "cluster_demo_accounts"
LEDGER = "cluster_demo_ledger"
# The binds of the demo's node config; placeholders $n on PostgreSQL, ? on ODBC.
BINDS = ("pg", "pg2", "maria")
POSTGRES = {"pg", "pg2"}

ABORT_RETRIES = 3      # attempts (new keys) per transfer after ABORTED answers
UNKNOWN_TRIES = 12     # calls per attempt before its outcome counts as unknown
ATTEMPT_BUDGET = 75.0  # seconds per attempt, all its calls together
CALL_TIMEOUT = 40.0    # gRPC deadline of one RunTransaction call
TXN_TIMEOUT = 25.0     # the transaction's own timeout (RunTransactionRequest.timeout)


def log(msg: str) -> None:
    print(f"client: {msg}", flush=True)


def leg(bind: str, account: int, amount: int, key: str, side: str) -> List[Tuple[str, str, list]]:
    if bind in POSTGRES:
        upd = f"UPDATE {ACCOUNTS} SET balance = balance + $1 WHERE id = $2"
        ins = f"INSERT INTO {LEDGER} (k, leg, acct, amount) VALUES ($1, $2, $3, $4)"
    else:
        upd = f"UPDATE {ACCOUNTS} SET balance = balance + ? WHERE id = ?"
        ins = f"INSERT INTO {LEDGER} (k, leg, acct, amount) VALUES (?, ?, ?, ?)"
    return [(bind, upd, [amount, account]), (bind, ins, [key, side, account, amount])]


class Node:
    """One txcoord node, found through its address file."""

    def __init__(self, name: str, address_file: str) -> None:
        self.name = name
        self.address_file = address_file
        self._mu = threading.Lock()
        self._address: Optional[str] = None
        self._client = None

    def client(self):
        """The client for the node's current address, or None while it has none."""
        import txcoord
        try:
            with open(self.address_file) as f:
                address = f.read().strip()
        except OSError:
            address = ""
        with self._mu:
            if not address:
                return None
            if address != self._address:
                old = self._client
                # retries=0: this program decides itself where a failed call goes next.
                self._client = txcoord.Client(address, timeout=CALL_TIMEOUT, retries=0)
                self._address = address
                if old is not None:
                    old.close()
            return self._client


class Stats:
    def __init__(self, nodes: List[Node]) -> None:
        self.mu = threading.Lock()
        self.acked: List[str] = []
        self.aborted: List[str] = []
        self.unknown: List[str] = []
        self.failed = 0  # transfers whose every attempt was aborted
        self.acked_by = collections.Counter({n.name: 0 for n in nodes})
        self.errors: collections.Counter = collections.Counter()
        self.error_samples: Dict[str, str] = {}
        self.moved_on = 0  # calls asked again on another node with the same key

    def error(self, node: str, code: str, message: str) -> None:
        with self.mu:
            self.errors[f"{node} {code}"] += 1
            self.error_samples.setdefault(f"{node} {code}", message[:300])


class Transfers:
    def __init__(self, nodes: List[Node], accounts: int, threads: int, run_id: str) -> None:
        self.nodes = nodes
        self.accounts = accounts
        self.threads = threads
        self.run_id = run_id
        self.stats = Stats(nodes)
        self._rr = itertools.count()
        self._rr_mu = threading.Lock()

    def next_node(self) -> int:
        with self._rr_mu:
            return next(self._rr) % len(self.nodes)

    def attempt(self, key: str, work) -> str:
        """One attempt under one idempotency key: "committed", "aborted" or "unknown"."""
        import txcoord
        idx = self.next_node()
        deadline = time.monotonic() + ATTEMPT_BUDGET
        calls = 0
        delay = 0.1
        while calls < UNKNOWN_TRIES and time.monotonic() < deadline:
            node = self.nodes[idx % len(self.nodes)]
            client = node.client()
            if client is None:  # down (no address file): the next node
                idx += 1
                if all(n.client() is None for n in self.nodes):
                    time.sleep(0.2)
                continue
            calls += 1
            try:
                client.run_transaction(work, idempotency_key=key, timeout=TXN_TIMEOUT)
                with self.stats.mu:
                    self.stats.acked_by[node.name] += 1
                return "committed"
            except txcoord.TransactionAborted as e:
                self.stats.error(node.name, "ABORTED", str(e))
                return "aborted"
            except (txcoord.DeadlineExceeded, txcoord.FailedPrecondition) as e:
                # Maybe still running there: ask the same node again.
                self.stats.error(node.name, e.code.name if e.code else type(e).__name__, str(e))
                if isinstance(e, txcoord.FailedPrecondition) and "is running" not in str(e):
                    return "unknown"  # e.g. HEURISTIC: not something to retry
            except txcoord.TxcoordError as e:
                # UNAVAILABLE (the node died or is unreachable; a database or
                # the journal unavailable), RESOURCE_EXHAUSTED, INTERNAL, ...:
                # no definitive answer; the same key on the next node.
                code = e.code.name if e.code else type(e).__name__
                self.stats.error(node.name, code, str(e))
                if code in ("INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAUTHENTICATED", "UNIMPLEMENTED"):
                    raise
                idx += 1
                with self.stats.mu:
                    self.stats.moved_on += 1
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)
        return "unknown"

    def transfer(self, rng: random.Random, tid: int, seq: int) -> None:
        mine = [i for i in range(1, self.accounts + 1) if (i - 1) % self.threads == tid]
        src, dst = rng.sample(BINDS, 2)
        a, b = rng.choice(mine), rng.choice(mine)
        amount = rng.randint(1, 50)
        for n in range(1, ABORT_RETRIES + 1):
            key = f"{self.run_id}-t{tid}-{seq}-{n}"
            work = leg(src, a, -amount, key, "D") + leg(dst, b, amount, key, "C")
            outcome = self.attempt(key, work)
            with self.stats.mu:
                if outcome == "committed":
                    self.stats.acked.append(key)
                    return
                if outcome == "unknown":
                    self.stats.unknown.append(key)
                    return
                self.stats.aborted.append(key)
        with self.stats.mu:
            self.stats.failed += 1

    def worker(self, tid: int, until: float, crashed: List[BaseException]) -> None:
        rng = random.Random(f"{self.run_id}-{tid}")
        try:
            for seq in itertools.count(1):
                if time.monotonic() >= until:
                    return
                self.transfer(rng, tid, seq)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            crashed.append(e)

    def progress(self, t0: float) -> str:
        s = self.stats
        with s.mu:
            per = ", ".join(f"{k} {v}" for k, v in sorted(s.acked_by.items()))
            return (f"{time.monotonic() - t0:4.1f}s acked={len(s.acked)} ({per}) aborted_attempts={len(s.aborted)} "
                    f"unknown={len(s.unknown)} asked_again_elsewhere={s.moved_on}")


def cmd_transfers(args) -> int:
    import txcoord  # noqa: F401  (generates the stubs once, before the threads)
    nodes = []
    for spec in args.node:
        name, _, path = spec.partition("=")
        nodes.append(Node(name, path))
    if not 1 <= args.threads <= args.accounts:
        log(f"--threads must be between 1 and --accounts ({args.accounts}): each thread has accounts of its own")
        return 2
    t = Transfers(nodes, args.accounts, args.threads, args.run_id)
    t0 = time.monotonic()
    until = t0 + args.seconds
    crashed: List[BaseException] = []
    threads = [threading.Thread(target=t.worker, args=(i, until, crashed), daemon=True) for i in range(args.threads)]
    log(f"{args.threads} threads for {args.seconds:g}s over {', '.join(n.name for n in nodes)} (round-robin)")
    for th in threads:
        th.start()
    # Every call is bounded (UNKNOWN_TRIES calls within ATTEMPT_BUDGET, up to
    # ABORT_RETRIES attempts), so the threads end soon after `until`.
    hard_stop = until + ABORT_RETRIES * (ATTEMPT_BUDGET + CALL_TIMEOUT) + 10
    next_report = t0 + args.report_every
    while any(th.is_alive() for th in threads) and time.monotonic() < hard_stop:
        time.sleep(0.1)
        if time.monotonic() >= next_report:
            log(t.progress(t0))
            next_report += args.report_every
    alive = sum(th.is_alive() for th in threads)
    s = t.stats
    with s.mu:
        result = {
            "acked": list(s.acked), "aborted": list(s.aborted), "unknown": list(s.unknown),
            "failed": s.failed, "acked_by": dict(s.acked_by), "errors": dict(s.errors),
            "error_samples": s.error_samples, "asked_again_elsewhere": s.moved_on,
            "threads_stuck": alive, "crashed": [repr(e) for e in crashed],
        }
    with open(args.out + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(args.out + ".tmp", args.out)
    log("done: " + t.progress(t0))
    for k, v in sorted(s.errors.items()):
        log(f"  errors {k}: {v} (e.g. {s.error_samples[k]!r})")
    for e in crashed:
        log(f"  a thread crashed: {e!r}")
    if alive:
        log(f"  {alive} threads still running at the hard stop")
    return 1 if crashed or alive else 0


def read_tsv(path: str) -> List[List[str]]:
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def cmd_verify(args) -> int:
    with open(args.results) as f:
        res = json.load(f)
    acked, aborted, unknown = set(res["acked"]), set(res["aborted"]), set(res["unknown"])
    ok = True
    problems: List[str] = []

    def problem(msg: str) -> None:
        nonlocal ok
        ok = False
        problems.append(msg)

    legs: Dict[str, List[str]] = collections.defaultdict(list)  # key -> ["D@pg", "C@maria"]
    for spec in args.bind:
        name, _, files = spec.partition("=")
        bal_path, _, ledger_path = files.partition(":")
        balances = {int(r[0]): int(r[1]) for r in read_tsv(bal_path)}
        expected = {i: args.initial for i in range(1, args.accounts + 1)}
        if set(balances) != set(expected):
            problem(f"{name}: accounts {sorted(balances)} instead of 1..{args.accounts}")
        for k, side, acct, amount in read_tsv(ledger_path):
            legs[k].append(f"{side}@{name}")
            expected[int(acct)] = expected.get(int(acct), 0) + int(amount)
        for i in sorted(expected):
            if balances.get(i) != expected[i]:
                problem(f"{name}: account {i} holds {balances.get(i)}, its ledger says {expected[i]}")
    half = [k for k, v in legs.items() if sorted(x[0] for x in v) != ["C", "D"]]
    for k in half[:10]:
        problem(f"transfer {k}: ledger rows {legs[k]} (want one debit and one credit)")
    if len(half) > 10:
        problem(f"... {len(half) - 10} more transfers with wrong ledger rows")
    missing = sorted(acked - set(legs))
    for k in missing[:10]:
        problem(f"transfer {k} was acknowledged but is not in the databases")
    if len(missing) > 10:
        problem(f"... {len(missing) - 10} more acknowledged transfers missing")
    zombies = sorted(aborted & set(legs))
    for k in zombies[:10]:
        problem(f"transfer {k} was answered ABORTED but is in the databases")
    strays = sorted(set(legs) - acked - aborted - unknown)
    for k in strays[:10]:
        problem(f"ledger rows of {k}, which the client never sent")
    unknown_committed = len(unknown & set(legs))

    print(f"  transfers acknowledged: {len(acked)}, every one in the databases: {'yes' if not missing else 'NO'}")
    print(f"  transfers failed (every attempt answered ABORTED): {res['failed']}; "
          f"aborted attempts: {len(aborted)}, any of them in the databases: {'NO' if not zombies else 'YES'}")
    print(f"  transfers with an unknown outcome: {len(unknown)} ({unknown_committed} of them committed)")
    print(f"  transfers in the ledgers: {len(legs)}, each with exactly one debit and one credit: "
          f"{'yes' if not half else 'NO'}; balances match the ledgers: "
          f"{'yes' if not any('ledger says' in p for p in problems) else 'NO'}")
    for p in problems:
        print(f"  PROBLEM: {p}")
    print(f"verify-summary {len(acked)} {res['failed']} {len(unknown)} {unknown_committed} {1 if ok else 0}")
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("transfers", help="run transfers over the nodes")
    t.add_argument("--node", action="append", required=True, help="NAME=ADDRESS_FILE, once per node")
    t.add_argument("--seconds", type=float, default=20)
    t.add_argument("--threads", type=int, default=6)
    t.add_argument("--accounts", type=int, default=10)
    t.add_argument("--run-id", default=f"cd{os.getpid()}")
    t.add_argument("--report-every", type=float, default=2.0)
    t.add_argument("--out", required=True)
    v = sub.add_parser("verify", help="check the databases' dumps against the results")
    v.add_argument("--results", required=True)
    v.add_argument("--bind", action="append", required=True, help="NAME=BALANCES_TSV:LEDGER_TSV")
    v.add_argument("--accounts", type=int, default=10)
    v.add_argument("--initial", type=int, default=1000)
    args = p.parse_args()
    return cmd_transfers(args) if args.cmd == "transfers" else cmd_verify(args)


if __name__ == "__main__":
    sys.exit(main())
