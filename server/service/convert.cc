#include "server/service/convert.h"

#include "absl/strings/str_cat.h"

namespace txcoord::coordinator {
namespace {

google::protobuf::Timestamp* SetTime(absl::Time t, google::protobuf::Timestamp* ts) {
  int64_t us = absl::ToUnixMicros(t);
  ts->set_seconds(us / 1000000);
  ts->set_nanos(static_cast<int32_t>((us % 1000000) * 1000));
  return ts;
}

}  // namespace

absl::StatusOr<participants::Value> FromProto(const txcoord::v1::Value& v, int index) {
  using K = participants::Value::Kind;
  using participants::Value;
  // Text fields are proto3 strings: the protobuf runtime has checked
  // their UTF-8 already.
  auto text = [&](K kind, const std::string& s) -> absl::StatusOr<Value> { return Value::Text(kind, s); };
  switch (v.kind_case()) {
    case txcoord::v1::Value::kNullValue: return Value::Null();
    case txcoord::v1::Value::kBoolValue: return Value::Bool(v.bool_value());
    case txcoord::v1::Value::kIntValue: return Value::Int64(v.int_value());
    case txcoord::v1::Value::kDoubleValue: return Value::Double(v.double_value());
    case txcoord::v1::Value::kDecimalValue: return text(K::kDecimal, v.decimal_value());
    case txcoord::v1::Value::kStringValue: return text(K::kString, v.string_value());
    case txcoord::v1::Value::kBytesValue: return Value::Text(K::kBytes, v.bytes_value());
    case txcoord::v1::Value::kDateValue: return text(K::kDate, v.date_value());
    case txcoord::v1::Value::kTimeValue: return text(K::kTime, v.time_value());
    case txcoord::v1::Value::kTimestampValue: return text(K::kTimestamp, v.timestamp_value());
    case txcoord::v1::Value::KIND_NOT_SET: break;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "parameter ", index + 1, " has no value kind (set null_value for NULL)"));
}

absl::StatusOr<std::pair<std::string, std::vector<participants::Value>>> FromProto(
    const txcoord::v1::Statement& s) {
  std::vector<participants::Value> params;
  params.reserve(s.params_size());
  for (int i = 0; i < s.params_size(); ++i) {
    auto v = FromProto(s.params(i), i);
    if (!v.ok()) return v.status();
    params.push_back(std::move(*v));
  }
  return std::make_pair(s.sql(), std::move(params));
}

absl::StatusOr<Coordinator::Statements> StatementsFromProto(
    const google::protobuf::RepeatedPtrField<txcoord::v1::Statement>& in) {
  Coordinator::Statements out;
  for (int i = 0; i < in.size(); ++i) {
    auto s = FromProto(in[i]);
    if (!s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("statement ", i + 1, ": ", s.status().message()));
    }
    out.push_back(std::move(*s));
  }
  return out;
}

void ToProto(const participants::Value& v, txcoord::v1::Value* out) {
  using K = participants::Value::Kind;
  switch (v.kind) {
    case K::kNull: out->set_null_value(google::protobuf::NULL_VALUE); break;
    case K::kBool: out->set_bool_value(v.bool_value); break;
    case K::kInt64: out->set_int_value(v.int_value); break;
    case K::kDouble: out->set_double_value(v.double_value); break;
    case K::kDecimal: out->set_decimal_value(v.text); break;
    case K::kString: out->set_string_value(v.text); break;
    case K::kBytes: out->set_bytes_value(v.text); break;
    case K::kDate: out->set_date_value(v.text); break;
    case K::kTime: out->set_time_value(v.text); break;
    case K::kTimestamp: out->set_timestamp_value(v.text); break;
  }
}

void ToProto(const participants::ResultSet& r, txcoord::v1::ResultSet* out) {
  for (const auto& c : r.columns) {
    auto* col = out->add_columns();
    col->set_name(c.name);
    col->set_type(c.type);
  }
  for (const auto& row : r.rows) {
    auto* pr = out->add_rows();
    for (const auto& v : row) ToProto(v, pr->add_values());
  }
  out->set_rows_affected(r.rows_affected);
  out->set_truncated(r.truncated);
}

txcoord::v1::TransactionState ToProto(TxnState s) {
  switch (s) {
    case TxnState::kActive: return txcoord::v1::ACTIVE;
    case TxnState::kPreparing: return txcoord::v1::PREPARING;
    case TxnState::kCommitting: return txcoord::v1::COMMITTING;
    case TxnState::kCommitted: return txcoord::v1::COMMITTED;
    case TxnState::kAborting: return txcoord::v1::ABORTING;
    case TxnState::kAborted: return txcoord::v1::ABORTED;
    case TxnState::kHeuristic: return txcoord::v1::HEURISTIC;
  }
  return txcoord::v1::TRANSACTION_STATE_UNSPECIFIED;
}

void ToProto(const TxnInfo& info, txcoord::v1::Transaction* out) {
  out->set_txn_id(info.txn_id);
  out->set_state(ToProto(info.state));
  for (const BranchInfo& b : info.branches) {
    auto* pb = out->add_branches();
    pb->set_bind(b.bind);
    pb->set_xid(b.xid);
    pb->set_attempts(b.attempts);
    pb->set_last_error(b.last_error);
    pb->set_last_resource(b.last_resource);
    txcoord::v1::BranchState st = txcoord::v1::BRANCH_STATE_UNSPECIFIED;
    if (b.state == "active") st = txcoord::v1::BRANCH_ACTIVE;
    else if (b.state == "prepared") st = txcoord::v1::BRANCH_PREPARED;
    else if (b.state == "read_only") st = txcoord::v1::BRANCH_READ_ONLY;
    else if (b.state == "committed") st = txcoord::v1::BRANCH_COMMITTED;
    else if (b.state == "rolled_back") st = txcoord::v1::BRANCH_ROLLED_BACK;
    else if (b.state == "heuristic_hazard") st = txcoord::v1::BRANCH_HEURISTIC_HAZARD;
    pb->set_state(st);
  }
  if (info.started_at != absl::InfinitePast()) SetTime(info.started_at, out->mutable_started_at());
  if (info.decided_at != absl::InfinitePast()) SetTime(info.decided_at, out->mutable_decided_at());
  if (info.finished_at != absl::InfinitePast()) SetTime(info.finished_at, out->mutable_finished_at());
  out->set_session_id(info.session_id);
  for (const auto& [k, v] : info.labels) (*out->mutable_labels())[k] = v;
  out->set_abort_reason(info.abort_reason);
}

grpc::Status AnswerGetTransaction(Coordinator& coordinator, const txcoord::v1::GetTransactionRequest& req,
                                  txcoord::v1::Transaction* resp) {
  if (req.txn_id().empty()) return ToGrpc(absl::InvalidArgumentError("txn_id is required"));
  auto info = coordinator.GetTransaction(req.txn_id());
  if (!info.ok()) return ToGrpc(info.status());
  ToProto(*info, resp);
  return grpc::Status::OK;
}

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace txcoord::coordinator
