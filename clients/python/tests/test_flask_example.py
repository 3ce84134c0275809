"""examples/flask_binds driven over HTTP (Flask's test client) against the
test txcoord and databases."""
from __future__ import annotations

import importlib.util
import os
import uuid

import pytest

from conftest import REPO, maria_rows, pg_rows, prepared_left


@pytest.fixture()
def example(databases, txcoord_server, monkeypatch):
    prefix = "fx_" + uuid.uuid4().hex[:8] + "_"
    urls = databases.sqlalchemy_urls()
    monkeypatch.setenv("EXAMPLE_TABLE_PREFIX", prefix)
    monkeypatch.setenv("DATABASE_URL", urls["pg"])
    monkeypatch.setenv("MARIADB_URL", urls["maria"])
    monkeypatch.setenv("TXCOORD_ADDRESS", txcoord_server.address)
    spec = importlib.util.spec_from_file_location("flask_binds_app_" + prefix,
                                                  os.path.join(REPO, "examples", "flask_binds", "app.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    app = mod.create_app()
    yield app, prefix
    with app.app_context():
        mod.db.session.remove()
        for e in mod.db.engines.values():
            e.dispose()
    pg_rows(databases, f"DROP TABLE IF EXISTS {prefix}orders")
    maria_rows(databases, f"DROP TABLE IF EXISTS {prefix}stock_moves")


def test_endpoint_commits_both_binds_atomically(example, databases, txcoord_server):
    app, prefix = example
    http = app.test_client()
    r = http.post("/orders", json={"id": 1, "item": "bolt", "quantity": 3})
    assert r.status_code == 201, r.get_data(as_text=True)
    assert pg_rows(databases, f"SELECT id, item, quantity FROM {prefix}orders") == [(1, "bolt", 3)]
    assert maria_rows(databases, f"SELECT order_id, item, delta FROM {prefix}stock_moves") == [(1, "bolt", -3)]
    assert http.get("/orders/1").get_json() == {"order": {"item": "bolt", "quantity": 3},
                                                "stock_move": {"item": "bolt", "delta": -3}}
    # The same order again: PostgreSQL refuses it; MariaDB's branch is rolled back too.
    r = http.post("/orders", json={"id": 1, "item": "nut", "quantity": 5})
    assert r.status_code == 409, r.get_data(as_text=True)
    assert maria_rows(databases, f"SELECT count(*) FROM {prefix}stock_moves") == [(1,)]
    r = http.post("/orders", json={"id": 2, "item": "nut", "quantity": 5})
    assert r.status_code == 201, r.get_data(as_text=True)
    assert pg_rows(databases, f"SELECT count(*) FROM {prefix}orders") == [(2,)]
    assert maria_rows(databases, f"SELECT count(*) FROM {prefix}stock_moves") == [(2,)]
    assert prepared_left(databases, txcoord_server.node_id) == ([], [])
    # Both commits went through txcoord's CommitGlobal with both branches.
    import grpc
    from txcoord.v1 import admin_pb2, admin_pb2_grpc, common_pb2
    with grpc.insecure_channel(txcoord_server.address) as ch:
        listed = admin_pb2_grpc.AdminServiceStub(ch).ListTransactions(
            admin_pb2.ListTransactionsRequest(states=[common_pb2.COMMITTED], page_size=1000), timeout=10)
    ours = [t for t in listed.transactions if t.labels.get("app") == "flask_binds"
            and {b.bind for b in t.branches} == {"pg", "maria"}]
    assert len(ours) == 2
