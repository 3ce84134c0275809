#include "participants/odbc/odbc_dialect.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "participants/mariadb_common.h"
#include "participants/sql_common.h"
#include "util/failpoint.h"
#include "util/fiber.h"
#include "util/status_macros.h"

namespace txcoord::participants::odbc {
namespace {

absl::Status Decorate(absl::StatusCode code, absl::string_view bind, const Diagnostic& d) {
  return absl::Status(code, absl::StrCat("bind ", bind, ": SQLSTATE ", d.sqlstate, " (native ",
                                         d.native_error, "): ", d.message));
}

int64_t TimeoutMillis(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return 0;
  return std::max<int64_t>(1, absl::ToInt64Milliseconds(d));
}

bool Truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kBool: return v.bool_value;
    case Value::Kind::kInt64: return v.int_value != 0;
    case Value::Kind::kString:
    case Value::Kind::kDecimal: return !v.text.empty() && v.text != "0" && v.text != "f";
    default: return false;
  }
}

// Runs `sql` (one row, one integer) into c.server_session_id.
absl::Status ReadServerSessionId(OdbcConnection& c, const char* sql) {
  ExecOptions o;
  TXC_ASSIGN_OR_RETURN(ResultSet r, c.Execute(sql, {}, o));
  if (r.rows.size() == 1 && r.rows[0].size() == 1 && r.rows[0][0].kind == Value::Kind::kInt64) {
    c.server_session_id = r.rows[0][0].int_value;
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<std::string> MysqlInlinedSql(absl::string_view sql, const std::vector<Value>& params) {
  if (params.empty()) return std::nullopt;
  std::optional<MysqlInlined> inlined = InlineMysqlParameters(sql, params, MysqlPlainLiteral);
  if (!inlined) return std::nullopt;
  return std::move(inlined->sql);
}

absl::Status Dialect::MapError(absl::string_view bind, const Diagnostic& d,
                               SqlErrorContext context, bool connection_dead) const {
  if (connection_dead) return Decorate(absl::StatusCode::kUnavailable, bind, d);
  return StatusFromSqlstate(bind, d.sqlstate, d.native_error, d.message, context);
}

absl::StatusOr<Vote> Dialect::Prepare(OdbcConnection& c, const Xid&) const {
  return absl::FailedPreconditionError(absl::StrCat(
      "bind ", c.bind(), ": ", name(),
      " has no two-phase commit; it can only join a 2PC transaction as its last resource"));
}
absl::Status Dialect::CommitPrepared(OdbcConnection& c, const Xid&) const {
  return absl::FailedPreconditionError(
      absl::StrCat("bind ", c.bind(), ": ", name(), " has no prepared branches"));
}
absl::Status Dialect::RollbackPrepared(OdbcConnection& c, const Xid& xid) const {
  return CommitPrepared(c, xid);
}
absl::StatusOr<std::vector<PreparedBranch>> Dialect::ListPrepared(OdbcConnection&,
                                                                  absl::string_view) const {
  return std::vector<PreparedBranch>{};
}

namespace {

// ---------------------------------------------------------------- MariaDB
//
// XA START/END/PREPARE/COMMIT/ROLLBACK with hex-literal xids; autocommit
// stays on (it does not apply inside an XA transaction).
//
// Read-only vote: the session's row-change counters (Handler_write +
// Handler_update + Handler_delete, exact and per session, unlike
// information_schema.innodb_trx, which is a cache refreshed every 0.1 s)
// are read at Prepare and compared with a value read earlier on the same
// connection (at Begin, or at the previous Prepare). Counters only grow, so
// an older baseline can only make a read-only branch look written (it then
// prepares: safe), never the reverse. A branch that changed no row ends with
// XA COMMIT … ONE PHASE and votes kReadOnly.
absl::StatusOr<int64_t> MariadbWriteCounter(OdbcConnection& c) {
  TXC_ASSIGN_OR_RETURN(ResultSet rs, c.Execute(kMariadbWriteCounterSql, {}));
  if (rs.rows.empty() || rs.rows[0].empty() || rs.rows[0][0].kind != Value::Kind::kInt64) {
    return absl::InternalError(absl::StrCat("bind ", c.bind(), ": no Handler_* counters"));
  }
  return rs.rows[0][0].int_value;
}

}  // namespace

// Connector/ODBC's CONN_TIMEOUT / READ_TIMEOUT / WRITE_TIMEOUT (whole
// seconds; the client library's socket timeouts, the first one for the
// handshake too, which SQL_ATTR_LOGIN_TIMEOUT does not bound in 3.1): a
// server that stops answering fails the call with a lost connection
// instead of holding it. Keys the DSN sets are kept.
std::string MariadbDsnWithTimeouts(const std::string& dsn, absl::Duration io_timeout) {
  if (io_timeout <= absl::ZeroDuration() || io_timeout == absl::InfiniteDuration()) return dsn;
  const std::string lower = absl::AsciiStrToLower(dsn);
  const int64_t seconds = std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(io_timeout, absl::Seconds(1))));
  std::string out = dsn;
  for (const char* key : {"CONN_TIMEOUT", "READ_TIMEOUT", "WRITE_TIMEOUT"}) {
    if (absl::StrContains(lower, absl::StrCat(absl::AsciiStrToLower(key), "="))) continue;
    absl::StrAppend(&out, out.empty() || out.back() == ';' ? "" : ";", key, "=", seconds);
  }
  return out;
}

