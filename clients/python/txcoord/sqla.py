"""SQLAlchemy integration: ``session.commit()`` atomic across PostgreSQL and
MariaDB/MySQL binds, with txcoord making the durable decision.

    from txcoord.sqla import TwoPhase
    tp = TwoPhase(client, {"pg": pg_engine, "maria": maria_engine})   # txcoord bind name -> Engine
    tp.install(Session)          # a Session class, sessionmaker, scoped_session or session

The application keeps its models, binds and ``session.commit()``. Under the
hood, per SQLAlchemy transaction:

* a MariaDB/MySQL connection runs its work inside ``XA START <literal>``
  under the xid txcoord minted (``BeginGlobal`` is called when the first
  MariaDB bind is touched, naming it and every PostgreSQL bind of the
  mapping; with PostgreSQL binds only, at commit, naming the binds that wrote);
* at ``commit()``: flush, then every branch that wrote is prepared on the
  application's own connection (``PREPARE TRANSACTION '<gid>'``;
  ``XA END``/``XA PREPARE`` and the MariaDB connection is closed) and
  registered (``RegisterBranch``); then one ``CommitGlobal``: txcoord checks
  every branch is prepared, journals the decision and commits the branches
  through its own connections;
* any failure before the decision: the local branches are rolled back and
  ``RollbackGlobal`` rolls back whatever was prepared;
  :class:`txcoord.TransactionAborted` is raised. Call ``session.rollback()``
  afterwards, as after any failed commit.
* a crash of the application at any point: before the decision, txcoord rolls
  the branches back at the transaction timeout; after it, txcoord commits them.

With at most one bind written, the transaction commits locally in one phase
(nothing to coordinate) and the global transaction is dropped.

Not supported (raises): binds other than PostgreSQL (psycopg2) and
MariaDB/MySQL (pymysql, mysqlclient); two MariaDB/MySQL binds written in one
transaction (txcoord's BeginGlobal must name every bind before the first XA
START, and an XA branch that wrote nothing cannot be committed after
PREPARE on MariaDB); SAVEPOINTs (``begin_nested``) inside the transaction;
binds without two-phase commit (SQLite, SQL Server without DTC).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

from sqlalchemy import event, exc as sa_exc
from sqlalchemy.engine import Engine

from . import errors
from .client import Client, GlobalTransaction

log = logging.getLogger("txcoord.sqla")

_SESSION_KEY = "txcoord.sqla"
_CONN_KEY = "txcoord.branch"
_CLOSED_KEY = "txcoord.closed"

_XA_COUNTERS = ("SELECT COALESCE(SUM(VARIABLE_VALUE), 0) FROM information_schema.SESSION_STATUS "
                "WHERE VARIABLE_NAME IN ('HANDLER_WRITE', 'HANDLER_UPDATE', 'HANDLER_DELETE')")


class NotSupported(errors.TxcoordError):
    """A use the SQLAlchemy integration does not support (see the module docs)."""


@dataclass
class _Branch:
    bind: str
    kind: str                       # "pg" or "xa"
    conn: Any = None                # sqlalchemy Connection (None: untouched bind)
    xid: Optional[str] = None       # XA literal once started
    state: str = "active"           # active -> prepared | done
    counters: int = 0               # MariaDB row-change counters at XA START
    wrote: bool = False


@dataclass
class _State:
    owner: "TwoPhase"
    gtx: Optional[GlobalTransaction] = None
    branches: Dict[str, _Branch] = field(default_factory=dict)
    finished: bool = False


def _fairy(conn) -> Any:
    return conn.connection  # the pool's proxied DBAPI connection (has .info)


def _raw(fairy) -> Any:
    return getattr(fairy, "dbapi_connection", None) or fairy.connection


class TwoPhase:
    """txcoord-coordinated two-phase commit for SQLAlchemy sessions.

    ``client``: a :class:`txcoord.Client`. ``binds``: txcoord bind name ->
    SQLAlchemy ``Engine`` on the same database as that txcoord bind.
    ``timeout``: the global transaction's timeout in seconds (txcoord rolls
    everything back after it if nobody commits). ``labels`` are copied to
    txcoord's transactions.
    """

    def __init__(self, client: Client, binds: Mapping[str, Engine], *, timeout: float = 30.0,
                 labels: Optional[Mapping[str, str]] = None) -> None:
        self.client = client
        self.timeout = timeout
        self.labels = dict(labels or {})
        self._by_engine: Dict[int, str] = {}
        self._engines: Dict[str, Engine] = {}
        self._kinds: Dict[str, str] = {}
        #: Test hook: called with the txn id after every branch is prepared and
        #: registered, just before CommitGlobal.
        self.before_commit_global: Optional[Callable[[str], None]] = None
        for name, engine in binds.items():
            dialect = engine.dialect.name
            driver = engine.dialect.driver
            if dialect == "postgresql" and driver == "psycopg2":
                kind = "pg"
            elif dialect in ("mysql", "mariadb") and driver in ("pymysql", "mysqldb"):
                kind = "xa"
            else:
                raise NotSupported(f"bind {name!r}: {dialect}+{driver} is not supported (PostgreSQL with psycopg2, "
                                   "MariaDB/MySQL with pymysql or mysqlclient)")
            self._by_engine[id(engine)] = name
            self._engines[name] = engine
            self._kinds[name] = kind
            self._wrap_dialect(engine)

    # ------------------------------------------------------------ installation
    def install(self, target: Any) -> "TwoPhase":
        """Listens on ``target``'s session events (a Session class or instance, a
        sessionmaker or a scoped_session, e.g. Flask-SQLAlchemy's ``db.session``)."""
        event.listen(target, "after_begin", self._after_begin)
        event.listen(target, "before_commit", self._before_commit)
        event.listen(target, "after_transaction_end", self._after_transaction_end)
        return self

    @staticmethod
    def _wrap_dialect(engine: Engine) -> None:
        dialect = engine.dialect
        if getattr(dialect, "_txcoord_wrapped", False):
            return
        orig_commit, orig_rollback = dialect.do_commit, dialect.do_rollback

        def do_commit(dbapi_connection):
            info = getattr(dbapi_connection, "info", None)
            if not isinstance(info, dict):  # a raw DBAPI connection (first connect)
                return orig_commit(dbapi_connection)
            b: Optional[_Branch] = info.get(_CONN_KEY)
            if info.get(_CLOSED_KEY):
                info.pop(_CONN_KEY, None)
                return
            if b is not None:
                if b.state == "active":
                    raise NotSupported(f"bind {b.bind!r}: its branch is still active at COMMIT: a commit that "
                                       "bypassed txcoord would not be atomic")
                info.pop(_CONN_KEY, None)
            orig_commit(dbapi_connection)

        def do_rollback(dbapi_connection):
            info = getattr(dbapi_connection, "info", None)
            if not isinstance(info, dict):
                return orig_rollback(dbapi_connection)
            if info.get(_CLOSED_KEY):
                info.pop(_CONN_KEY, None)
                return
            b: Optional[_Branch] = info.pop(_CONN_KEY, None)
            if b is not None and b.kind == "xa" and b.state in ("active", "idle"):
                _xa_rollback_local(_raw(dbapi_connection), b)
            orig_rollback(dbapi_connection)

        orig_close = dialect.do_close

        def do_close(dbapi_connection):
            # The pool closes a connection we closed after XA PREPARE: quietly.
            if getattr(dbapi_connection, "_txcoord_closed", False):
                return
            orig_close(dbapi_connection)

        dialect.do_commit = do_commit
        dialect.do_rollback = do_rollback
        dialect.do_close = do_close
        dialect._txcoord_wrapped = True

        @event.listens_for(engine, "checkout")
        def _checkout(dbapi_conn, record, proxy):
            if record.info.pop(_CLOSED_KEY, False):
                record.info.pop(_CONN_KEY, None)
                raise sa_exc.DisconnectionError("closed after XA PREPARE")

    # ------------------------------------------------------------ events
    def _state(self, session, create: bool) -> Optional[_State]:
        st = session.info.get(_SESSION_KEY)
        if st is None and create:
            st = session.info[_SESSION_KEY] = _State(self)
        if st is not None and st.owner is not self:
            return None
        return st

    def _after_begin(self, session, transaction, connection) -> None:
        name = self._by_engine.get(id(connection.engine))
        if name is None:
            return
        if transaction.nested:
            raise NotSupported("SAVEPOINTs (begin_nested) are not supported under txcoord.sqla")
        st = self._state(session, create=True)
        if st is None:
            return
        kind = self._kinds[name]
        b = _Branch(name, kind, conn=connection)
        if kind == "xa":
            if any(x.kind == "xa" and x.conn is not None for x in st.branches.values()):
                raise NotSupported(f"bind {name!r}: a second MariaDB/MySQL bind in one transaction is not supported")
            if st.gtx is None:
                named = [name] + [n for n, k in self._kinds.items() if k == "pg"]
                st.gtx = self.client.begin_global(named, timeout=self.timeout, labels=self.labels)
            elif name not in st.gtx.xids:
                raise NotSupported(f"bind {name!r} was not named when the global transaction began")
            b.xid = st.gtx.xids[name]
            raw = _raw(_fairy(connection))
            raw.rollback()  # no implicit local transaction may be open before XA START
            with raw.cursor() as c:
                c.execute(f"XA START {b.xid}")
                c.execute(_XA_COUNTERS)
                b.counters = int(c.fetchone()[0])
        _fairy(connection).info[_CONN_KEY] = b
        st.branches[name] = b

    def _before_commit(self, session) -> None:
        if session.in_nested_transaction():
            return
        session.flush()  # before_commit runs before SQLAlchemy's own flush: the work must reach the branches now
        st = self._state(session, create=False)
        if st is None or st.finished or not st.branches:
            return
        try:
            self._commit(st)
        finally:
            st.finished = True

    def _after_transaction_end(self, session, transaction) -> None:
        if transaction.parent is not None:
            return
        st = self._state(session, create=False)
        if st is None:
            return
        session.info.pop(_SESSION_KEY, None)
        if not st.finished:
            # rolled back (or closed) without commit
            for b in st.branches.values():
                if b.kind == "xa" and b.state in ("active", "idle") and b.conn is not None:
                    try:
                        _xa_rollback_local(_raw(_fairy(b.conn)), b)
                    except Exception:  # the connection is being discarded anyway
                        pass
            if st.gtx is not None:
                self._rollback_global_quietly(st.gtx.txn_id)

    # ------------------------------------------------------------ commit
    def _commit(self, st: _State) -> None:
        for b in st.branches.values():
            raw = _raw(_fairy(b.conn))
            with raw.cursor() as c:
                if b.kind == "pg":
                    c.execute("SELECT txid_current_if_assigned() IS NOT NULL")
                    b.wrote = bool(c.fetchone()[0])
                else:
                    c.execute(_XA_COUNTERS)
                    b.wrote = int(c.fetchone()[0]) != b.counters
        writers = [b for b in st.branches.values() if b.wrote]
        xa = [b for b in st.branches.values() if b.kind == "xa"]

        if len(writers) <= 1:
            # Nothing to coordinate: commit locally in one phase.
            for b in xa:
                raw = _raw(_fairy(b.conn))
                with raw.cursor() as c:
                    c.execute(f"XA END {b.xid}")
                    c.execute(f"XA COMMIT {b.xid} ONE PHASE" if b.wrote else f"XA ROLLBACK {b.xid}")
                b.state = "done"
            for b in st.branches.values():
                b.state = "done"
            if st.gtx is not None:
                self._rollback_global_quietly(st.gtx.txn_id)
            return

        try:
            if not any(b.kind == "xa" for b in writers):
                # PostgreSQL writers only: end a read-only XA branch locally and
                # begin the global transaction with exactly the writers.
                for b in xa:
                    _xa_rollback_local(_raw(_fairy(b.conn)), b)
                if st.gtx is not None:
                    self._rollback_global_quietly(st.gtx.txn_id)
                st.gtx = self.client.begin_global([b.bind for b in writers], timeout=self.timeout,
                                                  labels=self.labels)
            gtx = st.gtx
            # Every bind named at BeginGlobal must be prepared and registered.
            for name, xid in gtx.xids.items():
                b = st.branches.get(name)
                if b is None:
                    b = st.branches[name] = _Branch(name, self._kinds[name])
                b.xid = b.xid or xid
                self._prepare(b)
                self.client.register_branch(gtx.txn_id, name, b.xid)
            if self.before_commit_global is not None:
                self.before_commit_global(gtx.txn_id)
            self.client.commit_global(gtx.txn_id)
            for b in st.branches.values():
                b.state = "done" if b.state == "active" else b.state
        except errors.OutcomeUnknown:
            raise  # branches prepared: txcoord settles them; ask client.outcome(txn_id)
        except Exception as e:
            for b in st.branches.values():
                if b.kind == "xa" and b.state in ("active", "idle") and b.conn is not None:
                    try:
                        _xa_rollback_local(_raw(_fairy(b.conn)), b)
                    except Exception:
                        pass
            txn_id = st.gtx.txn_id if st.gtx else None
            if txn_id:
                self._rollback_global_quietly(txn_id)
            if isinstance(e, errors.TransactionAborted):
                raise
            raise errors.TransactionAborted(f"commit failed before the decision, rolled back: {e}",
                                            txn_id=txn_id) from e

    def _prepare(self, b: _Branch) -> None:
        """Prepares one branch under its xid (an untouched bind: an empty branch)."""
        engine = self._engines[b.bind]
        if b.kind == "pg":
            if "'" in b.xid:
                raise errors.InvalidArgument(f"unexpected gid {b.xid!r}")
            if b.conn is not None:
                raw = _raw(_fairy(b.conn))
                with raw.cursor() as c:
                    c.execute(f"PREPARE TRANSACTION '{b.xid}'")
                b.state = "prepared"
            else:
                raw = engine.raw_connection()
                try:
                    with raw.cursor() as c:
                        c.execute(f"PREPARE TRANSACTION '{b.xid}'")
                    raw.commit()  # no transaction left: a harmless COMMIT resets the driver's state
                finally:
                    raw.close()
                b.state = "prepared"
            return
        if b.conn is None:
            raise NotSupported(f"bind {b.bind!r}: an untouched MariaDB branch cannot be prepared and committed")
        fairy = _fairy(b.conn)
        raw = _raw(fairy)
        with raw.cursor() as c:
            c.execute(f"XA END {b.xid}")
            b.state = "idle"
            c.execute(f"XA PREPARE {b.xid}")
        b.state = "prepared"
        # A MariaDB session stays attached to its prepared branch: close it so
        # that txcoord can finish the branch; the pool replaces it.
        fairy.info[_CLOSED_KEY] = True
        try:
            raw.close()
        except Exception:
            pass
        try:
            raw._txcoord_closed = True
        except Exception:  # a C extension's connection without attributes
            pass

    def _rollback_global_quietly(self, txn_id: str) -> None:
        try:
            self.client.rollback_global(txn_id)
        except errors.TxcoordError as e:  # txcoord rolls it back at its timeout anyway
            log.warning("RollbackGlobal(%s) failed: %s", txn_id, e)


def _xa_rollback_local(raw, b: _Branch) -> None:
    """Ends and rolls back a MariaDB XA branch still attached to ``raw``."""
    if b.state not in ("active", "idle"):
        return
    with raw.cursor() as c:
        if b.state == "active":
            try:
                c.execute(f"XA END {b.xid}")
            except Exception:
                pass
        try:
            c.execute(f"XA ROLLBACK {b.xid}")
        except Exception:
            pass
    b.state = "done"
