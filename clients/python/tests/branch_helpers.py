"""Preparing branches by hand on the services' own connections (psycopg2,
pymysql) under the xids txcoord minted: what a service does with
TransactionService."""
from __future__ import annotations


def prepare_pg(pg_conn, gid: str, statements) -> None:
    """Runs statements and PREPARE TRANSACTION on a psycopg2 connection (autocommit off)."""
    with pg_conn.cursor() as c:
        for sql, params in statements:
            c.execute(sql, params)
        c.execute(f"PREPARE TRANSACTION '{gid}'")


def prepare_maria(my_conn, xa_literal: str, statements) -> None:
    """XA START/…/XA END/XA PREPARE on a pymysql connection, then closes it
    (a MariaDB session stays attached to its prepared branch)."""
    with my_conn.cursor() as c:
        c.execute(f"XA START {xa_literal}")
        for sql, params in statements:
            c.execute(sql, params)
        c.execute(f"XA END {xa_literal}")
        c.execute(f"XA PREPARE {xa_literal}")
    my_conn.close()
