// The async edge (server/service/async_edge.h) and the health service it
// serves (server/service/health_service.h), on a real gRPC server on
// loopback: Check, Watch through status changes and the server's stop, and
// a call's cancellation reaching a method that asked for it.
#include "server/service/async_edge.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/service/health_service.h"

namespace txcoord::testing {
namespace {

using coordinator::AsyncEdge;
using coordinator::FinishCall;
using coordinator::HealthServiceImpl;
using Response = grpc::health::v1::HealthCheckResponse;

// A gRPC server on loopback whose only services are on one AsyncEdge.
class EdgeServer {
 public:
  // `add` registers services on the builder and serves them on the edge.
  template <typename Add>
  explicit EdgeServer(Add add) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    edge_ = std::make_unique<AsyncEdge>(builder.AddCompletionQueue());
    add(builder, *edge_);
    server_ = builder.BuildAndStart();
    edge_->Start();
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  }
  ~EdgeServer() { Stop(absl::Seconds(30)); }

  // The server's Shutdown with `grace`, then the edge's Stop: how long the
  // Shutdown took.
  absl::Duration Stop(absl::Duration grace) {
    if (server_ == nullptr) return absl::ZeroDuration();
    const absl::Time start = absl::Now();
    server_->Shutdown(absl::ToChronoTime(start + grace));
    const absl::Duration took = absl::Now() - start;
    server_->Wait();
    edge_->Stop();
    server_.reset();
    edge_.reset();
    return took;
  }

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

 private:
  std::unique_ptr<AsyncEdge> edge_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

class HealthServiceTest : public ::testing::Test {
 protected:
  HealthServiceTest()
      : server_([this](grpc::ServerBuilder& builder, AsyncEdge& edge) {
          builder.RegisterService(&health_);
          health_.ServeOn(edge);
        }),
        stub_(grpc::health::v1::Health::NewStub(server_.channel())) {}
  ~HealthServiceTest() override { health_.Shutdown(); }  // then the server stops

  grpc::Status Check(const std::string& service, Response* out) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    return stub_->Check(&ctx, req, out);
  }

  // A Watch of `service`, open until `ctx` is cancelled (at the latest
  // when its 30 s deadline passes: a stream left open fails the test, it
  // does not hang it).
  std::unique_ptr<grpc::ClientReader<Response>> Watch(const std::string& service, grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    return stub_->Watch(ctx, req);
  }

  static Response::ServingStatus Next(grpc::ClientReader<Response>& stream) {
    Response r;
    if (!stream.Read(&r)) return Response::UNKNOWN;
    return r.status();
  }

