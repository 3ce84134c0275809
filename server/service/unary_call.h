// Unary calls on gRPC's raw methods, the edge every txcoord service
// shares: the request is parsed here (a request that does not parse gets
// INVALID_ARGUMENT naming its message — left to gRPC, a raw method
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

// Hands a call's status (and its response, serialized before) back to
// gRPC: the response writer's Finish (server/service/async_edge.h). Called
// once, from any thread.
using FinishCall = std::function<void(const grpc::Status&)>;

// Runs `call` on a thread of the branch workers (coordinator/parallel.h),
// then finishes with its status.
void FinishOnThread(FinishCall finish, std::function<grpc::Status()> call);

// Runs `call` on a fiber of `fibers`, or on a branch worker thread when
// there are no loops (null); counts it in `counter`
// {runs_on="fiber"|"thread"}; finishes with its status.
void FinishOnFiberOrThread(util::FiberLoops* fibers, Metrics& metrics, const char* counter, FinishCall finish,
                           std::function<grpc::Status()> call);

// A unary call: parses the request (a request that does not parse is
// finished at once), then hands `dispatch` `finish` and a function that
// runs `(self->*call)(ctx, request, response)` and returns the status to
// finish with. `dispatch` must run that function once and finish with what
// it returns.
template <typename Service, typename Request, typename Response, typename Dispatch>
void UnaryCall(grpc::ServerContextBase* ctx, const grpc::ByteBuffer* in, grpc::ByteBuffer* out, Service* self,
               grpc::Status (Service::*call)(grpc::ServerContextBase*, const Request*, Response*), FinishCall finish,
               Dispatch&& dispatch) {
  auto messages = std::make_shared<std::pair<Request, Response>>();
  if (absl::Status parsed = ParseRequest(in, &messages->first); !parsed.ok()) {
    finish(ToGrpc(parsed));
    return;
  }
  std::function<grpc::Status()> run = [ctx, out, messages, self, call] {
    return SerializeReply((self->*call)(ctx, &messages->first, &messages->second), messages->second, out);
  };
  std::forward<Dispatch>(dispatch)(std::move(finish), std::move(run));
}

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_SERVICE_UNARY_CALL_H_
