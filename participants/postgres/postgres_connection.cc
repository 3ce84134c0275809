#include "participants/postgres/postgres_connection.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "participants/postgres/postgres_participant.h"
#include "participants/sql_common.h"

namespace txcoord::participants {

std::string PostgresConninfoWithConnectTimeout(const std::string& dsn, absl::Duration timeout) {
  if (timeout <= absl::ZeroDuration() || timeout == absl::InfiniteDuration()) return dsn;
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(dsn.c_str(), &error);
  if (parsed == nullptr) {
    PQfreemem(error);
    return dsn;  // the connect reports what is wrong with it
  }
  std::string out;
  bool has_timeout = false;
  for (PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    if (std::string(o->keyword) == "connect_timeout") has_timeout = true;
    std::string value;
    for (const char* ch = o->val; *ch != '\0'; ++ch) {
      if (*ch == '\'' || *ch == '\\') value.push_back('\\');
      value.push_back(*ch);
    }
    absl::StrAppend(&out, out.empty() ? "" : " ", o->keyword, "='", value, "'");
  }
  PQconninfoFree(parsed);
  if (has_timeout) return dsn;
  // libpq counts whole seconds, and at least 2.
  const int64_t seconds = std::max<int64_t>(2, absl::ToInt64Seconds(absl::Ceil(timeout, absl::Seconds(1))));
  return absl::StrCat(out, out.empty() ? "" : " ", "connect_timeout=", seconds);
}

namespace postgres_internal {

absl::StatusOr<std::unique_ptr<PgConnection>> OpenConnection(const BindOptions& options) {
  auto out = std::make_unique<PgConnection>();
  bool broken = false;
  absl::Status s = Guard(options.name, SqlErrorContext::kStatement, &broken, [&] {
    out->conn = std::make_unique<PgConn>(PostgresConninfoWithConnectTimeout(options.dsn, options.io_timeout));
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    // A broken connection is evicted and replaced by the pool; libpqxx must
    // not reconnect behind our back (session settings would be lost).
    out->conn->inhibit_reactivation(true);
#pragma GCC diagnostic pop
  });
  if (s.ok()) {
    if (PGcancel* cancel = PQgetCancel(out->conn->raw())) out->cancel.reset(cancel, PQfreeCancel);
    s = GuardOn(options, *out, SqlErrorContext::kStatement, &broken, [&] {
      pqxx::nontransaction n(*out->conn);
      n.exec(absl::StrCat("SET TIME ZONE 'UTC'; ", kPostgresClientCheckSql));
    });
  }
  if (!s.ok()) {
    // A refused login or an unknown database or role: a retry cannot fix
    // it until the bind's connection string is (libpq gives no SQLSTATE
    // for a failed connection, only its message).
    if (LoginRefusedMessage(s.message())) {
      return absl::FailedPreconditionError(absl::StrCat(s.message(), " (fix the bind's connection string)"));
    }
    if (s.code() == absl::StatusCode::kInternal) {
      // A bad DSN surfaces as a plain exception from the constructor.
      return absl::UnavailableError(s.message());
    }
    return s;
  }
  return out;
}

std::string FormatDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

std::optional<std::string> ParamText(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kNull:
      return std::nullopt;
    case Value::Kind::kBool:
      return std::string(v.bool_value ? "true" : "false");
    case Value::Kind::kInt64:
      return absl::StrCat(v.int_value);
    case Value::Kind::kDouble:
      return FormatDouble(v.double_value);
    case Value::Kind::kBytes:
      return absl::StrCat("\\x", absl::BytesToHexString(v.text));
    default:
      return v.text;
  }
}

absl::Status CheckParams(absl::string_view bind, const std::vector<Value>& params) {
  for (size_t k = 0; k < params.size(); ++k) {
    if (params[k].kind != Value::Kind::kBytes && params[k].text.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("bind ", bind, ": parameter ", k + 1,
                                                     " holds a NUL byte, which PostgreSQL text cannot hold "
                                                     "(send binary data as bytes)"));
    }
  }
  return absl::OkStatus();
}

namespace {

// Type OIDs of pg_type that need no lookup, and how their text converts.
const char* BuiltinTypeName(uint32_t oid) {
  switch (oid) {
    case 16: return "bool";
    case 17: return "bytea";
    case 18: return "char";
    case 19: return "name";
    case 20: return "int8";
    case 21: return "int2";
    case 23: return "int4";
    case 25: return "text";
    case 26: return "oid";
    case 28: return "xid";
    case 114: return "json";
    case 700: return "float4";
    case 701: return "float8";
    case 1042: return "bpchar";
    case 1043: return "varchar";
    case 1082: return "date";
    case 1083: return "time";
    case 1114: return "timestamp";
    case 1184: return "timestamptz";
    case 1186: return "interval";
    case 1266: return "timetz";
    case 1700: return "numeric";
    case 2950: return "uuid";
    case 3802: return "jsonb";
    default: return nullptr;
  }
}

Value CellValue(uint32_t oid, const char* s, size_t size, bool null) {
  if (null) return Value::Null();
  switch (oid) {
    case 16:
      return Value::Bool(s[0] == 't');
    case 20: case 21: case 23: case 26: case 28:
      return Value::Int64(std::strtoll(s, nullptr, 10));
    case 700: case 701:
      return Value::Double(std::strtod(s, nullptr));
    case 1700:
      return Value::Text(Value::Kind::kDecimal, s);
    case 17: {
      // bytea_output = hex (the default since 9.0): "\x0a1b…".
      absl::string_view hex(s, size);
      if (absl::StartsWith(hex, "\\x")) {
        return Value::Text(Value::Kind::kBytes, absl::HexStringToBytes(hex.substr(2)));
      }
      size_t n = 0;  // escape format
      unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(s), &n);
      if (raw == nullptr) return Value::Text(Value::Kind::kBytes, "");
      std::string bytes(reinterpret_cast<const char*>(raw), n);
      PQfreemem(raw);
      return Value::Text(Value::Kind::kBytes, std::move(bytes));
    }
    case 1082:
      return Value::Text(Value::Kind::kDate, s);
    case 1083: case 1266:
      return Value::Text(Value::Kind::kTime, s);
    case 1114: case 1184:
      return Value::Text(Value::Kind::kTimestamp, NormalizeTimestampText(s));
    default:
      return Value::Text(Value::Kind::kString, std::string(s, size));
  }
}

