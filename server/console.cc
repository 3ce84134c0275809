#include "server/console.h"

#include <chrono>
#include <functional>
#include <map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/json_util.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "server/console_assets.h"
#include "txcoord/v1/admin.grpc.pb.h"
#include "server/http_threads.h"
#include "util/thread_name.h"

namespace txcoord::coordinator {
namespace {

namespace v1 = ::txcoord::v1;

// How long an API call may take (a drain waits at most its own timeout,
// which the page keeps below this).
constexpr auto kCallDeadline = std::chrono::seconds(60);

// One AdminService method: the request from JSON, the call, the response
// to JSON.
using Method = std::function<grpc::Status(v1::AdminService::Stub&, grpc::ClientContext*, const std::string& body,
                                          std::string* out)>;

template <typename Request, typename Response>
Method JsonCall(grpc::Status (v1::AdminService::Stub::*call)(grpc::ClientContext*, const Request&, Response*)) {
  return [call](v1::AdminService::Stub& stub, grpc::ClientContext* ctx, const std::string& body, std::string* out) {
    Request req;
    if (!body.empty()) {
      google::protobuf::util::JsonParseOptions options;
      auto parsed = google::protobuf::util::JsonStringToMessage(body, &req, options);
      if (!parsed.ok()) {
        return grpc::Status(
            grpc::StatusCode::INVALID_ARGUMENT,
            absl::StrCat("the body is not a ", req.GetTypeName(), " in JSON: ", parsed.message().as_string()));
      }
    }
    Response resp;
    grpc::Status s = (stub.*call)(ctx, req, &resp);
    if (!s.ok()) return s;
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    options.always_print_primitive_fields = true;
    auto printed = google::protobuf::util::MessageToJsonString(resp, out, options);
    if (!printed.ok()) return grpc::Status(grpc::StatusCode::INTERNAL, "the response could not be printed as JSON");
    return s;
  };
}

const std::map<std::string, Method>& Methods() {
  static const auto* methods = new std::map<std::string, Method>{
      {"ListTransactions", JsonCall(&v1::AdminService::Stub::ListTransactions)},
      {"GetTransaction", JsonCall(&v1::AdminService::Stub::GetTransaction)},
      {"ListInDoubt", JsonCall(&v1::AdminService::Stub::ListInDoubt)},
      {"ResolveTransaction", JsonCall(&v1::AdminService::Stub::ResolveTransaction)},
      {"ListBinds", JsonCall(&v1::AdminService::Stub::ListBinds)},
      {"CheckBinds", JsonCall(&v1::AdminService::Stub::CheckBinds)},
      {"RecoverNow", JsonCall(&v1::AdminService::Stub::RecoverNow)},
      {"Drain", JsonCall(&v1::AdminService::Stub::Drain)},
      {"ListNodes", JsonCall(&v1::AdminService::Stub::ListNodes)},
  };
  return *methods;
}

// An error answer: {"code": "FAILED_PRECONDITION", "message": "…"}.
void Refuse(httplib::Response& res, int http, const std::string& code, const std::string& message) {
  res.status = http;
  res.set_content(nlohmann::json{{"code", code}, {"message", message}}.dump(), "application/json");
}

// A request that names an origin must come from the console's own (the
// page); a browser adds Origin to every cross-origin POST.
bool SameOrigin(const httplib::Request& req, const std::string& scheme) {
  if (!req.has_header("Origin")) return true;
  return req.get_header_value("Origin") == absl::StrCat(scheme, "://", req.get_header_value("Host"));
}

void Api(const std::shared_ptr<grpc::Channel>& admin, const std::function<std::string()>& metrics,
         const std::string& scheme, const httplib::Request& req, httplib::Response& res) {
  res.set_header("Cache-Control", "no-store");
  const bool figures = req.matches[1] == "Figures";
  // The figures are for whoever may list the binds: an admin.
  const auto method = Methods().find(figures ? std::string("ListBinds") : std::string(req.matches[1]));
  if (method == Methods().end()) {
    Refuse(res, 404, "NOT_FOUND", absl::StrCat("no console method ", std::string(req.matches[1])));
    return;
  }
  if (!SameOrigin(req, scheme)) {
    Refuse(res, 403, "PERMISSION_DENIED", "a request from another origin");
    return;
  }
  if (!absl::StartsWith(req.get_header_value("Content-Type"), "application/json")) {
    Refuse(res, 415, "INVALID_ARGUMENT", "the body must be JSON (Content-Type: application/json)");
    return;
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
  if (req.has_header("Authorization")) ctx.AddMetadata("authorization", req.get_header_value("Authorization"));
  if (req.has_header("X-Txcoord-Operator")) {
    ctx.AddMetadata("x-txcoord-operator", req.get_header_value("X-Txcoord-Operator"));
  }
  v1::AdminService::Stub stub(admin);
  std::string out;
  const grpc::Status s = method->second(stub, &ctx, figures ? std::string() : req.body, &out);
  if (!s.ok()) {
    // gRPC's codes are absl's, one for one.
    Refuse(res, HttpStatusFor(s.error_code()), absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())),
           s.error_message());
    return;
  }
  res.set_content(figures ? FiguresJson(metrics()) : out, "application/json");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Console>> Console::Start(const Config& config, std::shared_ptr<grpc::Channel> admin,
                                                        std::function<std::string()> metrics) {
  const std::string& listen = config.console_listen;
  const auto colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("config: console_listen: \"", listen, "\" is not host:port"));
  }
  std::unique_ptr<Console> console(new Console());
  console->admin_ = std::move(admin);
  if (config.plaintext) {
    console->http_ = std::make_unique<httplib::Server>();
    console->scheme_ = "http";
  } else {
    auto https = std::make_unique<httplib::SSLServer>(config.tls.cert_file.c_str(), config.tls.key_file.c_str());
    if (!https->is_valid()) {
      return absl::FailedPreconditionError(absl::StrCat("console: cannot use the certificate ", config.tls.cert_file,
                                                        " and key ", config.tls.key_file, " for HTTPS"));
    }
    console->http_ = std::move(https);
    console->scheme_ = "https";
  }
  httplib::Server& http = *console->http_;
  UseNamedHttpThreads(http, config.limits.http_threads, "txc-console-w");
  http.set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'none'");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Referrer-Policy", "no-referrer");
    res.set_header("X-Frame-Options", "DENY");
  });
  for (const auto& [path, body, type] : {std::tuple{"/", kConsoleIndexHtml, "text/html; charset=utf-8"},
                                         std::tuple{"/app.js", kConsoleAppJs, "text/javascript; charset=utf-8"},
                                         std::tuple{"/style.css", kConsoleStyleCss, "text/css; charset=utf-8"}}) {
    http.Get(path, [body = body, type = type](const httplib::Request&, httplib::Response& res) {
      res.set_content(body, type);
    });
  }
  http.Post(R"(/api/(\w+))",
            [admin = console->admin_, metrics = std::move(metrics), scheme = console->scheme_](
                const httplib::Request& req, httplib::Response& res) { Api(admin, metrics, scheme, req, res); });
  const std::string host = listen.substr(0, colon);
  if (port == 0) {
    port = http.bind_to_any_port(host);
  } else if (!http.bind_to_port(host, port)) {
    port = -1;
  }
  if (port <= 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", listen, " for the console"));
  console->address_ = absl::StrCat(host, ":", port);
  console->thread_ = std::thread([&http] {
    util::NameThisThread("txc-console");
    http.listen_after_bind();
  });
  return console;
}