namespace {

class MariadbDialect : public Dialect {
 public:
  const char* name() const override { return "mariadb"; }
  bool two_phase() const override { return true; }

  std::string AdjustDsn(const std::string& dsn, absl::Duration io_timeout) const override {
    return MariadbDsnWithTimeouts(dsn, io_timeout);
  }

  // A named lock per node id and bind (NodeClaimName: 24 characters, of
  // the 64 MariaDB allows), released by the server when the session ends.
  std::string ClaimNodeSql(absl::string_view node_id, absl::string_view bind) const override {
    return MariadbClaimNodeSql(node_id, bind);
  }
  std::string NodeClaimHolderSql(absl::string_view node_id, absl::string_view bind) const override {
    return MariadbNodeClaimHolderSql(node_id, bind);
  }
  std::string node_claim_kind() const override { return std::string(kMariadbNodeClaimKind); }

  std::optional<std::string> InlineParameters(absl::string_view sql,
                                              const std::vector<Value>& params) const override {
    return MysqlInlinedSql(sql, params);
  }

  absl::Status MapError(absl::string_view bind, const Diagnostic& d, SqlErrorContext context,
                        bool connection_dead) const override {
    return MariadbStatus(bind, d.sqlstate, d.native_error, d.message, context, connection_dead);
  }

  absl::Status OnConnect(OdbcConnection& c) const override {
    c.time_as_text = true;
    return ReadServerSessionId(c, "SELECT CONNECTION_ID()");
  }

  absl::Status Begin(OdbcConnection& c, const Xid& xid,
                     absl::Duration lock_timeout) const override {
    c.changed_rows = false;
    if (c.write_counter == -1) {
      absl::StatusOr<int64_t> counter = MariadbWriteCounter(c);
      if (!counter.ok() && c.broken()) return counter.status();
      c.write_counter = counter.ok() ? *counter : -1;  // -1: Prepare will not vote read-only
    }
    const int64_t ms = MariadbTimeoutMillis(lock_timeout);
    // The limits the session has already are kept while they are no longer
    // than this branch's and not much shorter (one round trip less for
    // most branches on a reused connection).
    if (!MariadbSessionLimitsCloseEnough(c.session_lock_timeout_ms, ms)) {
      TXC_RETURN_IF_ERROR(c.Run(MariadbSessionLimitsSql(ms)));
      c.session_lock_timeout_ms = ms;
    }
    return c.Run("XA START " + XaLiteral(xid));
  }

  bool close_after_prepare() const override { return true; }
  std::string CancelSql(int64_t session_id) const override { return absl::StrCat("KILL QUERY ", session_id); }
  std::string EndSessionSql(int64_t session_id) const override {
    return session_id > 0 ? absl::StrCat("KILL ", session_id) : "";
  }

  absl::StatusOr<Vote> Prepare(OdbcConnection& c, const Xid& xid) const override {
    const int64_t before = c.write_counter;
    c.write_counter = -1;
    bool wrote = true;
    if (c.changed_rows) {
      // A statement reported changed rows: it wrote. The probe (about half a
      // millisecond of the server's CPU) is skipped; the next branch here
      // starts without a baseline (-2).
      c.write_counter = -2;
    } else {
      absl::StatusOr<int64_t> now = MariadbWriteCounter(c);
      if (!now.ok() && c.broken()) return now.status();
      // Without a baseline (-1/-2) the branch may have written: it is
      // prepared. A branch that wrote nothing is then prepared empty, which
      // MariaDB keeps only while its session lives: phase 2 runs on this
      // same connection (the participant parks it), where XA COMMIT of an
      // empty prepared branch succeeds.
      wrote = before < 0 || !now.ok() || *now != before;
      if (now.ok()) c.write_counter = *now;  // the baseline of the next branch here
    }
    TXC_RETURN_IF_ERROR(c.Run("XA END " + XaLiteral(xid)));
    if (!wrote) {
      TXC_RETURN_IF_ERROR(c.Run("XA COMMIT " + XaLiteral(xid) + " ONE PHASE"));
      return Vote::kReadOnly;
    }
    TXC_FAILPOINT("participants.mariadb.before_prepare");
    TXC_RETURN_IF_ERROR(c.Run("XA PREPARE " + XaLiteral(xid)));
    return Vote::kPrepared;
  }

