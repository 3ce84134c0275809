#include "participants/statement_guard.h"

#include <cstddef>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "util/failpoint.h"

namespace txcoord::participants {
namespace {

enum class Dialect { kPostgres, kMysql, kOracle, kSqlServer, kSqlite, kUnknown };

Dialect DialectOf(absl::string_view name) {
  if (name == "postgresql") return Dialect::kPostgres;
  if (name == "mariadb" || name == "mysql") return Dialect::kMysql;
  if (name == "oracle") return Dialect::kOracle;
  if (name == "sqlserver") return Dialect::kSqlServer;
  if (name == "sqlite") return Dialect::kSqlite;
  return Dialect::kUnknown;
}

struct Token {
  std::string text;  // upper-cased word, "'" for a literal, '"' for a quoted name, or punctuation
  size_t begin = 0;  // byte offsets in the SQL text
  size_t end = 0;
  bool word = false;
};

struct Statement {
  std::vector<Token> tokens;
};

bool WordStart(unsigned char c) { return absl::ascii_isalpha(c) || c == '_' || c >= 0x80; }
bool WordChar(unsigned char c) { return absl::ascii_isalnum(c) || c == '_' || c == '$' || c >= 0x80; }

// Reads `sql` into tokens the way `dialect`'s server reads it: comments
// dropped (MariaDB's executable /*! … */ kept as code), literals and
// quoted identifiers as single tokens. An unterminated literal or comment
// swallows the rest (the server refuses such text anyway).
class Lexer {
 public:
  Lexer(Dialect dialect, absl::string_view sql, bool backslash_escapes)
      : dialect_(dialect), sql_(sql), backslash_escapes_(backslash_escapes) {}

  std::vector<Token> Run() {
    while (i_ < sql_.size()) Step();
    return std::move(tokens_);
  }

 private:
  char At(size_t k) const { return k < sql_.size() ? sql_[k] : '\0'; }

  void Emit(std::string text, size_t begin, bool word = false) {
    tokens_.push_back(Token{std::move(text), begin, i_, word});
  }

  void Step() {
    const size_t start = i_;
    const unsigned char c = static_cast<unsigned char>(sql_[i_]);
    const char next = At(i_ + 1);
    if (absl::ascii_isspace(c)) {
      ++i_;
      return;
    }
    if (c == '-' && next == '-') {
      // MariaDB needs a space or control character after "--".
      const unsigned char after = static_cast<unsigned char>(At(i_ + 2));
      if (dialect_ != Dialect::kMysql || after == '\0' || after <= ' ') {
        SkipLine();
        return;
      }
    }
    if (c == '#' && dialect_ == Dialect::kMysql) {
      SkipLine();
      return;
    }
    if (c == '/' && next == '*') {
      if (dialect_ == Dialect::kMysql && (At(i_ + 2) == '!' || (At(i_ + 2) == 'M' && At(i_ + 3) == '!'))) {
        // An executable comment: its content is code for MariaDB.
        i_ += At(i_ + 2) == '!' ? 3 : 4;
        while (absl::ascii_isdigit(static_cast<unsigned char>(At(i_)))) ++i_;
        ++executable_comments_;
        return;
      }
      SkipBlockComment();
      return;
    }
    if (c == '*' && next == '/' && executable_comments_ > 0) {
      --executable_comments_;
      i_ += 2;
      return;
    }
    if (c == '\'') {
      SkipQuoted('\'', backslash_escapes_);
      Emit("'", start);
      return;
    }
    if (c == '"') {
      SkipQuoted('"', dialect_ == Dialect::kMysql && backslash_escapes_);
      Emit("\"", start);
      return;
    }
    if (c == '`' && (dialect_ == Dialect::kMysql || dialect_ == Dialect::kSqlite || dialect_ == Dialect::kUnknown)) {
      SkipQuoted('`', false);
      Emit("\"", start);
      return;
    }
    if (c == '[' && (dialect_ == Dialect::kSqlServer || dialect_ == Dialect::kSqlite)) {
      SkipQuoted(']', false);
      Emit("\"", start);
      return;
    }
    if (c == '$' && (dialect_ == Dialect::kPostgres || dialect_ == Dialect::kUnknown) && DollarQuote()) {
      Emit("'", start);
      return;
    }
    if (WordStart(c)) {
      // PostgreSQL's E'…' (and U&'…'): backslash escapes whatever the settings.
      if ((c == 'E' || c == 'e') && next == '\'' &&
          (dialect_ == Dialect::kPostgres || dialect_ == Dialect::kUnknown)) {
        ++i_;
        SkipQuoted('\'', true);
        Emit("'", start);
        return;
      }
      while (i_ < sql_.size() && WordChar(static_cast<unsigned char>(sql_[i_]))) ++i_;
      Emit(absl::AsciiStrToUpper(sql_.substr(start, i_ - start)), start, /*word=*/true);
      return;
    }
    if (absl::ascii_isdigit(c)) {
      while (i_ < sql_.size() && (absl::ascii_isalnum(static_cast<unsigned char>(sql_[i_])) || sql_[i_] == '.')) ++i_;
      Emit("0", start);
      return;
    }
    if (c == ':' && next == '=') {
      i_ += 2;
      Emit(":=", start);
      return;
    }
    ++i_;
    Emit(std::string(1, static_cast<char>(c)), start);
  }

