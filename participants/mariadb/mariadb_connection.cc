#include "participants/mariadb/mariadb_connection.h"

#include <mysql.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "participants/mariadb_common.h"
#include "util/fiber.h"
#include "util/status_macros.h"

namespace txcoord::participants::mariadb {
namespace {

constexpr unsigned int kBinaryCharset = 63;  // the `binary` character set's number

// CR_SERVER_GONE_ERROR, CR_SERVER_LOST, CR_SERVER_LOST_EXTENDED and
// ER_CONNECTION_KILLED: the session is gone.
bool ConnectionLostError(unsigned int code) { return code == 2006 || code == 2013 || code == 2055 || code == 1927; }

// Errors of a login the server refused (credentials, grants, database,
// account state): a retry cannot fix them until the DSN or server is.
bool LoginRefusedError(unsigned int code) {
  switch (code) {
    case 1044:  // ER_DBACCESS_DENIED_ERROR
    case 1045:  // ER_ACCESS_DENIED_ERROR
    case 1049:  // ER_BAD_DB_ERROR
    case 1130:  // ER_HOST_NOT_PRIVILEGED
    case 1251:  // ER_NOT_SUPPORTED_AUTH_MODE
    case 1698:  // ER_ACCESS_DENIED_NO_PASSWORD_ERROR
    case 1820:  // ER_MUST_CHANGE_PASSWORD
    case 1862:  // ER_MUST_CHANGE_PASSWORD_LOGIN
    case 3118:  // ER_ACCOUNT_HAS_BEEN_LOCKED (MySQL)
    case 4151:  // ER_ACCOUNT_HAS_BEEN_LOCKED (MariaDB)
    case 2059:  // CR_AUTH_PLUGIN_CANNOT_LOAD
      return true;
    default:
      return false;
  }
}

// InfiniteFuture for a zero, negative or infinite `timeout`.
absl::Time DeadlineAfter(absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration() || timeout == absl::InfiniteDuration()) return absl::InfiniteFuture();
  return absl::Now() + timeout;
}

std::string NoReplyMessage(absl::string_view bind, absl::Duration timeout) {
  return absl::StrCat("bind ", bind, ": no reply from MariaDB within ", absl::FormatDuration(timeout));
}

bool BinaryField(const MYSQL_FIELD& f) { return f.charsetnr == kBinaryCharset; }

// A readable upper-case type name for `f` (never empty).
std::string TypeName(const MYSQL_FIELD& f) {
  const char* unsigned_suffix = (f.flags & UNSIGNED_FLAG) ? " UNSIGNED" : "";
  switch (f.type) {
    case MYSQL_TYPE_TINY:
      return absl::StrCat("TINYINT", unsigned_suffix);
    case MYSQL_TYPE_SHORT:
      return absl::StrCat("SMALLINT", unsigned_suffix);
    case MYSQL_TYPE_INT24:
      return absl::StrCat("MEDIUMINT", unsigned_suffix);
    case MYSQL_TYPE_LONG:
      return absl::StrCat("INT", unsigned_suffix);
    case MYSQL_TYPE_LONGLONG:
      return absl::StrCat("BIGINT", unsigned_suffix);
    case MYSQL_TYPE_YEAR:
      return "YEAR";
    case MYSQL_TYPE_FLOAT:
      return "FLOAT";
    case MYSQL_TYPE_DOUBLE:
      return "DOUBLE";
    case MYSQL_TYPE_DECIMAL:
    case MYSQL_TYPE_NEWDECIMAL:
      return "DECIMAL";
    case MYSQL_TYPE_DATE:
    case MYSQL_TYPE_NEWDATE:
      return "DATE";
    case MYSQL_TYPE_TIME:
      return "TIME";
    case MYSQL_TYPE_DATETIME:
      return "DATETIME";
    case MYSQL_TYPE_TIMESTAMP:
      return "TIMESTAMP";
    case MYSQL_TYPE_BIT:
      return "BIT";
    case MYSQL_TYPE_NULL:
      return "NULL";
    case MYSQL_TYPE_JSON:
      return "JSON";
    case MYSQL_TYPE_ENUM:
      return "ENUM";
    case MYSQL_TYPE_SET:
      return "SET";
    case MYSQL_TYPE_GEOMETRY:
      return "GEOMETRY";
    case MYSQL_TYPE_TINY_BLOB:
    case MYSQL_TYPE_MEDIUM_BLOB:
    case MYSQL_TYPE_LONG_BLOB:
    case MYSQL_TYPE_BLOB:
      return BinaryField(f) ? "BLOB" : "TEXT";
    case MYSQL_TYPE_VARCHAR:
    case MYSQL_TYPE_VAR_STRING:
      return BinaryField(f) ? "VARBINARY" : "VARCHAR";
    case MYSQL_TYPE_STRING:
      if (f.flags & ENUM_FLAG) return "ENUM";
      if (f.flags & SET_FLAG) return "SET";
      return BinaryField(f) ? "BINARY" : "CHAR";
    default:
      return absl::StrCat("TYPE ", static_cast<int>(f.type));
  }
}

// One text-protocol cell as a Value (see the header's type mapping).
Value CellValue(const MYSQL_FIELD& f, const char* data, unsigned long length, bool text_as_bytes) {
  if (data == nullptr) return Value::Null();
  const absl::string_view text(data, length);
  switch (f.type) {
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_LONGLONG:
    case MYSQL_TYPE_YEAR: {
      int64_t v = 0;
      // Only an UNSIGNED BIGINT above INT64_MAX fails: exact as a decimal.
      if (absl::SimpleAtoi(text, &v)) return Value::Int64(v);
      return Value::Text(Value::Kind::kDecimal, std::string(text));
    }
    case MYSQL_TYPE_FLOAT:
    case MYSQL_TYPE_DOUBLE: {
      double v = 0;
      if (absl::SimpleAtod(text, &v)) return Value::Double(v);
      return Value::Text(Value::Kind::kDecimal, std::string(text));
    }
    case MYSQL_TYPE_DECIMAL:
    case MYSQL_TYPE_NEWDECIMAL:
      return Value::Text(Value::Kind::kDecimal, std::string(text));
    case MYSQL_TYPE_DATE:
    case MYSQL_TYPE_NEWDATE:
      return Value::Text(Value::Kind::kDate, std::string(text));
    case MYSQL_TYPE_TIME:
      return Value::Text(Value::Kind::kTime, std::string(text));
    case MYSQL_TYPE_DATETIME:
    case MYSQL_TYPE_TIMESTAMP:
      return Value::Text(Value::Kind::kTimestamp, NormalizeTimestampText(text));
    case MYSQL_TYPE_BIT:
      return Value::Text(Value::Kind::kBytes, std::string(text));
    default:
      return Value::Text(BinaryField(f) || text_as_bytes ? Value::Kind::kBytes : Value::Kind::kString,
                         std::string(text));
  }
}

// Reads an ODBC-style value after '=' at `*pos`: {…} with "}}" for '}', or
// the text up to the next ';' without surrounding blanks. Leaves `*pos` at
// the ';' or the end.
absl::StatusOr<std::string> ReadDsnValue(absl::string_view bind, absl::string_view key, absl::string_view dsn,
                                         size_t* pos) {
  size_t i = *pos;
  while (i < dsn.size() && absl::ascii_isspace(static_cast<unsigned char>(dsn[i]))) ++i;
  if (i < dsn.size() && dsn[i] == '{') {
    std::string value;
    for (++i;; ++i) {
      if (i >= dsn.size()) {
        return absl::InvalidArgumentError(absl::StrCat("bind ", bind, ": DSN value of '", key, "' has no closing '}'"));
      }
      if (dsn[i] == '}') {
        if (i + 1 < dsn.size() && dsn[i + 1] == '}') {
          value.push_back('}');
          ++i;
          continue;
        }
        break;
      }
      value.push_back(dsn[i]);
    }
    for (++i; i < dsn.size() && dsn[i] != ';'; ++i) {
      if (!absl::ascii_isspace(static_cast<unsigned char>(dsn[i]))) {
        return absl::InvalidArgumentError(absl::StrCat("bind ", bind, ": DSN text after the {…} value of '", key, "'"));
      }
    }
    *pos = i;
    return value;
  }
  const size_t end = std::min(dsn.find(';', i), dsn.size());
  *pos = end;
  return std::string(absl::StripAsciiWhitespace(dsn.substr(i, end - i)));
}

}  // namespace