  absl::Status CommitOnePhase(OdbcConnection& c, const Xid& xid) const override {
    c.write_counter = -1;  // re-read at the next Begin
    TXC_RETURN_IF_ERROR(c.Run("XA END " + XaLiteral(xid)));
    return c.Run("XA COMMIT " + XaLiteral(xid) + " ONE PHASE");
  }

  absl::Status Rollback(OdbcConnection& c, const Xid& xid) const override {
    // XA END fails when the branch is already idle (or was rolled back by a
    // deadlock); XA ROLLBACK then decides.
    c.write_counter = -1;
    (void)c.Run("XA END " + XaLiteral(xid));
    absl::Status s = c.Run("XA ROLLBACK " + XaLiteral(xid), SqlErrorContext::kFinishPrepared);
    if (s.code() == absl::StatusCode::kNotFound) return absl::OkStatus();
    return s;
  }

  absl::Status CommitPrepared(OdbcConnection& c, const Xid& xid) const override {
    return FinishPrepared(c, "XA COMMIT ", xid);
  }
  absl::Status RollbackPrepared(OdbcConnection& c, const Xid& xid) const override {
    return FinishPrepared(c, "XA ROLLBACK ", xid);
  }

  // XAER_NOTA is NOT_FOUND only if XA RECOVER does not list the xid either:
  // a branch whose preparing session is still closing is listed but not yet
  // finishable (see close_after_prepare()); retried for up to 5 s, then
  // UNAVAILABLE (e.g. a live session of another client still holds it).
  absl::Status FinishPrepared(OdbcConnection& c, absl::string_view verb, const Xid& xid) const {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    absl::Duration pause = absl::Milliseconds(2);
    for (;;) {
      absl::Status s = c.Run(absl::StrCat(verb, XaLiteral(xid)), SqlErrorContext::kFinishPrepared);
      const std::string node = NodeIdOfGtrid(xid.gtrid);
      if (s.code() != absl::StatusCode::kNotFound || node.empty()) return s;
      TXC_ASSIGN_OR_RETURN(std::vector<PreparedBranch> listed, ListPrepared(c, node));
      bool still_there = false;
      for (const PreparedBranch& b : listed) still_there = still_there || b.xid == xid;
      if (!still_there) return s;
      if (absl::Now() + pause > deadline) {
        return absl::UnavailableError(absl::StrCat(
            "bind ", c.bind(), ": ", XidToString(xid),
            " is listed by XA RECOVER but still attached to a session: ", s.message()));
      }
      util::Sleep(pause);  // on a fiber, the fiber sleeps
      pause = std::min(pause * 2, absl::Milliseconds(100));
    }
  }

  // MariaDB Connector/ODBC 3.1.15 crashes the process on a plain
  // "XA RECOVER"; the same statement inside a stored procedure returns its
  // rows. The procedure is created in the DSN's database on first use.
  // XA RECOVER is server-wide: binds on databases of one server list the
  // same branches.
  absl::StatusOr<std::vector<PreparedBranch>> ListPrepared(
      OdbcConnection& c, absl::string_view node_id) const override {
    bool ready;
    {
      absl::MutexLock lock(&mu_);
      ready = recover_procedure_ready_;
    }
    if (!ready) {
      TXC_RETURN_IF_ERROR(
          c.Run("CREATE PROCEDURE IF NOT EXISTS txcoord_xa_recover() XA RECOVER"));
      absl::MutexLock lock(&mu_);
      recover_procedure_ready_ = true;
    }
    ExecOptions o;
    o.text_as_bytes = true;  // the data column holds raw gtrid+bqual bytes
    TXC_ASSIGN_OR_RETURN(ResultSet rs, c.Execute("CALL txcoord_xa_recover()", {}, o));
    std::vector<PreparedBranch> out;
    for (const auto& row : rs.rows) {
      // formatID, gtrid_length, bqual_length, data
      if (row.size() < 4 || row[0].kind != Value::Kind::kInt64) continue;
      if (!node_id.empty() && row[0].int_value != kTxcFormatId) continue;
      absl::StatusOr<Xid> xid = ParseXaRecoverRow(row[0].int_value, row[1].int_value, row[2].int_value, row[3].text);
      if (!xid.ok()) continue;
      PreparedBranch b;
      b.xid = *std::move(xid);
      if (!node_id.empty() && NodeIdOfGtrid(b.xid.gtrid) != node_id) continue;
      b.raw = XaLiteral(b.xid);
      out.push_back(std::move(b));
    }
    return out;
  }

