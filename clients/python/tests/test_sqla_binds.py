"""txcoord.sqla with several MariaDB binds, read-only branches and a bind
without two-phase commit (SQLite) as the last resource."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import Column, Integer, String, create_engine, event, exc as sa_exc
from sqlalchemy.orm import Session, declarative_base

import txcoord
from conftest import HERE, lite_rows, maria_rows, pg_rows, prepared_left
from txcoord.sqla import NotSupported, TwoPhase


def row_class(table: str, cls_name: str):
    base = declarative_base()
    return type(cls_name, (base,), {"__tablename__": table, "id": Column(Integer, primary_key=True),
                                    "v": Column(String(100))})


@pytest.fixture()
def world(client, databases, txcoord_server, tables):
    """Engines for the binds pg, maria, maria2 (same MariaDB, table
    ``<tables>_m2``) and lite (txcoord's SQLite file, table ``<tables>``), a
    row class per bind, and helpers; everything dropped after."""
    m2 = tables + "_m2"
    maria_rows(databases, f"CREATE TABLE {m2} (id int PRIMARY KEY, v varchar(100)) ENGINE=InnoDB")
    lite_rows(txcoord_server.lite_path, f"CREATE TABLE {tables} (id int PRIMARY KEY, v varchar(100))")
    urls = databases.sqlalchemy_urls()
    engines = {
        "pg": create_engine(urls["pg"], pool_size=1, max_overflow=0),
        "maria": create_engine(urls["maria"], pool_size=1, max_overflow=0),
        "maria2": create_engine(urls["maria"], pool_size=1, max_overflow=0),
        "lite": create_engine(f"sqlite:///{txcoord_server.lite_path}"),
    }
    rows = {"pg": row_class(tables, "PgRow"), "maria": row_class(tables, "MyRow"),
            "maria2": row_class(m2, "My2Row"), "lite": row_class(tables, "LiteRow")}

    class World:
        pass

    w = World()
    w.engines, w.rows, w.table, w.m2 = engines, rows, tables, m2
    w.lite_path = txcoord_server.lite_path
    w.node = txcoord_server.node_id

    def session(binds=("pg", "maria", "maria2", "lite"), **kw):
        tp = TwoPhase(client, {b: engines[b] for b in binds}, **kw)
        tp.committed_globally = []
        tp.before_commit_global = tp.committed_globally.append
        s = Session(binds={rows[b]: engines[b] for b in binds})
        tp.install(s)
        return s, tp

    def counts():
        return {"pg": pg_rows(databases, f"SELECT count(*) FROM {tables}")[0][0],
                "maria": maria_rows(databases, f"SELECT count(*) FROM {tables}")[0][0],
                "maria2": maria_rows(databases, f"SELECT count(*) FROM {m2}")[0][0],
                "lite": lite_rows(w.lite_path, f"SELECT count(*) FROM {tables}")[0][0]}

    w.session, w.counts = session, counts
    yield w
    for e in engines.values():
        e.dispose()
    maria_rows(databases, f"DROP TABLE IF EXISTS {m2}")
    lite_rows(txcoord_server.lite_path, f"DROP TABLE IF EXISTS {tables}")


def no_prepared_left(databases, node):
    deadline = time.monotonic() + 10  # phase 2 may finish just after the reply (COMMITTING)
    while time.monotonic() < deadline and any(prepared_left(databases, node)):
        time.sleep(0.1)
    return prepared_left(databases, node) == ([], [])


def branch_states(client, txn_id):
    return {b.bind: b.state for b in client.outcome(txn_id).branches}


def test_two_mariadb_binds_and_postgresql_in_one_commit(client, databases, world):
    s, tp = world.session(("pg", "maria", "maria2"))
    R = world.rows
    s.add_all([R["pg"](id=1, v="pg"), R["maria"](id=1, v="maria"), R["maria2"](id=1, v="maria2")])
    s.commit()
    assert len(tp.committed_globally) == 1
    txn = tp.committed_globally[0]
    assert client.outcome(txn).committed
    assert set(branch_states(client, txn)) == {"pg", "maria", "maria2"}
    assert maria_rows(databases, f"SELECT v FROM {world.table}") == [("maria",)]
    assert maria_rows(databases, f"SELECT v FROM {world.m2}") == [("maria2",)]
    assert pg_rows(databases, f"SELECT v FROM {world.table}") == [("pg",)]
    # Again on the same session: both MariaDB connections were closed after
    # XA PREPARE and are replaced by their pools.
    s.get(R["maria"], 1).v = "maria-2"
    s.get(R["maria2"], 1).v = "maria2-2"
    s.commit()
    assert len(tp.committed_globally) == 2 and client.outcome(tp.committed_globally[1]).committed
    assert set(branch_states(client, tp.committed_globally[1])) == {"maria", "maria2"}  # pg only read
    assert maria_rows(databases, f"SELECT v FROM {world.table}") == [("maria-2",)]
    assert maria_rows(databases, f"SELECT v FROM {world.m2}") == [("maria2-2",)]
    s.close()
    assert no_prepared_left(databases, world.node)


def test_read_only_mariadb_branch_is_registered_read_only(client, databases, world):
    maria_rows(databases, f"INSERT INTO {world.table} VALUES (5, 'seen')")
    s, tp = world.session(("pg", "maria", "maria2"))
    before_commit = []
    tp.before_commit_global = lambda txn: before_commit.append(client.outcome(txn))
    R = world.rows
    assert s.get(R["maria"], 5).v == "seen"  # maria: XA branch that only reads
    s.add_all([R["pg"](id=1, v="pg"), R["maria2"](id=1, v="maria2")])
    s.commit()
    assert len(before_commit) == 1
    txn = before_commit[0].txn_id
    # Registered read-only (AddBranch'd at XA START, ended locally): listed so
    # before the decision, left out of it.
    assert {b.bind: b.state for b in before_commit[0].branches}["maria"] == "BRANCH_READ_ONLY"
    assert client.outcome(txn).committed
    assert set(branch_states(client, txn)) == {"pg", "maria2"}
    assert pg_rows(databases, f"SELECT v FROM {world.table}") == [("pg",)]
    assert maria_rows(databases, f"SELECT v FROM {world.m2}") == [("maria2",)]
    assert maria_rows(databases, f"SELECT id FROM {world.table}") == [(5,)]
    s.close()
    assert no_prepared_left(databases, world.node)


def test_sqlite_last_resource_commits_with_postgresql_and_mariadb(client, databases, world):
    s, tp = world.session(("pg", "maria", "lite"))
    R = world.rows
    s.add_all([R["pg"](id=1, v="pg"), R["maria"](id=1, v="maria"), R["lite"](id=1, v="lite-ü")])
    s.commit()
    assert len(tp.committed_globally) == 1
    txn = tp.committed_globally[0]
    info = client.outcome(txn)
    assert info.committed
    assert {b.bind for b in info.branches} == {"pg", "maria", "lite"}
    assert [b.last_resource for b in info.branches if b.bind == "lite"] == [True]
    assert world.counts() == {"pg": 1, "maria": 1, "maria2": 0, "lite": 1}
    assert lite_rows(world.lite_path, f"SELECT v FROM {world.table}") == [("lite-ü",)]
    # The SQLite connection is usable for the next transaction of the session.
    s.get(R["lite"], 1).v = "lite-2"
    s.get(R["pg"], 1).v = "pg-2"
    s.commit()
    assert client.outcome(tp.committed_globally[1]).committed
    assert lite_rows(world.lite_path, f"SELECT v FROM {world.table}") == [("lite-2",)]
    assert pg_rows(databases, f"SELECT v FROM {world.table}") == [("pg-2",)]
    s.close()
    assert no_prepared_left(databases, world.node)
    # txcoord forgets a settled decision row.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and lite_rows(
            world.lite_path, "SELECT count(*) FROM txcoord_decisions WHERE txn_id = ?", (txn,))[0][0]:
        time.sleep(0.1)
    assert lite_rows(world.lite_path, "SELECT count(*) FROM txcoord_decisions WHERE txn_id = ?", (txn,)) == [(0,)]


def test_only_the_last_resource_wrote_commits_locally(client, databases, world):
    s, tp = world.session(("pg", "maria", "lite"))
    R = world.rows
    assert s.query(R["maria"]).count() == 0 and s.query(R["pg"]).count() == 0  # read-only branches
    s.add(R["lite"](id=3, v="only lite"))
    s.commit()
    assert tp.committed_globally == []
    assert world.counts()["lite"] == 1
    s.close()
    assert no_prepared_left(databases, world.node)


def test_last_resource_failing_at_its_commit_rolls_everything_back(client, databases, world):
    parent, child = world.table + "_p", world.table + "_c"
    lite_rows(world.lite_path, f"CREATE TABLE {parent} (id int PRIMARY KEY)")
    lite_rows(world.lite_path, f"CREATE TABLE {child} (id int PRIMARY KEY, parent int REFERENCES {parent}(id) "
                               "DEFERRABLE INITIALLY DEFERRED)")
    try:
        @event.listens_for(world.engines["lite"], "connect")
        def _fk_on(dbapi_conn, record):
            dbapi_conn.execute("PRAGMA foreign_keys = ON")

        base = declarative_base()
        Child = type("Child", (base,), {"__tablename__": child, "id": Column(Integer, primary_key=True),
                                        "parent": Column(Integer)})  # the deferred FK is in the database
        R = world.rows
        tp = TwoPhase(client, {b: world.engines[b] for b in ("pg", "maria", "lite")})
        reached = []
        tp.before_last_resource_commit = reached.append
        s = Session(binds={R["pg"]: world.engines["pg"], R["maria"]: world.engines["maria"],
                           Child: world.engines["lite"]})
        tp.install(s)
        s.add_all([R["pg"](id=1, v="must vanish"), R["maria"](id=1, v="must vanish"), Child(id=1, parent=999)])
        with pytest.raises(txcoord.TransactionAborted) as e:
            s.commit()  # the deferred foreign key fails at SQLite's COMMIT, after PrepareGlobal
        assert reached == [e.value.txn_id]
        s.rollback()
        assert client.outcome(e.value.txn_id).aborted
        assert world.counts() == {"pg": 0, "maria": 0, "maria2": 0, "lite": 0}
        assert lite_rows(world.lite_path, f"SELECT count(*) FROM {child}") == [(0,)]
        assert no_prepared_left(databases, world.node)
        # The session works again.
        s.add_all([R["pg"](id=2, v="ok"), Child(id=2, parent=None)])
        s.commit()
        assert pg_rows(databases, f"SELECT id FROM {world.table}") == [(2,)]
        assert lite_rows(world.lite_path, f"SELECT id FROM {child}") == [(2,)]
        s.close()
    finally:
        lite_rows(world.lite_path, f"DROP TABLE IF EXISTS {child}")
        lite_rows(world.lite_path, f"DROP TABLE IF EXISTS {parent}")


def test_last_resource_failing_at_flush_rolls_everything_back(client, databases, world):
    lite_rows(world.lite_path, f"INSERT INTO {world.table} VALUES (1, 'there')")
    s, tp = world.session(("pg", "maria", "maria2", "lite"))
    R = world.rows
    s.add_all([R["pg"](id=1, v="x"), R["maria"](id=1, v="x"), R["maria2"](id=1, v="x")])
    s.flush()
    s.add(R["lite"](id=1, v="duplicate"))
    with pytest.raises(sa_exc.IntegrityError):
        s.commit()
    s.rollback()
    assert tp.committed_globally == []
    assert world.counts() == {"pg": 0, "maria": 0, "maria2": 0, "lite": 1}
    s.close()
    assert no_prepared_left(databases, world.node)


def test_two_binds_without_two_phase_commit_are_refused(client, databases, world, tmp_path):
    other = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        with other.begin() as c:
            c.exec_driver_sql(f"CREATE TABLE {world.table} (id int PRIMARY KEY, v varchar(100))")
        Other = row_class(world.table, "OtherRow")
        R = world.rows
        tp = TwoPhase(client, {"pg": world.engines["pg"], "lite": world.engines["lite"], "lite_other": other})
        s = Session(binds={R["pg"]: world.engines["pg"], R["lite"]: world.engines["lite"], Other: other})
        tp.install(s)
        s.add_all([R["pg"](id=1, v="x"), R["lite"](id=1, v="x"), Other(id=1, v="x")])
        with pytest.raises(NotSupported, match="at most one"):
            s.commit()
        s.rollback()
        assert world.counts()["pg"] == 0 and world.counts()["lite"] == 0
        with other.connect() as c:
            assert c.exec_driver_sql(f"SELECT count(*) FROM {world.table}").scalar() == 0
        s.close()
    finally:
        other.dispose()


def test_in_memory_sqlite_is_refused(client):
    with pytest.raises(NotSupported, match="in-memory"):
        TwoPhase(client, {"lite": create_engine("sqlite://")})


def run_crash_child(client, databases, txcoord_server, world, mode, timeout):
    urls = databases.sqlalchemy_urls()
    child = subprocess.Popen([sys.executable, os.path.join(HERE, "sqla_lr_crash_child.py"), txcoord_server.address,
                              urls["pg"], urls["maria"], world.lite_path, world.table, str(timeout), mode],
                             stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not line.startswith("STOPPED"):
            line = child.stdout.readline()
            if not line:
                break
        assert line.startswith("STOPPED"), f"the child did not reach its stop ({mode})"
        txn_id = line.split()[1]
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    pg, my = prepared_left(databases, txcoord_server.node_id)
    assert pg and my, "both 2PC branches should be in doubt right after the kill"
    deadline = time.monotonic() + timeout + 20
    info = client.outcome(txn_id)
    while time.monotonic() < deadline and not (info.state in ("COMMITTED", "ABORTED")
                                               and not any(prepared_left(databases, txcoord_server.node_id))):
        time.sleep(0.2)
        info = client.outcome(txn_id)
    return txn_id, info


def test_app_killed_after_prepare_global_before_its_last_resource_commit_is_rolled_back(
        client, databases, txcoord_server, world):
    txn_id, info = run_crash_child(client, databases, txcoord_server, world, "before-lr-commit", timeout=4.0)
    assert info.state == "ABORTED", info
    assert prepared_left(databases, txcoord_server.node_id) == ([], [])
    assert world.counts() == {"pg": 0, "maria": 0, "maria2": 0, "lite": 0}
    # txcoord's fence row: a late decision row of the application would fail.
    assert lite_rows(world.lite_path, "SELECT payload FROM txcoord_decisions WHERE txn_id = ?",
                     (txn_id,)) == [("ROLLED_BACK",)]


def test_app_killed_after_its_last_resource_commit_is_committed(client, databases, txcoord_server, world):
    txn_id, info = run_crash_child(client, databases, txcoord_server, world, "after-lr-commit", timeout=4.0)
    assert info.state == "COMMITTED", info
    assert prepared_left(databases, txcoord_server.node_id) == ([], [])
    assert world.counts() == {"pg": 1, "maria": 1, "maria2": 0, "lite": 1}
