#include "server/config.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "participants/xid.h"
#include "util/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace txcoord::coordinator {
namespace {

absl::Status KeyError(const std::string& key, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("config: ", key, ": ", what));
}

// Reads scalar `node[name]` into *out when present.
absl::Status ReadString(const YAML::Node& node, const std::string& prefix,
                        const char* name, std::string* out) {
  YAML::Node v = node[name];
  if (!v) return absl::OkStatus();
  if (!v.IsScalar()) return KeyError(prefix + name, "must be a string");
  *out = v.as<std::string>();
  return absl::OkStatus();
}

absl::Status ReadInt(const YAML::Node& node, const std::string& prefix,
                     const char* name, int64_t min, int64_t max, int* out) {
  YAML::Node v = node[name];
  if (!v) return absl::OkStatus();
  int64_t value;
  if (!v.IsScalar() || !absl::SimpleAtoi(v.Scalar(), &value)) {
    return KeyError(prefix + name, "must be an integer");
  }
  if (value < min || value > max) {
    return KeyError(prefix + name, absl::StrCat("must be between ", min, " and ", max));
  }
  *out = static_cast<int>(value);
  return absl::OkStatus();
}

absl::Status ReadBool(const YAML::Node& node, const std::string& prefix,
                      const char* name, bool* out) {
  YAML::Node v = node[name];
  if (!v) return absl::OkStatus();
  if (!v.IsScalar() || (v.Scalar() != "true" && v.Scalar() != "false")) {
    return KeyError(prefix + name, "must be true or false");
  }
  *out = v.Scalar() == "true";
  return absl::OkStatus();
}

absl::Status ReadDuration(const YAML::Node& node, const std::string& prefix,
                          const char* name, absl::Duration* out) {
  YAML::Node v = node[name];
  if (!v) return absl::OkStatus();
  if (!v.IsScalar()) return KeyError(prefix + name, "must be a duration like 30s");
  auto d = ParseDuration(v.Scalar());
  if (!d.ok()) return KeyError(prefix + name, d.status().message());
  *out = *d;
  return absl::OkStatus();
}

absl::Status CheckKeys(const YAML::Node& node, const std::string& where,
                       std::initializer_list<const char*> known) {
  if (!node) return absl::OkStatus();
  if (!node.IsMap()) return KeyError(where.empty() ? "(top level)" : where, "must be a mapping");
  std::set<std::string> names(known.begin(), known.end());
  for (const auto& kv : node) {
    std::string key = kv.first.as<std::string>();
    if (!names.count(key)) {
      return KeyError(where.empty() ? key : where + "." + key, "unknown key");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<absl::Duration> ParseDuration(const std::string& text) {
  std::string t = std::string(absl::StripAsciiWhitespace(text));
  if (t == "0") return absl::ZeroDuration();
  absl::Duration total = absl::ZeroDuration();
  size_t i = 0;
  if (t.empty()) return absl::InvalidArgumentError("empty duration");
  while (i < t.size()) {
    size_t start = i;
    while (i < t.size() && (absl::ascii_isdigit(t[i]) || t[i] == '.')) ++i;
    double value;
    if (start == i || !absl::SimpleAtod(t.substr(start, i - start), &value)) {
      return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not a duration (like 30s, 100ms, 7d)"));
    }
    size_t unit_start = i;
    while (i < t.size() && absl::ascii_isalpha(t[i])) ++i;
    std::string unit = t.substr(unit_start, i - unit_start);
    if (unit == "ms") total += absl::Milliseconds(value);
    else if (unit == "s") total += absl::Seconds(value);
    else if (unit == "m") total += absl::Minutes(value);
    else if (unit == "h") total += absl::Hours(value);
    else if (unit == "d") total += absl::Hours(24 * value);
    else if (unit == "us") total += absl::Microseconds(value);
    else return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": unknown unit \"", unit, "\" (use us, ms, s, m, h, d)"));
  }
  return total;
}

absl::StatusOr<std::string> SubstituteEnv(const std::string& text) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    // A line that is only a comment is copied as it is.
    if (i == 0 || text[i - 1] == '\n') {
      size_t first = text.find_first_not_of(" \t", i);
      if (first != std::string::npos && text[first] == '#') {
        size_t eol = text.find('\n', first);
        size_t stop = eol == std::string::npos ? text.size() : eol + 1;
        out.append(text, i, stop - i);
        i = stop;
        continue;
      }
    }
    size_t start = text.find("${", i);
    size_t line_end = text.find('\n', i);
    if (start != std::string::npos && line_end != std::string::npos && line_end < start) {
      out.append(text, i, line_end + 1 - i);  // no ${ on this line
      i = line_end + 1;
      continue;
    }
    if (start == std::string::npos) {
      out.append(text, i, std::string::npos);
      break;
    }
    out.append(text, i, start - i);
    size_t end = text.find('}', start);
    if (end == std::string::npos) {
      return absl::InvalidArgumentError("config: unterminated ${ in the file");
    }
    std::string name = text.substr(start + 2, end - start - 2);
    if (name.rfind("file:", 0) == 0) {
      std::ifstream f(name.substr(5));
      if (!f) {
        return absl::InvalidArgumentError(absl::StrCat("config: ${", name, "}: cannot read the file"));
      }
      std::stringstream content;
      content << f.rdbuf();
      std::string v = content.str();
      while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
      out += v;
      i = end + 1;
      continue;
    }
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "config: environment variable ${", name, "} is not set"));
    }
    out += value;
    i = end + 1;
  }
  return out;
}


