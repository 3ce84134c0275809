"""Child of the SQLAlchemy crash test: an ORM session writes both binds and
commits through txcoord.sqla; the test hook stops it after every branch is
prepared and registered, just before CommitGlobal, where it is killed."""
import sys
import time

from sqlalchemy import Column, Integer, String, create_engine  # noqa: E402
from sqlalchemy.orm import Session, declarative_base  # noqa: E402

import txcoord  # noqa: E402
from txcoord.sqla import TwoPhase  # noqa: E402

address, pg_url, my_url, table, timeout = sys.argv[1:6]
pg, my = create_engine(pg_url), create_engine(my_url)
A, B = declarative_base(), declarative_base()


class PgRow(A):
    __tablename__ = table
    id = Column(Integer, primary_key=True)
    v = Column(String(100))


class MyRow(B):
    __tablename__ = table
    id = Column(Integer, primary_key=True)
    v = Column(String(100))


tp = TwoPhase(txcoord.Client(address), {"pg": pg, "maria": my}, timeout=float(timeout))


def stop_here(txn_id):
    print("PREPARED", txn_id, flush=True)
    time.sleep(120)


tp.before_commit_global = stop_here
s = Session(binds={PgRow: pg, MyRow: my})
tp.install(s)
s.add_all([PgRow(id=1, v="pg"), MyRow(id=1, v="maria")])
s.commit()
