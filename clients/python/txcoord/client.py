"""The txcoord client: sessions, one-call transactions, registered branches."""
from __future__ import annotations

import datetime as _dt
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import grpc
from google.protobuf import duration_pb2

from . import errors
from .values import from_value, to_value
from .v1 import common_pb2, session_pb2, session_pb2_grpc, transaction_pb2, transaction_pb2_grpc

T = TypeVar("T")
Params = Optional[Sequence[Any]]
#: One statement: SQL text alone, or ``(sql, params)``.
StatementLike = Union[str, Tuple[str, Params]]

_STATE_NAMES = {v: k for k, v in common_pb2.TransactionState.items()}
_BRANCH_STATE_NAMES = {v: k for k, v in common_pb2.BranchState.items()}


def _duration(seconds: Optional[float]) -> Optional[duration_pb2.Duration]:
    if seconds is None:
        return None
    d = duration_pb2.Duration()
    d.FromTimedelta(_dt.timedelta(seconds=seconds))
    return d


def _statement(sql: str, params: Params) -> common_pb2.Statement:
    return common_pb2.Statement(sql=sql, params=[to_value(p) for p in (params or ())])


class Result(Sequence[Tuple[Any, ...]]):
    """The rows of one statement, as tuples; ``columns`` names them.

    Behaves like a list of tuples; ``dicts()`` gives them as dicts,
    ``rows_affected`` is the database's count (-1 when unknown) and
    ``truncated`` says that more rows existed than ``max_rows`` allowed.
    """

    def __init__(self, rs: common_pb2.ResultSet) -> None:
        self.columns: List[str] = [c.name for c in rs.columns]
        self.column_types: List[str] = [c.type for c in rs.columns]
        self.rows: List[Tuple[Any, ...]] = [tuple(from_value(v) for v in r.values) for r in rs.rows]
        self.rows_affected: int = rs.rows_affected
        self.truncated: bool = rs.truncated

    def dicts(self) -> List[Dict[str, Any]]:
        return [dict(zip(self.columns, r)) for r in self.rows]

    def scalar(self) -> Any:
        """The first column of the first row, or None."""
        return self.rows[0][0] if self.rows and self.rows[0] else None

    def __getitem__(self, i):  # type: ignore[override]
        return self.rows[i]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Tuple[Any, ...]]:
        return iter(self.rows)

    def __repr__(self) -> str:
        return f"Result(columns={self.columns!r}, rows={self.rows!r}, rows_affected={self.rows_affected})"


@dataclass
class BranchInfo:
    bind: str
    xid: str
    state: str
    attempts: int = 0
    last_error: str = ""
    last_resource: bool = False


@dataclass
class TransactionInfo:
    """A transaction as txcoord reports it (``Transaction`` message)."""
    txn_id: str
    state: str  # "COMMITTED", "ABORTED", "COMMITTING", ...
    branches: List[BranchInfo] = field(default_factory=list)
    labels: Dict[str, str] = field(default_factory=dict)
    abort_reason: str = ""
    session_id: str = ""

    @property
    def committed(self) -> bool:
        """True when the decision is commit (COMMITTED, or COMMITTING: decided, phase 2 running)."""
        return self.state in ("COMMITTED", "COMMITTING")

    @property
    def aborted(self) -> bool:
        return self.state in ("ABORTED", "ABORTING")

    @classmethod
    def from_proto(cls, t: common_pb2.Transaction) -> "TransactionInfo":
        return cls(
            txn_id=t.txn_id, state=_STATE_NAMES.get(t.state, str(t.state)),
            branches=[BranchInfo(b.bind, b.xid, _BRANCH_STATE_NAMES.get(b.state, str(b.state)), b.attempts,
                                 b.last_error, b.last_resource) for b in t.branches],
            labels=dict(t.labels), abort_reason=t.abort_reason, session_id=t.session_id)


@dataclass
class TransactionResult:
    """What :meth:`Client.run_transaction` returns."""
    txn_id: str
    state: str
    results: List[Result]