namespace {
absl::StatusOr<Config> ParseConfigNode(const YAML::Node& root);
}  // namespace

absl::StatusOr<Config> ParseConfig(const std::string& yaml_text) {
  TXC_ASSIGN_OR_RETURN(std::string text, SubstituteEnv(yaml_text));
  try {
    return ParseConfigNode(YAML::Load(text));
  } catch (const YAML::ParserException& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: not valid YAML: ", e.what()));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", e.what()));
  }
}

namespace {
absl::StatusOr<Config> ParseConfigNode(const YAML::Node& root) {
  if (!root.IsMap()) return absl::InvalidArgumentError("config: the file must be a YAML mapping");
  TXC_RETURN_IF_ERROR(CheckKeys(root, "",
                                {"node_id", "listen", "metrics_listen", "console_listen", "plaintext", "journal",
                                 "timeouts", "recovery", "limits", "binds", "tls", "auth", "log"}));
  Config c;
  TXC_RETURN_IF_ERROR(ReadString(root, "", "node_id", &c.node_id));
  if (c.node_id.empty()) return KeyError("node_id", "is required");
  if (auto s = participants::ValidateNodeId(c.node_id); !s.ok()) {
    return KeyError("node_id", s.message());
  }
  TXC_RETURN_IF_ERROR(ReadString(root, "", "listen", &c.listen));
  TXC_RETURN_IF_ERROR(ReadString(root, "", "metrics_listen", &c.metrics_listen));
  TXC_RETURN_IF_ERROR(ReadString(root, "", "console_listen", &c.console_listen));
  YAML::Node log = root["log"];
  TXC_RETURN_IF_ERROR(CheckKeys(log, "log", {"format", "level"}));
  if (log) {
    TXC_RETURN_IF_ERROR(ReadString(log, "log.", "format", &c.log_format));
    TXC_RETURN_IF_ERROR(ReadString(log, "log.", "level", &c.log_level));
    if (c.log_format != "text" && c.log_format != "json") {
      return KeyError("log.format", "must be text or json");
    }
    static const std::set<std::string> levels = {"trace", "debug", "info", "warn", "error", "off"};
    if (!levels.count(c.log_level)) return KeyError("log.level", "must be trace, debug, info, warn, error or off");
  }
  TXC_RETURN_IF_ERROR(ReadBool(root, "", "plaintext", &c.plaintext));
  YAML::Node tls = root["tls"];
  TXC_RETURN_IF_ERROR(CheckKeys(tls, "tls", {"cert", "key", "client_ca", "peer_ca"}));
  if (tls) {
    TXC_RETURN_IF_ERROR(ReadString(tls, "tls.", "cert", &c.tls.cert_file));
    TXC_RETURN_IF_ERROR(ReadString(tls, "tls.", "key", &c.tls.key_file));
    TXC_RETURN_IF_ERROR(ReadString(tls, "tls.", "client_ca", &c.tls.client_ca_file));
    TXC_RETURN_IF_ERROR(ReadString(tls, "tls.", "peer_ca", &c.tls.peer_ca_file));
    if (c.tls.cert_file.empty()) return KeyError("tls.cert", "is required with tls");
    if (c.tls.key_file.empty()) return KeyError("tls.key", "is required with tls");
    if (c.plaintext) return KeyError("plaintext", "plaintext: true and a tls section contradict each other");
  } else if (!c.plaintext) {
    return KeyError("tls", "is required: set tls {cert, key[, client_ca]}, or plaintext: true to serve "
                           "without encryption (only on a trusted network)");
  }
  YAML::Node auth = root["auth"];
  TXC_RETURN_IF_ERROR(CheckKeys(auth, "auth", {"tokens_file", "tokens", "policies"}));
  if (auth) {
    c.auth.enabled = true;
    TXC_RETURN_IF_ERROR(ReadString(auth, "auth.", "tokens_file", &c.auth.tokens_file));
    if (YAML::Node tokens = auth["tokens"]) {
      if (!tokens.IsMap()) return KeyError("auth.tokens", "must map a token's sha256 (hex) to an identity");
      for (const auto& kv : tokens) {
        std::string hash = kv.first.as<std::string>();
        static const std::regex hex64("[0-9a-fA-F]{64}");
        if (!std::regex_match(hash, hex64)) {
          return KeyError("auth.tokens", "keys must be sha256 hex digests of the tokens (64 hex digits)");
        }
        c.auth.token_hashes.emplace_back(absl::AsciiStrToLower(hash), kv.second.as<std::string>());
      }
    }
    YAML::Node policies = auth["policies"];
    if (!policies || !policies.IsSequence()) {
      return KeyError("auth.policies", "is required with auth: a list of {identity, role, binds}");
    }
    for (size_t i = 0; i < policies.size(); ++i) {
      std::string where = absl::StrCat("auth.policies[", i, "]");
      TXC_RETURN_IF_ERROR(CheckKeys(policies[i], where, {"identity", "role", "binds"}));
      Policy p;
      TXC_RETURN_IF_ERROR(ReadString(policies[i], where + ".", "identity", &p.identity));
      if (p.identity.empty()) return KeyError(where + ".identity", "is required");
      std::string role = "client";
      TXC_RETURN_IF_ERROR(ReadString(policies[i], where + ".", "role", &role));
      if (role == "client") p.role = Role::kClient;
      else if (role == "admin") p.role = Role::kAdmin;
      else if (role == "viewer")
        p.role = Role::kViewer;
      else
        return KeyError(where + ".role", "must be client, admin or viewer");
      if (YAML::Node b = policies[i]["binds"]) {
        if (!b.IsSequence()) return KeyError(where + ".binds", "must be a list of bind names");
        for (const auto& name : b) p.binds.push_back(name.as<std::string>());
      }
      c.auth.policies.push_back(std::move(p));
    }
  }

  YAML::Node j = root["journal"];
  TXC_RETURN_IF_ERROR(CheckKeys(j, "journal", {"backend", "etcd", "dir", "retention", "max_group_size",
                                               "decision_log", "decision_log_bytes", "memtable_mb",
                                               "block_cache_mb"}));
  c.journal.dir = "./data/journal";
  c.journal.node_id = c.node_id;
  if (j) {
    std::string backend = "rocksdb";
    TXC_RETURN_IF_ERROR(ReadString(j, "journal.", "backend", &backend));
    if (backend == "etcd") {
      c.journal.backend = journal::Backend::kEtcd;
    } else if (backend != "rocksdb") {
      return KeyError("journal.backend", absl::StrCat("\"", backend, "\" is not rocksdb or etcd"));
    }
    YAML::Node e = j["etcd"];
    TXC_RETURN_IF_ERROR(
        CheckKeys(e, "journal.etcd",
                  {"endpoints", "cluster", "lease_ttl", "acquire_timeout", "call_timeout", "user", "password",
                   "ca_file", "cert_file", "key_file", "max_txn_ops", "adopt", "advertise"}));
    if (c.journal.backend == journal::Backend::kEtcd && !e) {
      return KeyError("journal.etcd", "is required with backend: etcd (at least its endpoints)");
    }
    if (e) {
      journal::EtcdJournalOptions& eo = c.journal.etcd;
      YAML::Node endpoints = e["endpoints"];
      if (!endpoints || !endpoints.IsSequence() || endpoints.size() == 0) {
        return KeyError("journal.etcd.endpoints", "must be a list of host:port, at least one");
      }
      for (const YAML::Node& ep : endpoints) {
        if (!ep.IsScalar() || ep.as<std::string>().find(':') == std::string::npos) {
          return KeyError("journal.etcd.endpoints", "each must be host:port");
        }
        eo.client.endpoints.push_back(ep.as<std::string>());
      }
      std::string cluster = "default";
      TXC_RETURN_IF_ERROR(ReadString(e, "journal.etcd.", "cluster", &cluster));
      if (cluster.empty() || cluster.find('/') != std::string::npos) {
        return KeyError("journal.etcd.cluster", "must be a non-empty name without '/'");
      }
      eo.prefix = absl::StrCat("/txcoord/", cluster, "/");
      TXC_RETURN_IF_ERROR(ReadDuration(e, "journal.etcd.", "lease_ttl", &eo.lease_ttl));
      if (eo.lease_ttl < absl::Seconds(2) || eo.lease_ttl > absl::Minutes(10)) {
        return KeyError("journal.etcd.lease_ttl", "must be between 2s and 10m");
      }
      TXC_RETURN_IF_ERROR(ReadDuration(e, "journal.etcd.", "acquire_timeout", &eo.acquire_timeout));
      TXC_RETURN_IF_ERROR(ReadDuration(e, "journal.etcd.", "call_timeout", &eo.client.call_timeout));
      if (eo.client.call_timeout <= absl::ZeroDuration() || eo.client.call_timeout >= eo.lease_ttl) {
        return KeyError("journal.etcd.call_timeout", "must be above 0 and below lease_ttl");
      }
      TXC_RETURN_IF_ERROR(ReadString(e, "journal.etcd.", "user", &eo.client.user));
      TXC_RETURN_IF_ERROR(ReadString(e, "journal.etcd.", "password", &eo.client.password));
      TXC_RETURN_IF_ERROR(ReadString(e, "journal.etcd.", "ca_file", &eo.client.ca_file));
      TXC_RETURN_IF_ERROR(ReadString(e, "journal.etcd.", "cert_file", &eo.client.cert_file));
      TXC_RETURN_IF_ERROR(ReadString(e, "journal.etcd.", "key_file", &eo.client.key_file));
      TXC_RETURN_IF_ERROR(ReadInt(e, "journal.etcd.", "max_txn_ops", 8, 100000, &eo.max_txn_ops));
      TXC_RETURN_IF_ERROR(ReadBool(e, "journal.etcd.", "adopt", &c.adopt));
      TXC_RETURN_IF_ERROR(ReadString(e, "journal.etcd.", "advertise", &c.advertise));
      if (!c.advertise.empty() && (c.advertise.rfind(':') == std::string::npos || c.advertise.back() == ':')) {
        return KeyError("journal.etcd.advertise", "must be host:port");
      }
    }
    TXC_RETURN_IF_ERROR(ReadString(j, "journal.", "dir", &c.journal.dir));
    TXC_RETURN_IF_ERROR(ReadInt(j, "journal.", "max_group_size", 1, 65536, &c.journal.max_group_size));
    TXC_RETURN_IF_ERROR(ReadBool(j, "journal.", "decision_log", &c.journal.decision_log));
    int log_bytes = static_cast<int>(c.journal.decision_log_bytes);
    TXC_RETURN_IF_ERROR(ReadInt(j, "journal.", "decision_log_bytes", 64 << 10, 1 << 30, &log_bytes));
    if (log_bytes % 4096 != 0) return KeyError("journal.decision_log_bytes", "must be a multiple of 4096");
    c.journal.decision_log_bytes = static_cast<uint64_t>(log_bytes);
    int memtable_mb = static_cast<int>(c.journal.memtable_bytes >> 20);
    TXC_RETURN_IF_ERROR(ReadInt(j, "journal.", "memtable_mb", 4, 4096, &memtable_mb));
    c.journal.memtable_bytes = static_cast<uint64_t>(memtable_mb) << 20;
    int cache_mb = static_cast<int>(c.journal.block_cache_bytes >> 20);
    TXC_RETURN_IF_ERROR(ReadInt(j, "journal.", "block_cache_mb", 1, 65536, &cache_mb));
    c.journal.block_cache_bytes = static_cast<uint64_t>(cache_mb) << 20;
    YAML::Node r = j["retention"];
    TXC_RETURN_IF_ERROR(CheckKeys(r, "journal.retention", {"finished_max", "finished_max_age"}));
    if (r) {
      int max = static_cast<int>(c.journal.retention.finished_max);
      TXC_RETURN_IF_ERROR(ReadInt(r, "journal.retention.", "finished_max", 0, 1 << 30, &max));
      c.journal.retention.finished_max = max;
      TXC_RETURN_IF_ERROR(ReadDuration(r, "journal.retention.", "finished_max_age",
                                       &c.journal.retention.finished_max_age));
    }
  }

  YAML::Node t = root["timeouts"];
  TXC_RETURN_IF_ERROR(
      CheckKeys(t, "timeouts", {"transaction", "idle", "prepare", "orphan_safety", "database_reply"}));
  if (t) {
    TXC_RETURN_IF_ERROR(ReadDuration(t, "timeouts.", "transaction", &c.timeouts.transaction));
    TXC_RETURN_IF_ERROR(ReadDuration(t, "timeouts.", "idle", &c.timeouts.idle));
    TXC_RETURN_IF_ERROR(ReadDuration(t, "timeouts.", "prepare", &c.timeouts.prepare));
    c.timeouts.prepare_set = static_cast<bool>(t["prepare"]);
    TXC_RETURN_IF_ERROR(ReadDuration(t, "timeouts.", "orphan_safety", &c.timeouts.orphan_safety));
    TXC_RETURN_IF_ERROR(ReadDuration(t, "timeouts.", "database_reply", &c.timeouts.database_reply));
  }
  if (t && t["database_reply"]) {
    // A statement may rightly run for the whole transaction (its
    // statement_timeout): a shorter reply timeout would cut it off.
    if (c.timeouts.database_reply < c.timeouts.transaction) {
      return KeyError("timeouts.database_reply",
                      absl::StrCat("must be at least timeouts.transaction (",
                                   absl::FormatDuration(c.timeouts.transaction), "): a statement may run that long"));
    }
  } else {
    c.timeouts.database_reply = c.timeouts.transaction + kDatabaseReplyMargin;
  }
  YAML::Node rec = root["recovery"];
  TXC_RETURN_IF_ERROR(CheckKeys(rec, "recovery", {"interval", "backoff"}));
  if (rec) {
    TXC_RETURN_IF_ERROR(ReadDuration(rec, "recovery.", "interval", &c.recovery.interval));
    YAML::Node b = rec["backoff"];
    TXC_RETURN_IF_ERROR(CheckKeys(b, "recovery.backoff", {"initial", "max"}));
    if (b) {
      TXC_RETURN_IF_ERROR(ReadDuration(b, "recovery.backoff.", "initial", &c.recovery.backoff_initial));
      TXC_RETURN_IF_ERROR(ReadDuration(b, "recovery.backoff.", "max", &c.recovery.backoff_max));
    }
  }
  YAML::Node l = root["limits"];
  TXC_RETURN_IF_ERROR(CheckKeys(l, "limits", {"max_sessions", "max_message_bytes", "max_rows",
                                               "max_sql_bytes", "server_threads", "server_idle_threads",
                                               "event_loops", "max_sessions_per_identity", "recent_outcomes", "malloc_arenas",
                                               "http_threads"}));
  if (l) {
    TXC_RETURN_IF_ERROR(ReadInt(l, "limits.", "max_sessions", 1, 1 << 24, &c.limits.max_sessions));
    TXC_RETURN_IF_ERROR(ReadInt(l, "limits.", "max_message_bytes", 1024, 1 << 30, &c.limits.max_message_bytes));
    TXC_RETURN_IF_ERROR(ReadInt(l, "limits.", "max_rows", 1, 1 << 24, &c.limits.max_rows));
    TXC_RETURN_IF_ERROR(ReadInt(l, "limits.", "max_sql_bytes", 1, 1 << 30, &c.limits.max_sql_bytes));
    TXC_RETURN_IF_ERROR(ReadInt(l, "limits.", "server_threads", 2, 4096, &c.limits.server_threads));
    TXC_RETURN_IF_ERROR(ReadInt(l, "limits.", "server_idle_threads", 1, 4096, &c.limits.server_idle_threads));
    if (!l["server_idle_threads"]) {
      c.limits.server_idle_threads = std::min(c.limits.server_idle_threads, c.limits.server_threads);
    } else if (c.limits.server_idle_threads > c.limits.server_threads) {
      return KeyError("limits.server_idle_threads",
                      absl::StrCat("must not exceed limits.server_threads (", c.limits.server_threads, ")"));
    }
    TXC_RETURN_IF_ERROR(ReadInt(l, "limits.", "event_loops", -1, 256, &c.limits.event_loops));
    TXC_RETURN_IF_ERROR(ReadInt(l, "limits.", "max_sessions_per_identity", 1, 1 << 24,
                                &c.limits.max_sessions_per_identity));
    TXC_RETURN_IF_ERROR(ReadInt(l, "limits.", "recent_outcomes", 0, 1 << 24, &c.limits.recent_outcomes));
    TXC_RETURN_IF_ERROR(ReadInt(l, "limits.", "malloc_arenas", 0, 1024, &c.limits.malloc_arenas));
    TXC_RETURN_IF_ERROR(ReadInt(l, "limits.", "http_threads", 1, 64, &c.limits.http_threads));
  }

  YAML::Node binds = root["binds"];
  if (!binds || !binds.IsMap() || binds.size() == 0) {
    return KeyError("binds", "at least one bind is required (name: {driver, dsn})");
  }
  for (const auto& kv : binds) {
    std::string name = kv.first.as<std::string>();
    std::string prefix = "binds." + name + ".";
    static const std::regex bind_name(R"([A-Za-z][A-Za-z0-9_]{0,47})");
    if (!std::regex_match(name, bind_name)) {
      return KeyError("binds." + name, "a bind name is a letter then up to 47 letters, digits or _");
    }
    TXC_RETURN_IF_ERROR(CheckKeys(kv.second, "binds." + name, {"driver", "dsn", "pool", "last_resource"}));
    participants::BindOptions b;
    b.name = name;
    TXC_RETURN_IF_ERROR(ReadString(kv.second, prefix, "driver", &b.driver));
    if (b.driver != "postgres" && b.driver != "mariadb" && b.driver != "odbc" &&
        b.driver != "noop") {  // noop: test-only (bench)
      return KeyError(prefix + "driver", absl::StrCat("\"", b.driver, "\" unknown: use postgres, mariadb or odbc"));
    }
    TXC_RETURN_IF_ERROR(ReadString(kv.second, prefix, "dsn", &b.dsn));
    if (b.dsn.empty()) return KeyError(prefix + "dsn", "is required");
    TXC_RETURN_IF_ERROR(ReadBool(kv.second, prefix, "last_resource", &b.last_resource));
    YAML::Node pool = kv.second["pool"];
    TXC_RETURN_IF_ERROR(CheckKeys(pool, "binds." + name + ".pool", {"size", "acquire_timeout", "min_open"}));
    if (pool) {
      TXC_RETURN_IF_ERROR(ReadInt(pool, prefix + "pool.", "size", 1, 4096, &b.pool_size));
      TXC_RETURN_IF_ERROR(ReadDuration(pool, prefix + "pool.", "acquire_timeout", &b.acquire_timeout));
      TXC_RETURN_IF_ERROR(ReadInt(pool, prefix + "pool.", "min_open", 0, b.pool_size, &b.pool_min_open));
    }
    b.io_timeout = c.timeouts.database_reply;
    c.binds.push_back(std::move(b));
  }
  for (size_t i = 0; i < c.auth.policies.size(); ++i) {
    for (const std::string& b : c.auth.policies[i].binds) {
      bool known = false;
      for (const auto& bind : c.binds) known |= bind.name == b;
      if (!known) return KeyError(absl::StrCat("auth.policies[", i, "].binds"), absl::StrCat("unknown bind \"", b, "\""));
    }
  }
  return c;
}
}  // namespace

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("config: cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str());
}

}  // namespace txcoord::coordinator
