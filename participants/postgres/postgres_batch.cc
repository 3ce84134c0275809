#include "participants/postgres/postgres_batch.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "participants/sql_common.h"
#include "util/io_watchdog.h"

namespace txcoord::participants::postgres_internal {

namespace {

// Run after a batch's statements, in the same round trip: fails (division
// by zero, which stops the rest of the string, PREPARE or COMMIT included)
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
  std::string& text = text_;
  auto add = [&](absl::string_view q, int index, bool result) {
    if (!text.empty()) text += ";\n";
    order_.push_back({index, result, text.size()});
    text.append(q.data(), q.size());
  };
  for (const std::string& q : begin) add(q, kBeginQueries, false);
  for (size_t i = 0; i < statements.size(); ++i) {
    const int index = static_cast<int>(i);
    const std::vector<Value>& params = statements[i].second;
    if (params.empty()) {
      add(sqls[i], index, true);
      continue;
    }
    const std::string name = absl::StrCat("txc_b", i);
    add(absl::StrCat("PREPARE ", name, " AS ", sqls[i]), index, false);
    std::string exec = absl::StrCat("EXECUTE ", name, "(");
    for (size_t k = 0; k < params.size(); ++k) {
      std::optional<std::string> param = ParamText(params[k]);
      absl::StrAppend(&exec, k == 0 ? "" : ", ", param ? c_.conn->quote(*param) : std::string("NULL"));
    }
    exec += ")";
    add(exec, index, true);
    add(absl::StrCat("DEALLOCATE ", name), index, false);
  }
  add(kBranchOpenCheckSql, kBranchCheck, false);
  for (size_t k = 0; k < tail.size(); ++k) add(tail[k], kFirstTail - static_cast<int>(k), false);
  PGconn* raw = c_.conn->raw();
  if (raw == nullptr || PQsendQuery(raw, text.c_str()) != 1) {
    send_error_ = absl::UnavailableError(absl::StrCat("bind ", shared_.options.name,
                                                      ": connection to PostgreSQL lost: ",
                                                      raw ? TrimRight(PQerrorMessage(raw)) : "not connected"));
  }
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
  size_t next = 0;  // the query whose result comes next
  {
    util::IoWatchdog::Watch watch(PQsocket(raw), bound_);
    // Blocks in libpq until each result arrives (or the watchdog shuts the
    // socket down) — on a fiber, libpq's poll waits on the loop
    // (util/fiber.h); every result is read, so that the connection is idle
    // after. The server skips what follows an error.
    while (PGresult* got = PQgetResult(raw)) {
      Result r(got);
      if (next >= order_.size()) {
        if (out.status.ok()) out.status = absl::InternalError(absl::StrCat("bind ", bind, ": more results than queries"));
        out.broken = true;
        continue;
      }
      const Query q = order_[next++];
      const ExecStatusType status = PQresultStatus(r.get());
      if (status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH) {
        // libpq would hand out this result again and again: the connection
        // is given up (the server rolls back its transaction).
        out.failed = q.index;
        out.status = absl::InvalidArgumentError(
            absl::StrCat("bind ", bind, ": COPY … FROM STDIN / TO STDOUT cannot run through txcoord"));
        out.broken = true;
        break;
      }
      if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK && status != PGRES_EMPTY_QUERY) {
        if (out.status.ok()) {
          // A syntax error rejects the whole string before anything runs:
          // its position tells the query.
          const char* position = PQresultErrorField(r.get(), PG_DIAG_STATEMENT_POSITION);
          out.failed = position != nullptr ? QueryAt(std::strtol(position, nullptr, 10)) : q.index;
          const char* sqlstate = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
          out.status = StatusFromSqlstate(bind, sqlstate ? sqlstate : "", 0,
                                          TrimRight(PQresultErrorMessage(r.get())));
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
    if (watch.Disarm()) {
      out.broken = true;
      out.status = NoReplyError(bind, bound_);
      return out;
    }
  }
  if (PQstatus(raw) != CONNECTION_OK) {
    out.broken = true;
    out.status = absl::UnavailableError(absl::StrCat("bind ", bind, ": connection to PostgreSQL lost: ",
                                                     TrimRight(PQerrorMessage(raw))));
    return out;
  }
  if (out.status.ok() && next != order_.size()) {
    out.broken = true;  // out of step with the server: never reused
    out.status = absl::InternalError(
        absl::StrCat("bind ", bind, ": ", next, " results for ", order_.size(), " queries"));
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

int SentBatch::QueryAt(long position) const {
  // `position` counts characters from 1; the string is UTF-8.
  size_t byte = 0;
  for (long chars = 1; byte < text_.size(); ++byte) {
    if ((static_cast<unsigned char>(text_[byte]) & 0xC0) == 0x80) continue;  // inside a character
    if (chars++ == position) break;
  }
  int index = kBeginQueries;
  for (const Query& q : order_) {
    if (q.offset > byte) break;
    index = q.index;
  }
  return index;
}

Pipelined RunPipelined(PgShared& shared, PgConnection& c, const std::vector<std::string>& begin,
                       const std::vector<std::string>& sqls, const std::vector<Statement>& statements,
                       const std::vector<std::string>& tail, int max_rows, absl::Duration statement_limit) {
  SentBatch sent(shared, c, begin, sqls, statements, tail, statement_limit);
  return sent.Finish(max_rows);
}

}  // namespace txcoord::participants::postgres_internal