  bool decisions_ddl_in_transaction() const override { return false; }
  absl::Status EnsureDecisionsTable(OdbcConnection& c) const override {
    return c.Run(kMariadbDecisionsTableDdl);
  }
  std::string DecisionsTableExistsSql() const override { return std::string(kMariadbDecisionsTableExistsSql); }

 private:
  mutable absl::Mutex mu_;
  mutable bool recover_procedure_ready_ ABSL_GUARDED_BY(mu_) = false;
};

// ---------------------------------------------------------------- PostgreSQL
//
// psqlODBC with autocommit on and the transaction driven by hand, with the
// same SQL as the libpqxx participant (see postgres/postgres_participant.h).
class PostgresDialect : public Dialect {
 public:
  const char* name() const override { return "postgresql"; }
  bool two_phase() const override { return true; }

  // The advisory lock of the libpqxx participant (the same SQL and key).
  std::string ClaimNodeSql(absl::string_view node_id, absl::string_view bind) const override {
    return PostgresNodeClaimSql(node_id, bind);
  }
  std::string NodeClaimHolderSql(absl::string_view node_id, absl::string_view bind) const override {
    return PostgresNodeClaimHolderSql(node_id, bind);
  }
  std::string node_claim_kind() const override { return "PostgreSQL advisory lock"; }

  absl::Status OnConnect(OdbcConnection& c) const override {
    TXC_RETURN_IF_ERROR(c.Run("SET TIME ZONE 'UTC'"));
    TXC_RETURN_IF_ERROR(c.Run(kPostgresClientCheckSql));
    return ReadServerSessionId(c, "SELECT pg_backend_pid()");
  }

  std::string CancelSql(int64_t session_id) const override {
    return absl::StrCat("SELECT pg_cancel_backend(", session_id, ")");
  }
  std::string EndSessionSql(int64_t session_id) const override {
    return session_id > 0 ? PostgresEndSessionSql(session_id) : "";
  }

  absl::Status Begin(OdbcConnection& c, const Xid&, absl::Duration lock_timeout) const override {
    const int64_t ms = TimeoutMillis(lock_timeout);
    TXC_RETURN_IF_ERROR(c.Run("BEGIN"));
    return c.Run(absl::StrCat("SELECT set_config('lock_timeout', '", ms,
                              "', true), set_config('statement_timeout', '", ms, "', true)"));
  }

  absl::StatusOr<Vote> Prepare(OdbcConnection& c, const Xid& xid) const override {
    TXC_ASSIGN_OR_RETURN(ResultSet rs,
                         c.Execute("SELECT txid_current_if_assigned() IS NULL", {}));
    const bool read_only = !rs.rows.empty() && Truthy(rs.rows[0][0]);
    if (read_only) {
      TXC_RETURN_IF_ERROR(c.Run("COMMIT"));
      return Vote::kReadOnly;
    }
    TXC_FAILPOINT("participants.postgres_odbc.before_prepare");
    TXC_RETURN_IF_ERROR(c.Run("PREPARE TRANSACTION " + QuoteSqlLiteral(PostgresGid(xid))));
    return Vote::kPrepared;
  }

  absl::Status CommitOnePhase(OdbcConnection& c, const Xid&) const override {
    return c.Run("COMMIT");
  }
  absl::Status Rollback(OdbcConnection& c, const Xid&) const override {
    return c.Run("ROLLBACK");
  }
  absl::Status CommitPrepared(OdbcConnection& c, const Xid& xid) const override {
    return c.Run("COMMIT PREPARED " + QuoteSqlLiteral(PostgresGid(xid)),
                 SqlErrorContext::kFinishPrepared);
  }
  absl::Status RollbackPrepared(OdbcConnection& c, const Xid& xid) const override {
    return c.Run("ROLLBACK PREPARED " + QuoteSqlLiteral(PostgresGid(xid)),
                 SqlErrorContext::kFinishPrepared);
  }

