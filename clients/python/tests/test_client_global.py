"""TransactionService calls added for binds known later, read-only
branches, txcoord-run work and a caller's own last resource."""
from __future__ import annotations

import sqlite3
import uuid

import psycopg2
import pytest

import txcoord
from branch_helpers import prepare_maria, prepare_pg
from conftest import lite_rows, maria_rows, pg_rows, prepared_left


@pytest.fixture()
def lite_table(txcoord_server):
    name = "l_" + uuid.uuid4().hex[:10]
    lite_rows(txcoord_server.lite_path, f"CREATE TABLE {name} (id int PRIMARY KEY, v varchar(100))")
    # The decision table exists before a caller's transaction locks the file.
    lite_rows(txcoord_server.lite_path, "CREATE TABLE IF NOT EXISTS txcoord_decisions (txn_id TEXT PRIMARY KEY, "
                                        "payload TEXT, decided_at TEXT DEFAULT CURRENT_TIMESTAMP)")
    yield name
    lite_rows(txcoord_server.lite_path, f"DROP TABLE IF EXISTS {name}")


def test_add_branch_mints_one_xid_per_bind(client, databases, tables):
    g = client.begin_global(timeout=20)
    assert g.xids == {}
    x1 = g.add_branch("maria")
    assert g.add_branch("maria") == x1  # asked again: the same xid
    x2 = g.add_branch("maria2")
    gid = g.add_branch("pg")
    assert x1 != x2 and x1.startswith("X'") and gid.startswith("txc1_")
    assert g.xids == {"maria": x1, "maria2": x2, "pg": gid}
    with pytest.raises(txcoord.InvalidArgument):
        g.add_branch("lite")  # no two-phase commit
    prepare_pg(psycopg2.connect(databases.pg_uri), gid, [(f"INSERT INTO {tables} VALUES (%s, %s)", (1, "p"))])
    g.register("pg")
    prepare_maria(databases.maria(autocommit=False), x1, [(f"INSERT INTO {tables} VALUES (%s, %s)", (1, "m"))])
    g.register("maria")
    prepare_maria(databases.maria(autocommit=False), x2, [(f"INSERT INTO {tables} VALUES (%s, %s)", (2, "m2"))])
    g.register("maria2")
    assert g.commit().committed
    assert maria_rows(databases, f"SELECT id FROM {tables} ORDER BY id") == [(1,), (2,)]
    assert pg_rows(databases, f"SELECT v FROM {tables}") == [("p",)]


def test_an_added_branch_never_registered_aborts(client, databases, tables):
    g = client.begin_global(timeout=20)
    gid = g.add_branch("pg")
    g.add_branch("maria")
    prepare_pg(psycopg2.connect(databases.pg_uri), gid, [(f"INSERT INTO {tables} VALUES (%s, %s)", (1, "p"))])
    g.register("pg")
    with pytest.raises(txcoord.TransactionAborted):
        g.commit()
    assert pg_rows(databases, f"SELECT count(*) FROM {tables}") == [(0,)]


def test_read_only_registration_leaves_the_branch_out(client, databases, tables):
    g = client.begin_global(timeout=20)
    xa = g.add_branch("maria")
    my = databases.maria(autocommit=False)
    with my.cursor() as c:
        c.execute(f"XA START {xa}")
        c.execute(f"SELECT count(*) FROM {tables}")
        c.execute(f"XA END {xa}")
        c.execute(f"XA COMMIT {xa} ONE PHASE")
    my.close()
    g.register("maria", read_only=True)
    gid = g.add_branch("pg")
    prepare_pg(psycopg2.connect(databases.pg_uri), gid, [(f"INSERT INTO {tables} VALUES (%s, %s)", (1, "p"))])
    g.register("pg")
    info = g.commit()
    assert info.committed
    # Left out of the decision: shown read-only in the reply, not in the record.
    assert {b.bind: b.state for b in info.branches}.get("maria", "BRANCH_READ_ONLY") == "BRANCH_READ_ONLY"
    assert {b.bind for b in client.outcome(g.txn_id).branches} == {"pg"}
    assert pg_rows(databases, f"SELECT v FROM {tables}") == [("p",)]