absl::StatusOr<MariadbDsn> ParseMariadbDsn(absl::string_view bind, absl::string_view dsn) {
  MariadbDsn out;
  size_t pos = 0;
  while (pos < dsn.size()) {
    const size_t end = std::min(dsn.find_first_of("=;", pos), dsn.size());
    const absl::string_view raw_key = absl::StripAsciiWhitespace(dsn.substr(pos, end - pos));
    if (end == dsn.size() || dsn[end] == ';') {
      if (!raw_key.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("bind ", bind, ": DSN segment '", raw_key, "' has no '='"));
      }
      pos = end + 1;
      continue;
    }
    pos = end + 1;
    const std::string key = absl::AsciiStrToLower(raw_key);
    absl::StatusOr<std::string> value = ReadDsnValue(bind, raw_key, dsn, &pos);
    if (!value.ok()) return value.status();
    ++pos;  // past the ';'
    if (key == "server" || key == "host") {
      out.host = *std::move(value);
    } else if (key == "port") {
      int port = 0;
      if (!absl::SimpleAtoi(*value, &port) || port < 1 || port > 65535) {
        return absl::InvalidArgumentError(
            absl::StrCat("bind ", bind, ": DSN Port '", *value, "' is not a port number (1..65535)"));
      }
      out.port = static_cast<unsigned int>(port);
    } else if (key == "socket") {
      out.socket = *std::move(value);
    } else if (key == "database" || key == "db") {
      out.database = *std::move(value);
    } else if (key == "user" || key == "uid") {
      out.user = *std::move(value);
    } else if (key == "password" || key == "pwd") {
      out.password = *std::move(value);
    } else if (key == "sslca") {
      out.ssl_ca = *std::move(value);
    } else if (key == "sslcert") {
      out.ssl_cert = *std::move(value);
    } else if (key == "sslkey") {
      out.ssl_key = *std::move(value);
    } else if (key == "sslverify") {
      if (!absl::SimpleAtob(*value, &out.ssl_verify)) {
        return absl::InvalidArgumentError(absl::StrCat("bind ", bind, ": DSN SSLVERIFY '", *value, "' is not 0 or 1"));
      }
    } else if (key == "driver" || key == "option" || key == "conn_timeout" || key == "read_timeout" ||
               key == "write_timeout" || key == "charset") {
      // Accepted for ODBC DSNs; the timeouts come from io_timeout and the
      // character set is always utf8mb4.
    } else {
      return absl::InvalidArgumentError(absl::StrCat("bind ", bind, ": unknown DSN key '", raw_key, "'"));
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<MariadbConnection>> MariadbConnection::Open(const std::string& bind,
                                                                           const MariadbDsn& dsn,
                                                                           absl::Duration io_timeout) {
  std::unique_ptr<MariadbConnection> c(new MariadbConnection(bind));
  c->mysql_ = mysql_init(nullptr);
  if (c->mysql_ == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("bind ", bind, ": mysql_init failed (out of memory)"));
  }
  MYSQL* m = c->mysql_;
  mysql_options(m, MYSQL_OPT_NONBLOCK, 0);
  mysql_options(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  const my_bool off = 0;
  mysql_options(m, MYSQL_OPT_RECONNECT, &off);  // a new session would silently lose the branch's state
  const unsigned int no_local_infile = 0;
  mysql_options(m, MYSQL_OPT_LOCAL_INFILE, &no_local_infile);  // statements may not read our files
  if (!dsn.socket.empty() || dsn.port != 0) {
    // An explicit port means TCP even for "localhost" (which the library
    // would otherwise take as its default Unix socket).
    const unsigned int protocol = dsn.socket.empty() ? MYSQL_PROTOCOL_TCP : MYSQL_PROTOCOL_SOCKET;
    mysql_options(m, MYSQL_OPT_PROTOCOL, &protocol);
  }
  const absl::Time deadline = DeadlineAfter(io_timeout);
  if (deadline != absl::InfiniteFuture()) {
    // Backstop only: the poll deadline below is what bounds the handshake.
    const unsigned int seconds = static_cast<unsigned int>(
        std::clamp<int64_t>(absl::ToInt64Seconds(absl::Ceil(io_timeout, absl::Seconds(1))), 1, INT_MAX));
    mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &seconds);
  }
  if (!dsn.ssl_ca.empty()) mysql_optionsv(m, MYSQL_OPT_SSL_CA, dsn.ssl_ca.c_str());
  if (!dsn.ssl_cert.empty()) mysql_optionsv(m, MYSQL_OPT_SSL_CERT, dsn.ssl_cert.c_str());
  if (!dsn.ssl_key.empty()) mysql_optionsv(m, MYSQL_OPT_SSL_KEY, dsn.ssl_key.c_str());
  if (dsn.ssl_verify) {
    const my_bool on = 1;
    mysql_optionsv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on);
    mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &on);  // verification implies TLS: no plain-text fallback
  }

  auto or_null = [](const std::string& s) { return s.empty() ? nullptr : s.c_str(); };
  MYSQL* connected = nullptr;
  int status = mysql_real_connect_start(&connected, m, or_null(dsn.host), or_null(dsn.user), or_null(dsn.password),
                                        or_null(dsn.database), dsn.port, or_null(dsn.socket),
                                        CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS);
  while (status != 0) {
    const int ready = c->Wait(status, deadline);
    if (ready == 0) {
      c->Abandon();
      return absl::UnavailableError(NoReplyMessage(bind, io_timeout));
    }
    status = mysql_real_connect_cont(&connected, m, ready);
  }
  if (connected == nullptr) {
    c->broken_ = true;
    const unsigned int code = mysql_errno(m);
    absl::Status s =
        MariadbStatus(bind, mysql_sqlstate(m), static_cast<int>(code), mysql_error(m), SqlErrorContext::kStatement,
                      /*connection_dead=*/true);
    if (LoginRefusedError(code)) {
      return absl::FailedPreconditionError(absl::StrCat(s.message(), " (fix the bind's connection string)"));
    }
    // Client-side errors (2000..2999) while connecting: the server is unreachable.
    if (code >= 2000 && code < 3000 && s.code() != absl::StatusCode::kUnavailable) {
      return absl::UnavailableError(s.message());
    }
    return s;
  }
  c->thread_id_.store(static_cast<int64_t>(mysql_thread_id(m)), std::memory_order_relaxed);
  unsigned int server_status = 0;
  if (mariadb_get_infov(m, MARIADB_CONNECTION_SERVER_STATUS, &server_status) == 0 &&
      (server_status & SERVER_STATUS_AUTOCOMMIT) == 0) {
    TXC_RETURN_IF_ERROR(c->Run("SET autocommit=1", io_timeout));
  }
  return c;
}

