#include "server/service/async_edge.h"

#include <utility>

#include "util/thread_name.h"

namespace txcoord::coordinator {
namespace {

// Calls asked for per method at once: arrivals beyond them wait in gRPC
// until the queue's thread asks again (it does on every arrival).
constexpr int kAskedPerMethod = 16;

}  // namespace

// One unary call, from its request to the end of its Finish (and, for a
// method that asked, to gRPC's report that the call is done). Lives on the
// queue's thread: every completion of its tags arrives there.
class AsyncEdge::Call final : public Tag {
 public:
  Call(AsyncEdge* edge, const Method* method) : edge_(edge), method_(method), writer_(&ctx_), done_(this) {
    if (method_->notify_when_done) ctx_.AsyncNotifyWhenDone(&done_);
  }

  void Ask() { method_->request(&ctx_, &in_, &writer_, edge_->queue(), edge_->queue(), this); }

  void Proceed(bool ok) override {
    if (arrived_) {
      Release();  // its Finish has ended: sent, or the call was cancelled
    } else if (!ok) {
      delete this;  // the server is shutting down and the request was not matched: no other tag comes
    } else {
      arrived_ = true;
      refs_ = method_->notify_when_done ? 2 : 1;
      edge_->Arrived(this);
    }
  }

  // From any thread, once.
  void Finish(const grpc::Status& status) { writer_.Finish(out_, status, this); }

  const Method* method() const { return method_; }
  grpc::ServerContext* ctx() { return &ctx_; }
  const grpc::ByteBuffer* in() const { return &in_; }
  grpc::ByteBuffer* out() { return &out_; }

 private:
  // gRPC's report that the call is done (notify_when_done).
  struct Done final : Tag {
    explicit Done(Call* c) : call(c) {}
    void Proceed(bool) override { call->Release(); }
    Call* call;
  };
  ~Call() = default;
  void Release() {
    if (--refs_ == 0) delete this;
  }

  AsyncEdge* const edge_;
  const Method* const method_;
  grpc::ServerContext ctx_;
  grpc::ByteBuffer in_;
  grpc::ByteBuffer out_;
  grpc::ServerAsyncResponseWriter<grpc::ByteBuffer> writer_;
  Done done_;
  bool arrived_ = false;
  int refs_ = 1;  // tags still to come once arrived; the queue's thread only
};

AsyncEdge::AsyncEdge(std::unique_ptr<grpc::ServerCompletionQueue> queue) : queue_(std::move(queue)) {}

AsyncEdge::~AsyncEdge() { Stop(); }

void AsyncEdge::Add(RequestFn request, AnswerFn answer, bool notify_when_done) {
  methods_.push_back(std::make_unique<Method>(Method{std::move(request), std::move(answer), notify_when_done}));
}

void AsyncEdge::AddOwn(std::function<void()> ask) { own_.push_back(std::move(ask)); }

void AsyncEdge::Ask(const Method* method) { (new Call(this, method))->Ask(); }

void AsyncEdge::Start() {
  for (const auto& m : methods_) {
    for (int i = 0; i < kAskedPerMethod; ++i) Ask(m.get());
  }
  for (const auto& ask : own_) ask();
  thread_ = std::thread([this] {
    util::NameThisThread("txc-grpc");
    Serve();
  });
}

void AsyncEdge::Arrived(Call* call) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      call->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "txcoord is stopping"));
      return;
    }
    ++answering_;  // Stop waits for it: the queue stays up for the Ask below
  }
  Ask(call->method());
  call->method()->answer(call->ctx(), call->in(), call->out(), [this, call](const grpc::Status& status) {
    call->Finish(status);  // the call may be gone once this returns
    absl::MutexLock lock(&mu_);
    --answering_;
  });
}

void AsyncEdge::Serve() {
  void* tag = nullptr;
  bool ok = false;
  while (queue_->Next(&tag, &ok)) static_cast<Tag*>(tag)->Proceed(ok);
}

void AsyncEdge::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    mu_.Await(absl::Condition(
        +[](int* answering) { return *answering == 0; }, &answering_));
    queue_->Shutdown();
  }
  if (thread_.joinable()) {
    thread_.join();
  } else {
    Serve();  // never started: ends the requests asked for
  }
}

}  // namespace txcoord::coordinator