def test_execute_in_a_global_transaction(client, databases, tables, txcoord_server, lite_table):
    g = client.begin_global(timeout=20)
    r = g.execute("pg", f"INSERT INTO {tables} VALUES ($1, $2)", [1, "by txcoord"])
    assert r.rows_affected == 1
    assert g.execute("pg", f"SELECT v FROM {tables}").rows == [("by txcoord",)]
    # SQLite joins through Execute and commits as the last resource.
    g.execute_many("lite", [(f"INSERT INTO {lite_table} VALUES (?, ?)", [1, "lr"])])
    xa = g.add_branch("maria")
    prepare_maria(databases.maria(autocommit=False), xa, [(f"INSERT INTO {tables} VALUES (%s, %s)", (1, "m"))])
    g.register("maria")
    with pytest.raises(txcoord.InvalidArgument):
        g.execute("maria", "SELECT 1")  # a service branch's bind
    info = g.commit()
    assert info.committed
    assert pg_rows(databases, f"SELECT v FROM {tables}") == [("by txcoord",)]
    assert maria_rows(databases, f"SELECT v FROM {tables}") == [("m",)]
    assert lite_rows(txcoord_server.lite_path, f"SELECT v FROM {lite_table}") == [("lr",)]
    # A failed statement rolls the transaction back at once: CommitGlobal
    # answers ABORTED with that error, RollbackGlobal is OK.
    g = client.begin_global(timeout=20)
    with pytest.raises(txcoord.TxcoordError):
        g.execute("pg", "SELECT * FROM no_such_table_here")
    with pytest.raises(txcoord.TransactionAborted, match="42P01"):
        g.commit()
    assert g.rollback().aborted


def test_prepare_global_with_the_callers_last_resource(client, databases, tables, txcoord_server, lite_table):
    path = txcoord_server.lite_path
    # The caller commits its last resource with the decision row, then CommitGlobal.
    g = client.begin_global(timeout=20)
    gid = g.add_branch("pg")
    prepare_pg(psycopg2.connect(databases.pg_uri), gid, [(f"INSERT INTO {tables} VALUES (%s, %s)", (1, "p"))])
    g.register("pg")
    lite = sqlite3.connect(path, timeout=20)
    lite.execute(f"INSERT INTO {lite_table} VALUES (1, 'lr')")
    with pytest.raises(txcoord.InvalidArgument):
        g.prepare_global("pg")  # has two-phase commit
    d = g.prepare_global("lite")
    assert d.txn_id == g.txn_id and d.payload
    with pytest.raises(txcoord.FailedPrecondition):
        g.add_branch("maria")  # nothing joins after PrepareGlobal
    lite.execute("INSERT INTO txcoord_decisions (txn_id, payload) VALUES (:txn_id, :payload)", d.params())
    lite.commit()
    assert g.commit().committed
    assert pg_rows(databases, f"SELECT v FROM {tables}") == [("p",)]
    assert lite_rows(path, f"SELECT v FROM {lite_table}") == [("lr",)]
    # The caller never commits: RollbackGlobal fences, the late insert fails.
    g = client.begin_global(timeout=20)
    gid = g.add_branch("pg")
    prepare_pg(psycopg2.connect(databases.pg_uri), gid, [(f"INSERT INTO {tables} VALUES (%s, %s)", (2, "p"))])
    g.register("pg")
    d = g.prepare_global("lite")
    assert g.rollback().aborted
    with pytest.raises(sqlite3.IntegrityError):
        lite.execute(f"INSERT INTO {lite_table} VALUES (2, 'late')")
        lite.execute("INSERT INTO txcoord_decisions (txn_id, payload) VALUES (:txn_id, :payload)", d.params())
    lite.rollback()
    lite.close()
    assert pg_rows(databases, f"SELECT count(*) FROM {tables}") == [(1,)]
    # A service branch not prepared: PrepareGlobal aborts everything.
    g = client.begin_global(timeout=20)
    g.add_branch("pg")
    with pytest.raises(txcoord.TransactionAborted):
        g.prepare_global("lite")
    assert client.outcome(g.txn_id).aborted
    assert prepared_left(databases, txcoord_server.node_id) == ([], [])


def test_outcomes_of_ended_global_transactions(client, databases, tables):
    g = client.begin_global(timeout=20)
    assert g.rollback().state == "ABORTED"
    assert g.rollback().state == "ABORTED"  # again: OK, its recorded state
    with pytest.raises(txcoord.TransactionAborted, match="rolled back") as e:
        g.commit()  # ABORTED with the reason, not NOT_FOUND
    assert e.value.txn_id == g.txn_id
    g = client.begin_global(timeout=20)
    gid = g.add_branch("pg")
    prepare_pg(psycopg2.connect(databases.pg_uri), gid, [(f"INSERT INTO {tables} VALUES (%s, %s)", (1, "p"))])
    g.register("pg")
    assert g.commit().committed
    assert g.commit().committed  # the recorded outcome
    with pytest.raises(txcoord.FailedPrecondition):
        g.rollback()
    with pytest.raises(txcoord.NotFound):
        client.add_branch(g.txn_id.rsplit(".", 1)[0] + ".999999", "pg")