  void SkipLine() {
    while (i_ < sql_.size() && sql_[i_] != '\n') ++i_;
  }

  void SkipBlockComment() {
    // PostgreSQL and SQL Server nest block comments; the others do not.
    const bool nests = dialect_ == Dialect::kPostgres || dialect_ == Dialect::kSqlServer ||
                       dialect_ == Dialect::kUnknown;
    int depth = 0;
    while (i_ < sql_.size()) {
      if (sql_[i_] == '/' && At(i_ + 1) == '*') {
        if (depth == 0 || nests) ++depth;
        i_ += 2;
      } else if (sql_[i_] == '*' && At(i_ + 1) == '/') {
        i_ += 2;
        if (--depth == 0) return;
      } else {
        ++i_;
      }
    }
  }

  // From the opening quote at i_ to after its closing one; a doubled quote
  // stays inside, and so does a quote after a backslash when `backslash`.
  void SkipQuoted(char close, bool backslash) {
    ++i_;
    while (i_ < sql_.size()) {
      const char c = sql_[i_];
      if (backslash && c == '\\') {
        i_ += 2;
        continue;
      }
      ++i_;
      if (c == close) {
        if (At(i_) == close) {
          ++i_;
          continue;
        }
        return;
      }
    }
  }

  // A PostgreSQL dollar-quoted literal ($$…$$, $tag$…$tag$) at i_: skips
  // it and returns true; false (nothing consumed) for a parameter like $1.
  bool DollarQuote() {
    size_t k = i_ + 1;
    if (k < sql_.size() && WordStart(static_cast<unsigned char>(sql_[k]))) {
      while (k < sql_.size() && WordChar(static_cast<unsigned char>(sql_[k])) && sql_[k] != '$') ++k;
    }
    if (At(k) != '$') return false;
    const absl::string_view tag = sql_.substr(i_, k + 1 - i_);
    const size_t close = sql_.find(tag, k + 1);
    i_ = close == absl::string_view::npos ? sql_.size() : close + tag.size();
    return true;
  }

