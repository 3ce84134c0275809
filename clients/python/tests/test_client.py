"""The txcoord client against a real txcoord and real PostgreSQL + MariaDB."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import psycopg2
import pytest

import txcoord
from branch_helpers import prepare_maria, prepare_pg
from conftest import HERE, maria_rows, pg_rows, prepared_left, wait_until_nothing_prepared


def test_values_roundtrip_without_server():
    vals = [None, True, False, 0, -5, 2 ** 63 - 1, 1.25, Decimal("12.30"), "héllo ✓", b"\x00\xff",
            dt.date(2026, 11, 25), dt.time(13, 45, 0, 123000), dt.datetime(2026, 11, 25, 13, 45, 0, 123000),
            dt.datetime(2026, 11, 25, 13, 45, tzinfo=dt.timezone.utc)]
    assert [txcoord.from_value(txcoord.to_value(v)) for v in vals] == vals
    assert txcoord.to_value(2 ** 64).decimal_value == str(2 ** 64)
    aware = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert txcoord.to_value(aware).timestamp_value == "2026-01-01T10:00:00Z"
    with pytest.raises(TypeError):
        txcoord.to_value(object())


def test_values_through_postgresql(client):
    with client.session() as s:
        r = s.execute("pg", "SELECT $1::int8 AS i, $2::numeric AS d, $3::text AS t, $4::bytea AS b, $5::date AS da, "
                            "$6::timestamp AS ts, $7::bool AS bo, $8::float8 AS f, $9::text AS n",
                      [42, Decimal("12.30"), "é ✓", b"\x01\x02", dt.date(2026, 11, 25),
                       dt.datetime(2026, 11, 25, 13, 45, 1), True, 0.5, None])
        s.rollback()
    assert r.columns == ["i", "d", "t", "b", "da", "ts", "bo", "f", "n"]
    assert r.rows == [(42, Decimal("12.30"), "é ✓", b"\x01\x02", dt.date(2026, 11, 25),
                       dt.datetime(2026, 11, 25, 13, 45, 1), True, 0.5, None)]
    assert r.dicts()[0]["t"] == "é ✓"


def test_session_commits_across_postgresql_and_mariadb(client, databases, tables):
    with client.session() as s:
        s.execute("pg", f"INSERT INTO {tables} VALUES ($1, $2)", [1, "pg-ä"])
        s.execute("maria", f"INSERT INTO {tables} VALUES (?, ?)", [1, "maria-ä"])
        r = s.execute("maria", f"SELECT id, v FROM {tables}")
        assert r.rows == [(1, "maria-ä")] and r.columns == ["id", "v"]
        txn_id = s.txn_id
        assert s.commit() in ("COMMITTED", "COMMITTING")
    assert pg_rows(databases, f"SELECT id, v FROM {tables}") == [(1, "pg-ä")]
    assert maria_rows(databases, f"SELECT id, v FROM {tables}") == [(1, "maria-ä")]
    assert client.outcome(txn_id).committed
    assert {b.bind for b in client.outcome(txn_id).branches} == {"pg", "maria"}


def test_rollback_and_context_exit_leave_nothing(client, databases, tables):
    with client.session() as s:
        s.execute("pg", f"INSERT INTO {tables} VALUES ($1, $2)", [1, "x"])
        s.execute("maria", f"INSERT INTO {tables} VALUES (?, ?)", [1, "x"])
        s.rollback()
        s.execute("pg", f"INSERT INTO {tables} VALUES ($1, $2)", [2, "y"])
        # leaving without commit: CloseSession rolls it back
    assert pg_rows(databases, f"SELECT count(*) FROM {tables}") == [(0,)]
    assert maria_rows(databases, f"SELECT count(*) FROM {tables}") == [(0,)]


def test_failed_prepare_aborts_both_sides(client, databases, tables):
    parent, child = tables + "_p", tables + "_c"
    conn = databases.pg()
    with conn, conn.cursor() as c:
        c.execute(f"CREATE TABLE {parent} (id int PRIMARY KEY)")
        c.execute(f"CREATE TABLE {child} (id int PRIMARY KEY, parent int REFERENCES {parent}(id) "
                  "DEFERRABLE INITIALLY DEFERRED)")
    conn.close()
    try:
        with client.session() as s:
            s.execute("pg", f"INSERT INTO {child} VALUES ($1, $2)", [1, 999])  # no such parent: fails at PREPARE
            s.execute("maria", f"INSERT INTO {tables} VALUES (?, ?)", [1, "must vanish"])
            txn_id = s.txn_id
            with pytest.raises(txcoord.TransactionAborted) as e:
                s.commit()
            assert e.value.txn_id == txn_id
        assert pg_rows(databases, f"SELECT count(*) FROM {child}") == [(0,)]
        assert maria_rows(databases, f"SELECT count(*) FROM {tables}") == [(0,)]
        assert client.outcome(txn_id).aborted
    finally:
        pg_rows(databases, f"DROP TABLE IF EXISTS {child}, {parent}")


def test_run_transaction(client, databases, tables):
    res = client.run_transaction({
        "pg": [(f"INSERT INTO {tables} VALUES ($1, $2)", [5, "a"]), f"SELECT count(*) AS n FROM {tables}"],
        "maria": [(f"INSERT INTO {tables} VALUES (?, ?)", [5, "b"])],
    })
    assert res.state in ("COMMITTED", "COMMITTING")
    assert res.results[1].scalar() == 1 and res.results[1].columns == ["n"]
    assert maria_rows(databases, f"SELECT v FROM {tables}") == [("b",)]
    assert client.outcome(res.txn_id).committed
    # The same idempotency key again: the recorded outcome, not a second run.
    key = "k-" + tables
    a = client.run_transaction([("pg", f"INSERT INTO {tables} VALUES ($1, $2)", [6, "c"])], idempotency_key=key)
    b = client.run_transaction([("pg", f"INSERT INTO {tables} VALUES ($1, $2)", [6, "c"])], idempotency_key=key)
    assert a.txn_id == b.txn_id
    assert pg_rows(databases, f"SELECT count(*) FROM {tables} WHERE id = 6") == [(1,)]


def test_errors_are_typed(client, tables):
    with client.session() as s:
        with pytest.raises(txcoord.InvalidArgument):
            s.execute("no_such_bind", "SELECT 1")
    with client.session() as s:
        s.execute("pg", f"INSERT INTO {tables} VALUES ($1, $2)", [1, "a"])
        with pytest.raises(txcoord.TxcoordError) as e:
            s.execute("pg", f"INSERT INTO {tables} VALUES ($1, $2)", [1, "dup"])
        assert e.value.code is not None
        with pytest.raises((txcoord.FailedPrecondition, txcoord.TransactionAborted)):
            s.execute("pg", "SELECT 1")
    with pytest.raises(txcoord.NotFound):
        txcoord.Session(client, "nope.1.s1.0").execute("pg", "SELECT 1")
    with pytest.raises(txcoord.InvalidArgument):
        client.begin_global(["pg", "no_such_bind"])


def test_unavailable_after_bounded_retries():
    c = txcoord.Client("127.0.0.1:1", timeout=2, retries=2, backoff=0.01)
    t0 = time.monotonic()
    with pytest.raises(txcoord.Unavailable):
        c.outcome("x.1.1")
    assert time.monotonic() - t0 < 10
    c.close()


def test_registered_branches_commit(client, databases, tables):
    g = client.begin_global(["pg", "maria"], timeout=20)
    assert g.xids["pg"].startswith("txc1_") and g.xids["maria"].startswith("X'")
    prepare_pg(psycopg2.connect(databases.pg_uri), g.xids["pg"], [(f"INSERT INTO {tables} VALUES (%s, %s)", (1, "p"))])
    client.register_branch(g.txn_id, "pg", g.xids["pg"])
    prepare_maria(databases.maria(autocommit=False), g.xids["maria"], [(f"INSERT INTO {tables} VALUES (%s, %s)", (1, "m"))])
    client.register_branch(g.txn_id, "maria", g.xids["maria"])
    info = client.commit_global(g.txn_id)
    assert info.committed
    assert pg_rows(databases, f"SELECT v FROM {tables}") == [("p",)]
    assert maria_rows(databases, f"SELECT v FROM {tables}") == [("m",)]
    # A retried CommitGlobal (lost reply) gives the recorded outcome.
    assert client.commit_global(g.txn_id).committed


def test_unregistered_branch_aborts(client, databases, tables):
    g = client.begin_global(["pg", "maria"], timeout=20)
    prepare_pg(psycopg2.connect(databases.pg_uri), g.xids["pg"], [(f"INSERT INTO {tables} VALUES (%s, %s)", (1, "p"))])
    client.register_branch(g.txn_id, "pg", g.xids["pg"])
    with pytest.raises(txcoord.TransactionAborted):
        client.commit_global(g.txn_id)
    assert pg_rows(databases, f"SELECT count(*) FROM {tables}") == [(0,)]
    assert client.outcome(g.txn_id).aborted


def test_app_killed_between_prepare_and_commit_is_rolled_back(client, databases, txcoord_server, tables):
    timeout = 4.0
    child = subprocess.Popen([sys.executable, os.path.join(HERE, "crash_child.py"), txcoord_server.address,
                              databases.pg_uri, str(databases.maria_port), tables, str(timeout)],
                             stdout=subprocess.PIPE, text=True)
    try:
        txn_id, prepared = None, False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not prepared:
            line = child.stdout.readline()
            if not line:
                break
            if line.startswith("TXN "):
                txn_id = line.split()[1]
            prepared = line.strip() == "PREPARED"
        assert prepared and txn_id, "the child did not prepare"
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        pg, my = prepared_left(databases, txcoord_server.node_id)
        assert any(txn_id in g for g in pg), "the PostgreSQL branch should be in doubt right after the kill"
        assert len(my) >= 1, "the MariaDB branch should be in doubt right after the kill"
        wait_until_nothing_prepared(databases, txcoord_server.node_id, timeout + 20)
        assert prepared_left(databases, txcoord_server.node_id) == ([], [])
        assert pg_rows(databases, f"SELECT count(*) FROM {tables}") == [(0,)]
        assert maria_rows(databases, f"SELECT count(*) FROM {tables}") == [(0,)]
        assert client.outcome(txn_id).aborted
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
