#include "participants/postgres/postgres_batch.h"

#include <libpq-fe.h>

#include <algorithm>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "participants/sql_common.h"
#include "util/io_watchdog.h"

namespace txcoord::participants::postgres_internal {

namespace {

// Run after a batch's statements, in the same round trip: fails (division
// by zero, which stops the rest of the pipeline, PREPARE or COMMIT included)
// when the statements ended the branch's transaction — a SET LOCAL lasts
// until its transaction ends, also through COMMIT AND CHAIN.
constexpr absl::string_view kBranchOpenCheckSql =
    "SELECT 1 / coalesce(current_setting('txcoord.branch', true) = 'open', false)::int";

struct ClearResult {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ClearResult>;

}  // namespace

std::vector<std::string> BeginStatements(absl::Duration lock_timeout) {
  int64_t ms = lock_timeout <= absl::ZeroDuration()
                   ? 0
                   : std::max<int64_t>(1, absl::ToInt64Milliseconds(lock_timeout));
  // One statement for the three settings (set_config(…, true) is SET
  // LOCAL): each statement of a batch costs the server a parse and an
  // execution of its own.
  return {"BEGIN", absl::StrCat("SELECT set_config('lock_timeout', '", ms, "', true), set_config('statement_timeout', '",
                                ms, "', true), set_config('txcoord.branch', 'open', true)")};
}

SentBatch::SentBatch(PgShared& shared, PgConnection& c, const std::vector<std::string>& begin,
                     const std::vector<std::string>& sqls, const std::vector<Statement>& statements,
                     const std::vector<std::string>& tail, absl::Duration statement_limit)
    : shared_(shared), c_(c), statements_(statements.size()), bound_(ReplyBound(shared.options, statement_limit)) {
  PGconn* raw = c_.conn->raw();
  const std::vector<std::optional<std::string>> none;
  bool sent = raw != nullptr && PQenterPipelineMode(raw) == 1;
  for (const std::string& q : begin) sent = sent && Send(q, none, kBeginQueries, false);
  for (size_t i = 0; i < statements.size() && sent; ++i) {
    std::vector<std::optional<std::string>> params;
    params.reserve(statements[i].second.size());
    for (const Value& v : statements[i].second) params.push_back(ParamText(v));
    sent = Send(sqls[i], params, static_cast<int>(i), true);
  }
  sent = sent && Send(std::string(kBranchOpenCheckSql), none, kBranchCheck, false);
  for (size_t k = 0; k < tail.size(); ++k) sent = sent && Send(tail[k], none, kFirstTail - static_cast<int>(k), false);
  // The Sync ends the pipeline and sends what libpq still buffers.
  sent = sent && PQpipelineSync(raw) == 1;
  if (!sent) {
    send_error_ = absl::UnavailableError(absl::StrCat("bind ", shared_.options.name,
                                                      ": connection to PostgreSQL lost: ",
                                                      raw ? TrimRight(PQerrorMessage(raw)) : "not connected"));
  }
}

bool SentBatch::Send(const std::string& sql, const std::vector<std::optional<std::string>>& params, int index,
                     bool result) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const std::optional<std::string>& p : params) values.push_back(p ? p->c_str() : nullptr);
  // Text format both ways; no parameter types: the server infers them.
  if (PQsendQueryParams(c_.conn->raw(), sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                        nullptr, 0) != 1) {
    return false;
  }
  order_.push_back({index, result});
  return true;
}

Pipelined SentBatch::Finish(int max_rows) {
  Pipelined out;
  const std::string& bind = shared_.options.name;
  if (!send_error_.ok()) {
    out.status = send_error_;
    out.broken = true;
    return out;
  }
  PGconn* raw = c_.conn->raw();
  std::vector<Result> results(statements_);
  bool synced = false;
  {
    util::IoWatchdog::Watch watch(PQsocket(raw), bound_);
    // Blocks in libpq until each result arrives (or the watchdog shuts the
    // socket down) — on a fiber, libpq's poll waits on the loop
    // (util/fiber.h). Each query's results end with a null; every result
    // and the Sync's are read, so that the connection is idle after.
    for (const Query& q : order_) {
      while (PGresult* got = PQgetResult(raw)) {
        Result r(got);
        const ExecStatusType status = PQresultStatus(r.get());
        if (status == PGRES_PIPELINE_ABORTED) continue;  // skipped after an earlier error
        if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
          // libpq would hand out this result again and again: the
          // connection is given up (the server rolls back its transaction).
          out.failed = q.index;
          out.status = absl::InvalidArgumentError(
              absl::StrCat("bind ", bind, ": COPY … FROM STDIN / TO STDOUT cannot run through txcoord"));
          out.broken = true;
          break;
        }
        if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY) {
          if (out.status.ok()) {
            out.failed = q.index;
            const char* sqlstate = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
            out.status =
                StatusFromSqlstate(bind, sqlstate ? sqlstate : "", 0, TrimRight(PQresultErrorMessage(r.get())));
          }
          continue;
        }
        if (!out.status.ok()) continue;
        if (q.result) results[q.index] = std::move(r);
        if (q.index <= kFirstTail && q.index != kBranchCheck) {
          const bool has = PQntuples(r.get()) > 0 && PQnfields(r.get()) > 0 && !PQgetisnull(r.get(), 0, 0);
          out.tail.push_back(has ? PQgetvalue(r.get(), 0, 0) : "");
        }
      }
      if (out.broken || PQstatus(raw) != CONNECTION_OK) break;
    }
    if (!out.broken && PQstatus(raw) == CONNECTION_OK) {
      Result sync(PQgetResult(raw));
      synced = sync != nullptr && PQresultStatus(sync.get()) == PGRES_PIPELINE_SYNC;
    }
    if (watch.Disarm()) {
      out.broken = true;
      out.status = NoReplyError(bind, bound_);
      return out;
    }
  }
  if (out.broken) return out;
  if (PQstatus(raw) != CONNECTION_OK) {
    out.broken = true;
    out.status = absl::UnavailableError(absl::StrCat("bind ", bind, ": connection to PostgreSQL lost: ",
                                                     TrimRight(PQerrorMessage(raw))));
    return out;
  }
  if (!synced || PQexitPipelineMode(raw) != 1) {
    out.broken = true;  // out of step with the server: never reused
    if (out.status.ok()) {
      out.status = absl::InternalError(absl::StrCat(
          "bind ", bind, ": the batch's pipeline did not end at its Sync: ", TrimRight(PQerrorMessage(raw))));
    }
    return out;
  }
  if (!out.status.ok()) {
    if (out.failed == kBranchCheck) out.status = BranchEndedError(bind, "a statement of the batch ended it");
    return out;
  }
  out.status = Guard(bind, SqlErrorContext::kStatement, &out.broken, [&] {
    for (const Result& r : results) {
      out.results.push_back(r != nullptr ? ToResultSet(shared_, c_, r.get(), max_rows) : ResultSet{});
    }
  });
  return out;
}

Pipelined RunPipelined(PgShared& shared, PgConnection& c, const std::vector<std::string>& begin,
                       const std::vector<std::string>& sqls, const std::vector<Statement>& statements,
                       const std::vector<std::string>& tail, int max_rows, absl::Duration statement_limit) {
  SentBatch sent(shared, c, begin, sqls, statements, tail, statement_limit);
  return sent.Finish(max_rows);
}

}  // namespace txcoord::participants::postgres_internal