MariadbConnection::~MariadbConnection() {
  if (mysql_ == nullptr) return;
  if (broken_) {
    // mysql_close sends COM_QUIT with a blocking write: a dead peer must
    // not hold it.
    const my_socket fd = mysql_get_socket(mysql_);
    if (fd != MARIADB_INVALID_SOCKET) shutdown(fd, SHUT_RDWR);
  }
  mysql_close(mysql_);
}

void MariadbConnection::Abandon() {
  broken_ = true;
  if (mysql_ == nullptr) return;
  const my_socket fd = mysql_get_socket(mysql_);
  if (fd != MARIADB_INVALID_SOCKET) shutdown(fd, SHUT_RDWR);
  mysql_close(mysql_);  // also ends the suspended operation's context
  mysql_ = nullptr;
}

int MariadbConnection::Wait(int status, absl::Time deadline) {
  const int wanted = status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE | MYSQL_WAIT_EXCEPT);
  const my_socket fd = mysql_get_socket(mysql_);
  absl::Time until = deadline;
  if (status & MYSQL_WAIT_TIMEOUT) {
    // The library's own timeout (the connect backstop) bounds the wait too.
    until = std::min(until, absl::Now() + absl::Milliseconds(mysql_get_timeout_value_ms(mysql_)));
  }
  if (fd == MARIADB_INVALID_SOCKET) return wanted != 0 ? wanted : MYSQL_WAIT_TIMEOUT;  // let the library fail
  short events = 0;
  if (status & MYSQL_WAIT_READ) events |= POLLIN;
  if (status & MYSQL_WAIT_WRITE) events |= POLLOUT;
  if (status & MYSQL_WAIT_EXCEPT) events |= POLLPRI;
  // On a fiber the loop waits (util/fiber.h); on a thread, poll(2).
  const int revents = util::WaitFd(fd, events, until);
  if (revents < 0) return wanted;  // the library's next read or write reports the error
  if (revents == 0) return absl::Now() >= deadline ? 0 : MYSQL_WAIT_TIMEOUT;
  int ready = 0;
  if (revents & (POLLIN | POLLHUP | POLLERR)) ready |= status & MYSQL_WAIT_READ;
  if (revents & (POLLOUT | POLLHUP | POLLERR)) ready |= status & MYSQL_WAIT_WRITE;
  if (revents & POLLPRI) ready |= status & MYSQL_WAIT_EXCEPT;
  return ready != 0 ? ready : wanted;
}

