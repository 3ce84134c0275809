"""Fixtures: real local databases (deploy/local/start.sh into a temp dir) and
a real txcoord process (a config written here, --address-file)."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Dict, Iterator, Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_DIR = os.path.dirname(HERE)
REPO = os.path.normpath(os.path.join(CLIENT_DIR, "..", ".."))

TXCOORD_BINARY = os.environ.get("TXCOORD_BINARY", os.path.join(REPO, "build", "server", "txcoord"))


@dataclass
class Databases:
    dir: str
    env: Dict[str, str]

    @property
    def pg_uri(self) -> str:
        return self.env["TXC_PG_URI"]

    @property
    def maria_odbc(self) -> str:
        return self.env["TXC_MARIADB_ODBC"]

    @property
    def maria_port(self) -> int:
        return int(self.env["TXC_MARIADB_PORT"])

    def pg(self):
        import psycopg2
        return psycopg2.connect(self.pg_uri, connect_timeout=10)

    def maria(self, **kw):
        import pymysql
        return pymysql.connect(host="127.0.0.1", port=self.maria_port, user="txcoord", password="txcoord_local_pw",
                               database="txcoord", connect_timeout=10, **{"autocommit": True, **kw})

    def sqlalchemy_urls(self) -> Dict[str, str]:
        pg = self.pg_uri.replace("postgresql://", "postgresql+psycopg2://", 1)
        my = f"mysql+pymysql://txcoord:txcoord_local_pw@127.0.0.1:{self.maria_port}/txcoord"
        return {"pg": pg, "maria": my}


def _read_env(path: str) -> Dict[str, str]:
    env: Dict[str, str] = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("export "):
                k, _, v = line[len("export "):].partition("=")
                env[k] = shlex.split(v)[0] if v else ""
    return env


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    """Throwaway PostgreSQL + MariaDB. TXC_PY_DB_DIR reuses (and keeps) running ones."""
    reuse = os.environ.get("TXC_PY_DB_DIR")
    d = reuse or tempfile.mkdtemp(prefix="txc-pytest-db-", dir="/tmp")
    try:
        subprocess.run(["bash", os.path.join(REPO, "deploy", "local", "start.sh"), d], check=True, timeout=180,
                       stdout=subprocess.DEVNULL)
        yield Databases(d, _read_env(os.path.join(d, "env")))
    finally:
        if not reuse:
            subprocess.run(["bash", os.path.join(REPO, "deploy", "local", "stop.sh"), d, "--wipe"], timeout=120,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run(["rm", "-rf", d])


class Txcoord:
    """One txcoord child process.

    Binds: ``pg`` (PostgreSQL), ``maria`` and ``maria2`` (the same MariaDB
    database: two binds, distinct xids), ``lite`` (a SQLite file in the
    workdir, ``lite_path``: no two-phase commit, a last resource).
    ``security``: YAML for tls/auth sections (None: ``plaintext: true``).
    """

    def __init__(self, dbs: Databases, workdir: str, node_id: str, *, security: Optional[str] = None,
                 transaction_timeout: str = "30s") -> None:
        self.node_id = node_id
        self.workdir = workdir
        self.config = os.path.join(workdir, "txcoord.yaml")
        self.address_file = os.path.join(workdir, "address")
        self.log = os.path.join(workdir, "txcoord.log")
        self.lite_path = os.path.join(workdir, "lite.db")
        with open(self.config, "w") as f:
            f.write(f"""node_id: {node_id}
listen: 127.0.0.1:0
{security if security is not None else "plaintext: true"}
journal: {{dir: {workdir}/journal}}
timeouts: {{transaction: {transaction_timeout}, idle: 60s, orphan_safety: 5s}}
recovery: {{interval: 1s, backoff: {{initial: 100ms, max: 2s}}}}
binds:
  pg: {{driver: postgres, dsn: "{dbs.pg_uri}"}}
  maria: {{driver: odbc, dsn: "{dbs.maria_odbc}"}}
  maria2: {{driver: odbc, dsn: "{dbs.maria_odbc}"}}
  lite: {{driver: odbc, dsn: "Driver=SQLite3;Database={self.lite_path}"}}
""")
        self.proc: subprocess.Popen | None = None
        self.address = ""

    def start(self) -> None:
        if not os.path.exists(TXCOORD_BINARY):
            raise RuntimeError(f"{TXCOORD_BINARY} not built: run deploy/build.sh")
        if os.path.exists(self.address_file):
            os.remove(self.address_file)
        env = dict(os.environ)
        env.pop("TXC_FAILPOINTS", None)
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([TXCOORD_BINARY, "--config", self.config, "--address-file",
                                          self.address_file], stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(self.address_file):
                with open(self.address_file) as f:
                    self.address = f.read().strip()
                if self.address:
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        with open(self.log) as f:
            raise RuntimeError("txcoord did not start:\n" + f.read()[-3000:])

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def txcoord_server(databases: Databases, tmp_path_factory) -> Iterator[Txcoord]:
    workdir = str(tmp_path_factory.mktemp("txcoord"))
    t = Txcoord(databases, workdir, "py-" + uuid.uuid4().hex[:10])
    t.start()
    try:
        yield t
    finally:
        t.stop()


@pytest.fixture()
def client(txcoord_server: Txcoord):
    import txcoord
    c = txcoord.Client(txcoord_server.address, timeout=20)
    c.wait_ready(10)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture()
def tables(databases: Databases):
    """A unique table name, created on both databases as (id int primary key, v varchar(100)); dropped after."""
    name = "t_" + uuid.uuid4().hex[:10]
    with databases.pg() as pg, pg.cursor() as c:
        c.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v varchar(100))")
    pg.close()
    my = databases.maria()
    with my.cursor() as c:
        c.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v varchar(100)) ENGINE=InnoDB")
    my.close()
    yield name
    with databases.pg() as pg, pg.cursor() as c:
        c.execute("SET lock_timeout = '20s'")
        c.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
    pg.close()
    my = databases.maria()
    with my.cursor() as c:
        c.execute("SET SESSION lock_wait_timeout = 20")
        c.execute(f"DROP TABLE IF EXISTS {name}")
    my.close()


def lite_rows(path: str, sql: str, params=()):
    """Rows from the SQLite file ``path`` (its own connection, autocommit)."""
    import sqlite3
    conn = sqlite3.connect(path, timeout=20, isolation_level=None)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def pg_rows(dbs: Databases, sql: str, params=()):
    conn = dbs.pg()
    conn.autocommit = True
    try:
        with conn.cursor() as c:
            c.execute(sql, params)
            return c.fetchall() if c.description else []
    finally:
        conn.close()


def maria_rows(dbs: Databases, sql: str, params=()):
    conn = dbs.maria()
    try:
        with conn.cursor() as c:
            c.execute(sql, params)
            return list(c.fetchall())
    finally:
        conn.close()


def prepared_left(dbs: Databases, node_id: str):
    """Prepared branches of this txcoord node: (pg gids, MariaDB XA data)."""
    pg = [r[0] for r in pg_rows(dbs, "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE %s", (f"txc1_{node_id}.%",))]
    my = [r[3] for r in maria_rows(dbs, "XA RECOVER")]
    my = [d for d in my if (d.decode("latin1") if isinstance(d, bytes) else d).startswith(node_id + ".")]
    return pg, my


def wait_until_nothing_prepared(dbs: Databases, node_id: str, seconds: float) -> None:
    """Polls (bounded by `seconds`) until this node has no prepared branch left."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(prepared_left(dbs, node_id)):
        time.sleep(0.2)