  absl::StatusOr<std::vector<PreparedBranch>> ListPrepared(
      OdbcConnection& c, absl::string_view node_id) const override {
    // node_id is [A-Za-z0-9-]: safe inside a literal.
    const std::string prefix = absl::StrCat(kPostgresGidPrefix, node_id, ".");
    const std::string mine =
        node_id.empty() ? "" : absl::StrCat("AND left(gid, ", prefix.size(), ") = ", QuoteSqlLiteral(prefix));
    TXC_ASSIGN_OR_RETURN(
        ResultSet rs,
        c.Execute(absl::StrCat("SELECT gid, (extract(epoch FROM prepared) * 1000000)::int8 "
                               "FROM pg_prepared_xacts WHERE database = current_database() ",
                               mine, " ORDER BY prepared"),
                  {}));
    std::vector<PreparedBranch> out;
    for (const auto& row : rs.rows) {
      absl::StatusOr<Xid> xid = ParsePostgresGid(row[0].text);
      if (node_id.empty() && !xid.ok()) xid = Xid{0, row[0].text, ""};  // another manager's gid
      if (!xid.ok() || (!node_id.empty() && NodeIdOfGtrid(xid->gtrid) != node_id)) continue;
      PreparedBranch b;
      b.xid = *std::move(xid);
      b.raw = row[0].text;
      if (row[1].kind == Value::Kind::kInt64) b.prepared_at = absl::FromUnixMicros(row[1].int_value);
      out.push_back(std::move(b));
    }
    return out;
  }

  bool decisions_ddl_in_transaction() const override { return true; }
  absl::Status EnsureDecisionsTable(OdbcConnection& c) const override {
    // Under a savepoint: a concurrent creator makes ours fail, and then the
    // table exists.
    TXC_RETURN_IF_ERROR(c.Run("SAVEPOINT txc_decisions_ddl"));
    absl::Status s = c.Run(
        "CREATE TABLE IF NOT EXISTS txcoord_decisions (txn_id text PRIMARY KEY, payload text, "
        "decided_at timestamptz DEFAULT now())");
    if (!s.ok()) {
      if (c.broken()) return s;
      return c.Run("ROLLBACK TO SAVEPOINT txc_decisions_ddl");
    }
    return c.Run("RELEASE SAVEPOINT txc_decisions_ddl");
  }
  std::string DecisionsTableExistsSql() const override {
    return "SELECT to_regclass('txcoord_decisions') IS NOT NULL";
  }
};

// Dialects whose local transaction is ODBC's own (autocommit off, SQLEndTran).
class OdbcTransactionDialect : public Dialect {
 public:
  absl::Status CommitOnePhase(OdbcConnection& c, const Xid&) const override {
    absl::Status s = c.EndTransaction(/*commit=*/true);
    if (!s.ok()) {
      (void)c.EndTransaction(/*commit=*/false);
      return s;
    }
    return c.SetAutocommit(true);
  }
  absl::Status Rollback(OdbcConnection& c, const Xid&) const override {
    TXC_RETURN_IF_ERROR(c.EndTransaction(/*commit=*/false));
    return c.SetAutocommit(true);
  }
};

// ---------------------------------------------------------------- SQLite
//
// No 2PC: last resource only. PRAGMA busy_timeout is the lock timeout (0:
// 100 s, sqliteodbc's default). sqliteodbc retries SQLITE_BUSY itself for
// its DSN "Timeout" (ms, default 100000) on top of SQLite's busy handler, so
// the pool connects with Timeout=1 unless the DSN sets one; a lock wait then
// ends about 0.5 s after lock_timeout.
class SqliteDialect : public OdbcTransactionDialect {
 public:
  const char* name() const override { return "sqlite"; }
  bool two_phase() const override { return false; }

  std::string AdjustDsn(const std::string& dsn, absl::Duration) const override {
    if (absl::StrContains(absl::AsciiStrToLower(dsn), "timeout=")) return dsn;
    return absl::StrCat(dsn, dsn.empty() || dsn.back() == ';' ? "" : ";", "Timeout=1");
  }

  absl::Status MapError(absl::string_view bind, const Diagnostic& d, SqlErrorContext context,
                        bool connection_dead) const override {
    // sqliteodbc reports most errors as HY000 with SQLite's result code.
    const std::string lower = absl::AsciiStrToLower(d.message);
    if (d.native_error == 5 || d.native_error == 6 || absl::StrContains(lower, "database is locked") ||
        absl::StrContains(lower, "database table is locked")) {
      return Decorate(absl::StatusCode::kAborted, bind, d);
    }
    if (d.native_error == 19 || absl::StrContains(lower, "constraint failed")) {
      return Decorate(absl::StatusCode::kFailedPrecondition, bind, d);
    }
    if (absl::StrContains(lower, "syntax error") || absl::StrContains(lower, "no such ")) {
      return Decorate(absl::StatusCode::kInvalidArgument, bind, d);
    }
    return Dialect::MapError(bind, d, context, connection_dead);
  }

