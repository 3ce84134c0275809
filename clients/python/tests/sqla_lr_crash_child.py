"""Child of the last-resource crash tests: an ORM session writes PostgreSQL,
MariaDB and the SQLite last resource and commits through txcoord.sqla; a
test hook stops it (to be killed) either after PrepareGlobal and the insert
of the decision row, before the SQLite commit ("before-lr-commit"), or
after that commit, before CommitGlobal ("after-lr-commit")."""
import sys
import time

from sqlalchemy import Column, Integer, String, create_engine  # noqa: E402
from sqlalchemy.orm import Session, declarative_base  # noqa: E402

import txcoord  # noqa: E402
from txcoord.sqla import TwoPhase  # noqa: E402

address, pg_url, my_url, lite_path, table, timeout, mode = sys.argv[1:8]
engines = {"pg": create_engine(pg_url), "maria": create_engine(my_url), "lite": create_engine(f"sqlite:///{lite_path}")}
rows = {}
for name in engines:
    base = declarative_base()
    rows[name] = type(f"Row_{name}", (base,), {"__tablename__": table, "id": Column(Integer, primary_key=True),
                                               "v": Column(String(100))})

tp = TwoPhase(txcoord.Client(address), engines, timeout=float(timeout))


def stop_here(txn_id):
    print("STOPPED", txn_id, flush=True)
    time.sleep(120)


if mode == "before-lr-commit":
    tp.before_last_resource_commit = stop_here
elif mode == "after-lr-commit":
    tp.before_commit_global = stop_here
else:
    raise SystemExit(f"unknown mode {mode}")
s = Session(binds={rows[n]: e for n, e in engines.items()})
tp.install(s)
s.add_all([rows[n](id=1, v=n) for n in engines])
s.commit()
print("COMMITTED", flush=True)
