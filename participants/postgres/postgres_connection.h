// The PostgreSQL participant's connections (libpqxx with the libpq handle
// kept), the error guard around every call, and the conversion of values and
// results. Internal to participants/postgres/.
#ifndef TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_CONNECTION_H_
#define TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_CONNECTION_H_

#include <libpq-fe.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "participants/connection_pool.h"
#include "participants/participant.h"
#include "participants/sql_common.h"
#include "util/io_watchdog.h"

namespace txcoord::participants::postgres_internal {

// libpqxx 6's direct connection policy, keeping the libpq handle (the
// library keeps it private) for PQgetCancel.
class KeepHandlePolicy : public pqxx::connect_direct {
 public:
  explicit KeepHandlePolicy(const std::string& opts) : pqxx::connect_direct(opts) {}
  handle do_startconnect(handle orig) override { return handle_ = pqxx::connect_direct::do_startconnect(orig); }
  handle do_completeconnect(handle orig) override {
    return handle_ = pqxx::connect_direct::do_completeconnect(orig);
  }
  handle do_dropconnect(handle orig) noexcept override {
    handle_ = nullptr;
    return pqxx::connect_direct::do_dropconnect(orig);
  }
  handle do_disconnect(handle orig) noexcept override {
    handle_ = nullptr;
    return pqxx::connect_direct::do_disconnect(orig);
  }
  handle raw() const { return handle_; }

 private:
  handle handle_ = nullptr;
};

// pqxx::connection (basic_connection_base<connect_direct>) with the handle
// kept: the same construction order (the base gets the policy first).
class PgConn final : public pqxx::connection_base {
 public:
  explicit PgConn(const std::string& options)
      : pqxx::connection_base(policy_), options_(options), policy_(options_) {
    init();
  }
  ~PgConn() noexcept { close(); }
  PGconn* raw() const { return policy_.raw(); }

