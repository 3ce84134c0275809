#!/usr/bin/env bash
# The demo's schema on MariaDB, as an application's migration would make it
# (MariaDB's DDL commits implicitly, so it cannot run inside a coordinated
# transaction); the demo client makes PostgreSQL's itself. Needs the env of
# deploy/local/start.sh (TXC_MARIADB_SOCKET).
set -euo pipefail
mariadb --no-defaults -S "${TXC_MARIADB_SOCKET:?source the env file of deploy/local/start.sh}" -u root txcoord -e \
  "CREATE TABLE IF NOT EXISTS demo_accounts (id INT PRIMARY KEY, owner VARCHAR(64) NOT NULL,
   balance DECIMAL(12,2) NOT NULL, CHECK (balance >= 0)) ENGINE=InnoDB"
