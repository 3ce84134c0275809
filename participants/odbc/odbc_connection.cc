#include "participants/odbc/odbc_connection.h"

#include <charconv>
#include <cstring>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "participants/sql_common.h"
#include "util/blocking.h"

namespace txcoord::participants::odbc {
namespace {

// One ODBC environment for the process, never freed (drivers may keep
// references to it until exit).
SQLHENV Environment() {
  static SQLHENV env = [] {
    SQLHENV e = SQL_NULL_HENV;
    SQLAllocHandle(SQL_HANDLE_ENV, SQL_NULL_HANDLE, &e);
    SQLSetEnvAttr(e, SQL_ATTR_ODBC_VERSION, reinterpret_cast<SQLPOINTER>(SQL_OV_ODBC3), 0);
    return e;
  }();
  return env;
}

Diagnostic ReadDiagnostic(SQLSMALLINT handle_type, SQLHANDLE handle) {
  Diagnostic d;
  std::vector<std::string> messages;
  for (SQLSMALLINT i = 1; i <= 5; ++i) {
    SQLWCHAR state[6] = {0};
    SQLWCHAR msg[1024] = {0};
    SQLINTEGER native = 0;
    SQLSMALLINT len = 0;
    SQLRETURN rc = SQLGetDiagRecW(handle_type, handle, i, state, &native, msg,
                                  sizeof msg / sizeof msg[0], &len);
    if (!SQL_SUCCEEDED(rc)) break;
    const size_t n = std::min<size_t>(len < 0 ? 0 : len, sizeof msg / sizeof msg[0] - 1);
    if (i == 1) {
      d.sqlstate = Utf16ToUtf8(state, 5);
      d.native_error = native;
    }
    messages.push_back(TrimRight(Utf16ToUtf8(msg, n)));
  }
  d.message = absl::StrJoin(messages, "; ");
  if (d.message.empty()) d.message = "no diagnostic from the driver";
  return d;
}

// Parameter buffers, alive until the statement has run.
struct BoundParam {
  SQLSMALLINT c_type = SQL_C_CHAR;
  SQLSMALLINT sql_type = SQL_VARCHAR;
  SQLULEN column_size = 1;
  SQLSMALLINT decimal_digits = 0;
  std::string bytes;                    // SQL_C_CHAR / SQL_C_BINARY
  std::basic_string<SQLWCHAR> wide;     // SQL_C_WCHAR
  int64_t int_value = 0;
  double double_value = 0;
  unsigned char bit = 0;
  SQLLEN indicator = 0;
};

SQLSMALLINT FractionDigits(absl::string_view text) {
  size_t dot = text.rfind('.');
  if (dot == absl::string_view::npos) return 0;
  SQLSMALLINT n = 0;
  for (size_t i = dot + 1; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) ++n;
  return n;
}

void PrepareParam(const Value& v, bool time_as_text, BoundParam& p) {
  switch (v.kind) {
    case Value::Kind::kNull:
      p.c_type = SQL_C_CHAR;
      p.sql_type = SQL_VARCHAR;
      p.indicator = SQL_NULL_DATA;
      return;
    case Value::Kind::kBool:
      p.c_type = SQL_C_BIT;
      p.sql_type = SQL_BIT;
      p.bit = v.bool_value ? 1 : 0;
      p.indicator = sizeof p.bit;
      return;
    case Value::Kind::kInt64:
      p.c_type = SQL_C_SBIGINT;
      p.sql_type = SQL_BIGINT;
      p.column_size = 19;
      p.int_value = v.int_value;
      p.indicator = sizeof p.int_value;
      return;
    case Value::Kind::kDouble:
      p.c_type = SQL_C_DOUBLE;
      p.sql_type = SQL_DOUBLE;
      p.column_size = 15;
      p.double_value = v.double_value;
      p.indicator = sizeof p.double_value;
      return;
    case Value::Kind::kDecimal: {
      p.c_type = SQL_C_CHAR;
      p.sql_type = SQL_DECIMAL;
      p.bytes = v.text;
      SQLULEN digits = 0;
      for (char c : v.text) digits += (c >= '0' && c <= '9') ? 1 : 0;
      p.column_size = std::max<SQLULEN>(1, digits);
      p.decimal_digits = FractionDigits(v.text);
      p.indicator = static_cast<SQLLEN>(p.bytes.size());
      return;
    }
    case Value::Kind::kString:
      p.c_type = SQL_C_WCHAR;
      p.wide = Utf8ToUtf16(v.text);
      p.sql_type = p.wide.size() > 4000 ? SQL_WLONGVARCHAR : SQL_WVARCHAR;
      p.column_size = std::max<SQLULEN>(1, p.wide.size());
      p.indicator = static_cast<SQLLEN>(p.wide.size() * sizeof(SQLWCHAR));
      return;
    case Value::Kind::kBytes:
      p.c_type = SQL_C_BINARY;
      p.bytes = v.text;
      p.sql_type = p.bytes.size() > 8000 ? SQL_LONGVARBINARY : SQL_VARBINARY;
      p.column_size = std::max<SQLULEN>(1, p.bytes.size());
      p.indicator = static_cast<SQLLEN>(p.bytes.size());
      return;
    case Value::Kind::kDate:
      p.c_type = SQL_C_CHAR;
      p.sql_type = SQL_TYPE_DATE;
      p.bytes = v.text;
      p.column_size = 10;
      p.indicator = static_cast<SQLLEN>(p.bytes.size());
      return;
    case Value::Kind::kTime:
      p.c_type = SQL_C_CHAR;
      p.sql_type = time_as_text ? SQL_VARCHAR : SQL_TYPE_TIME;
      p.bytes = v.text;
      p.decimal_digits = time_as_text ? 0 : FractionDigits(v.text);
      p.column_size = time_as_text ? std::max<SQLULEN>(1, v.text.size())
                                   : 8 + (p.decimal_digits > 0 ? 1 + p.decimal_digits : 0);
      p.indicator = static_cast<SQLLEN>(p.bytes.size());
      return;
    case Value::Kind::kTimestamp: {
      // ODBC's timestamp literal: "yyyy-mm-dd hh:mm:ss[.f…]". Sessions run
      // in UTC, so a trailing 'Z' is dropped; other offsets are passed on.
      std::string t = v.text;
      if (t.size() > 10 && t[10] == 'T') t[10] = ' ';
      if (!t.empty() && t.back() == 'Z') t.pop_back();
      p.c_type = SQL_C_CHAR;
      p.sql_type = SQL_TYPE_TIMESTAMP;
      p.bytes = t;
      p.decimal_digits = FractionDigits(t);
      p.column_size = 19 + (p.decimal_digits > 0 ? 1 + p.decimal_digits : 0);
      p.indicator = static_cast<SQLLEN>(p.bytes.size());
      return;
    }
  }
}

enum class Fetch { kBit, kInt, kDouble, kChar, kWide, kBinary };

struct ColumnPlan {
  Fetch fetch;
  Value::Kind kind;
  bool is_bool_text = false;  // psqlODBC's BoolsAsChar: bool as "1"/"0"
  bool utc_zone = false;      // PostgreSQL timestamptz (sessions run in UTC)
};

ColumnPlan PlanColumn(SQLSMALLINT sql_type, const std::string& type_name, bool text_as_bytes) {
  switch (sql_type) {
    case SQL_BIT:
      return {Fetch::kBit, Value::Kind::kBool};
    case SQL_TINYINT:
    case SQL_SMALLINT:
    case SQL_INTEGER:
    case SQL_BIGINT:
      return {Fetch::kInt, Value::Kind::kInt64};
    case SQL_REAL:
    case SQL_FLOAT:
    case SQL_DOUBLE:
      return {Fetch::kDouble, Value::Kind::kDouble};
    case SQL_DECIMAL:
    case SQL_NUMERIC:
      return {Fetch::kChar, Value::Kind::kDecimal};
    case SQL_BINARY:
    case SQL_VARBINARY:
    case SQL_LONGVARBINARY:
      return {Fetch::kBinary, Value::Kind::kBytes};
    case SQL_TYPE_DATE:
    case SQL_DATE:
      return {Fetch::kChar, Value::Kind::kDate};
    case SQL_TYPE_TIME:
    case SQL_TIME:
      return {Fetch::kChar, Value::Kind::kTime};
    case SQL_TYPE_TIMESTAMP:
    case SQL_TIMESTAMP:
      return {Fetch::kChar, Value::Kind::kTimestamp, false, type_name == "timestamptz"};
    default:
      if (text_as_bytes) return {Fetch::kBinary, Value::Kind::kBytes};
      if (type_name == "bool" || type_name == "boolean") {
        return {Fetch::kChar, Value::Kind::kBool, true};
      }
      return {Fetch::kWide, Value::Kind::kString};
  }
}

}  // namespace

std::basic_string<SQLWCHAR> Utf8ToUtf16(absl::string_view s) {
  std::basic_string<SQLWCHAR> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    uint32_t cp = 0xFFFD;
    size_t len = 1;
    if (c < 0x80) {
      cp = c;
    } else if ((c >> 5) == 0x6 && i + 1 < s.size()) {
      cp = ((c & 0x1F) << 6) | (s[i + 1] & 0x3F);
      len = 2;
    } else if ((c >> 4) == 0xE && i + 2 < s.size()) {
      cp = ((c & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
      len = 3;
    } else if ((c >> 3) == 0x1E && i + 3 < s.size()) {
      cp = ((c & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) |
           (s[i + 3] & 0x3F);
      len = 4;
    }
    i += len;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out.push_back(static_cast<SQLWCHAR>(0xD800 + (cp >> 10)));
      out.push_back(static_cast<SQLWCHAR>(0xDC00 + (cp & 0x3FF)));
    } else {
      out.push_back(static_cast<SQLWCHAR>(cp));
    }
  }
  return out;
}

std::string Utf16ToUtf8(const SQLWCHAR* data, size_t length) {
  std::string out;
  out.reserve(length);
  for (size_t i = 0; i < length; ++i) {
    uint32_t cp = data[i];
    if (cp >= 0xD800 && cp <= 0xDBFF && i + 1 < length && data[i + 1] >= 0xDC00 &&
        data[i + 1] <= 0xDFFF) {
      cp = 0x10000 + ((cp - 0xD800) << 10) + (data[i + 1] - 0xDC00);
      ++i;
    }
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<OdbcConnection>> OdbcConnection::Open(const std::string& bind,
                                                                     const std::string& dsn,
                                                                     ErrorMapper mapper) {
  if (util::OnFiber()) return util::RunBlocking([&] { return Open(bind, dsn, std::move(mapper)); });
  std::unique_ptr<OdbcConnection> c(new OdbcConnection(bind, std::move(mapper)));
  if (!SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_DBC, Environment(), &c->dbc_))) {
    return absl::ResourceExhaustedError(absl::StrCat("bind ", bind, ": SQLAllocHandle(DBC) failed"));
  }
  SQLSetConnectAttr(c->dbc_, SQL_ATTR_LOGIN_TIMEOUT, reinterpret_cast<SQLPOINTER>(10), 0);
  SQLRETURN rc = SQLDriverConnect(c->dbc_, nullptr,
                                  reinterpret_cast<SQLCHAR*>(const_cast<char*>(dsn.c_str())),
                                  SQL_NTS, nullptr, 0, nullptr, SQL_DRIVER_NOPROMPT);
  if (!SQL_SUCCEEDED(rc)) {
    Diagnostic d = ReadDiagnostic(SQL_HANDLE_DBC, c->dbc_);
    absl::Status s = c->mapper_(d, SqlErrorContext::kStatement, /*connection_dead=*/true);
    if (s.code() == absl::StatusCode::kResourceExhausted) return s;
    // Refused logins, unknown databases and drivers: a retry cannot fix
    // them until the bind's configuration is (MariaDB 1044/1045/1049 carry
    // SQLSTATE 42000/28000; IM*: the driver manager's own errors).
    const bool misconfigured = absl::StartsWith(d.sqlstate, "28") || absl::StartsWith(d.sqlstate, "IM") ||
                               d.sqlstate == "3D000" || d.native_error == 1044 || d.native_error == 1045 ||
                               d.native_error == 1049 || LoginRefusedMessage(d.message);
    return absl::Status(misconfigured ? absl::StatusCode::kFailedPrecondition : absl::StatusCode::kUnavailable,
                        absl::StrCat("bind ", bind, ": cannot connect: SQLSTATE ", d.sqlstate, " (native ",
                                     d.native_error, "): ", d.message,
                                     misconfigured ? " (fix the bind's connection string)" : ""));
  }
  c->connected_ = true;
  return c;
}

OdbcConnection::~OdbcConnection() {
  if (util::OnFiber()) {
    util::RunBlocking([this] { Close(); });
  } else {
    Close();
  }
}

void OdbcConnection::Close() {
  if (connected_) SQLDisconnect(dbc_);
  if (dbc_ != SQL_NULL_HDBC) SQLFreeHandle(SQL_HANDLE_DBC, dbc_);
}

absl::StatusOr<std::string> OdbcConnection::DbmsName() {
  if (util::OnFiber()) return util::RunBlocking([this] { return DbmsName(); });
  SQLCHAR name[256] = {0};
  SQLSMALLINT len = 0;
  if (!SQL_SUCCEEDED(SQLGetInfo(dbc_, SQL_DBMS_NAME, name, sizeof name, &len))) {
    return Fail(SQL_HANDLE_DBC, dbc_, SqlErrorContext::kStatement);
  }
  return std::string(reinterpret_cast<char*>(name));
}

bool OdbcConnection::ConnectionDead() {
  SQLUINTEGER dead = SQL_CD_FALSE;
  if (SQL_SUCCEEDED(SQLGetConnectAttr(dbc_, SQL_ATTR_CONNECTION_DEAD, &dead, 0, nullptr))) {
    return dead == SQL_CD_TRUE;
  }
  return false;
}

absl::Status OdbcConnection::Fail(SQLSMALLINT handle_type, SQLHANDLE handle,
                                  SqlErrorContext context) {
  Diagnostic d = ReadDiagnostic(handle_type, handle);
  const bool dead = ConnectionDead();
  absl::Status s = mapper_(d, context, dead);
  if (dead || s.code() == absl::StatusCode::kUnavailable) broken_ = true;
  return s;
}

absl::Status OdbcConnection::SetAutocommit(bool on) {
  if (util::OnFiber()) return util::RunBlocking([&] { return SetAutocommit(on); });
  SQLRETURN rc = SQLSetConnectAttr(
      dbc_, SQL_ATTR_AUTOCOMMIT,
      reinterpret_cast<SQLPOINTER>(static_cast<uintptr_t>(on ? SQL_AUTOCOMMIT_ON : SQL_AUTOCOMMIT_OFF)),
      0);
  if (!SQL_SUCCEEDED(rc)) return Fail(SQL_HANDLE_DBC, dbc_, SqlErrorContext::kStatement);
  return absl::OkStatus();
}

absl::Status OdbcConnection::EndTransaction(bool commit) {
  if (util::OnFiber()) return util::RunBlocking([&] { return EndTransaction(commit); });
  SQLRETURN rc = SQLEndTran(SQL_HANDLE_DBC, dbc_, commit ? SQL_COMMIT : SQL_ROLLBACK);
  if (!SQL_SUCCEEDED(rc)) return Fail(SQL_HANDLE_DBC, dbc_, SqlErrorContext::kStatement);
  return absl::OkStatus();
}

void OdbcConnection::Cancel() {
  absl::MutexLock lock(&cancel_mu_);
  if (running_ != SQL_NULL_HSTMT) SQLCancel(running_);
}

absl::Status OdbcConnection::Run(absl::string_view sql, SqlErrorContext context) {
  ExecOptions o;
  o.context = context;
  return Execute(sql, {}, o).status();
}

absl::StatusOr<ResultSet> OdbcConnection::Execute(absl::string_view sql,
                                                  const std::vector<Value>& params,
                                                  const ExecOptions& options) {
  if (util::OnFiber()) return util::RunBlocking([&] { return Execute(sql, params, options); });
  if (broken_) {
    return absl::UnavailableError(absl::StrCat("bind ", bind_, ": connection is broken"));
  }
  SQLHSTMT st = SQL_NULL_HSTMT;
  if (!SQL_SUCCEEDED(SQLAllocHandle(SQL_HANDLE_STMT, dbc_, &st))) {
    return Fail(SQL_HANDLE_DBC, dbc_, options.context);
  }
  struct StmtCloser {
    OdbcConnection* self;
    SQLHSTMT st;
    ~StmtCloser() {
      {
        absl::MutexLock lock(&self->cancel_mu_);
        self->running_ = SQL_NULL_HSTMT;
      }
      SQLFreeHandle(SQL_HANDLE_STMT, st);
    }
  } closer{this, st};

  std::vector<BoundParam> bound(params.size());  // never resized: pointers stay valid
  for (size_t i = 0; i < params.size(); ++i) {
    BoundParam& p = bound[i];
    PrepareParam(params[i], time_as_text, p);
    SQLPOINTER ptr = nullptr;
    SQLLEN buffer_length = 0;
    switch (p.c_type) {
      case SQL_C_BIT: ptr = &p.bit; break;
      case SQL_C_SBIGINT: ptr = &p.int_value; break;
      case SQL_C_DOUBLE: ptr = &p.double_value; break;
      case SQL_C_WCHAR:
        ptr = p.wide.data();
        buffer_length = static_cast<SQLLEN>(p.wide.size() * sizeof(SQLWCHAR));
        break;
      default:
        ptr = p.bytes.data();
        buffer_length = static_cast<SQLLEN>(p.bytes.size());
        break;
    }
    SQLRETURN rc = SQLBindParameter(st, static_cast<SQLUSMALLINT>(i + 1), SQL_PARAM_INPUT,
                                    p.c_type, p.sql_type, p.column_size, p.decimal_digits, ptr,
                                    buffer_length, &p.indicator);
    if (!SQL_SUCCEEDED(rc)) return Fail(SQL_HANDLE_STMT, st, options.context);
  }

  {
    absl::MutexLock lock(&cancel_mu_);
    running_ = st;
  }
  std::basic_string<SQLWCHAR> wide_sql = Utf8ToUtf16(sql);
  SQLRETURN rc = SQLExecDirectW(st, wide_sql.data(), static_cast<SQLINTEGER>(wide_sql.size()));
  if (!SQL_SUCCEEDED(rc) && rc != SQL_NO_DATA) return Fail(SQL_HANDLE_STMT, st, options.context);

  ResultSet out;
  SQLLEN count = -1;
  if (rc != SQL_NO_DATA && SQL_SUCCEEDED(SQLRowCount(st, &count))) out.rows_affected = count;
  if (rc == SQL_NO_DATA) out.rows_affected = 0;  // a searched UPDATE/DELETE that matched nothing

  SQLSMALLINT ncols = 0;
  if (rc != SQL_NO_DATA && !SQL_SUCCEEDED(SQLNumResultCols(st, &ncols))) {
    return Fail(SQL_HANDLE_STMT, st, options.context);
  }
  std::vector<ColumnPlan> plans;
  for (SQLUSMALLINT c = 1; c <= ncols; ++c) {
    SQLWCHAR name[256] = {0};
    SQLSMALLINT name_len = 0, type = 0, digits = 0, nullable = 0;
    SQLULEN size = 0;
    if (!SQL_SUCCEEDED(SQLDescribeColW(st, c, name, 256, &name_len, &type, &size, &digits,
                                       &nullable))) {
      return Fail(SQL_HANDLE_STMT, st, options.context);
    }
    SQLCHAR type_name[128] = {0};
    SQLSMALLINT type_name_len = 0;
    SQLColAttribute(st, c, SQL_DESC_TYPE_NAME, type_name, sizeof type_name, &type_name_len,
                    nullptr);
    Column col;
    col.name = Utf16ToUtf8(name, std::min<size_t>(std::max<SQLSMALLINT>(name_len, 0), 255));
    col.type = reinterpret_cast<char*>(type_name);
    if (col.type.empty()) col.type = absl::StrCat("odbc:", type);
    plans.push_back(PlanColumn(type, col.type, options.text_as_bytes));
    out.columns.push_back(std::move(col));
  }

  while (ncols > 0) {
    rc = SQLFetch(st);
    if (rc == SQL_NO_DATA) break;
    if (!SQL_SUCCEEDED(rc)) return Fail(SQL_HANDLE_STMT, st, options.context);
    if (options.max_rows > 0 && out.rows.size() >= static_cast<size_t>(options.max_rows)) {
      out.truncated = true;
      break;
    }
    std::vector<Value> row;
    row.reserve(ncols);
    for (SQLUSMALLINT c = 1; c <= ncols; ++c) {
      const ColumnPlan& plan = plans[c - 1];
      SQLLEN ind = 0;
      Value v;
      switch (plan.fetch) {
        case Fetch::kBit: {
          unsigned char b = 0;
          rc = SQLGetData(st, c, SQL_C_BIT, &b, sizeof b, &ind);
          v = Value::Bool(b != 0);
          break;
        }
        case Fetch::kInt: {
          int64_t i = 0;
          rc = SQLGetData(st, c, SQL_C_SBIGINT, &i, sizeof i, &ind);
          v = Value::Int64(i);
          break;
        }
        case Fetch::kDouble: {
          double d = 0;
          rc = SQLGetData(st, c, SQL_C_DOUBLE, &d, sizeof d, &ind);
          v = Value::Double(d);
          break;
        }
        case Fetch::kChar:
        case Fetch::kBinary: {
          // Read in chunks until the driver has no more (SQL_NO_DATA).
          const bool binary = plan.fetch == Fetch::kBinary;
          std::string data;
          char buf[8192];
          for (;;) {
            rc = SQLGetData(st, c, binary ? SQL_C_BINARY : SQL_C_CHAR, buf, sizeof buf, &ind);
            if (rc == SQL_NO_DATA) {
              rc = SQL_SUCCESS;
              break;
            }
            if (!SQL_SUCCEEDED(rc) || ind == SQL_NULL_DATA) break;
            const size_t room = binary ? sizeof buf : sizeof buf - 1;  // char: NUL-terminated
            const size_t got =
                (ind == SQL_NO_TOTAL || static_cast<size_t>(ind) > room) ? room
                                                                         : static_cast<size_t>(ind);
            data.append(buf, got);
            if (rc == SQL_SUCCESS) break;  // that was the last piece
          }
          if (plan.is_bool_text) {
            v = Value::Bool(data == "1" || data == "t" || data == "true");
          } else if (plan.kind == Value::Kind::kTimestamp) {
            std::string t = NormalizeTimestampText(data);
            if (plan.utc_zone && !t.empty() && t.back() != 'Z') t += 'Z';
            v = Value::Text(plan.kind, std::move(t));
          } else {
            v = Value::Text(plan.kind, std::move(data));
          }
          break;
        }
        case Fetch::kWide: {
          std::basic_string<SQLWCHAR> data;
          SQLWCHAR buf[4096];
          for (;;) {
            rc = SQLGetData(st, c, SQL_C_WCHAR, buf, sizeof buf, &ind);
            if (rc == SQL_NO_DATA) {
              rc = SQL_SUCCESS;
              break;
            }
            if (!SQL_SUCCEEDED(rc) || ind == SQL_NULL_DATA) break;
            const size_t room = sizeof buf / sizeof(SQLWCHAR) - 1;  // NUL-terminated
            const size_t got = (ind == SQL_NO_TOTAL ||
                                static_cast<size_t>(ind) / sizeof(SQLWCHAR) > room)
                                   ? room
                                   : static_cast<size_t>(ind) / sizeof(SQLWCHAR);
            data.append(buf, got);
            if (rc == SQL_SUCCESS) break;
          }
          v = Value::Text(Value::Kind::kString, Utf16ToUtf8(data.data(), data.size()));
          break;
        }
      }
      if (!SQL_SUCCEEDED(rc)) return Fail(SQL_HANDLE_STMT, st, options.context);
      if (ind == SQL_NULL_DATA) v = Value::Null();
      row.push_back(std::move(v));
    }
    out.rows.push_back(std::move(row));
  }
  // Read and drop further results (a CALL's status result, a multi-statement
  // batch): the connection must be idle for the next statement.
  for (;;) {
    rc = SQLMoreResults(st);
    if (rc == SQL_NO_DATA) break;
    if (!SQL_SUCCEEDED(rc)) return Fail(SQL_HANDLE_STMT, st, options.context);
  }
  return out;
}

}  // namespace txcoord::participants::odbc