  const Dialect dialect_;
  const absl::string_view sql_;
  const bool backslash_escapes_;
  size_t i_ = 0;
  int executable_comments_ = 0;
  std::vector<Token> tokens_;
};

bool IsWord(const std::vector<Token>& t, size_t k, absl::string_view word) {
  return k < t.size() && t[k].word && t[k].text == word;
}

bool HasWord(const std::vector<Token>& t, absl::string_view word) {
  for (const Token& x : t) {
    if (x.word && x.text == word) return true;
  }
  return false;
}

// Splits tokens at ";". A PostgreSQL SQL-standard function body (BEGIN
// ATOMIC … END, with CASE … END inside) keeps its semicolons; so does an
// Oracle PL/SQL block, which is one statement to the end of the text.
std::vector<Statement> Split(Dialect dialect, std::vector<Token> tokens) {
  std::vector<Statement> out;
  Statement current;
  int atomic_depth = 0;  // > 0 inside BEGIN ATOMIC: 1 + open CASEs
  bool plsql = false;
  for (size_t k = 0; k < tokens.size(); ++k) {
    Token& t = tokens[k];
    if (current.tokens.empty() && dialect == Dialect::kOracle && t.word &&
        (t.text == "BEGIN" || t.text == "DECLARE" || t.text == "CREATE")) {
      plsql = true;
    }
    if (t.text == ";" && atomic_depth == 0 && !plsql) {
      if (!current.tokens.empty()) out.push_back(std::move(current));
      current = Statement{};
      continue;
    }
    if (t.word && (dialect == Dialect::kPostgres || dialect == Dialect::kUnknown)) {
      if (atomic_depth == 0 && t.text == "BEGIN" && IsWord(tokens, k + 1, "ATOMIC") && !current.tokens.empty()) {
        atomic_depth = 1;
      } else if (atomic_depth > 0 && t.text == "CASE") {
        ++atomic_depth;
      } else if (atomic_depth > 0 && t.text == "END") {
        --atomic_depth;
      }
    }
    current.tokens.push_back(std::move(t));
  }
  if (!current.tokens.empty()) out.push_back(std::move(current));
  return out;
}

// Why statement `t` may not run in a branch, or "" when it may.
// PostgreSQL: BEGIN, START, COMMIT, END, ABORT, ROLLBACK (but ROLLBACK TO
// SAVEPOINT), PREPARE TRANSACTION; COMMIT/ROLLBACK PREPARED are COMMIT and
// ROLLBACK; RESET ALL; COPY … FROM STDIN / TO STDOUT.
std::string PostgresRefusal(const std::vector<Token>& t) {
  const std::string& w = t[0].text;
  if (w == "BEGIN" || w == "START" || w == "COMMIT" || w == "END" || w == "ABORT") return "ends or starts a transaction";
  if (w == "ROLLBACK") {
    size_t k = 1;
    if (IsWord(t, k, "WORK") || IsWord(t, k, "TRANSACTION")) ++k;
    return IsWord(t, k, "TO") ? "" : "ends a transaction";
  }
  if (w == "PREPARE" && IsWord(t, 1, "TRANSACTION")) return "prepares a transaction";
  // It would also reset the branch's own SET LOCAL limits (lock and
  // statement timeouts) that end cross-database deadlocks.
  if (w == "RESET" && IsWord(t, 1, "ALL")) return "resets txcoord's own settings of the branch (reset settings by name)";
  if (w == "COPY") {
    // Its data would travel in the copy sub-protocol, between the server
    // and the client's connection, which txcoord does not relay.
    for (size_t k = 1; k < t.size(); ++k) {
      if (IsWord(t, k, "STDIN") || IsWord(t, k, "STDOUT")) {
        return "copies from or to the client (use INSERT or SELECT, or COPY with a file on the server)";
      }
    }
  }
  return "";
}

// MariaDB/MySQL: transaction control, XA, and every statement that commits
// implicitly (MariaDB's list: DDL, account and administration statements,
// LOCK/UNLOCK TABLES, SET autocommit, SET PASSWORD). CREATE/DROP TEMPORARY
// TABLE do not commit.
std::string MysqlRefusal(const std::vector<Token>& t, size_t first) {
  if (first >= t.size()) return "";
  const std::string& w = t[first].text;
  if (!t[first].word) return "";
  if (w == "BEGIN" || w == "START" || w == "COMMIT" || w == "XA") return "ends or starts a transaction";
  if (w == "ROLLBACK") {
    size_t k = first + 1;
    if (IsWord(t, k, "WORK")) ++k;
    return IsWord(t, k, "TO") ? "" : "ends a transaction";
  }
  if (w == "SET") {
    if (IsWord(t, first + 1, "STATEMENT")) {
      // SET STATEMENT var=value[, …] FOR <statement>: judge the statement.
      for (size_t k = first + 2; k < t.size(); ++k) {
        if (IsWord(t, k, "FOR")) return MysqlRefusal(t, k + 1);
      }
      return "";
    }
    if (IsWord(t, first + 1, "PASSWORD")) return "commits implicitly";
    for (size_t k = first + 1; k < t.size(); ++k) {
      if (t[k].word && (t[k].text == "AUTOCOMMIT" || t[k].text == "COMPLETION_TYPE")) {
        return "changes autocommit (commits implicitly)";
      }
    }
    return "";
  }
  if (w == "CREATE") {
    size_t k = first + 1;
    if (IsWord(t, k, "OR") && IsWord(t, k + 1, "REPLACE")) k += 2;
    return IsWord(t, k, "TEMPORARY") ? "" : "commits implicitly (DDL)";
  }
  if (w == "DROP") return IsWord(t, first + 1, "TEMPORARY") ? "" : "commits implicitly (DDL)";
  if (w == "LOAD") return IsWord(t, first + 1, "INDEX") ? "commits implicitly" : "";
  for (const char* implicit : {"ALTER", "RENAME", "TRUNCATE", "GRANT", "REVOKE", "LOCK", "UNLOCK", "ANALYZE", "CHECK",
                               "OPTIMIZE", "REPAIR", "FLUSH", "RESET", "CACHE", "INSTALL", "UNINSTALL", "CHANGE",
                               "STOP", "BACKUP", "PURGE", "SHUTDOWN"}) {
    if (w == implicit) return "commits implicitly";
  }
  return "";
}

std::string SqliteRefusal(const std::vector<Token>& t) {
  const std::string& w = t[0].text;
  if (w == "BEGIN" || w == "COMMIT" || w == "END") return "ends or starts a transaction";
  if (w == "ROLLBACK") {
    size_t k = 1;
    if (IsWord(t, k, "TRANSACTION")) ++k;
    return IsWord(t, k, "TO") ? "" : "ends a transaction";
  }
  return "";
}

// Oracle (untested: no server here). A PL/SQL block is one statement, so
// COMMIT and ROLLBACK are refused anywhere in the text; DDL commits
// implicitly. ALTER SESSION is allowed (and closes the connection after).
std::string OracleRefusal(const std::vector<Token>& t) {
  for (size_t k = 0; k < t.size(); ++k) {
    if (IsWord(t, k, "COMMIT")) return "ends a transaction";
    if (IsWord(t, k, "ROLLBACK")) {
      size_t n = k + 1;
      if (IsWord(t, n, "WORK")) ++n;
      if (!IsWord(t, n, "TO")) return "ends a transaction";
    }
  }
  const std::string& w = t[0].text;
  if (w == "ALTER") return IsWord(t, 1, "SESSION") ? "" : "commits implicitly (DDL)";
  for (const char* ddl : {"CREATE", "DROP", "TRUNCATE", "RENAME", "GRANT", "REVOKE", "COMMENT", "ANALYZE", "AUDIT",
                          "NOAUDIT", "FLASHBACK", "PURGE"}) {
    if (w == ddl) return "commits implicitly (DDL)";
  }
  return "";
}

// SQL Server (untested: no server here). T-SQL needs no ";" between
// statements, so transaction control is refused anywhere in the text:
// BEGIN TRAN[SACTION] / BEGIN DISTRIBUTED, COMMIT, ROLLBACK (also ROLLBACK
// TRAN <savepoint>, which T-SQL cannot tell from a transaction name), SET
// IMPLICIT_TRANSACTIONS. SAVE TRAN is allowed.
std::string SqlServerRefusal(const std::vector<Token>& t) {
  for (size_t k = 0; k < t.size(); ++k) {
    if (IsWord(t, k, "BEGIN") &&
        (IsWord(t, k + 1, "TRAN") || IsWord(t, k + 1, "TRANSACTION") || IsWord(t, k + 1, "DISTRIBUTED"))) {
      return "starts a transaction";
    }
    if (IsWord(t, k, "COMMIT") || IsWord(t, k, "ROLLBACK")) return "ends a transaction";
    if (IsWord(t, k, "IMPLICIT_TRANSACTIONS")) return "changes transaction mode";
  }
  return "";
}

std::string Refusal(Dialect dialect, const std::vector<Token>& t) {
  if (t.empty() || !t[0].word) {
    if (dialect == Dialect::kOracle) return OracleRefusal(t);
    if (dialect == Dialect::kSqlServer) return SqlServerRefusal(t);
    return "";
  }
  switch (dialect) {
    case Dialect::kPostgres: return PostgresRefusal(t);
    case Dialect::kMysql: return MysqlRefusal(t, 0);
    case Dialect::kSqlite: return SqliteRefusal(t);
    case Dialect::kOracle: return OracleRefusal(t);
    case Dialect::kSqlServer: return SqlServerRefusal(t);
    case Dialect::kUnknown: break;
  }
  for (auto* rule : {+[](const std::vector<Token>& x) { return PostgresRefusal(x); },
                     +[](const std::vector<Token>& x) { return MysqlRefusal(x, 0); },
                     +[](const std::vector<Token>& x) { return SqliteRefusal(x); }}) {
    std::string why = rule(t);
    if (!why.empty()) return why;
  }
  return "";
}

// Whether statement `t` may leave state on the connection after its
// transaction ends.
bool LeavesSessionState(Dialect dialect, const std::vector<Token>& t) {
  if (t.empty()) return false;
  const std::string& w = t[0].text;
  // Anywhere in the statement: session locks, settings by function,
  // temporary objects, user variables.
  for (size_t k = 0; k < t.size(); ++k) {
    if (!t[k].word) {
      if (t[k].text == ":=" && dialect == Dialect::kMysql) return true;
      if (t[k].text == "#" && dialect == Dialect::kSqlServer) return true;  // #temp tables
      continue;
    }
    const std::string& x = t[k].text;
    if (x == "TEMP" || x == "TEMPORARY" || x == "PG_ADVISORY_LOCK" || x == "PG_ADVISORY_LOCK_SHARED" ||
        x == "PG_TRY_ADVISORY_LOCK" || x == "PG_TRY_ADVISORY_LOCK_SHARED" || x == "SET_CONFIG" ||
        x == "DBLINK_CONNECT" || x == "DBLINK_CONNECT_U" || x == "GET_LOCK" || x == "SP_GETAPPLOCK" ||
        x == "DBMS_SESSION" || x == "DBMS_LOCK") {
      return true;
    }
    if (x == "INTO" && k + 1 < t.size() && t[k + 1].text == "@") return true;
  }
  if (!t[0].word) return false;
  if (w == "SET") {
    if (dialect == Dialect::kPostgres || dialect == Dialect::kUnknown) {
      // SET LOCAL, SET TRANSACTION and SET CONSTRAINTS end with the transaction.
      if (IsWord(t, 1, "LOCAL") || IsWord(t, 1, "TRANSACTION") || IsWord(t, 1, "CONSTRAINTS")) return false;
    }
    if (dialect == Dialect::kMysql && IsWord(t, 1, "STATEMENT")) return false;  // this statement only
    return true;
  }
  for (const char* session : {"RESET", "LISTEN", "LOAD", "USE", "ATTACH", "DETACH", "PRAGMA", "HANDLER"}) {
    if (w == session) return true;
  }
  if (w == "PREPARE") return true;  // a named prepared statement lives with the connection
  if (w == "DECLARE" && HasWord(t, "HOLD")) return true;
  if (w == "ALTER" && IsWord(t, 1, "SESSION")) return true;
  if (w == "EXECUTE" && IsWord(t, 1, "AS")) return true;
  return false;
}

// Whether a server setting decides if a backslash escapes a quote
// (MariaDB's NO_BACKSLASH_ESCAPES, PostgreSQL's standard_conforming_strings).
bool TwoReadings(Dialect dialect) {
  return dialect == Dialect::kMysql || dialect == Dialect::kPostgres || dialect == Dialect::kUnknown;
}

// The statements of `sql`, read with and without backslash escapes where
// TwoReadings: a rule applies if it applies to either.
std::vector<std::vector<Statement>> Readings(Dialect dialect, absl::string_view sql) {
  std::vector<std::vector<Statement>> out;
  out.push_back(Split(dialect, Lexer(dialect, sql, /*backslash_escapes=*/false).Run()));
  if (TwoReadings(dialect)) {
    out.push_back(Split(dialect, Lexer(dialect, sql, /*backslash_escapes=*/true).Run()));
  }
  return out;
}

// The statement's text for an error message, shortened.
std::string Quote(absl::string_view sql, const Statement& s) {
  const size_t begin = s.tokens.front().begin;
  const size_t end = s.tokens.back().end;
  std::string text(sql.substr(begin, end - begin));
  if (text.size() > 80) text = absl::StrCat(text.substr(0, 77), "...");
  return text;
}

// What the guard reads in one SQL text on one dialect: everything its
// callers ask, so that each repeated text is lexed once.
struct Reading {
  bool refused = false;        // a statement is refused on the dialect
  bool session_state = false;  // a statement may leave session state
  size_t markers[2] = {0, 0};  // "?" markers without / with backslash escapes
};

Reading Read(Dialect dialect, absl::string_view sql) {
  Reading out;
  const bool two_readings = TwoReadings(dialect);
  for (int r = 0; r < 2; ++r) {
    std::vector<Token> tokens = Lexer(dialect, sql, /*backslash_escapes=*/r == 1).Run();
    for (const Token& t : tokens) {
      if (t.text == "?") ++out.markers[r];
    }
    if (r == 1 && !two_readings) continue;  // the refusals: as Readings reads
    for (const Statement& s : Split(dialect, std::move(tokens))) {
      if (LeavesSessionState(dialect, s.tokens)) out.session_state = true;
      if (!out.refused && !Refusal(dialect, s.tokens).empty()) out.refused = true;
    }
  }
  return out;
}

// The readings of recently seen texts. Applications send the same
// statements over and over (their values as parameters), and a statement is
// checked where the coordinator takes it and again where its participant
// sends it: without this the lexer was 14 % of engine_bench's CPU. Bounded:
// texts up to kMaxSqlBytes, kPerShard per shard; a full shard is emptied.
class ReadingCache {
 public:
  Reading Get(Dialect dialect, absl::string_view sql) {
    if (sql.size() > kMaxSqlBytes) return Read(dialect, sql);
    const size_t hash = absl::HashOf(sql);
    Shard& shard = shards_[static_cast<int>(dialect)][hash % kShards];
    {
      absl::MutexLock lock(&shard.mu);
      auto it = shard.readings.find(sql);
      if (it != shard.readings.end()) return it->second;
    }
    Reading reading = Read(dialect, sql);
    absl::MutexLock lock(&shard.mu);
    if (shard.readings.size() >= kPerShard) shard.readings.clear();
    shard.readings.emplace(sql, reading);
    return reading;
  }

