#include "server/service/health_service.h"

#include <utility>

#include "server/service/convert.h"
#include "server/service/unary_call.h"

namespace txcoord::coordinator {
namespace {

// Watch calls asked for at once (a watcher is a probe or a client
// channel: few, and long-lived).
constexpr int kWatchesAsked = 2;

}  // namespace

// One Watch call, from its request to gRPC's report that it is done. Its
// state is guarded by the service's lock: a status set on another thread
// writes to it, and its completions arrive on the queue's thread.
class HealthServiceImpl::Watcher final : public AsyncEdge::Tag {
 public:
  explicit Watcher(HealthServiceImpl* service) : service_(service), writer_(&ctx_), done_tag_(this) {
    ctx_.AsyncNotifyWhenDone(&done_tag_);
  }

  void Ask() {
    grpc::ServerCompletionQueue* queue = service_->edge_->queue();
    service_->RequestWatch(&ctx_, &request_, &writer_, queue, queue, this);
  }

  // Its arrival, or the end of its Write or Finish.
  void Proceed(bool ok) override {
    bool gone = false;
    {
      absl::MutexLock lock(&service_->mu_);
      if (!arrived_) {
        // Not matched (the server is shutting down): no other tag comes.
        gone = !ok;
        if (ok) Arrived();
      } else {
        in_flight_ = false;
        if (ok) SendLocked();  // otherwise the call is over, and its done tag follows
        gone = done_ && !in_flight_;
      }
    }
    if (gone) delete this;
  }

  // Sends the status of the service watched if it changed since it was last
  // sent; after the service's Shutdown, once that is sent, ends the stream.
  void SendLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(service_->mu_) {
    if (in_flight_ || finished_ || done_) return;
    const Status now = service_->StatusOf(name_);
    if (now != sent_) {
      grpc::health::v1::HealthCheckResponse response;
      response.set_status(now);
      out_.Clear();
      if (grpc::Status written = SerializeReply(grpc::Status::OK, response, &out_); !written.ok()) {
        Finish(written);
        return;
      }
      writer_.Write(out_, this);
      in_flight_ = true;
      sent_ = now;
    } else if (service_->shutdown_) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "txcoord is stopping"));
    }
  }

  const std::string& name() const { return name_; }

 private:
  // gRPC's report that the call is done: ended, or cancelled by its client.
  struct DoneTag final : AsyncEdge::Tag {
    explicit DoneTag(Watcher* w) : watcher(w) {}
    void Proceed(bool) override { watcher->Done(); }
    Watcher* watcher;
  };

  ~Watcher() = default;

  void Arrived() ABSL_EXCLUSIVE_LOCKS_REQUIRED(service_->mu_) {
    arrived_ = true;
    if (!service_->shutdown_) service_->AskWatch();
    grpc::health::v1::HealthCheckRequest request;
    if (absl::Status parsed = ParseRequest(&request_, &request); !parsed.ok()) {
      Finish(ToGrpc(parsed));
      return;
    }
    name_ = request.service();
    service_->watchers_.insert(this);
    SendLocked();
  }

  void Finish(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(service_->mu_) {
    writer_.Finish(status, this);
    in_flight_ = true;
    finished_ = true;
  }

  void Done() {
    bool gone = false;
    {
      absl::MutexLock lock(&service_->mu_);
      done_ = true;
      service_->watchers_.erase(this);
      gone = !in_flight_;
    }
    if (gone) delete this;
  }

  HealthServiceImpl* const service_;
  grpc::ServerContext ctx_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer out_;
  grpc::ServerAsyncWriter<grpc::ByteBuffer> writer_;
  DoneTag done_tag_;
  std::string name_;
  bool arrived_ = false;
  bool in_flight_ = false;  // a Write or the Finish not yet ended
  bool finished_ = false;   // Finish issued
  bool done_ = false;       // gRPC reported the call done
  int sent_ = -1;           // the status last sent; none yet
};

HealthServiceImpl::~HealthServiceImpl() = default;

void HealthServiceImpl::ServeOn(AsyncEdge& edge) {
  edge_ = &edge;
  ServeUnary(
      edge, [this](auto... a) { RequestCheck(a...); }, this, &HealthServiceImpl::AnswerCheckCall,
      // Answered on the queue's thread: a lookup under a lock.
      [](FinishCall finish, std::function<grpc::Status()> run) { finish(run()); });
  edge.AddOwn([this] {
    absl::MutexLock lock(&mu_);
    for (int i = 0; i < kWatchesAsked; ++i) AskWatch();
  });
}

grpc::Status HealthServiceImpl::AnswerCheckCall(grpc::ServerContextBase*,
                                                const grpc::health::v1::HealthCheckRequest* request,
                                                grpc::health::v1::HealthCheckResponse* response) {
  absl::MutexLock lock(&mu_);
  auto it = statuses_.find(request->service());
  if (it == statuses_.end()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service \"" + request->service() + "\"");
  }
  response->set_status(it->second);
  return grpc::Status::OK;
}

void HealthServiceImpl::AskWatch() { (new Watcher(this))->Ask(); }

HealthServiceImpl::Status HealthServiceImpl::StatusOf(const std::string& service) const {
  auto it = statuses_.find(service);
  return it == statuses_.end() ? grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN : it->second;
}

void HealthServiceImpl::SetServingStatus(const std::string& service, bool serving) {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return;
  const Status now =
      serving ? grpc::health::v1::HealthCheckResponse::SERVING : grpc::health::v1::HealthCheckResponse::NOT_SERVING;
  auto [it, added] = statuses_.try_emplace(service, now);
  if (!added && it->second == now) return;
  it->second = now;
  for (Watcher* w : watchers_) {
    if (w->name() == service) w->SendLocked();
  }
}

void HealthServiceImpl::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (shutdown_) return;
  shutdown_ = true;
  for (auto& [name, status] : statuses_) status = grpc::health::v1::HealthCheckResponse::NOT_SERVING;
  for (Watcher* w : watchers_) w->SendLocked();
}

}  // namespace txcoord::coordinator
