#!/usr/bin/python3
"""The transfer of txbench with SQLAlchemy's two-phase session.

One UPDATE on PostgreSQL (psycopg2) and one on MariaDB (pymysql) in
`Session(twophase=True, binds=...)`: SQLAlchemy runs PREPARE TRANSACTION /
XA PREPARE on both, then COMMIT PREPARED / XA COMMIT. No log: a crash
between the two phases leaves in-doubt branches that nobody resolves.

Run with Debian's interpreter (/usr/bin/python3: python3-sqlalchemy 1.4,
python3-psycopg2, python3-pymysql), after `txbench --setup`:

  . /tmp/txcoord-bench/env
  /usr/bin/python3 bench/sqlalchemy_twophase.py --clients 8 --seconds 5

Prints one line in txbench's format:
  txbench workload=transfer mode=sqlalchemy-twophase clients=N tps=X p50_ms=Y p99_ms=Z errors=E ...
"""
import argparse
import os
import sys
import random
import threading
import time

from sqlalchemy import BigInteger, Column, MetaData, Table, create_engine
from sqlalchemy.orm import Session


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--accounts", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--pg-uri", default=os.environ.get("TXC_PG_URI", ""))
    ap.add_argument("--maria-port", default=os.environ.get("TXC_MARIADB_PORT", "3306"))
    ap.add_argument("--maria-password", default=os.environ.get("TXC_MARIADB_PASSWORD", "txcoord_local_pw"))
    a = ap.parse_args()

    pg_url = a.pg_uri.replace("postgresql://", "postgresql+psycopg2://", 1)
    my_url = "mysql+pymysql://txcoord:%s@127.0.0.1:%s/txcoord" % (a.maria_password, a.maria_port)
    pg = create_engine(pg_url, pool_size=a.clients, max_overflow=0)
    my = create_engine(my_url, pool_size=a.clients, max_overflow=0)
    pg_accounts = Table("bench_accounts", MetaData(), Column("id", BigInteger, primary_key=True),
                        Column("balance", BigInteger))
    my_accounts = Table("bench_accounts", MetaData(), Column("id", BigInteger, primary_key=True),
                        Column("balance", BigInteger))
    binds = {pg_accounts: pg, my_accounts: my}

    measuring = threading.Event()
    stop = threading.Event()
    lat = [[] for _ in range(a.clients)]
    errors = [0] * a.clients
    first_error = []

    def client(i):
        rng = random.Random(a.seed * 1000003 + i)
        while not stop.is_set():
            pg_id = rng.randint(1, a.accounts)
            rng.randint(1, a.accounts)  # txbench's second PostgreSQL account: same stream
            my_id = rng.randint(1, a.accounts)
            t0 = time.perf_counter()
            ok = True
            try:
                with Session(twophase=True, binds=binds) as s:
                    # PostgreSQL first, as in txbench (consistent lock order).
                    s.execute(pg_accounts.update().where(pg_accounts.c.id == pg_id)
                              .values(balance=pg_accounts.c.balance - 1))
                    s.execute(my_accounts.update().where(my_accounts.c.id == my_id)
                              .values(balance=my_accounts.c.balance + 1))
                    s.commit()
            except Exception as e:  # counted, and the first one shown
                ok = False
                if not first_error:
                    first_error.append(repr(e)[:300])
            t1 = time.perf_counter()
            if not measuring.is_set() or stop.is_set():
                continue
            if ok:
                lat[i].append(t1 - t0)
            else:
                errors[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
    for t in threads:
        t.start()
    time.sleep(a.warmup)
    measuring.set()
    start = time.perf_counter()
    time.sleep(a.seconds)
    stop.set()
    elapsed = time.perf_counter() - start
    for t in threads:
        t.join()
    allv = sorted(x for l in lat for x in l)

    def pct(p):
        if not allv:
            return 0.0
        return allv[min(len(allv) - 1, int(p * (len(allv) - 1) + 0.5))] * 1000.0

    print("txbench workload=transfer mode=sqlalchemy-twophase clients=%d tps=%.0f p50_ms=%.2f p99_ms=%.2f "
          "errors=%d p95_ms=%.2f seconds=%.1f txns=%d"
          % (a.clients, len(allv) / elapsed, pct(0.5), pct(0.99), sum(errors), pct(0.95), elapsed, len(allv)),
          flush=True)
    if first_error:
        print("sqlalchemy_twophase: first error: " + first_error[0], file=sys.stderr)
    pg.dispose()
    my.dispose()


if __name__ == "__main__":
    main()
