#include "participants/postgres/postgres_connection.h"

#include <charconv>
#include <cmath>
#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "participants/postgres/postgres_participant.h"

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
      n.exec("SET TIME ZONE 'UTC'");
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

Value CellValue(uint32_t oid, const pqxx::field& f) {
  if (f.is_null()) return Value::Null();
  const char* s = f.c_str();
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
      absl::string_view hex(s, f.size());
      if (absl::StartsWith(hex, "\\x")) {
        return Value::Text(Value::Kind::kBytes, absl::HexStringToBytes(hex.substr(2)));
      }
      pqxx::binarystring b(f);  // escape format
      return Value::Text(Value::Kind::kBytes, b.str());
    }
    case 1082:
      return Value::Text(Value::Kind::kDate, s);
    case 1083: case 1266:
      return Value::Text(Value::Kind::kTime, s);
    case 1114: case 1184:
      return Value::Text(Value::Kind::kTimestamp, NormalizeTimestampText(s));
    default:
      return Value::Text(Value::Kind::kString, std::string(s, f.size()));
  }
}

std::string TypeName(PgShared& shared, pqxx::nontransaction& n, uint32_t oid) {
  if (const char* name = BuiltinTypeName(oid)) return name;
  {
    absl::MutexLock lock(&shared.types_mu);
    auto it = shared.type_names.find(oid);
    if (it != shared.type_names.end()) return it->second;
  }
  std::string name = absl::StrCat("oid:", oid);
  pqxx::result r = n.exec_params("SELECT typname FROM pg_type WHERE oid = $1::oid", oid);
  if (!r.empty()) name = r[0][0].c_str();
  absl::MutexLock lock(&shared.types_mu);
  shared.type_names[oid] = name;
  return name;
}

ResultSet ToResultSet(PgShared& shared, pqxx::nontransaction& n, const pqxx::result& r,
                      int max_rows) {
  ResultSet out;
  const int ncols = static_cast<int>(r.columns());
  std::vector<uint32_t> oids(ncols);
  for (int c = 0; c < ncols; ++c) {
    oids[c] = r.column_type(c);
    out.columns.push_back(Column{r.column_name(c), TypeName(shared, n, oids[c])});
  }
  size_t limit = r.size();
  if (max_rows > 0 && r.size() > static_cast<size_t>(max_rows)) {
    limit = static_cast<size_t>(max_rows);
    out.truncated = true;
  }
  out.rows.reserve(limit);
  for (size_t i = 0; i < limit; ++i) {
    std::vector<Value> row;
    row.reserve(ncols);
    for (int c = 0; c < ncols; ++c) row.push_back(CellValue(oids[c], r[i][c]));
    out.rows.push_back(std::move(row));
  }
  // PQcmdTuples: rows inserted/updated/deleted/selected; 0 for commands
  // that do not count rows (SET, CREATE…), which libpqxx 6 cannot tell apart.
  out.rows_affected = static_cast<int64_t>(r.affected_rows());
  return out;
}

}  // namespace postgres_internal
}  // namespace txcoord::participants
