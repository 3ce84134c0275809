"""The client's credentials against a txcoord with TLS and bearer tokens
(certificates made with openssl in the test's temp dir)."""
from __future__ import annotations

import hashlib
import subprocess
import uuid

import grpc
import pytest

import txcoord
from conftest import Txcoord

TOKEN = "app-token-" + uuid.uuid4().hex


def make_certificates(d) -> dict:
    """A CA, and a server certificate it signs for 127.0.0.1."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=60)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=txcoord test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return {name: str(d / name) for name in ("ca.pem", "server.pem", "server.key")}


@pytest.fixture(scope="module")
def secure_txcoord(databases, tmp_path_factory):
    certs = make_certificates(tmp_path_factory.mktemp("certs"))
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    security = f"""tls: {{cert: {certs['server.pem']}, key: {certs['server.key']}}}
auth:
  tokens: {{{digest}: orders-service}}
  policies:
    - {{identity: orders-service, role: client, binds: [pg, maria]}}"""
    t = Txcoord(databases, str(tmp_path_factory.mktemp("txcoord-auth")), "pyauth-" + uuid.uuid4().hex[:8],
                security=security)
    t.start()
    try:
        yield t, certs
    finally:
        t.stop()


def test_tls_and_token_are_accepted(secure_txcoord, tables):
    t, certs = secure_txcoord
    with txcoord.Client(t.address, credentials=txcoord.tls_credentials(ca_file=certs["ca.pem"]), token=TOKEN,
                        timeout=20) as c:
        c.wait_ready(10)
        with c.session() as s:
            s.execute("pg", f"INSERT INTO {tables} VALUES ($1, $2)", [1, "over tls"])
            s.execute("maria", f"INSERT INTO {tables} VALUES (?, ?)", [1, "over tls"])
            assert s.commit() in ("COMMITTED", "COMMITTING")
        g = c.begin_global(timeout=10)
        assert g.add_branch("maria").startswith("X'")
        assert g.rollback().aborted
        with pytest.raises(txcoord.PermissionDenied):
            c.session(["maria2"])  # not among this identity's binds


@pytest.mark.parametrize("token", ["wrong-" + uuid.uuid4().hex, None])
def test_wrong_or_missing_token_is_unauthenticated(secure_txcoord, token):
    t, certs = secure_txcoord
    with txcoord.Client(t.address, credentials=txcoord.tls_credentials(ca_file=certs["ca.pem"]), token=token,
                        timeout=10) as c:
        with pytest.raises(txcoord.Unauthenticated):
            c.session()
        with pytest.raises(txcoord.Unauthenticated):
            c.begin_global(timeout=10)
        with pytest.raises(txcoord.Unauthenticated):
            c.run_transaction({"pg": ["SELECT 1"]})


def test_plaintext_or_untrusted_certificate_cannot_connect(secure_txcoord):
    t, _ = secure_txcoord
    with txcoord.Client(t.address, token=TOKEN, timeout=3, retries=0) as c:
        with pytest.raises(txcoord.Unavailable):
            c.session()
    # The system's roots do not know the test CA.
    with txcoord.Client(t.address, credentials=grpc.ssl_channel_credentials(), token=TOKEN, timeout=3,
                        retries=0) as c:
        with pytest.raises(txcoord.Unavailable):
            c.session()