  HealthServiceImpl health_;  // outlives the server: declared first
  EdgeServer server_;
  std::unique_ptr<grpc::health::v1::Health::Stub> stub_;
};

TEST_F(HealthServiceTest, CheckAnswersTheStatusSetAndNotFoundForANameNeverSet) {
  health_.SetServingStatus("", true);
  health_.SetServingStatus("txcoord.bind.pg", false);
  Response r;
  ASSERT_TRUE(Check("", &r).ok());
  EXPECT_EQ(r.status(), Response::SERVING);
  ASSERT_TRUE(Check("txcoord.bind.pg", &r).ok());
  EXPECT_EQ(r.status(), Response::NOT_SERVING);
  EXPECT_EQ(Check("txcoord.bind.nope", &r).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(HealthServiceTest, WatchSendsTheStatusAtOnceAndThenEachChange) {
  health_.SetServingStatus("a", true);
  grpc::ClientContext ctx;
  auto stream = Watch("a", &ctx);
  EXPECT_EQ(Next(*stream), Response::SERVING);
  health_.SetServingStatus("a", false);
  EXPECT_EQ(Next(*stream), Response::NOT_SERVING);
  health_.SetServingStatus("a", false);  // no change: nothing sent
  health_.SetServingStatus("other", false);
  health_.SetServingStatus("a", true);
  EXPECT_EQ(Next(*stream), Response::SERVING);
  ctx.TryCancel();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(HealthServiceTest, WatchOfANameNeverSetSaysSoAndKeepsWatching) {
  grpc::ClientContext ctx;
  auto stream = Watch("later", &ctx);
  EXPECT_EQ(Next(*stream), Response::SERVICE_UNKNOWN);
  health_.SetServingStatus("later", true);
  EXPECT_EQ(Next(*stream), Response::SERVING);
  ctx.TryCancel();
  (void)stream->Finish();
}

// Several watchers of one name, some cancelled by their clients: the rest
// still hear each change.
TEST_F(HealthServiceTest, WatchersCancelledByTheirClientsLeaveTheOthersWatching) {
  health_.SetServingStatus("", true);
  constexpr int kWatchers = 6;
  grpc::ClientContext ctx[kWatchers];
  std::unique_ptr<grpc::ClientReader<Response>> streams[kWatchers];
  for (int i = 0; i < kWatchers; ++i) {
    streams[i] = Watch("", &ctx[i]);
    ASSERT_EQ(Next(*streams[i]), Response::SERVING) << i;
  }
  for (int i = 0; i < kWatchers; i += 2) {
    ctx[i].TryCancel();
    EXPECT_EQ(streams[i]->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  health_.SetServingStatus("", false);
  for (int i = 1; i < kWatchers; i += 2) EXPECT_EQ(Next(*streams[i]), Response::NOT_SERVING) << i;
  for (int i = 1; i < kWatchers; i += 2) {
    ctx[i].TryCancel();
    (void)streams[i]->Finish();
  }
}

// The health service's Shutdown (before the server's) sends NOT_SERVING to
// each watcher, then ends its stream, so the server's Shutdown does not
// wait out its grace period for streams that would never end.
TEST_F(HealthServiceTest, ShutdownSendsNotServingAndEndsTheStreams) {
  health_.SetServingStatus("", true);
  grpc::ClientContext ctx, unknown_ctx;
  auto stream = Watch("", &ctx);
  auto unknown = Watch("never-set", &unknown_ctx);
  ASSERT_EQ(Next(*stream), Response::SERVING);
  ASSERT_EQ(Next(*unknown), Response::SERVICE_UNKNOWN);
  health_.Shutdown();
  EXPECT_EQ(Next(*stream), Response::NOT_SERVING);
  grpc::Status end = stream->Finish();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::UNAVAILABLE) << end.error_message();
  EXPECT_EQ(unknown->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  health_.SetServingStatus("", true);  // ignored from now on
  Response r;
  ASSERT_TRUE(Check("", &r).ok());
  EXPECT_EQ(r.status(), Response::NOT_SERVING);
  EXPECT_LT(server_.Stop(absl::Seconds(60)), absl::Seconds(30)) << "the server's Shutdown waited for a stream";
}

// A unary method that asked for it (notify_when_done) sees its call
// cancelled while it runs: AdminService's Drain stops waiting when its
// client gives up.
TEST(AsyncEdgeTest, AMethodThatAskedSeesItsCallCancelled) {
  // A raw Check of the health protocol stands in for any unary method.
  grpc::health::v1::Health::WithRawMethod_Check<grpc::health::v1::Health::Service> service;
  std::atomic<bool> saw_cancel{false};
  absl::Notification answered;
  std::thread answering;
  {
    EdgeServer server([&](grpc::ServerBuilder& builder, AsyncEdge& edge) {
      builder.RegisterService(&service);
      edge.Add([&](auto... a) { service.RequestCheck(a...); },
               [&](grpc::ServerContext* ctx, const grpc::ByteBuffer*, grpc::ByteBuffer*, FinishCall finish) {
                 answering = std::thread([ctx, finish = std::move(finish), &saw_cancel, &answered] {
                   const absl::Time give_up = absl::Now() + absl::Seconds(20);
                   while (!ctx->IsCancelled() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
                   saw_cancel = ctx->IsCancelled();
                   finish(grpc::Status::OK);
                   answered.Notify();
                 });
               },
               /*notify_when_done=*/true);
    });
    auto stub = grpc::health::v1::Health::NewStub(server.channel());
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
    Response r;
    EXPECT_EQ(stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &r).error_code(),
              grpc::StatusCode::DEADLINE_EXCEEDED);
    answered.WaitForNotification();
    answering.join();
  }
  EXPECT_TRUE(saw_cancel) << "the call's cancellation never reached the method";
}

}  // namespace
}  // namespace txcoord::testing