Console::~Console() {
  if (http_ != nullptr) http_->stop();
  if (thread_.joinable()) thread_.join();
}

std::string FiguresJson(const std::string& metrics_text) {
  nlohmann::json out = {{"committed", 0},
                        {"aborted", 0},
                        {"decisions_halted", 0},
                        {"live", 0},
                        {"commit_buckets", nlohmann::json::array()}};
  for (absl::string_view line : absl::StrSplit(metrics_text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    const absl::string_view series = line.substr(0, space);
    double value = 0;
    if (!absl::SimpleAtod(line.substr(space + 1), &value)) continue;
    if (series == "txcoord_transactions_total{outcome=\"committed\"}") {
      out["committed"] = value;
    } else if (series == "txcoord_transactions_total{outcome=\"aborted\"}") {
      out["aborted"] = value;
    } else if (series == "txcoord_decisions_halted") {
      out["decisions_halted"] = value;
    } else if (series == "txcoord_live_transactions") {
      out["live"] = value;
    } else if (absl::ConsumePrefix(&line, "txcoord_commit_duration_seconds_bucket{le=\"")) {
      const absl::string_view le = line.substr(0, line.find('"'));
      double bound = 0;
      nlohmann::json upper = nullptr;  // +Inf
      if (absl::SimpleAtod(le, &bound) && le != "+Inf") upper = bound;
      out["commit_buckets"].push_back({upper, value});
    }
  }
  return out.dump();
}

int HttpStatusFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::FAILED_PRECONDITION:
      return 409;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    default:
      return 500;
  }
}

}  // namespace txcoord::coordinator
