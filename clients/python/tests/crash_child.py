"""Child process of the crash test: begins a global transaction, prepares a
branch on PostgreSQL and one on MariaDB, registers both, says PREPARED and
waits to be killed (it never commits)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import psycopg2  # noqa: E402
import pymysql  # noqa: E402

import txcoord  # noqa: E402
from branch_helpers import prepare_maria, prepare_pg  # noqa: E402

address, pg_uri, maria_port, table, timeout = sys.argv[1:6]
client = txcoord.Client(address, timeout=20)
g = client.begin_global(["pg", "maria"], timeout=float(timeout))
print("TXN", g.txn_id, flush=True)
prepare_pg(psycopg2.connect(pg_uri), g.xids["pg"], [(f"INSERT INTO {table} VALUES (%s, %s)", (1, "pg"))])
client.register_branch(g.txn_id, "pg", g.xids["pg"])
prepare_maria(pymysql.connect(host="127.0.0.1", port=int(maria_port), user="txcoord", password="txcoord_local_pw",
                              database="txcoord"),
              g.xids["maria"], [(f"INSERT INTO {table} VALUES (%s, %s)", (1, "maria"))])
client.register_branch(g.txn_id, "maria", g.xids["maria"])
print("PREPARED", flush=True)
time.sleep(120)