  absl::Status OnConnect(OdbcConnection& c) const override {
    TXC_ASSIGN_OR_RETURN(ResultSet rs, c.Execute("PRAGMA busy_timeout", {}));
    // sqliteodbc waits through its own busy handler (DSN "Timeout", 100 s
    // by default), which PRAGMA busy_timeout reports as 0.
    const int64_t current = (!rs.rows.empty() && rs.rows[0][0].kind == Value::Kind::kInt64)
                                ? rs.rows[0][0].int_value
                                : 0;
    default_busy_ms_ = current > 0 ? current : 100000;
    return absl::OkStatus();
  }

  absl::Status Begin(OdbcConnection& c, const Xid&, absl::Duration lock_timeout) const override {
    int64_t ms = TimeoutMillis(lock_timeout);
    if (ms == 0) ms = default_busy_ms_;
    if (c.session_lock_timeout_ms != ms) {
      TXC_RETURN_IF_ERROR(c.Run(absl::StrCat("PRAGMA busy_timeout = ", ms)));
      c.session_lock_timeout_ms = ms;
    }
    return c.SetAutocommit(false);
  }

  bool decisions_ddl_in_transaction() const override { return true; }
  absl::Status EnsureDecisionsTable(OdbcConnection& c) const override {
    return c.Run(
        "CREATE TABLE IF NOT EXISTS txcoord_decisions (txn_id TEXT PRIMARY KEY, payload TEXT, "
        "decided_at TEXT DEFAULT CURRENT_TIMESTAMP)");
  }
  std::string DecisionsTableExistsSql() const override {
    return "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = "
           "'txcoord_decisions'";
  }

 private:
  mutable std::atomic<int64_t> default_busy_ms_{100000};
};

// ---------------------------------------------------------------- SQL Server
//
// UNTESTED (no SQL Server can be installed here): written from Microsoft's
// documentation. No 2PC without MSDTC: last resource only.
class SqlServerDialect : public OdbcTransactionDialect {
 public:
  const char* name() const override { return "sqlserver"; }
  bool two_phase() const override { return false; }

  absl::Status MapError(absl::string_view bind, const Diagnostic& d, SqlErrorContext context,
                        bool connection_dead) const override {
    switch (d.native_error) {
      case 1205:  // deadlock victim
      case 1222:  // lock request time out
        return Decorate(absl::StatusCode::kAborted, bind, d);
      default:
        return Dialect::MapError(bind, d, context, connection_dead);
    }
  }

  absl::Status Begin(OdbcConnection& c, const Xid&, absl::Duration lock_timeout) const override {
    const int64_t ms = MariadbTimeoutMillis(lock_timeout);
    // The limits the session has already are kept while they are no longer
    // than this branch's and not much shorter (one round trip less for
    // most branches on a reused connection).
    const int64_t have = c.session_lock_timeout_ms;
    const bool close_enough = have == ms || (ms > 0 && have > 0 && have <= ms && have * 5 >= ms * 4);
    if (!close_enough) {
      TXC_RETURN_IF_ERROR(c.Run(absl::StrCat("SET LOCK_TIMEOUT ", ms == 0 ? -1 : ms)));
      c.session_lock_timeout_ms = ms;
    }
    return c.SetAutocommit(false);
  }

  bool decisions_ddl_in_transaction() const override { return true; }
  absl::Status EnsureDecisionsTable(OdbcConnection& c) const override {
    return c.Run(
        "IF OBJECT_ID(N'txcoord_decisions', N'U') IS NULL CREATE TABLE txcoord_decisions "
        "(txn_id NVARCHAR(64) NOT NULL PRIMARY KEY, payload NVARCHAR(MAX), "
        "decided_at DATETIME2 NOT NULL DEFAULT SYSUTCDATETIME())");
  }
  std::string DecisionsTableExistsSql() const override {
    return "SELECT CASE WHEN OBJECT_ID(N'txcoord_decisions', N'U') IS NULL THEN 0 ELSE 1 END";
  }
};

// ---------------------------------------------------------------- Oracle
//
// UNTESTED (no Oracle server can be installed here): written from Oracle's
// DBMS_XA documentation. Each call is an anonymous PL/SQL block that turns
// a DBMS_XA return code other than XA_OK into an application error whose
// number carries the meaning:
//   ORA-20003  XA_PREPARE returned XA_RDONLY (3)   → vote kReadOnly
//   ORA-20004  XAER_NOTA (-4)                       → NOT_FOUND when finishing
//   ORA-20000  any other code (in the message)
// Needs: EXECUTE on DBMS_XA, SELECT on DBA_PENDING_TRANSACTIONS, FORCE ANY
// TRANSACTION (to finish branches from another session). Oracle has no
// session lock timeout: the branch timeout (XA_SETTIMEOUT, whole seconds)
// and Cancel() bound lock waits.
class OracleDialect : public Dialect {
 public:
  const char* name() const override { return "oracle"; }
  bool two_phase() const override { return true; }
  std::string HealthCheckSql() const override { return "SELECT 1 FROM DUAL"; }

