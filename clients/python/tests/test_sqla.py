"""txcoord.sqla: SQLAlchemy ORM sessions committed through txcoord."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import Column, Integer, String, create_engine
from sqlalchemy.orm import Session, declarative_base

import txcoord
from conftest import HERE, maria_rows, pg_rows, prepared_left, wait_until_nothing_prepared
from txcoord.sqla import NotSupported, TwoPhase


@pytest.fixture()
def engines(databases, tables):
    # depends on `tables` so that the engines (and any connection a failed
    # test left checked out) go before the tables are dropped
    urls = databases.sqlalchemy_urls()
    pg = create_engine(urls["pg"], pool_size=1, max_overflow=0)
    my = create_engine(urls["maria"], pool_size=1, max_overflow=0)
    yield pg, my
    pg.dispose()
    my.dispose()


def models(table):
    A, B = declarative_base(), declarative_base()
    PgRow = type("PgRow", (A,), {"__tablename__": table, "id": Column(Integer, primary_key=True),
                                 "v": Column(String(100))})
    MyRow = type("MyRow", (B,), {"__tablename__": table, "id": Column(Integer, primary_key=True),
                                 "v": Column(String(100))})
    return PgRow, MyRow


def make_session(client, engines, table, **kw):
    pg, my = engines
    PgRow, MyRow = models(table)
    tp = TwoPhase(client, {"pg": pg, "maria": my}, **kw)
    txns = []
    tp.before_commit_global = txns.append
    s = Session(binds={PgRow: pg, MyRow: my})
    tp.install(s)
    return s, PgRow, MyRow, txns


def test_orm_commit_is_coordinated(client, databases, engines, tables):
    s, PgRow, MyRow, txns = make_session(client, engines, tables)
    s.add_all([PgRow(id=1, v="pg-ü"), MyRow(id=1, v="maria-ü")])
    s.commit()
    assert len(txns) == 1 and client.outcome(txns[0]).committed
    assert {b.bind for b in client.outcome(txns[0]).branches} == {"pg", "maria"}
    assert pg_rows(databases, f"SELECT id, v FROM {tables}") == [(1, "pg-ü")]
    assert maria_rows(databases, f"SELECT id, v FROM {tables}") == [(1, "maria-ü")]
    # The same session and pools again (the MariaDB connection was closed after
    # XA PREPARE and must be replaced transparently); reads see the commits.
    assert s.get(MyRow, 1).v == "maria-ü"
    s.get(PgRow, 1).v = "pg-2"
    s.get(MyRow, 1).v = "maria-2"
    s.commit()
    assert len(txns) == 2 and client.outcome(txns[1]).committed
    assert pg_rows(databases, f"SELECT v FROM {tables}") == [("pg-2",)]
    assert maria_rows(databases, f"SELECT v FROM {tables}") == [("maria-2",)]
    s.close()
    assert prepared_left(databases, client_node(client)) == ([], [])


def client_node(client):
    return client._txcoord_node


@pytest.fixture(autouse=True)
def _node(client, txcoord_server):
    client._txcoord_node = txcoord_server.node_id


def test_orm_abort_on_failed_prepare_rolls_back_both(client, databases, engines, tables):
    parent, child = tables + "_p", tables + "_c"
    pg_rows(databases, f"CREATE TABLE {parent} (id int PRIMARY KEY)")
    pg_rows(databases, f"CREATE TABLE {child} (id int PRIMARY KEY, parent int REFERENCES {parent}(id) "
                       "DEFERRABLE INITIALLY DEFERRED)")
    try:
        pg, my = engines
        A = declarative_base()
        Child = type("Child", (A,), {"__tablename__": child, "id": Column(Integer, primary_key=True),
                                     "parent": Column(Integer)})  # the deferred FK is in the database
        _, MyRow = models(tables)
        tp = TwoPhase(client, {"pg": pg, "maria": my})
        txns = []
        tp.before_commit_global = txns.append
        s = Session(binds={Child: pg, MyRow: my})
        tp.install(s)
        s.add_all([Child(id=1, parent=999), MyRow(id=1, v="must vanish")])
        with pytest.raises(txcoord.TransactionAborted) as e:
            s.commit()
        assert e.value.txn_id and not txns  # never reached CommitGlobal
        s.rollback()
        assert client.outcome(e.value.txn_id).aborted
        assert pg_rows(databases, f"SELECT count(*) FROM {child}") == [(0,)]
        assert maria_rows(databases, f"SELECT count(*) FROM {tables}") == [(0,)]
        assert prepared_left(databases, client_node(client)) == ([], [])
        # The session is usable again afterwards.
        s.add(MyRow(id=2, v="ok"))
        s.commit()
        assert maria_rows(databases, f"SELECT id FROM {tables}") == [(2,)]
        s.close()
    finally:
        pg_rows(databases, f"DROP TABLE IF EXISTS {child}, {parent}")


def test_orm_rollback_ends_xa_branch_and_global(client, databases, engines, tables):
    s, PgRow, MyRow, txns = make_session(client, engines, tables)
    s.add_all([PgRow(id=1, v="a"), MyRow(id=1, v="b")])
    s.flush()
    s.rollback()
    s.add_all([PgRow(id=2, v="a"), MyRow(id=2, v="b")])
    s.commit()
    assert pg_rows(databases, f"SELECT id FROM {tables}") == [(2,)]
    assert maria_rows(databases, f"SELECT id FROM {tables}") == [(2,)]
    s.close()


def test_orm_single_writer_commits_locally(client, databases, engines, tables):
    s, PgRow, MyRow, txns = make_session(client, engines, tables)
    assert s.query(MyRow).count() == 0  # MariaDB touched read-only
    s.add(PgRow(id=7, v="only pg"))
    s.commit()
    assert txns == []  # nothing to coordinate: no CommitGlobal
    assert pg_rows(databases, f"SELECT id FROM {tables}") == [(7,)]
    s.add(MyRow(id=8, v="only maria"))
    s.commit()
    assert maria_rows(databases, f"SELECT id FROM {tables}") == [(8,)]
    assert prepared_left(databases, client_node(client)) == ([], [])
    s.close()


def test_unsupported_bind_is_refused(client):
    with pytest.raises(NotSupported):
        TwoPhase(client, {"lite": create_engine("sqlite://")})


def test_app_killed_before_commit_global_is_rolled_back_by_txcoord(client, databases, txcoord_server, tables):
    urls = databases.sqlalchemy_urls()
    timeout = 4.0
    child = subprocess.Popen([sys.executable, os.path.join(HERE, "sqla_crash_child.py"), txcoord_server.address,
                              urls["pg"], urls["maria"], tables, str(timeout)], stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not line.startswith("PREPARED"):
            line = child.stdout.readline()
            if not line:
                break
        assert line.startswith("PREPARED"), "the child did not reach CommitGlobal"
        txn_id = line.split()[1]
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        pg, my = prepared_left(databases, txcoord_server.node_id)
        assert pg and my, "both branches should be in doubt right after the kill"
        wait_until_nothing_prepared(databases, txcoord_server.node_id, timeout + 20)
        assert prepared_left(databases, txcoord_server.node_id) == ([], [])
        assert pg_rows(databases, f"SELECT count(*) FROM {tables}") == [(0,)]
        assert maria_rows(databases, f"SELECT count(*) FROM {tables}") == [(0,)]
        assert client.outcome(txn_id).aborted
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
