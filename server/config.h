// txcoord's configuration: a YAML file (see deploy/config/), with ${NAME}
// replaced from the environment so that secrets stay out of files.
#ifndef TXCOORD_SERVER_CONFIG_H_
#define TXCOORD_SERVER_CONFIG_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "coordinator/options.h"
#include "journal/journal.h"
#include "participants/participant.h"

namespace txcoord::coordinator {

struct Limits {
  int max_sessions = 10000;
  int max_message_bytes = 16 << 20;
  int max_rows = 10000;
  int max_sql_bytes = 1 << 20;
  int server_threads = 512;      // gRPC sync server's thread cap (it serves only gRPC's reflection service)
  int server_idle_threads = 64;  // sync server threads kept waiting for calls (at most server_threads)
  // Event loops (threads) that run SessionService and TransactionService
  // calls on fibers; -1: one per core; 0: none (every call on a thread of
  // its own).
  int event_loops = -1;
  int max_sessions_per_identity = 1000;
  // Outcomes of recent transactions kept in memory for GetTransaction
  // (rolled-back ones carry their reason; committed ones are in the journal
  // too).
  int recent_outcomes = 10000;
  // glibc malloc arenas (M_ARENA_MAX); 0: glibc's default (8 per core).
  // Only for a binary built without tcmalloc (TXC_TCMALLOC=OFF).
  // Each thread that allocates may otherwise get an arena of its own whose
  // freed memory is seldom given back.
  int malloc_arenas = 2;
  // Worker threads of each HTTP listener (metrics_listen, console_listen).
  int http_threads = 2;
};

struct TlsOptions {
  std::string cert_file;       // PEM server certificate (chain)
  std::string key_file;        // PEM private key
  std::string client_ca_file;  // set: mutual TLS, client certificates required
  // Verifies the other cluster nodes' certificates when this node forwards
  // a call to one (cluster mode); empty: client_ca_file, or else the
  // system's CAs.
  std::string peer_ca_file;
};

// client: session RPCs on its binds; admin: AdminService as well; viewer:
// AdminService's reads (no resolution, recovery pass or drain).
enum class Role { kClient, kAdmin, kViewer };

struct Policy {
  std::string identity;            // token identity or certificate common name
  Role role = Role::kClient;
  std::vector<std::string> binds;  // client: the binds it may use (empty: none)
};

struct AuthOptions {
  bool enabled = false;            // the `auth` section is present
  std::string tokens_file;         // "<sha256 hex of token> <identity>" per line
  std::vector<std::pair<std::string, std::string>> token_hashes;  // inline: hash, identity
  std::vector<Policy> policies;
};

struct Config {
  std::string node_id;
  std::string listen = "127.0.0.1:7600";
  std::string metrics_listen;  // HTTP /metrics; empty: off
  // The admin console (server/console.h): HTTPS with the tls section's
  // certificate (HTTP only with plaintext); empty: off.
  std::string console_listen;
  std::string log_format = "text";  // "text" or "json" (JSON lines)
  std::string log_level = "info";
  bool plaintext = false;  // true only when the config says so explicitly
  TlsOptions tls;
  AuthOptions auth;
  journal::JournalOptions journal;
  // journal.etcd.adopt: this node adopts dead nodes of its cluster.
  bool adopt = true;
  // journal.etcd.advertise: host:port at which the other nodes (and their
  // consoles) reach this node's gRPC listener; empty: the listen address
  // as bound, a wildcard host replaced by this machine's host name.
  std::string advertise;
  Timeouts timeouts;
  RecoveryOptions recovery;
  Limits limits;
  std::vector<participants::BindOptions> binds;  // in file order
};

// Parses YAML text. Errors are INVALID_ARGUMENT and name the key
// ("binds.pg_main.dsn: …", "timeouts.idle: …"); an unset ${NAME} is named too.
absl::StatusOr<Config> ParseConfig(const std::string& yaml_text);
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

// "30s", "100ms", "7d", "1h30m" → Duration. INVALID_ARGUMENT otherwise.
absl::StatusOr<absl::Duration> ParseDuration(const std::string& text);

// Replaces every ${NAME} with the environment's value, and every
// ${file:/path} with that file's content (trailing newline removed), so
// that secrets can come from files (e.g. mounted secrets).
absl::StatusOr<std::string> SubstituteEnv(const std::string& text);

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_CONFIG_H_
