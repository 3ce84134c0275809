"""SQLAlchemy integration: ``session.commit()`` atomic across PostgreSQL,
MariaDB/MySQL and at most one bind without two-phase commit, with txcoord
making the durable decision.

    from txcoord.sqla import TwoPhase
    tp = TwoPhase(client, {"pg": pg_engine, "maria": maria_engine, "lite": sqlite_engine})
    tp.install(Session)          # a Session class, sessionmaker, scoped_session or session

The keys are txcoord's bind names; each engine must reach the same database
as that txcoord bind. The application keeps its models, binds and
``session.commit()``. Under the hood, per SQLAlchemy transaction:

* the global transaction begins (``BeginGlobal``, naming no bind) when it is
  first needed: when a MariaDB/MySQL bind is touched, or at commit;
* each MariaDB/MySQL connection gets its xid from ``AddBranch`` when the
  session first touches that bind, and runs its work inside
  ``XA START <literal>`` — so several MariaDB/MySQL binds can be written in
  one transaction;
* a PostgreSQL bind gets its gid from ``AddBranch`` at commit, and only if it
  wrote;
* a bind without two-phase commit (SQLite via pysqlite; SQL Server via pyodbc,
  UNTESTED) keeps its work on the application's own connection and becomes
  the *last resource*;
* at ``commit()``: flush; a branch that wrote nothing is ended locally (an
  XA branch: ``XA END`` + ``XA COMMIT ... ONE PHASE``, registered
  ``read_only``). With at most one bind written there is nothing to
  coordinate: it commits locally in one phase. Otherwise every 2PC branch
  that wrote is prepared on the application's own connection
  (``PREPARE TRANSACTION '<gid>'``; ``XA END`` + ``XA PREPARE`` and the
  MariaDB connection is closed, because a MariaDB session stays attached to
  its prepared branch; the pool replaces it) and registered
  (``RegisterBranch``). Without a last resource, one ``CommitGlobal`` makes
  the decision. With one: ``PrepareGlobal`` checks the prepared branches and
  answers the decision row, which is inserted into ``txcoord_decisions`` on
  the last resource's connection; committing that connection *is* the
  decision; then ``CommitGlobal`` lets txcoord commit the prepared branches;
* any failure before the decision (a failed flush or PREPARE, e.g. a
  deferred constraint; a failed last-resource commit; txcoord unreachable):
  every branch is rolled back locally, ``RollbackGlobal`` rolls back whatever
  was prepared, and :class:`txcoord.TransactionAborted` is raised. Call
  ``session.rollback()`` afterwards, as after any failed commit;
* an outcome that cannot be known (the last resource's connection lost
  during its commit; ``CommitGlobal`` unanswered without a last resource):
  :class:`txcoord.OutcomeUnknown` with the txn id; ask
  ``client.outcome(txn_id)`` later;
* a crash of the application at any point: before the decision, txcoord
  rolls the branches back at the global transaction's timeout (with a last
  resource: after writing a fence row there, which makes the application's
  late decision row fail on the duplicate key); after it, txcoord commits.

Not supported (raises :class:`NotSupported`): other dialects or drivers;
an in-memory SQLite database; two binds without two-phase commit written in
one transaction; SAVEPOINTs (``begin_nested``) inside the transaction.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

from sqlalchemy import event, exc as sa_exc, text
from sqlalchemy.engine import Engine

from . import errors
from .client import Client, GlobalTransaction, LastResourceDecision

log = logging.getLogger("txcoord.sqla")

_SESSION_KEY = "txcoord.sqla"
_CONN_KEY = "txcoord.branch"
_CLOSED_KEY = "txcoord.closed"

_XA_COUNTERS = ("SELECT COALESCE(SUM(VARIABLE_VALUE), 0) FROM information_schema.SESSION_STATUS "
                "WHERE VARIABLE_NAME IN ('HANDLER_WRITE', 'HANDLER_UPDATE', 'HANDLER_DELETE')")

# The definition txcoord itself uses on SQLite (participants/odbc). Created
# ahead by the client because SQLite locks the whole database for writing:
# txcoord cannot create the table while the application's last-resource
# transaction has written.
_SQLITE_DECISIONS_DDL = ("CREATE TABLE IF NOT EXISTS txcoord_decisions (txn_id TEXT PRIMARY KEY, payload TEXT, "
                         "decided_at TEXT DEFAULT CURRENT_TIMESTAMP)")


class NotSupported(errors.TxcoordError):
    """A use the SQLAlchemy integration does not support (see the module docs)."""


@dataclass
class _Branch:
    bind: str
    kind: str                       # "pg", "xa" or "lr" (no two-phase commit: the last resource)
    conn: Any = None                # the session's sqlalchemy Connection
    xid: Optional[str] = None       # gid / XA literal once minted
    state: str = "active"           # active -> idle (XA END) -> prepared | done
    counters: int = 0               # MariaDB row-change counters at XA START; SQLite total_changes at begin
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


def _classify(name: str, engine: Engine) -> str:
    """The branch kind of a bind: "pg", "xa", "sqlite" or "mssql"."""
    dialect, driver = engine.dialect.name, engine.dialect.driver
    if dialect == "postgresql" and driver == "psycopg2":
        return "pg"
    if dialect in ("mysql", "mariadb") and driver in ("pymysql", "mysqldb"):
        return "xa"
    if dialect == "sqlite" and driver == "pysqlite":
        database = engine.url.database or ""
        if database in ("", ":memory:") or "mode=memory" in database or database.startswith("file::memory:"):
            raise NotSupported(f"bind {name!r}: an in-memory SQLite database cannot be txcoord's bind; use a file")
        return "sqlite"
    if dialect == "mssql" and driver == "pyodbc":
        return "mssql"  # UNTESTED: never run against a SQL Server (none in the test environment)
    raise NotSupported(f"bind {name!r}: {dialect}+{driver} is not supported (PostgreSQL with psycopg2, "
                       "MariaDB/MySQL with pymysql or mysqlclient, SQLite with pysqlite, SQL Server with pyodbc)")


class TwoPhase:
    """txcoord-coordinated two-phase commit for SQLAlchemy sessions.

    ``client``: a :class:`txcoord.Client`. ``binds``: txcoord bind name ->
    SQLAlchemy ``Engine`` on the same database as that txcoord bind.
    ``timeout``: the global transaction's timeout in seconds (txcoord rolls
    everything back after it if nobody commits). ``labels`` are copied to
    txcoord's transactions.

    Thread safety: one instance serves any number of sessions and threads;
    its per-transaction state lives in each session's ``info``.
    """

    def __init__(self, client: Client, binds: Mapping[str, Engine], *, timeout: float = 30.0,
                 labels: Optional[Mapping[str, str]] = None) -> None:
        self.client = client
        self.timeout = timeout
        self.labels = dict(labels or {})
        self._by_engine: Dict[int, str] = {}
        self._engines: Dict[str, Engine] = {}
        self._kinds: Dict[str, str] = {}         # "pg", "xa" or "lr"
        self._lr_flavor: Dict[str, str] = {}     # last resources: "sqlite" or "mssql"
        self._decisions_ready: Dict[str, bool] = {}
        #: Test hook: called with the txn id right before CommitGlobal (every
        #: branch prepared and registered; with a last resource, after its commit).
        self.before_commit_global: Optional[Callable[[str], None]] = None
        #: Test hook: called with the txn id after PrepareGlobal and the insert
        #: of the decision row, right before the last resource's commit.
        self.before_last_resource_commit: Optional[Callable[[str], None]] = None
        for name, engine in binds.items():
            flavor = _classify(name, engine)
            kind = flavor if flavor in ("pg", "xa") else "lr"
            if kind == "lr":
                self._lr_flavor[name] = flavor
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

    def _global(self, st: _State, name_now: Optional[List[str]] = None) -> GlobalTransaction:
        """The session's global transaction, begun now if needed (naming
        ``name_now``, whose xids are then in ``gtx.xids``)."""
        if st.gtx is None:
            st.gtx = self.client.begin_global(list(name_now or ()), timeout=self.timeout, labels=self.labels)
        return st.gtx

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
        raw = _raw(_fairy(connection))
        if kind == "xa":
            b.xid = self._global(st).add_branch(name)
            raw.rollback()  # no implicit local transaction may be open before XA START
            with raw.cursor() as c:
                c.execute(f"XA START {b.xid}")
                c.execute(_XA_COUNTERS)
                b.counters = int(c.fetchone()[0])
        elif kind == "lr" and self._lr_flavor[name] == "sqlite":
            self._ensure_sqlite_decisions(name)
            b.counters = raw.total_changes
        _fairy(connection).info[_CONN_KEY] = b
        st.branches[name] = b

    def _ensure_sqlite_decisions(self, name: str) -> None:
        """Creates txcoord_decisions on a SQLite bind, once, on a connection of
        its own (outside the pool) before the session's connection writes."""
        if self._decisions_ready.get(name):
            return
        engine = self._engines[name]
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        try:
            conn = engine.dialect.connect(*cargs, **cparams)
            try:
                conn.execute(_SQLITE_DECISIONS_DDL)
                conn.commit()
            finally:
                conn.close()
            self._decisions_ready[name] = True
        except Exception as e:  # retried at the next transaction; PrepareGlobal creates it otherwise
            log.warning("bind %r: creating txcoord_decisions failed: %s", name, e)

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
    def _detect_writes(self, st: _State) -> None:
        for b in st.branches.values():
            raw = _raw(_fairy(b.conn))
            if b.kind == "pg":
                with raw.cursor() as c:
                    c.execute("SELECT txid_current_if_assigned() IS NOT NULL")
                    b.wrote = bool(c.fetchone()[0])
            elif b.kind == "xa":
                with raw.cursor() as c:
                    c.execute(_XA_COUNTERS)
                    b.wrote = int(c.fetchone()[0]) != b.counters
            elif self._lr_flavor[b.bind] == "sqlite":
                b.wrote = bool(raw.in_transaction) or raw.total_changes != b.counters
            else:
                # SQL Server (UNTESTED): no portable, unprivileged way to tell a
                # transaction that wrote; a touched bind counts as written (safe:
                # it only costs the decision row).
                b.wrote = True

    def _commit(self, st: _State) -> None:
        try:
            self._detect_writes(st)
        except Exception as e:
            self._abort(st, e)
        writers = [b for b in st.branches.values() if b.wrote]
        last_resources = [b for b in writers if b.kind == "lr"]
        if len(last_resources) > 1:
            self._abort(st, NotSupported(
                "binds " + ", ".join(repr(b.bind) for b in last_resources) + " have no two-phase commit and "
                "were all written: at most one such bind per transaction (it commits as the last resource); "
                "the transaction was rolled back"))

        if len(writers) <= 1:
            self._commit_one_phase(st)
            return

        lr = last_resources[0] if last_resources else None
        try:
            two_phase = [b for b in writers if b.kind != "lr"]
            # Without a global transaction yet (PostgreSQL only), BeginGlobal
            # names the PostgreSQL writers at once; else AddBranch each.
            gtx = self._global(st, [b.bind for b in two_phase if b.kind == "pg"])
            for b in st.branches.values():
                if b.kind == "xa" and not b.wrote:
                    _xa_end_read_only(_raw(_fairy(b.conn)), b)
                    gtx.register(b.bind, b.xid, read_only=True)
                elif b.kind != "xa" and not b.wrote:
                    b.state = "done"  # nothing to keep: SQLAlchemy's COMMIT ends it
            for b in two_phase:
                if b.kind == "pg":
                    b.xid = gtx.xids.get(b.bind) or gtx.add_branch(b.bind)
                self._prepare(b)
                gtx.register(b.bind, b.xid)
            if lr is None:
                if self.before_commit_global is not None:
                    self.before_commit_global(gtx.txn_id)
                self.client.commit_global(gtx.txn_id)
                self._mark_done(st)
                return
            decision = gtx.prepare_global(lr.bind)
            lr.conn.execute(text(LastResourceDecision.INSERT_SQL), decision.params())
            if self.before_last_resource_commit is not None:
                self.before_last_resource_commit(gtx.txn_id)
        except errors.OutcomeUnknown:
            raise  # branches prepared, decision sent: txcoord settles them; ask client.outcome(txn_id)
        except Exception as e:
            self._abort(st, e)
        self._commit_last_resource(st, lr, gtx.txn_id)

    def _commit_one_phase(self, st: _State) -> None:
        """At most one bind wrote: nothing to coordinate, each ends locally
        (an XA branch here, the others by SQLAlchemy's COMMIT that follows)."""
        try:
            for b in sorted(st.branches.values(), key=lambda b: b.wrote):  # the writer last
                if b.kind == "xa":
                    raw = _raw(_fairy(b.conn))
                    with raw.cursor() as c:
                        c.execute(f"XA END {b.xid}")
                        b.state = "idle"
                        c.execute(f"XA COMMIT {b.xid} ONE PHASE")
                    b.state = "done"
        except Exception as e:
            self._abort(st, e)
        self._mark_done(st)
        if st.gtx is not None:
            self._rollback_global_quietly(st.gtx.txn_id)

    def _commit_last_resource(self, st: _State, lr: _Branch, txn_id: str) -> None:
        """Commits the last resource's transaction, which holds the decision
        row: that commit is the decision. Then CommitGlobal."""
        engine = self._engines[lr.bind]
        raw = _raw(_fairy(lr.conn))
        try:
            raw.commit()
        except Exception as e:
            if _is_disconnect(engine, e, raw):
                raise errors.OutcomeUnknown(
                    f"bind {lr.bind!r}: connection lost while committing the last resource ({e}); its commit is "
                    "the decision and txcoord settles it from txcoord_decisions (at the latest at the "
                    "transaction timeout): ask client.outcome(txn_id)", txn_id=txn_id) from e
            if not self._last_resource_committed_after_all(lr, raw, txn_id, e):
                self._mark_done(st)
                raise errors.TransactionAborted(
                    f"bind {lr.bind!r}: the last resource's commit failed, everything rolled back: {e}",
                    txn_id=txn_id) from e
        self._mark_done(st)
        if self.before_commit_global is not None:
            self.before_commit_global(txn_id)
        try:
            self.client.commit_global(txn_id)
        except errors.TxcoordError as e:
            # The decision row is committed: the transaction is decided. txcoord
            # finds the row with its fence (at CommitGlobal, the transaction
            # timeout or recovery) and commits the prepared branches.
            log.warning("transaction %s is committed (decision row on bind %r) but CommitGlobal failed: %s; "
                        "txcoord finishes the prepared branches at its timeout", txn_id, lr.bind, e)

    def _last_resource_committed_after_all(self, lr: _Branch, raw: Any, txn_id: str, cause: Exception) -> bool:
        """After a last-resource commit that raised without losing the
        connection: rolls it back and asks txcoord to roll back. False: rolled
        back. True: txcoord found the decision row (the commit had happened)."""
        try:
            raw.rollback()
            rolled_back_locally = True
        except Exception:
            rolled_back_locally = False
        lr.state = "done"
        try:
            self.client.rollback_global(txn_id)
            return False
        except errors.FailedPrecondition:
            return True  # "committed by the service's last resource"
        except errors.TxcoordError as e:
            if rolled_back_locally:
                # Not committed here; txcoord's fence at the timeout makes that final.
                log.warning("RollbackGlobal(%s) failed: %s", txn_id, e)
                return False
            raise errors.OutcomeUnknown(
                f"bind {lr.bind!r}: the last resource's commit failed ({cause}) and txcoord could not be asked "
                f"({e}): ask client.outcome(txn_id)", txn_id=txn_id) from cause

    def _abort(self, st: _State, cause: Exception) -> None:
        """Rolls every branch back (locally first: a last resource's locks must
        be gone before txcoord fences it), then RollbackGlobal; raises."""
        for b in st.branches.values():
            if b.state not in ("active", "idle") or b.conn is None:
                continue
            try:
                raw = _raw(_fairy(b.conn))
                if b.kind == "xa":
                    _xa_rollback_local(raw, b)
                else:
                    raw.rollback()
                    b.state = "done"
            except Exception:  # a lost connection: its database rolls it back
                pass
        txn_id = st.gtx.txn_id if st.gtx else None
        if txn_id:
            self._rollback_global_quietly(txn_id)
        if isinstance(cause, (errors.TransactionAborted, NotSupported)):
            if cause.txn_id is None:
                cause.txn_id = txn_id
            raise cause
        raise errors.TransactionAborted(f"commit failed before the decision, rolled back: {cause}",
                                        txn_id=txn_id) from cause

    @staticmethod
    def _mark_done(st: _State) -> None:
        for b in st.branches.values():
            if b.state == "active":
                b.state = "done"

    def _prepare(self, b: _Branch) -> None:
        """Prepares one branch that wrote under its xid."""
        if b.kind == "pg":
            if "'" in b.xid:
                raise errors.InvalidArgument(f"unexpected gid {b.xid!r}")
            raw = _raw(_fairy(b.conn))
            with raw.cursor() as c:
                c.execute(f"PREPARE TRANSACTION '{b.xid}'")
            b.state = "prepared"
            return
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


def _is_disconnect(engine: Engine, e: Exception, raw: Any) -> bool:
    try:
        return bool(engine.dialect.is_disconnect(e, raw, None))
    except Exception:
        return False


def _xa_end_read_only(raw, b: _Branch) -> None:
    """Ends an XA branch that wrote nothing (it is then registered read-only)."""
    with raw.cursor() as c:
        c.execute(f"XA END {b.xid}")
        b.state = "idle"
        c.execute(f"XA COMMIT {b.xid} ONE PHASE")
    b.state = "done"


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
