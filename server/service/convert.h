// Conversions between the public API (txcoord.v1) and the engine's types.
// The only place, with the services, that sees generated protobuf code.
#ifndef TXCOORD_SERVER_SERVICE_CONVERT_H_
#define TXCOORD_SERVER_SERVICE_CONVERT_H_

#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/coordinator.h"
#include "grpcpp/grpcpp.h"
#include "participants/participant.h"
#include "google/protobuf/duration.pb.h"
#include "txcoord/v1/common.pb.h"

namespace txcoord::coordinator {

// INVALID_ARGUMENT for a value without a kind or a string that is not UTF-8.
absl::StatusOr<participants::Value> FromProto(const txcoord::v1::Value& v, int index);
absl::StatusOr<std::pair<std::string, std::vector<participants::Value>>> FromProto(
    const txcoord::v1::Statement& s);
// Every statement of a request; the error names the statement (1-based).
absl::StatusOr<Coordinator::Statements> StatementsFromProto(
    const google::protobuf::RepeatedPtrField<txcoord::v1::Statement>& in);
void ToProto(const participants::Value& v, txcoord::v1::Value* out);
void ToProto(const participants::ResultSet& r, txcoord::v1::ResultSet* out);
void ToProto(const TxnInfo& info, txcoord::v1::Transaction* out);
txcoord::v1::TransactionState ToProto(TxnState s);

// GetTransaction, answered the same way by every service that offers it.
grpc::Status AnswerGetTransaction(Coordinator& coordinator, const txcoord::v1::GetTransactionRequest& req,
                                  txcoord::v1::Transaction* resp);

// absl::Status → grpc::Status (codes map 1:1).
grpc::Status ToGrpc(const absl::Status& s);
absl::Duration FromProto(const google::protobuf::Duration& d);

}  // namespace txcoord::coordinator

#endif  // TXCOORD_SERVER_SERVICE_CONVERT_H_
