#include "participants/mariadb_common.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "participants/xid.h"

namespace txcoord::participants {

absl::Status MariadbStatus(absl::string_view bind, absl::string_view sqlstate, int native_error,
                           absl::string_view message, SqlErrorContext context, bool connection_dead) {
  auto decorate = [&](absl::StatusCode code) {
    return absl::Status(code, absl::StrCat("bind ", bind, ": SQLSTATE ", sqlstate.empty() ? "?????" : sqlstate,
                                           " (native ", native_error, "): ", TrimRight(message)));
  };
  switch (native_error) {
    case 1397:  // XAER_NOTA: unknown XID
      return decorate(context == SqlErrorContext::kFinishPrepared ? absl::StatusCode::kNotFound
                                                                  : absl::StatusCode::kFailedPrecondition);
    case 1205:  // lock wait timeout
    case 1213:  // deadlock
    case 1402:  // XA_RBROLLBACK
      // On XA COMMIT/ROLLBACK of a prepared branch: MariaDB discarded it,
      // which it does to an empty (read-only) prepared branch when its
      // session ends: there is no prepared branch left to finish.
      if (context == SqlErrorContext::kFinishPrepared) return decorate(absl::StatusCode::kNotFound);
      return decorate(absl::StatusCode::kAborted);
    case 1317:  // query interrupted (SQLCancel / KILL QUERY)
    case 1969:  // max_statement_time exceeded
    case 1613:  // XA_RBTIMEOUT
    case 1614:  // XA_RBDEADLOCK
      return decorate(absl::StatusCode::kAborted);
    case 1040:  // too many connections
    case 1203:  // max_user_connections
      return decorate(absl::StatusCode::kResourceExhausted);
    case 1927:  // connection killed
    case 2002:
    case 2003:
    case 2006:  // server has gone away
    case 2013:  // lost connection
    case 2055:
      return decorate(absl::StatusCode::kUnavailable);
    default:
      if (connection_dead) return decorate(absl::StatusCode::kUnavailable);
      return StatusFromSqlstate(bind, sqlstate, native_error, message, context);
  }
}

std::optional<std::string> MysqlPlainLiteral(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kNull:
      return "NULL";
    case Value::Kind::kBool:
      return v.bool_value ? "TRUE" : "FALSE";
    case Value::Kind::kInt64:
      if (v.int_value == INT64_MIN) return std::nullopt;  // no integer literal: DECIMAL
      // Parenthesized when negative: "a -?" must not become "a --1".
      return v.int_value < 0 ? absl::StrCat("(", v.int_value, ")") : absl::StrCat(v.int_value);
    default:
      return std::nullopt;
  }
}

