#include "participants/sql_common.h"

#include <atomic>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "participants/xid.h"
#include "util/thread_name.h"

namespace txcoord::participants {

absl::Status StatusFromSqlstate(absl::string_view bind, absl::string_view sqlstate,
                                int native_error, absl::string_view message,
                                SqlErrorContext context) {
  std::string text = absl::StrCat("bind ", bind, ": SQLSTATE ", sqlstate.empty() ? "?????" : sqlstate);
  if (native_error != 0) absl::StrAppend(&text, " (native ", native_error, ")");
  absl::StrAppend(&text, ": ", TrimRight(message));
  absl::string_view cls = sqlstate.substr(0, 2);
  if (context == SqlErrorContext::kFinishPrepared && sqlstate == "42704") {
    return absl::NotFoundError(text);
  }
  if (sqlstate == "40001" || sqlstate == "40P01" || sqlstate == "55P03" ||
      sqlstate == "57014" || sqlstate == "HY008" || cls == "40") {
    return absl::AbortedError(text);
  }
  if (cls == "53") return absl::ResourceExhaustedError(text);
  // The server refused the request itself and kept the connection (08P01
  // protocol violation: e.g. a parameter count that does not match the
  // statement), or the driver did (class 07: wrong number of parameters):
  // the caller's mistake, which a retry cannot fix.
  if (sqlstate == "08P01" || cls == "07") return absl::InvalidArgumentError(text);
  if (cls == "08" || sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03") {
    return absl::UnavailableError(text);
  }
  if (cls == "22" || cls == "42") return absl::InvalidArgumentError(text);
  return absl::FailedPreconditionError(text);
}

bool LoginRefusedMessage(absl::string_view message) {
  for (absl::string_view refusal : {"password authentication failed", "authentication failed for user",
                                    "does not exist", "no pg_hba.conf entry", "invalid connection option",
                                    "missing \"=\" after", "invalid URI"}) {
    if (absl::StrContains(message, refusal)) return true;
  }
  return false;
}

std::string NormalizeTimestampText(absl::string_view text) {
  std::string out(text);
  // "YYYY-MM-DD hh:mm…": the separator is at index 10 (years 0001–9999).
  if (out.size() > 10 && out[10] == ' ') out[10] = 'T';
  for (absl::string_view zero : {"+00:00", "+00"}) {
    if (out.size() > 19 && absl::EndsWith(out, zero)) {
      out.resize(out.size() - zero.size());
      out += 'Z';
      break;
    }
  }
  return out;
}

std::string QuoteSqlLiteral(absl::string_view text) {
  return absl::StrCat("'", absl::StrReplaceAll(text, {{"'", "''"}}), "'");
}

std::string TrimRight(absl::string_view text) {
  size_t end = text.size();
  while (end > 0 && (text[end - 1] == ' ' || text[end - 1] == '\n' || text[end - 1] == '\r' ||
                     text[end - 1] == '\t' || text[end - 1] == '\0')) {
    --end;
  }
  return std::string(text.substr(0, end));
}

std::string PostgresNodeClaimSql(absl::string_view node_id, absl::string_view bind) {
  return absl::StrCat("SELECT pg_try_advisory_lock(", NodeClaimKey(node_id, bind), ")");
}

std::string PostgresNodeClaimHolderSql(absl::string_view node_id, absl::string_view bind) {
  // A bigint advisory lock shows in pg_locks as classid (high half) and objid.
  const int64_t key = NodeClaimKey(node_id, bind);
  return absl::StrCat(
      "SELECT string_agg(DISTINCT 'pid ' || l.pid || coalesce(' from ' || host(a.client_addr), ''), ', ') "
      "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
      "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.classid::bigint = ",
      key >> 32, " AND l.objid::bigint = ", key & 0xffffffffll);
}

absl::Status NodeClaimConflict(absl::string_view bind, absl::string_view node_id, absl::string_view lock,
                               absl::string_view holder) {
  return absl::FailedPreconditionError(absl::StrCat(
      "bind ", bind, ": node_id \"", node_id, "\" is in use by another coordinator (", lock, " held by ",
      holder.empty() ? "another session" : holder,
      "): two coordinators with one node_id would roll back each other's prepared branches"));
}

bool HolderIsSession(absl::string_view holder, int64_t session) {
  if (session <= 0) return false;
  for (const char* word : {"pid ", "connection "}) {
    const std::string token = absl::StrCat(word, session);
    for (size_t at = holder.find(token); at != absl::string_view::npos; at = holder.find(token, at + 1)) {
      const size_t end = at + token.size();
      const bool starts = at == 0 || !absl::ascii_isalnum(static_cast<unsigned char>(holder[at - 1]));
      const bool ends = end == holder.size() || !absl::ascii_isdigit(static_cast<unsigned char>(holder[end]));
      if (starts && ends) return true;
    }
  }
  return false;
}

std::vector<int64_t> HolderSessions(absl::string_view holder) {
  std::vector<int64_t> out;
  for (const char* word : {"pid ", "connection "}) {
    const absl::string_view w(word);
    for (size_t at = holder.find(w); at != absl::string_view::npos; at = holder.find(w, at + 1)) {
      if (at > 0 && absl::ascii_isalnum(static_cast<unsigned char>(holder[at - 1]))) continue;
      size_t end = at + w.size();
      while (end < holder.size() && absl::ascii_isdigit(static_cast<unsigned char>(holder[end]))) ++end;
      int64_t id = 0;
      if (absl::SimpleAtoi(holder.substr(at + w.size(), end - at - w.size()), &id) && id > 0) out.push_back(id);
    }
  }
  return out;
}

absl::Status StaleClaimTerminated(absl::string_view bind, int64_t session) {
  return absl::UnavailableError(absl::StrCat(
      "bind ", bind, ": the node's claim is still held by this coordinator's previous claim session (",
      session, "), given up when its connection stopped answering; that session was ended and the claim is "
      "taken again at the next pass"));
}

std::string PostgresEndSessionSql(int64_t pid) { return absl::StrCat("SELECT pg_terminate_backend(", pid, ")"); }

bool SendCancelInBackground(std::function<void()> send) {
  static std::atomic<int> in_flight{0};
  if (in_flight.fetch_add(1) >= kMaxCancelsInFlight) {
    in_flight.fetch_sub(1);
    return false;
  }
  std::thread([send = std::move(send)] {
    util::NameThisThread("txc-cancel");
    send();
    in_flight.fetch_sub(1);
  }).detach();
  return true;
}

}  // namespace txcoord::participants