 private:
  std::string options_;  // before policy_, which keeps a reference
  KeepHandlePolicy policy_;
};

struct PgConnection {
  std::unique_ptr<PgConn> conn;
  // The connection's cancel key (PQgetCancel), usable without the
  // connection and after it is gone: Cancel sends it from a thread of its
  // own, so a server that does not answer holds up nobody.
  std::shared_ptr<PGcancel> cancel;
};

// What a participant and its branches share (branches may outlive it).
struct PgShared {
  BindOptions options;
  std::shared_ptr<ConnectionPool<PgConnection>> pool;
  // COMMIT / ROLLBACK PREPARED's reserve, used when `pool` is at its limit.
  // Calls waiting for the row locks of a prepared branch can hold every
  // pooled connection while the COMMIT PREPARED that would release those
  // locks waits for one: without a reserve, all of them would wait until
  // the acquire timeout. Finishing a prepared branch never waits for a row
  // lock, so the reserve's connections always come back soon.
  std::shared_ptr<ConnectionPool<PgConnection>> finish_pool;
  static constexpr int kFinishReserve = 2;
  absl::Mutex types_mu;
  absl::flat_hash_map<uint32_t, std::string> type_names ABSL_GUARDED_BY(types_mu);
  absl::Mutex decisions_mu;
  bool decisions_table_ready ABSL_GUARDED_BY(decisions_mu) = false;
};

// Runs `fn`, turning every libpqxx / std exception into a Status. Sets
// *broken when the connection can no longer be used.
// `conn`: the connection's libpq handle, when there is one: libpqxx
// reports every SQLSTATE of class 08 as broken_connection, also the 08P01
// (protocol violation) with which the server refuses a message it did not
// like — a parameter count that does not match the statement — and keeps
// the connection. That is the caller's mistake (INVALID_ARGUMENT), not a
// lost connection.
template <typename Fn>
absl::Status Guard(absl::string_view bind, SqlErrorContext context, bool* broken, Fn&& fn,
                   const std::function<PGconn*()>& conn = nullptr) {
  try {
    fn();
    return absl::OkStatus();
  } catch (const pqxx::too_many_connections& e) {
    *broken = true;
    return absl::ResourceExhaustedError(
        absl::StrCat("bind ", bind, ": SQLSTATE 53300: ", TrimRight(e.what())));
  } catch (const pqxx::broken_connection& e) {
    std::string what = TrimRight(e.what());
    if (PGconn* raw = conn ? conn() : nullptr; raw != nullptr && PQstatus(raw) == CONNECTION_OK &&
                                                  PQtransactionStatus(raw) != PQTRANS_UNKNOWN) {
      return absl::InvalidArgumentError(absl::StrCat("bind ", bind, ": SQLSTATE 08P01: ", what));
    }
    *broken = true;
    if (absl::StrContains(what, "too many clients") ||
        absl::StrContains(what, "remaining connection slots")) {
      return absl::ResourceExhaustedError(absl::StrCat("bind ", bind, ": SQLSTATE 53300: ", what));
    }
    return absl::UnavailableError(
        absl::StrCat("bind ", bind, ": connection to PostgreSQL lost: ", what));
  } catch (const pqxx::sql_error& e) {
    return StatusFromSqlstate(bind, e.sqlstate(), 0, e.what(), context);
  } catch (const pqxx::serialization_failure& e) {
    return StatusFromSqlstate(bind, "40001", 0, e.what(), context);
  } catch (const pqxx::deadlock_detected& e) {
    return StatusFromSqlstate(bind, "40P01", 0, e.what(), context);
  } catch (const pqxx::statement_completion_unknown& e) {
    *broken = true;
    return absl::UnavailableError(absl::StrCat(
        "bind ", bind, ": connection lost, statement outcome unknown: ", TrimRight(e.what())));
  } catch (const pqxx::transaction_rollback& e) {
    return StatusFromSqlstate(bind, "40000", 0, e.what(), context);
  } catch (const pqxx::in_doubt_error& e) {
    *broken = true;
    return absl::UnavailableError(
        absl::StrCat("bind ", bind, ": outcome unknown: ", TrimRight(e.what())));
  } catch (const std::exception& e) {
    // usage / conversion / internal errors: the connection's state is unknown.
    *broken = true;
    return absl::InternalError(absl::StrCat("bind ", bind, ": libpqxx: ", TrimRight(e.what())));
  } catch (...) {
    *broken = true;
    return absl::InternalError(absl::StrCat("bind ", bind, ": unknown exception"));
  }
}

// The error of a call whose reply did not come within `bound` (the
// watchdog closed its connection).
inline absl::Status NoReplyError(absl::string_view bind, absl::Duration bound) {
  return absl::UnavailableError(absl::StrCat("bind ", bind, ": PostgreSQL sent no reply within ",
                                             absl::FormatDuration(bound),
                                             " (timeouts.database_reply); the connection was closed"));
}

// Guard for a call on connection `c`, bounded by ReplyBound(options,
// `statement_limit`). A server that sends nothing back for that long
// has the connection shut down under the call (util::IoWatchdog), which
// then fails as a lost connection. A call that completed just as the
// watch fired keeps its result; the connection is given up either way.
template <typename Fn>
absl::Status GuardOn(const BindOptions& options, PgConnection& c, SqlErrorContext context, bool* broken,
                     Fn&& fn, absl::Duration statement_limit = absl::ZeroDuration()) {
  const absl::Duration bound = ReplyBound(options, statement_limit);
  util::IoWatchdog::Watch watch(c.conn->sock(), bound);
  absl::Status s = Guard(options.name, context, broken, std::forward<Fn>(fn), [&c] { return c.conn->raw(); });
  if (watch.Disarm()) {
    *broken = true;
    if (!s.ok()) {
      return NoReplyError(options.name, bound);
    }
  }
  return s;
}

// A new connection for `options` (connect_timeout from io_timeout), its
// cancel key kept, in UTC. UNAVAILABLE when unreachable, FAILED_PRECONDITION
// when the login or the connection string is refused.
absl::StatusOr<std::unique_ptr<PgConnection>> OpenConnection(const BindOptions& options);

// The text form of a parameter; nullopt for NULL.
std::optional<std::string> ParamText(const Value& v);

// INVALID_ARGUMENT naming the parameter when one's text form holds a NUL
// byte: PostgreSQL's text types cannot hold it, and libpq would cut the
// value short there (bytes travel hex-encoded, so they never do).
absl::Status CheckParams(absl::string_view bind, const std::vector<Value>& params);

// A libpqxx result as a ResultSet of at most `max_rows` rows (0: all);
// type names of types not built in are looked up once per bind.
ResultSet ToResultSet(PgShared& shared, pqxx::nontransaction& n, const pqxx::result& r, int max_rows);
// The same for a libpq result read on `c` (no libpqxx transaction object is
// open on it: a lookup opens its own).
ResultSet ToResultSet(PgShared& shared, PgConnection& c, const PGresult* r, int max_rows);

}  // namespace txcoord::participants::postgres_internal

#endif  // TXCOORD_PARTICIPANTS_POSTGRES_POSTGRES_CONNECTION_H_
