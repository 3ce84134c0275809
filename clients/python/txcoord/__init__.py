"""Python client of txcoord, a two-phase-commit transaction coordinator.

    import txcoord
    client = txcoord.Client("127.0.0.1:7600")
    with client.session() as s:
        s.execute("pg", "UPDATE accounts SET balance = balance - $1 WHERE id = $2", [10, 1])
        s.execute("maria", "UPDATE accounts SET balance = balance + ? WHERE id = ?", [10, 2])
        s.commit()

Installed (``pip install --no-build-isolation ./clients/python``), the package
carries its gRPC stubs. Used from the source tree, they are generated from the
repository's proto/ on first import (or by gen_stubs.sh) into txcoord/v1/,
which is not checked in.
"""
from . import _stubs

_stubs.ensure()

from .errors import (  # noqa: E402
    DeadlineExceeded, FailedPrecondition, Internal, InvalidArgument, NotFound, OutcomeUnknown, PermissionDenied,
    ResourceExhausted, TransactionAborted, TxcoordError, Unauthenticated, Unavailable, Unimplemented)
from .client import (  # noqa: E402
    BranchInfo, Client, GlobalTransaction, LastResourceDecision, Result, Session, TransactionInfo, TransactionResult,
    tls_credentials)
from .values import from_value, to_value  # noqa: E402

__all__ = [
    "Client", "Session", "Result", "TransactionInfo", "TransactionResult", "GlobalTransaction", "BranchInfo",
    "LastResourceDecision", "tls_credentials",
    "TxcoordError", "InvalidArgument", "NotFound", "FailedPrecondition", "TransactionAborted", "Unavailable",
    "ResourceExhausted", "DeadlineExceeded", "Unauthenticated", "PermissionDenied", "Unimplemented", "Internal",
    "OutcomeUnknown", "to_value", "from_value",
]