bool MariadbConnection::LooksAlive() {
  if (mysql_ == nullptr || broken_) return false;
  const my_socket fd = mysql_get_socket(mysql_);
  if (fd == MARIADB_INVALID_SOCKET) {
    broken_ = true;
    return false;
  }
  // Between calls the server sends nothing unless it is closing the
  // session (an error packet, then EOF).
  pollfd p{};
  p.fd = fd;
  p.events = POLLIN;
  if (poll(&p, 1, 0) > 0) broken_ = true;
  return !broken_;
}

absl::Status MariadbConnection::Fail(SqlErrorContext context) {
  const unsigned int code = mysql_errno(mysql_);
  const bool dead = ConnectionLostError(code) || mysql_get_socket(mysql_) == MARIADB_INVALID_SOCKET;
  if (dead) broken_ = true;
  return MariadbStatus(bind_, mysql_sqlstate(mysql_), static_cast<int>(code), mysql_error(mysql_), context, dead);
}

QueryOutcome MariadbConnection::Query(absl::string_view sql, absl::Duration timeout, int max_rows,
                                      SqlErrorContext context, bool text_as_bytes) {
  StartQuery(sql, timeout);
  return FinishQuery(max_rows, context, text_as_bytes);
}

void MariadbConnection::StartQuery(absl::string_view sql, absl::Duration timeout) {
  started_ok_ = mysql_ != nullptr && !broken_;
  if (!started_ok_) return;
  pending_sql_.assign(sql.data(), sql.size());
  pending_timeout_ = timeout;
  pending_deadline_ = DeadlineAfter(timeout);
  pending_ret_ = 0;
  pending_status_ = mysql_real_query_start(&pending_ret_, mysql_, pending_sql_.data(), pending_sql_.size());
  // Sending may have to wait for the socket (a long text); the reply is
  // what FinishQuery waits for.
  while ((pending_status_ & MYSQL_WAIT_WRITE) != 0) {
    const int ready = Wait(pending_status_, pending_deadline_);
    if (ready == 0) return;  // FinishQuery reports the deadline
    pending_status_ = mysql_real_query_cont(&pending_ret_, mysql_, ready);
  }
}