  absl::Status MapError(absl::string_view bind, const Diagnostic& d, SqlErrorContext context,
                        bool connection_dead) const override {
    switch (d.native_error) {
      case 20004:
        return Decorate(context == SqlErrorContext::kFinishPrepared
                            ? absl::StatusCode::kNotFound
                            : absl::StatusCode::kFailedPrecondition,
                        bind, d);
      case 60:     // deadlock detected
      case 8177:   // cannot serialize access
      case 1013:   // user requested cancel
      case 24756:  // transaction does not exist (timed out and rolled back)
        return Decorate(absl::StatusCode::kAborted, bind, d);
      case 3113:   // end-of-file on communication channel
      case 3114:   // not connected
      case 3135:   // connection lost contact
      case 12541:  // no listener
        return Decorate(absl::StatusCode::kUnavailable, bind, d);
      default:
        return Dialect::MapError(bind, d, context, connection_dead);
    }
  }

  absl::Status Begin(OdbcConnection& c, const Xid& xid,
                     absl::Duration lock_timeout) const override {
    TXC_RETURN_IF_ERROR(c.SetAutocommit(false));
    const int64_t seconds =
        lock_timeout <= absl::ZeroDuration()
            ? 0
            : std::max<int64_t>(1, absl::ToInt64Seconds(absl::Ceil(lock_timeout, absl::Seconds(1))));
    std::string body;
    if (seconds > 0) {
      absl::StrAppend(&body, "rc := DBMS_XA.XA_SETTIMEOUT(", seconds, "); ", Check("XA_SETTIMEOUT"));
    }
    absl::StrAppend(&body, "rc := DBMS_XA.XA_START(", XidExpr(xid), ", DBMS_XA.TMNOFLAGS); ",
                    Check("XA_START"));
    return c.Run(Block(body));
  }

  absl::StatusOr<Vote> Prepare(OdbcConnection& c, const Xid& xid) const override {
    absl::Status s = c.Run(Block(absl::StrCat(
        "rc := DBMS_XA.XA_END(", XidExpr(xid), ", DBMS_XA.TMSUCCESS); ", Check("XA_END"),
        "rc := DBMS_XA.XA_PREPARE(", XidExpr(xid), "); ",
        "IF rc = DBMS_XA.XA_RDONLY THEN RAISE_APPLICATION_ERROR(-20003, 'txcoord: XA_RDONLY'); "
        "END IF; ",
        Check("XA_PREPARE"))));
    if (absl::StrContains(s.message(), "ORA-20003") || absl::StrContains(s.message(), "20003")) {
      (void)c.SetAutocommit(true);
      return Vote::kReadOnly;  // Oracle ended the read-only branch itself
    }
    TXC_RETURN_IF_ERROR(s);
    TXC_RETURN_IF_ERROR(c.SetAutocommit(true));
    return Vote::kPrepared;
  }

  absl::Status CommitOnePhase(OdbcConnection& c, const Xid& xid) const override {
    TXC_RETURN_IF_ERROR(c.Run(Block(absl::StrCat(
        "rc := DBMS_XA.XA_END(", XidExpr(xid), ", DBMS_XA.TMSUCCESS); ", Check("XA_END"),
        "rc := DBMS_XA.XA_COMMIT(", XidExpr(xid), ", TRUE); ", Check("XA_COMMIT")))));
    return c.SetAutocommit(true);
  }

  absl::Status Rollback(OdbcConnection& c, const Xid& xid) const override {
    (void)c.Run(Block(absl::StrCat("rc := DBMS_XA.XA_END(", XidExpr(xid),
                                   ", DBMS_XA.TMSUCCESS); ")));
    absl::Status s = c.Run(
        Block(absl::StrCat("rc := DBMS_XA.XA_ROLLBACK(", XidExpr(xid), "); ", Check("XA_ROLLBACK"))),
        SqlErrorContext::kFinishPrepared);
    if (s.code() == absl::StatusCode::kNotFound) s = absl::OkStatus();
    TXC_RETURN_IF_ERROR(s);
    return c.SetAutocommit(true);
  }