// `in`: the transaction object to look the name up in (one is open on the
// connection, or the lookup opens a nontransaction of its own).
template <typename In>
std::string TypeName(PgShared& shared, In&& in, uint32_t oid) {
  if (const char* name = BuiltinTypeName(oid)) return name;
  {
    absl::MutexLock lock(&shared.types_mu);
    auto it = shared.type_names.find(oid);
    if (it != shared.type_names.end()) return it->second;
  }
  std::string name = absl::StrCat("oid:", oid);
  pqxx::result r = in([&](pqxx::transaction_base& t) {
    return t.exec_params("SELECT typname FROM pg_type WHERE oid = $1::oid", oid);
  });
  if (!r.empty()) name = r[0][0].c_str();
  absl::MutexLock lock(&shared.types_mu);
  shared.type_names[oid] = name;
  return name;
}

// The conversion for a pqxx::result and a libpq PGresult alike: `Rows`
// gives columns(), column_name(c), column_type(c), rows(), cell(i, c,
// &size, &null) and affected().
template <typename In, typename Rows>
ResultSet Convert(PgShared& shared, In&& in, const Rows& r, int max_rows) {
  ResultSet out;
  const int ncols = r.columns();
  std::vector<uint32_t> oids(ncols);
  for (int c = 0; c < ncols; ++c) {
    oids[c] = r.column_type(c);
    out.columns.push_back(Column{r.column_name(c), TypeName(shared, in, oids[c])});
  }
  size_t limit = r.rows();
  if (max_rows > 0 && limit > static_cast<size_t>(max_rows)) {
    limit = static_cast<size_t>(max_rows);
    out.truncated = true;
  }
  out.rows.reserve(limit);
  for (size_t i = 0; i < limit; ++i) {
    std::vector<Value> row;
    row.reserve(ncols);
    for (int c = 0; c < ncols; ++c) {
      size_t size = 0;
      bool null = false;
      const char* cell = r.cell(i, c, &size, &null);
      row.push_back(CellValue(oids[c], cell, size, null));
    }
    out.rows.push_back(std::move(row));
  }
  // PQcmdTuples: rows inserted/updated/deleted/selected; 0 for commands
  // that do not count rows (SET, CREATE…).
  out.rows_affected = r.affected();
  return out;
}

struct PqxxRows {
  const pqxx::result& r;
  int columns() const { return static_cast<int>(r.columns()); }
  std::string column_name(int c) const { return r.column_name(c); }
  uint32_t column_type(int c) const { return r.column_type(c); }
  size_t rows() const { return r.size(); }
  const char* cell(size_t i, int c, size_t* size, bool* null) const {
    pqxx::field f = r[i][c];
    *size = f.size();
    *null = f.is_null();
    return f.c_str();
  }
  int64_t affected() const { return static_cast<int64_t>(r.affected_rows()); }
};

struct LibpqRows {
  const PGresult* r;
  int columns() const { return PQnfields(r); }
  std::string column_name(int c) const { return PQfname(r, c); }
  uint32_t column_type(int c) const { return PQftype(r, c); }
  size_t rows() const { return static_cast<size_t>(PQntuples(r)); }
  const char* cell(size_t i, int c, size_t* size, bool* null) const {
    *size = static_cast<size_t>(PQgetlength(r, static_cast<int>(i), c));
    *null = PQgetisnull(r, static_cast<int>(i), c) != 0;
    return PQgetvalue(r, static_cast<int>(i), c);
  }
  int64_t affected() const { return std::strtoll(PQcmdTuples(const_cast<PGresult*>(r)), nullptr, 10); }
};

}  // namespace

ResultSet ToResultSet(PgShared& shared, pqxx::nontransaction& n, const pqxx::result& r,
                      int max_rows) {
  auto in = [&n](auto&& query) { return query(n); };
  return Convert(shared, in, PqxxRows{r}, max_rows);
}

ResultSet ToResultSet(PgShared& shared, PgConnection& c, const PGresult* r, int max_rows) {
  // The connection is idle (no pqxx transaction object on it).
  auto in = [&c](auto&& query) {
    pqxx::nontransaction n(*c.conn);
    return query(n);
  };
  return Convert(shared, in, LibpqRows{r}, max_rows);
}

}  // namespace postgres_internal
}  // namespace txcoord::participants
