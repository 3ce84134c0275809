// Every txcoord gRPC service on gRPC's async API, served by one thread
// (`txc-grpc`) that waits on the server's one completion queue. A call's
// arrival and the end of its Finish come back to that thread; the call
// itself runs where its service dispatches it (a fiber of an event loop, or
// a branch worker), and its Finish is issued from there.
//
// Why not the callback API: gRPC 1.51 delivers every callback-API
// completion through a completion queue served by two threads of its own,
// which hand the polling over to each other on every event, so a call
// finished from an event loop wakes one of them to end it. And gRPC's
// poller is one epoll set for the process, polled by every thread that
// waits on any queue: a service left on the callback API (or on the sync
// server) keeps its threads polling, and an event for our queue caught by
// one of them is handed over with a wake-up. With one thread on one queue,
// a unary call costs that thread two wake-ups (its arrival and its Finish)
// and no hand-over.
//
//   AsyncEdge edge(builder.AddCompletionQueue());
//   edge.Add([&](auto... a) { service.RequestExecute(a...); }, answer_execute);
//   server = builder.BuildAndStart();
//   edge.Start();
//   ...
//   server->Shutdown(); server->Wait();
//   edge.Stop();  // waits for the answers still running; before the server goes
#ifndef TXCOORD_SERVER_SERVICE_ASYNC_EDGE_H_
#define TXCOORD_SERVER_SERVICE_ASYNC_EDGE_H_

#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "server/service/unary_call.h"

namespace txcoord::coordinator {

class AsyncEdge {
 public:
  // What waits on the queue: an asked-for call, a write, a Finish, a
  // call's end. The queue's thread hands it its completion.
  class Tag {
   public:
    // On the queue's thread; `ok` as gRPC reports it for the operation.
    virtual void Proceed(bool ok) = 0;

   protected:
    ~Tag() = default;
  };

  // Asks gRPC for the method's next call (a generated RequestX of a raw
  // async method), delivered to the queue with `tag`.
  using RequestFn =
      std::function<void(grpc::ServerContext*, grpc::ByteBuffer*, grpc::ServerAsyncResponseWriter<grpc::ByteBuffer>*,
                         grpc::CompletionQueue*, grpc::ServerCompletionQueue*, void*)>;
  // Answers an arrived call: must call `finish` once, from any thread,
  // after writing the response into *out. Runs on the queue's thread: it
  // must not wait.
  using AnswerFn =
      std::function<void(grpc::ServerContext*, const grpc::ByteBuffer* in, grpc::ByteBuffer* out, FinishCall finish)>;

  explicit AsyncEdge(std::unique_ptr<grpc::ServerCompletionQueue> queue);
  ~AsyncEdge();  // Stop()
  AsyncEdge(const AsyncEdge&) = delete;
  AsyncEdge& operator=(const AsyncEdge&) = delete;

  // Before Start: serves one unary method. `notify_when_done`: the call's
  // ServerContext::IsCancelled() turns true when the client cancels it
  // (gRPC's async API reports that only to a call that asked; it costs one
  // more completion per call).
  void Add(RequestFn request, AnswerFn answer, bool notify_when_done = false);
  // Before Start: `ask` runs in Start, to ask for a method's first calls
  // that its service serves itself with Tags on queue() (a stream).
  void AddOwn(std::function<void()> ask);
  grpc::ServerCompletionQueue* queue() const { return queue_.get(); }

  // After the server is built: asks for each method's first calls and
  // starts the queue's thread.
  void Start();
  // After the server's Shutdown: answers calls still arriving with
  // UNAVAILABLE, waits until every answer has called its finish, shuts the
  // queue down, ends what is left on it and joins the thread. Idempotent.
  void Stop();

 private:
  struct Method {
    RequestFn request;
    AnswerFn answer;
    bool notify_when_done;
  };
  class Call;
  void Ask(const Method* method);
  // A unary call's arrival, on the queue's thread.
  void Arrived(Call* call);
  void Serve();

  std::unique_ptr<grpc::ServerCompletionQueue> queue_;
  std::vector<std::unique_ptr<Method>> methods_;
  std::vector<std::function<void()>> own_;
  std::thread thread_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int answering_ ABSL_GUARDED_BY(mu_) = 0;  // answers that have not called their finish
};

// Serves `(self->*call)` as the unary method `request` asks for: the
// request parsed (UnaryCall), then run through `dispatch(finish, run)`.
template <typename Service, typename Request, typename Response, typename Dispatch>
void ServeUnary(AsyncEdge& edge, AsyncEdge::RequestFn request, Service* self,
                grpc::Status (Service::*call)(grpc::ServerContextBase*, const Request*, Response*), Dispatch dispatch,
                bool notify_when_done = false) {
  edge.Add(
      std::move(request),
      [self, call, dispatch](grpc::ServerContext* ctx, const grpc::ByteBuffer* in, grpc::ByteBuffer* out,
                             FinishCall finish) { UnaryCall(ctx, in, out, self, call, std::move(finish), dispatch); },
      notify_when_done);
}

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_SERVICE_ASYNC_EDGE_H_