@dataclass
class LastResourceDecision:
    """What :meth:`Client.prepare_global` returns: the decision row to insert,
    in the last resource's own local transaction, as
    ``INSERT INTO txcoord_decisions (txn_id, payload) VALUES (<txn_id>, <payload>)``.
    Committing that transaction is the commit decision."""
    txn_id: str
    payload: str

    #: The insert, with named parameters (SQLAlchemy ``text()`` style).
    INSERT_SQL = "INSERT INTO txcoord_decisions (txn_id, payload) VALUES (:txn_id, :payload)"

    def params(self) -> Dict[str, str]:
        """``{"txn_id": ..., "payload": ...}`` for :attr:`INSERT_SQL`."""
        return {"txn_id": self.txn_id, "payload": self.payload}


@dataclass
class GlobalTransaction:
    """A global transaction begun with :meth:`Client.begin_global`: ``xids`` maps
    each bind to the identifier to prepare under, in that bind's dialect (a
    PostgreSQL gid for ``PREPARE TRANSACTION '<gid>'``, or an XA literal
    ``X'..',X'..',<formatID>`` for ``XA START/END/PREPARE <literal>``).

    The methods call the :class:`Client` that began it, with this ``txn_id``
    (and keep ``xids`` up to date for :meth:`add_branch`).
    """
    txn_id: str
    xids: Dict[str, str]
    client: Optional["Client"] = field(default=None, repr=False, compare=False)

    def _c(self) -> "Client":
        if self.client is None:
            raise errors.TxcoordError("this GlobalTransaction has no client: use the Client's methods")
        return self.client

    def add_branch(self, bind: str) -> str:
        """See :meth:`Client.add_branch`; records the xid in ``xids``."""
        xid = self._c().add_branch(self.txn_id, bind)
        self.xids[bind] = xid
        return xid

    def register(self, bind: str, xid: Optional[str] = None, *, read_only: bool = False) -> None:
        """See :meth:`Client.register_branch` (``xid`` defaults to ``xids[bind]``)."""
        self._c().register_branch(self.txn_id, bind, xid if xid is not None else self.xids[bind],
                                  read_only=read_only)

    def execute(self, bind: str, sql: str, params: Params = None, *, max_rows: int = 0) -> Result:
        """Runs one statement through txcoord; see :meth:`Client.execute_global`."""
        return self._c().execute_global(self.txn_id, bind, [(sql, params)], max_rows=max_rows)[0]

    def execute_many(self, bind: str, statements: Iterable[StatementLike], *, max_rows: int = 0) -> List[Result]:
        """See :meth:`Client.execute_global`."""
        return self._c().execute_global(self.txn_id, bind, statements, max_rows=max_rows)

    def prepare_global(self, last_resource_bind: str) -> LastResourceDecision:
        """See :meth:`Client.prepare_global`."""
        return self._c().prepare_global(self.txn_id, last_resource_bind)

    def commit(self) -> "TransactionInfo":
        """See :meth:`Client.commit_global`."""
        return self._c().commit_global(self.txn_id)

    def rollback(self) -> "TransactionInfo":
        """See :meth:`Client.rollback_global`."""
        return self._c().rollback_global(self.txn_id)


def tls_credentials(ca_file: Optional[str] = None, cert_file: Optional[str] = None,
                    key_file: Optional[str] = None) -> grpc.ChannelCredentials:
    """``grpc.ssl_channel_credentials`` from PEM files: ``ca_file`` verifies
    txcoord's certificate (None: the system's roots); ``cert_file`` and
    ``key_file`` are the client certificate for mutual TLS."""
    def read(path: Optional[str]) -> Optional[bytes]:
        if path is None:
            return None
        with open(path, "rb") as f:
            return f.read()
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file go together")
    return grpc.ssl_channel_credentials(root_certificates=read(ca_file), private_key=read(key_file),
                                        certificate_chain=read(cert_file))