  static ReadingCache& Instance() {
    static ReadingCache* cache = new ReadingCache();  // never destroyed: used until exit
    return *cache;
  }

 private:
  static constexpr size_t kMaxSqlBytes = 4096;
  static constexpr size_t kShards = 8;
  static constexpr size_t kPerShard = 256;
  static constexpr int kDialects = static_cast<int>(Dialect::kUnknown) + 1;
  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, Reading> readings ABSL_GUARDED_BY(mu);
  };
  Shard shards_[kDialects][kShards];
};

// The refusal's message: the first refused statement, read again (refusals
// are rare; the cache keeps only whether there is one).
absl::Status RefusalOf(absl::string_view bind, absl::string_view dialect, absl::string_view sql, bool miss,
                       bool* session_state) {
  const Dialect d = DialectOf(dialect);
  for (const std::vector<Statement>& statements : Readings(d, sql)) {
    for (size_t i = 0; i < statements.size(); ++i) {
      if (session_state != nullptr && LeavesSessionState(d, statements[i].tokens)) *session_state = true;
      if (miss) continue;
      std::string why = Refusal(d, statements[i].tokens);
      if (why.empty()) continue;
      return absl::InvalidArgumentError(absl::StrCat(
          "bind ", bind, ": statement ", i + 1, " of the SQL text (\"", Quote(sql, statements[i]), "\") ", why,
          " on ", dialect.empty() ? "this database" : dialect,
          ": txcoord begins and ends each bind's transaction itself (use Commit or Rollback; savepoints are "
          "allowed)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckBranchSql(absl::string_view bind, absl::string_view dialect, absl::string_view sql) {
  return GuardBranchSql(bind, dialect, sql, nullptr);
}

absl::Status GuardBranchSql(absl::string_view bind, absl::string_view dialect, absl::string_view sql,
                            bool* session_state) {
  // An injected fault: the guard misses every statement, so that tests can
  // reach the participants' check of the branch's transaction status.
  if (!TXC_FAILPOINT_STATUS("participants.statement_guard.miss").ok()) {
    return RefusalOf(bind, dialect, sql, /*miss=*/true, session_state);
  }
  const Reading reading = ReadingCache::Instance().Get(DialectOf(dialect), sql);
  // Refused: read again for the message, setting *session_state as far as
  // the refused statement, as the statements before it were read.
  if (reading.refused) return RefusalOf(bind, dialect, sql, /*miss=*/false, session_state);
  if (session_state != nullptr && reading.session_state) *session_state = true;
  return absl::OkStatus();
}

bool SessionStateSql(absl::string_view dialect, absl::string_view sql) {
  return ReadingCache::Instance().Get(DialectOf(dialect), sql).session_state;
}

absl::Status CheckParameterMarkers(absl::string_view bind, absl::string_view dialect, absl::string_view sql,
                                   size_t given) {
  // Where a server setting changes how literals end, both readings must
  // agree; if they do not, the driver's own check is left to answer.
  const Reading reading = ReadingCache::Instance().Get(DialectOf(dialect), sql);
  const size_t* counts = reading.markers;
  if (counts[0] != counts[1] || counts[0] == given) return absl::OkStatus();
  std::string text(sql);
  if (text.size() > 80) text = absl::StrCat(text.substr(0, 77), "...");
  return absl::InvalidArgumentError(absl::StrCat("bind ", bind, ": the statement \"", text, "\" has ", counts[0],
                                                 " parameter marker", counts[0] == 1 ? "" : "s", " (?) but ",
                                                 given, " value", given == 1 ? " was" : "s were", " given"));
}

std::vector<std::vector<std::string>> SplitStatementsForTest(absl::string_view dialect, absl::string_view sql,
                                                             bool backslash_escapes) {
  const Dialect d = DialectOf(dialect);
  std::vector<std::vector<std::string>> out;
  for (const Statement& s : Split(d, Lexer(d, sql, backslash_escapes).Run())) {
    std::vector<std::string> words;
    for (const Token& t : s.tokens) words.push_back(t.text);
    out.push_back(std::move(words));
  }
  return out;
}

}  // namespace txcoord::participants
