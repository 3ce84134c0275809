#include "server/service/unary_call.h"

#include "absl/strings/str_cat.h"
#include "coordinator/parallel.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/proto_buffer_writer.h"

namespace txcoord::coordinator {

absl::Status ParseRequest(const grpc::ByteBuffer* in, google::protobuf::Message* request) {
  grpc::ByteBuffer bytes(*in);  // shares the slices; deserializing consumes its buffer
  grpc::ProtoBufferReader reader(&bytes);
  if (!reader.status().ok() || !request->ParseFromZeroCopyStream(&reader)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request is not a valid ", request->GetTypeName(),
                     ": a string field (sql, string_value, …) holds invalid UTF-8 — binary data goes in bytes_value — "
                     "or the message is malformed"));
  }
  return absl::OkStatus();
}

grpc::Status SerializeReply(const grpc::Status& status, const google::protobuf::Message& response,
                            grpc::ByteBuffer* out) {
  if (!status.ok()) return status;
  bool own = false;
  grpc::Status written =
      grpc::GenericSerialize<grpc::ProtoBufferWriter, google::protobuf::Message>(response, out, &own);
  return written.ok() ? status : grpc::Status(grpc::StatusCode::INTERNAL, "the response could not be serialized");
}

void FinishOnThread(FinishCall finish, std::function<grpc::Status()> call) {
  BranchWorkers().Submit([finish = std::move(finish), call = std::move(call)] { finish(call()); });
}

void FinishOnFiberOrThread(util::FiberLoops* fibers, Metrics& metrics, const char* counter, FinishCall finish,
                           std::function<grpc::Status()> call) {
  metrics.Increment(counter, {{"runs_on", fibers != nullptr ? "fiber" : "thread"}});
  if (fibers != nullptr) {
    fibers->Spawn([finish = std::move(finish), call = std::move(call)] { finish(call()); });
  } else {
    FinishOnThread(std::move(finish), std::move(call));
  }
}

}  // namespace txcoord::coordinator