std::optional<MysqlInlined> InlineMysqlParameters(absl::string_view sql, const std::vector<Value>& params,
                                                  const MysqlLiteral& literal) {
  MysqlInlined result;
  std::string& out = result.sql;
  out.reserve(sql.size() + 16 * params.size());
  size_t next = 0;
  const size_t n = sql.size();
  // Positions in `out` of the ';'s after the last other SQL: trailing ones
  // are dropped at the end; SQL after one means several statements.
  std::vector<size_t> semicolons;
  auto code = [&] {
    if (!semicolons.empty()) result.several_statements = true;
  };
  // Copies the quoted text starting at sql[i] up to and including its
  // closing quote (a quote doubled inside does not close it); false if
  // unterminated or a backslash or NUL is inside.
  auto copy_quoted = [&](size_t& i) {
    const char q = sql[i];
    out.push_back(q);
    for (++i; i < n; ++i) {
      const char c = sql[i];
      if (c == '\0' || (c == '\\' && q != '`')) return false;
      out.push_back(c);
      if (c == q) {
        if (i + 1 < n && sql[i + 1] == q) {
          out.push_back(sql[++i]);
          continue;
        }
        return true;
      }
    }
    return false;
  };
  for (size_t i = 0; i < n; ++i) {
    const char c = sql[i];
    if (c == '\0') return std::nullopt;
    if (c == '\'' || c == '"' || c == '`') {
      code();
      if (!copy_quoted(i)) return std::nullopt;
    } else if (c == '#' || (c == '-' && i + 1 < n && sql[i + 1] == '-' &&
                            (i + 2 == n || static_cast<unsigned char>(sql[i + 2]) <= ' ' ||
                             sql[i + 2] == '\x7f'))) {
      // To the end of the line ("--" needs a space or control character
      // after it, else it is two minus signs).
      size_t end = sql.find('\n', i);
      if (end == absl::string_view::npos) end = n;
      if (sql.substr(i, end - i).find('\0') != absl::string_view::npos) return std::nullopt;
      out.append(sql.data() + i, end - i);
      i = end - 1;
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      if (i + 2 < n && (sql[i + 2] == '!' || (sql[i + 2] == 'M' && i + 3 < n && sql[i + 3] == '!'))) {
        return std::nullopt;  // executable comment: its text is SQL
      }
      size_t end = sql.find("*/", i + 2);
      if (end == absl::string_view::npos) return std::nullopt;
      if (sql.substr(i, end + 2 - i).find('\0') != absl::string_view::npos) return std::nullopt;
      out.append(sql.data() + i, end + 2 - i);
      i = end + 1;
    } else if (c == '?') {
      code();
      // A marker glued to a word ("?1", "x?") is an error as a marker but
      // could be valid SQL once replaced: left to the server.
      auto word = [](char w) {
        return absl::ascii_isalnum(static_cast<unsigned char>(w)) || w == '_' || w == '$' || w == '.' ||
               w == '@';
      };
      if ((i > 0 && word(sql[i - 1])) || (i + 1 < n && word(sql[i + 1]))) return std::nullopt;
      if (next == params.size()) return std::nullopt;
      std::optional<std::string> text = literal(params[next++]);
      if (!text) return std::nullopt;
      out.append(*text);
    } else if (c == ';') {
      semicolons.push_back(out.size());
      out.push_back(c);
    } else {
      if (!absl::ascii_isspace(static_cast<unsigned char>(c))) code();
      out.push_back(c);
    }
  }
  if (next != params.size()) return std::nullopt;
  if (!result.several_statements) {
    // Only comments and blanks follow them: drop the trailing ';'s.
    for (auto it = semicolons.rbegin(); it != semicolons.rend(); ++it) out[*it] = ' ';
  }
  return result;
}

int64_t MariadbTimeoutMillis(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return 0;
  const int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(d));
  return ms >= 2000 ? ms - ms % 1000 : ms;
}

std::string MariadbSessionLimitsSql(int64_t ms) {
  // innodb_lock_wait_timeout takes whole seconds (at least 1);
  // max_statement_time (seconds, fractional) bounds every statement.
  if (ms == 0) return "SET SESSION innodb_lock_wait_timeout = DEFAULT, max_statement_time = 0";
  return absl::StrCat("SET SESSION innodb_lock_wait_timeout = ", std::max<int64_t>(1, (ms + 999) / 1000),
                      ", max_statement_time = ", ms / 1000, ".", absl::StrFormat("%03d", ms % 1000));
}

bool MariadbSessionLimitsCloseEnough(int64_t have, int64_t want) {
  return have == want || (want > 0 && have > 0 && have <= want && have * 5 >= want * 4);
}

std::string MariadbClaimNodeSql(absl::string_view node_id, absl::string_view bind) {
  return absl::StrCat("SELECT GET_LOCK('", NodeClaimName(node_id, bind), "', 0)");
}

std::string MariadbNodeClaimHolderSql(absl::string_view node_id, absl::string_view bind) {
  return absl::StrCat("SELECT CONCAT('connection ', IS_USED_LOCK('", NodeClaimName(node_id, bind), "'))");
}

bool MysqlChangesData(absl::string_view sql) {
  absl::string_view word = absl::StripLeadingAsciiWhitespace(sql);
  word = word.substr(0, word.find_first_of(" \t\r\n("));
  for (const char* verb : {"insert", "update", "delete", "replace"}) {
    if (absl::EqualsIgnoreCase(word, verb)) return true;
  }
  return false;
}

}  // namespace txcoord::participants
