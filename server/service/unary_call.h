// Unary calls on gRPC's raw callback API, the edge every txcoord service
// shares: the request is parsed here (a request that does not parse gets
// INVALID_ARGUMENT naming its message — left to gRPC, the callback API
// answers UNIMPLEMENTED with no message), the call runs where its service
// dispatches it (a fiber, or a thread that may block), and its response is
// serialized into gRPC's bytes. gRPC's own threads never wait for a call.
#ifndef TXCOORD_SERVER_SERVICE_UNARY_CALL_H_
#define TXCOORD_SERVER_SERVICE_UNARY_CALL_H_

#include <functional>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "coordinator/metrics.h"
#include "google/protobuf/message.h"
#include "grpcpp/grpcpp.h"
#include "server/service/convert.h"
#include "util/fiber.h"

namespace txcoord::coordinator {

// The request parsed from gRPC's bytes: INVALID_ARGUMENT, naming the
// message, when it does not parse (a string field with invalid UTF-8).
absl::Status ParseRequest(const grpc::ByteBuffer* in, google::protobuf::Message* request);

// `status`, with `response` serialized into *out when it is OK.
grpc::Status SerializeReply(const grpc::Status& status, const google::protobuf::Message& response,
                            grpc::ByteBuffer* out);

// Runs `call` on a thread of the branch workers (coordinator/parallel.h),
// then finishes `reactor` with its status.
void FinishOnThread(grpc::ServerUnaryReactor* reactor, std::function<grpc::Status()> call);

// Runs `call` on a fiber of `fibers`, or on a branch worker thread when
// there are no loops (null); counts it in `counter`
// {runs_on="fiber"|"thread"}; finishes `reactor` with its status.
void FinishOnFiberOrThread(util::FiberLoops* fibers, Metrics& metrics, const char* counter,
                           grpc::ServerUnaryReactor* reactor, std::function<grpc::Status()> call);

// A unary call: parses the request, then hands `dispatch` the reactor and
// a function that runs `(self->*call)(ctx, request, response)` and returns
// the status to finish with. `dispatch` must run that function once and
// finish the reactor with what it returns.
template <typename Service, typename Request, typename Response, typename Dispatch>
grpc::ServerUnaryReactor* UnaryCall(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in, grpc::ByteBuffer* out,
                                    Service* self,
                                    grpc::Status (Service::*call)(grpc::ServerContextBase*, const Request*, Response*),
                                    Dispatch&& dispatch) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto messages = std::make_shared<std::pair<Request, Response>>();
  if (absl::Status parsed = ParseRequest(in, &messages->first); !parsed.ok()) {
    reactor->Finish(ToGrpc(parsed));
    return reactor;
  }
  std::function<grpc::Status()> run = [ctx, out, messages, self, call] {
    return SerializeReply((self->*call)(ctx, &messages->first, &messages->second), messages->second, out);
  };
  std::forward<Dispatch>(dispatch)(reactor, std::move(run));
  return reactor;
}

// UnaryCall with the call on a branch worker thread.
template <typename Service, typename Request, typename Response>
grpc::ServerUnaryReactor* UnaryCallOnThread(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* in,
                                            grpc::ByteBuffer* out, Service* self,
                                            grpc::Status (Service::*call)(grpc::ServerContextBase*, const Request*,
                                                                          Response*)) {
  return UnaryCall(ctx, in, out, self, call, FinishOnThread);
}

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_SERVICE_UNARY_CALL_H_
