"""Typed exceptions mapped from txcoord's gRPC status codes (docs/design.md)."""
from __future__ import annotations

from typing import Optional

import grpc


class TxcoordError(Exception):
    """Base class of every error the txcoord client raises.

    ``code`` is the gRPC status code (``None`` for client-side errors),
    ``txn_id`` the transaction concerned when known.
    """

    code: Optional[grpc.StatusCode] = None

    def __init__(self, message: str, *, code: Optional[grpc.StatusCode] = None,
                 txn_id: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.txn_id = txn_id

    def __str__(self) -> str:
        s = self.message
        if self.code is not None:
            s = f"{self.code.name}: {s}"
        if self.txn_id:
            s += f" (txn {self.txn_id})"
        return s


class InvalidArgument(TxcoordError):
    """Bad request: unknown bind, bad SQL or parameter, bind without 2PC where one is needed."""
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(TxcoordError):
    """Unknown session or transaction."""
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(TxcoordError):
    """Wrong state: commit twice, execute after a failed statement, concurrent calls on a
    session or global transaction, joining after PrepareGlobal, RollbackGlobal of a
    transaction that committed."""
    code = grpc.StatusCode.FAILED_PRECONDITION


class TransactionAborted(TxcoordError):
    """The transaction was rolled back (a NO vote, deadlock, serialization failure,
    timeout, a branch not prepared at CommitGlobal or PrepareGlobal; CommitGlobal
    of a transaction already rolled back): nothing of it was committed; retry
    it whole. The message carries txcoord's reason."""
    code = grpc.StatusCode.ABORTED


class Unavailable(TxcoordError):
    """txcoord, a database or the journal could not be reached. For a commit the
    outcome may be unknown: ask :meth:`txcoord.Client.outcome`."""
    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(TxcoordError):
    """Session, connection or message-size limits."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(TxcoordError):
    """A timeout (the call's deadline or the transaction's)."""
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(TxcoordError):
    """No or an unknown identity (token or client certificate)."""
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(TxcoordError):
    """The identity may not use this bind, session or service."""
    code = grpc.StatusCode.PERMISSION_DENIED


class Unimplemented(TxcoordError):
    """The server does not implement this call or option."""
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(TxcoordError):
    """An internal error of txcoord or of the gRPC runtime."""
    code = grpc.StatusCode.INTERNAL


class OutcomeUnknown(TxcoordError):
    """A commit was sent but its outcome could not be learned; ask
    :meth:`txcoord.Client.outcome` with ``txn_id`` later."""


_BY_CODE = {cls.code: cls for cls in (
    InvalidArgument, NotFound, FailedPrecondition, TransactionAborted, Unavailable, ResourceExhausted,
    DeadlineExceeded, Unauthenticated, PermissionDenied, Unimplemented, Internal)}


def from_rpc_error(err: grpc.RpcError, txn_id: Optional[str] = None) -> TxcoordError:
    """Maps a ``grpc.RpcError`` to the matching :class:`TxcoordError` subclass."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    cls = _BY_CODE.get(code, TxcoordError)
    return cls(details or code.name, code=code, txn_id=txn_id)