  absl::Status CommitPrepared(OdbcConnection& c, const Xid& xid) const override {
    return c.Run(
        Block(absl::StrCat("rc := DBMS_XA.XA_COMMIT(", XidExpr(xid), ", FALSE); ", Check("XA_COMMIT"))),
        SqlErrorContext::kFinishPrepared);
  }
  absl::Status RollbackPrepared(OdbcConnection& c, const Xid& xid) const override {
    return c.Run(
        Block(absl::StrCat("rc := DBMS_XA.XA_ROLLBACK(", XidExpr(xid), "); ", Check("XA_ROLLBACK"))),
        SqlErrorContext::kFinishPrepared);
  }

  absl::StatusOr<std::vector<PreparedBranch>> ListPrepared(
      OdbcConnection& c, absl::string_view node_id) const override {
    TXC_ASSIGN_OR_RETURN(
        ResultSet rs,
        c.Execute(absl::StrCat("SELECT FORMATID, RAWTOHEX(GLOBALID), RAWTOHEX(BRANCHID) "
                               "FROM DBA_PENDING_TRANSACTIONS",
                               node_id.empty() ? "" : absl::StrCat(" WHERE FORMATID = ", kTxcFormatId)),
                  {}));
    std::vector<PreparedBranch> out;
    for (const auto& row : rs.rows) {
      if (row.size() < 3) continue;
      PreparedBranch b;
      b.xid.format_id = row[0].kind == Value::Kind::kInt64 ? static_cast<int32_t>(row[0].int_value) : kTxcFormatId;
      b.xid.gtrid = absl::HexStringToBytes(row[1].text);
      b.xid.bqual = absl::HexStringToBytes(row[2].text);
      if (!node_id.empty() && NodeIdOfGtrid(b.xid.gtrid) != node_id) continue;
      b.raw = absl::StrCat(row[1].text, ".", row[2].text);
      out.push_back(std::move(b));
    }
    return out;
  }

  bool decisions_ddl_in_transaction() const override { return false; }
  absl::Status EnsureDecisionsTable(OdbcConnection& c) const override {
    // No CREATE TABLE IF NOT EXISTS before 23c: ignore ORA-00955 (exists).
    return c.Run(
        "BEGIN EXECUTE IMMEDIATE 'CREATE TABLE txcoord_decisions (txn_id VARCHAR2(64) PRIMARY "
        "KEY, payload CLOB, decided_at TIMESTAMP DEFAULT SYSTIMESTAMP)'; EXCEPTION WHEN OTHERS "
        "THEN IF SQLCODE != -955 THEN RAISE; END IF; END;");
  }
  std::string DecisionsTableExistsSql() const override {
    return "SELECT COUNT(*) FROM user_tables WHERE table_name = 'TXCOORD_DECISIONS'";
  }

 private:
  static std::string XidExpr(const Xid& xid) {
    return absl::StrCat("DBMS_XA_XID(", xid.format_id, ", HEXTORAW('",
                        absl::BytesToHexString(xid.gtrid), "'), HEXTORAW('",
                        absl::BytesToHexString(xid.bqual), "'))");
  }
  static std::string Check(absl::string_view call) {
    return absl::StrCat(
        "IF rc = DBMS_XA.XAER_NOTA THEN RAISE_APPLICATION_ERROR(-20004, 'txcoord: ", call,
        " XAER_NOTA'); ELSIF rc <> DBMS_XA.XA_OK THEN RAISE_APPLICATION_ERROR(-20000, "
        "'txcoord: ",
        call, " returned ' || rc); END IF; ");
  }
  static std::string Block(absl::string_view body) {
    return absl::StrCat("DECLARE rc PLS_INTEGER; BEGIN ", body, "END;");
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Dialect>> DialectForDbms(absl::string_view dbms_name) {
  const std::string lower = absl::AsciiStrToLower(dbms_name);
  if (absl::StrContains(lower, "mariadb") || absl::StrContains(lower, "mysql")) {
    return std::unique_ptr<Dialect>(new MariadbDialect());
  }
  if (absl::StrContains(lower, "postgres")) return std::unique_ptr<Dialect>(new PostgresDialect());
  if (absl::StrContains(lower, "sqlite")) return std::unique_ptr<Dialect>(new SqliteDialect());
  if (absl::StrContains(lower, "sql server")) {
    return std::unique_ptr<Dialect>(new SqlServerDialect());
  }
  if (absl::StrContains(lower, "oracle")) return std::unique_ptr<Dialect>(new OracleDialect());
  return absl::UnimplementedError(
      absl::StrCat("no txcoord dialect for the ODBC DBMS \"", dbms_name,
                   "\" (MariaDB/MySQL, PostgreSQL, Oracle, SQL Server, SQLite)"));
}

}  // namespace txcoord::participants::odbc