QueryOutcome MariadbConnection::FinishQuery(int max_rows, SqlErrorContext context, bool text_as_bytes) {
  QueryOutcome out;
  if (!started_ok_ || mysql_ == nullptr) {
    out.status = absl::UnavailableError(absl::StrCat("bind ", bind_, ": the MariaDB connection is broken"));
    return out;
  }
  started_ok_ = false;
  const absl::Time deadline = pending_deadline_;
  const absl::Duration timeout = pending_timeout_;
  // Runs a start/_cont pair to completion; false after the deadline (the
  // connection is abandoned then).
  auto drive = [&](int status, auto cont) {
    while (status != 0) {
      const int ready = Wait(status, deadline);
      if (ready == 0) return false;
      status = cont(ready);
    }
    return true;
  };
  // Failure after a reply from the server: the statement at
  // results.size() failed; a lost session before any result tells nothing.
  auto fail = [&](absl::Status s) {
    out.status = std::move(s);
    out.failed_statement = broken_ && out.results.empty() ? -1 : static_cast<int>(out.results.size());
    return std::move(out);
  };
  auto timed_out = [&](MYSQL_RES* res) {
    const my_socket fd = mysql_get_socket(mysql_);
    if (fd != MARIADB_INVALID_SOCKET) shutdown(fd, SHUT_RDWR);
    if (res != nullptr) mysql_free_result(res);  // before the handle it points to; reads fail at once
    Abandon();
    return fail(absl::UnavailableError(NoReplyMessage(bind_, timeout)));
  };

  int ret = pending_ret_;
  if (!drive(pending_status_, [&](int ready) { return mysql_real_query_cont(&ret, mysql_, ready); })) {
    return timed_out(nullptr);
  }
  if (ret != 0) return fail(Fail(context));
  for (;;) {
    StatementResult statement;
    if (mysql_field_count(mysql_) == 0) {
      statement.affected_rows = static_cast<int64_t>(mysql_affected_rows(mysql_));
      statement.result.rows_affected = statement.affected_rows;
    } else {
      // Rows are streamed (use_result): those past max_rows are read and dropped.
      MYSQL_RES* res = mysql_use_result(mysql_);
      if (res == nullptr) return fail(Fail(context));
      const unsigned int field_count = mysql_num_fields(res);
      const MYSQL_FIELD* fields = mysql_fetch_fields(res);
      for (unsigned int i = 0; i < field_count; ++i) {
        statement.result.columns.push_back(Column{fields[i].name, TypeName(fields[i])});
      }
      for (;;) {
        MYSQL_ROW row = nullptr;
        if (!drive(mysql_fetch_row_start(&row, res),
                   [&](int ready) { return mysql_fetch_row_cont(&row, res, ready); })) {
          return timed_out(res);
        }
        if (row == nullptr) break;
        if (max_rows > 0 && statement.result.rows.size() >= static_cast<size_t>(max_rows)) {
          statement.result.truncated = true;
          continue;
        }
        const unsigned long* lengths = mysql_fetch_lengths(res);
        std::vector<Value> values;
        values.reserve(field_count);
        for (unsigned int i = 0; i < field_count; ++i) {
          values.push_back(CellValue(fields[i], row[i], lengths[i], text_as_bytes));
        }
        statement.result.rows.push_back(std::move(values));
      }
      const bool fetch_failed = mysql_errno(mysql_) != 0;
      absl::Status fetch_status = fetch_failed ? Fail(context) : absl::OkStatus();
      mysql_free_result(res);  // every row was read: no I/O
      if (fetch_failed) return fail(std::move(fetch_status));
    }
    out.results.push_back(std::move(statement));
    int more = 0;
    if (!drive(mysql_next_result_start(&more, mysql_),
               [&](int ready) { return mysql_next_result_cont(&more, mysql_, ready); })) {
      return timed_out(nullptr);
    }
    if (more < 0) break;                       // no more results
    if (more > 0) return fail(Fail(context));  // the next statement's error; the server ran nothing after it
  }
  return out;
}

absl::StatusOr<ResultSet> MariadbConnection::Execute(absl::string_view sql, absl::Duration timeout, int max_rows,
                                                     SqlErrorContext context) {
  QueryOutcome outcome = Query(sql, timeout, max_rows, context);
  if (!outcome.status.ok()) return outcome.status;
  if (outcome.results.empty()) return ResultSet{};
  return std::move(outcome.results.back().result);
}

absl::Status MariadbConnection::Run(absl::string_view sql, absl::Duration timeout, SqlErrorContext context) {
  return Execute(sql, timeout, 0, context).status();
}

std::string MariadbConnection::QuoteString(absl::string_view text) const {
  std::string out(2 * text.size() + 3, '\0');
  out[0] = '\'';
  // Without a handle (abandoned) the escaping of the default character set,
  // which is the same for every ASCII-compatible one.
  const unsigned long n = mysql_ != nullptr ? mysql_real_escape_string(mysql_, out.data() + 1, text.data(), text.size())
                                            : mysql_escape_string(out.data() + 1, text.data(), text.size());
  out.resize(n + 1);
  out.push_back('\'');
  return out;
}

}  // namespace txcoord::participants::mariadb