class Client:
    """A connection to one txcoord.

    ``target``: "host:port". ``credentials``: ``grpc.ChannelCredentials`` for TLS
    (:func:`tls_credentials` or ``grpc.ssl_channel_credentials(...)``); None
    for a plaintext channel.
    ``token``: a bearer token sent as ``authorization: Bearer <token>``.
    ``timeout``: the per-call deadline in seconds. Idempotent calls are
    retried up to ``retries`` times on UNAVAILABLE, with jittered exponential
    backoff starting at ``backoff`` seconds.
    """

    def __init__(self, target: str, credentials: Optional[grpc.ChannelCredentials] = None,
                 token: Optional[str] = None, *, timeout: float = 30.0, retries: int = 4,
                 backoff: float = 0.1, options: Optional[Sequence[Tuple[str, Any]]] = None) -> None:
        self.target = target
        opts = list(options or [])
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=opts)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=opts)
        self._metadata: Tuple[Tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sessions = session_pb2_grpc.SessionServiceStub(self._channel)
        self._txs = transaction_pb2_grpc.TransactionServiceStub(self._channel)

    # ------------------------------------------------------------ plumbing
    def _call(self, method: Callable[..., T], request: Any, *, idempotent: bool,
              txn_id: Optional[str] = None, timeout: Optional[float] = None) -> T:
        attempt = 0
        while True:
            try:
                return method(request, timeout=timeout or self.timeout, metadata=self._metadata)
            except grpc.RpcError as e:
                err = errors.from_rpc_error(e, txn_id)
                if idempotent and isinstance(err, errors.Unavailable) and attempt < self.retries:
                    delay = self.backoff * (2 ** attempt)
                    time.sleep(delay * (0.5 + random.random()))
                    attempt += 1
                    continue
                raise err from None

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Blocks until the channel is connected (raises Unavailable after ``timeout``)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise errors.Unavailable(f"txcoord at {self.target} not reachable within {timeout}s") from None

    # ------------------------------------------------------------ sessions
    def session(self, binds: Optional[Sequence[str]] = None, *, transaction_timeout: Optional[float] = None,
                idle_timeout: Optional[float] = None, labels: Optional[Mapping[str, str]] = None) -> "Session":
        """Opens a session (use it as a context manager).

        ``binds``: the binds the session may use (None: all the identity may use).
        """
        req = session_pb2.OpenSessionRequest(binds=list(binds or ()), labels=dict(labels or {}))
        if transaction_timeout is not None:
            req.transaction_timeout.CopyFrom(_duration(transaction_timeout))
        if idle_timeout is not None:
            req.idle_timeout.CopyFrom(_duration(idle_timeout))
        # A retried OpenSession after a lost reply leaves at most an idle
        # session behind, which txcoord closes at its idle timeout.
        resp = self._call(self._sessions.OpenSession, req, idempotent=True)
        return Session(self, resp.session_id)

    def run_transaction(self, work: Union[Mapping[str, Sequence[StatementLike]], Sequence[Tuple[str, str, Params]]],
                        *, timeout: Optional[float] = None, labels: Optional[Mapping[str, str]] = None,
                        idempotency_key: Optional[str] = None, max_rows: int = 0) -> TransactionResult:
        """Runs a whole transaction in one call and commits it.

        ``work``: ``{bind: [sql | (sql, params), ...]}`` or a list of
        ``(bind, sql, params)`` (consecutive statements of one bind are
        grouped). The binds run at the same time, each bind's statements in
        order: transactions that lock the same rows in two databases in
        opposite orders can wait on each other until a timeout (no database
        sees such a deadlock; see docs/design.md). An idempotency key (a fresh
        UUID unless given) makes the call safe to retry after a lost reply:
        it is retried on UNAVAILABLE and returns the recorded outcome.
        Raises :class:`TransactionAborted` when the transaction was rolled back.
        """
        groups: List[session_pb2.BindWork] = []
        if isinstance(work, Mapping):
            for bind, stmts in work.items():
                bw = session_pb2.BindWork(bind=bind)
                for s in stmts:
                    sql, params = (s, None) if isinstance(s, str) else s
                    bw.statements.append(_statement(sql, params))
                groups.append(bw)
        else:
            for bind, sql, params in work:
                if not groups or groups[-1].bind != bind:
                    groups.append(session_pb2.BindWork(bind=bind))
                groups[-1].statements.append(_statement(sql, params))
        req = session_pb2.RunTransactionRequest(work=groups, labels=dict(labels or {}),
                                                idempotency_key=idempotency_key or uuid.uuid4().hex,
                                                max_rows=max_rows)
        if timeout is not None:
            req.timeout.CopyFrom(_duration(timeout))
        resp = self._call(self._sessions.RunTransaction, req, idempotent=True)
        return TransactionResult(resp.txn_id, _STATE_NAMES.get(resp.state, str(resp.state)),
                                 [Result(r) for r in resp.results])

    def outcome(self, txn_id: str) -> TransactionInfo:
        """The recorded state of a transaction — after a lost commit reply, a
        crash of the client or of txcoord. ``.committed`` / ``.aborted`` tell
        the decision (an id txcoord never decided is reported ABORTED)."""
        return self.get_transaction(txn_id)

    def get_transaction(self, txn_id: str) -> TransactionInfo:
        """``GetTransaction`` (retried on UNAVAILABLE)."""
        t = self._call(self._sessions.GetTransaction, common_pb2.GetTransactionRequest(txn_id=txn_id),
                       idempotent=True, txn_id=txn_id)
        return TransactionInfo.from_proto(t)

    # ------------------------------------------------------------ registered branches
    def begin_global(self, binds: Sequence[str] = (), *, timeout: Optional[float] = None,
                     labels: Optional[Mapping[str, str]] = None) -> GlobalTransaction:
        """``BeginGlobal``: a txn id and one xid per bind named. Every bind
        named must then be prepared and registered before :meth:`commit_global`
        (a named branch never registered makes the commit ABORTED). ``binds``
        may be empty: :meth:`add_branch` adds binds as the work reaches them.
        If nobody commits, txcoord rolls everything back at ``timeout``
        (seconds). Binds without two-phase commit cannot be named
        (:class:`InvalidArgument`): use :meth:`execute_global` or
        :meth:`prepare_global` for them."""
        req = transaction_pb2.BeginGlobalRequest(binds=list(binds), labels=dict(labels or {}))
        if timeout is not None:
            req.timeout.CopyFrom(_duration(timeout))
        # A retry after a lost reply leaves an empty global transaction that
        # txcoord rolls back at its timeout: harmless.
        resp = self._call(self._txs.BeginGlobal, req, idempotent=True)
        return GlobalTransaction(resp.txn_id, {x.bind: x.xid for x in resp.xids}, client=self)

    def add_branch(self, txn_id: str, bind: str) -> str:
        """``AddBranch``: the xid of a service branch on ``bind`` that was not
        named at :meth:`begin_global` (same format as ``GlobalTransaction.xids``).
        Asked again for the same bind, the same xid (retried on UNAVAILABLE).
        Like a named branch, it must then be registered (prepared, or
        ``read_only``) before :meth:`commit_global`. A bind without two-phase
        commit: :class:`InvalidArgument`."""
        resp = self._call(self._txs.AddBranch, transaction_pb2.AddBranchRequest(txn_id=txn_id, bind=bind),
                          idempotent=True, txn_id=txn_id)
        return resp.xid

    def register_branch(self, txn_id: str, bind: str, xid: str, *, read_only: bool = False) -> None:
        """``RegisterBranch`` after the branch was prepared under ``xid`` (idempotent).

        ``read_only=True``: the branch wrote nothing and the caller already
        ended it itself (MariaDB: ``XA END`` then ``XA COMMIT <xid> ONE PHASE``
        or ``XA ROLLBACK``; PostgreSQL: ``COMMIT``/``ROLLBACK``); txcoord leaves
        it out of the decision. A branch left prepared but registered read-only
        becomes an orphan that recovery rolls back."""
        req = transaction_pb2.RegisterBranchRequest(txn_id=txn_id, bind=bind, xid=xid, read_only=read_only)
        self._call(self._txs.RegisterBranch, req, idempotent=True, txn_id=txn_id)

    def execute_global(self, txn_id: str, bind: str, statements: Iterable[StatementLike], *,
                       max_rows: int = 0) -> List[Result]:
        """``Execute`` in a global transaction: txcoord runs ``statements`` itself,
        in order, on ``bind`` (which must not be a service branch of this
        transaction) and commits them with the rest at :meth:`commit_global` —
        a bind without two-phase commit as the last resource. Placeholders as
        in :meth:`Session.execute`. Never retried (not idempotent). A failed
        statement leaves the transaction failed: only :meth:`rollback_global`
        remains. One call at a time per transaction."""
        stmts = [_statement(s, None) if isinstance(s, str) else _statement(s[0], s[1]) for s in statements]
        req = transaction_pb2.GlobalExecuteRequest(txn_id=txn_id, bind=bind, statements=stmts, max_rows=max_rows)
        resp = self._call(self._txs.Execute, req, idempotent=False, txn_id=txn_id)
        return [Result(r) for r in resp.results]

    def prepare_global(self, txn_id: str, last_resource_bind: str) -> LastResourceDecision:
        """``PrepareGlobal`` for a bind without two-phase commit that the caller
        writes on its own connection (its last resource; ``last_resource_bind``
        is txcoord's bind on that database).

        txcoord checks every service branch is registered and prepared (else
        :class:`TransactionAborted`, everything rolled back), creates the
        ``txcoord_decisions`` table there if missing and returns the decision
        row. Then, in that order: insert the row in the last resource's own
        open transaction (:attr:`LastResourceDecision.INSERT_SQL`), commit it
        — that commit is the decision — and call :meth:`commit_global`. If the
        caller dies before its commit, txcoord rolls everything back at the
        timeout (its late insert then fails on the duplicate key); after it,
        txcoord commits. Nothing may join the transaction afterwards.

        Retried on UNAVAILABLE; a retry after a lost reply can answer
        FAILED_PRECONDITION (the transaction is already preparing): roll back."""
        req = transaction_pb2.PrepareGlobalRequest(txn_id=txn_id, last_resource_bind=last_resource_bind)
        resp = self._call(self._txs.PrepareGlobal, req, idempotent=True, txn_id=txn_id)
        return LastResourceDecision(resp.txn_id or txn_id, resp.payload)

    def commit_global(self, txn_id: str) -> TransactionInfo:
        """``CommitGlobal``: txcoord checks every branch is prepared, journals the
        decision and commits them. Returns the transaction (COMMITTED, or
        COMMITTING when phase 2 continues in the background); a retry, or a
        call for a transaction that already committed, returns the recorded
        outcome. Raises :class:`TransactionAborted` (with txcoord's reason)
        when it was — or had already been — rolled back, and
        :class:`OutcomeUnknown` when the reply was lost and the outcome could
        not be asked (call :meth:`outcome` later)."""
        req = transaction_pb2.CommitGlobalRequest(txn_id=txn_id)
        try:
            t = self._call(self._txs.CommitGlobal, req, idempotent=True, txn_id=txn_id)
        except errors.NotFound:
            # A transaction txcoord no longer holds in memory (an ended one
            # answers ABORTED or its recorded outcome): ask for the outcome.
            info = self._outcome_after_commit(txn_id)
            if info.committed:
                return info
            raise errors.TransactionAborted(info.abort_reason or "aborted", txn_id=txn_id) from None
        except (errors.Unavailable, errors.DeadlineExceeded) as e:
            info = self._outcome_after_commit(txn_id, cause=e)
            if info.committed:
                return info
            if info.aborted:
                raise errors.TransactionAborted(info.abort_reason or "aborted", txn_id=txn_id) from e
            raise errors.OutcomeUnknown(f"commit sent, transaction is {info.state}: ask outcome() later",
                                        txn_id=txn_id) from e
        return TransactionInfo.from_proto(t)

    def _outcome_after_commit(self, txn_id: str, cause: Optional[Exception] = None) -> TransactionInfo:
        try:
            return self.get_transaction(txn_id)
        except errors.TxcoordError as e:
            raise errors.OutcomeUnknown(f"commit outcome unknown ({cause or e}); ask outcome() later",
                                        txn_id=txn_id) from e

    def rollback_global(self, txn_id: str) -> TransactionInfo:
        """``RollbackGlobal``: rolls back every branch under the minted xids,
        registered or not. Returns the transaction (ABORTED), also when it had
        already been rolled back. Raises :class:`FailedPrecondition` when it
        had committed — also when the caller's last resource committed its
        decision row after :meth:`prepare_global`."""
        try:
            t = self._call(self._txs.RollbackGlobal, transaction_pb2.RollbackGlobalRequest(txn_id=txn_id),
                           idempotent=True, txn_id=txn_id)
        except errors.NotFound:
            return self.get_transaction(txn_id)
        return TransactionInfo.from_proto(t)


class Session:
    """A txcoord session: statements on any bind, one transaction at a time,
    committed atomically across the binds it touched.

    Use as a context manager: leaving the block commits nothing by itself —
    an uncommitted transaction is rolled back and the session closed.
    """

    def __init__(self, client: Client, session_id: str) -> None:
        self._client = client
        self.session_id = session_id
        #: The current (or last) transaction's id, known after the first execute.
        self.txn_id: Optional[str] = None
        self._active = False
        self._closed = False

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()

    def execute(self, bind: str, sql: str, params: Params = None, *, max_rows: int = 0) -> Result:
        """Runs one statement on ``bind`` (placeholders: ``$1..$n`` on PostgreSQL
        binds, ``?`` on ODBC binds) and returns its rows."""
        return self.execute_many(bind, [(sql, params)], max_rows=max_rows)[0]

    def execute_many(self, bind: str, statements: Iterable[StatementLike], *, max_rows: int = 0) -> List[Result]:
        """Runs statements in order on ``bind`` in one round trip; stops at the first error."""
        stmts = [_statement(s, None) if isinstance(s, str) else _statement(s[0], s[1]) for s in statements]
        req = session_pb2.ExecuteRequest(session_id=self.session_id, bind=bind, statements=stmts, max_rows=max_rows)
        try:
            resp = self._client._call(self._client._sessions.Execute, req, idempotent=False, txn_id=self.txn_id)
        except errors.TransactionAborted:
            self._active = False
            raise
        self.txn_id = resp.txn_id or self.txn_id
        self._active = True
        return [Result(r) for r in resp.results]

    def begin(self) -> str:
        """Begins a transaction explicitly (optional) and returns its id."""
        resp = self._client._call(self._client._sessions.Begin,
                                  session_pb2.BeginRequest(session_id=self.session_id), idempotent=False)
        self.txn_id = resp.txn_id
        self._active = True
        return resp.txn_id

    def commit(self) -> str:
        """Commits every bind touched atomically; returns the state ("COMMITTED",
        or "COMMITTING" when phase 2 continues after the reply). Retried on
        UNAVAILABLE with the txn id, which txcoord answers with the recorded
        outcome. Raises :class:`TransactionAborted` if rolled back, and
        :class:`OutcomeUnknown` if the outcome could not be learned."""
        txn_id = self.txn_id
        req = session_pb2.CommitRequest(session_id=self.session_id, txn_id=txn_id or "")
        try:
            resp = self._client._call(self._client._sessions.Commit, req, idempotent=bool(txn_id), txn_id=txn_id)
        except (errors.Unavailable, errors.DeadlineExceeded) as e:
            if not txn_id:
                raise
            self._active = False
            info = self._client._outcome_after_commit(txn_id, cause=e)
            if info.committed:
                return info.state
            if info.aborted:
                raise errors.TransactionAborted(info.abort_reason or "aborted", txn_id=txn_id) from e
            raise errors.OutcomeUnknown(f"commit sent, transaction is {info.state}", txn_id=txn_id) from e
        except errors.TransactionAborted:
            self._active = False
            raise
        self._active = False
        return _STATE_NAMES.get(resp.state, str(resp.state))

    def rollback(self) -> None:
        """Rolls back the current transaction (nothing to do when none is active)."""
        req = session_pb2.RollbackRequest(session_id=self.session_id)
        self._client._call(self._client._sessions.Rollback, req, idempotent=True, txn_id=self.txn_id)
        self._active = False

    def close(self) -> None:
        """Closes the session; txcoord rolls back an uncommitted transaction."""
        if self._closed:
            return
        self._closed = True
        try:
            self._client._call(self._client._sessions.CloseSession,
                               session_pb2.CloseSessionRequest(session_id=self.session_id), idempotent=True)
        except errors.NotFound:
            pass
