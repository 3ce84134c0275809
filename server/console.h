// The admin console: a page served by txcoord (server/console/, built into
// the binary) and the JSON API it calls — a gateway to AdminService.
//
//   GET  /                    the page (and /app.js, /style.css)
//   POST /api/<Method>        an AdminService method (ListTransactions,
//                             GetTransaction, ListInDoubt, ResolveTransaction,
//                             ListBinds, CheckBinds, RecoverNow, Drain,
//                             ListNodes): the request message as JSON in,
//                             the response message as JSON out
//   POST /api/Figures         the live figures' counters, read from the
//                             metrics (for an admin: checked by an
//                             AdminService call first)
//
// Every API call is an AdminService call over the server's in-process
// channel, with the caller's `Authorization: Bearer <token>` and
// `X-Txcoord-Operator` passed on: the same identities, roles, refusals and
// journaling as txctl's calls. Tokens travel only in that header (the page
// keeps its token in memory), never in a cookie or a URL, so a page of
// another origin cannot make a browser send one (no CSRF); a request that
// names another origin, or whose body is not JSON, is refused anyway.
// Served over HTTPS with the tls section's certificate; plain HTTP only
// with `plaintext: true`.
#ifndef TXCOORD_SERVER_CONSOLE_H_
#define TXCOORD_SERVER_CONSOLE_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "server/config.h"

namespace httplib {
class Server;
}

namespace txcoord::coordinator {

class Console {
 public:
  // Listens on config.console_listen; API calls go to AdminService through
  // `admin` (the server's in-process channel); `metrics` renders the
  // Prometheus text the figures are read from.
  static absl::StatusOr<std::unique_ptr<Console>> Start(const Config& config, std::shared_ptr<grpc::Channel> admin,
                                                        std::function<std::string()> metrics);
  ~Console();  // stops serving
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  // host:port it serves on, and its scheme ("https" or "http").
  const std::string& address() const { return address_; }
  const std::string& scheme() const { return scheme_; }

 private:
  Console() = default;
  std::shared_ptr<grpc::Channel> admin_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  std::string address_;
  std::string scheme_;
};

// The HTTP status for a gRPC status code (200 for OK).
int HttpStatusFor(grpc::StatusCode code);

// The live figures' counters from Prometheus text, as JSON: committed and
// aborted transactions (totals), decisions halted, live transactions, and
// the commit duration histogram's cumulative buckets ([[le, count], …],
// +Inf as null).
std::string FiguresJson(const std::string& metrics_text);

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_CONSOLE_H_
