#include "util/failpoint.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "util/fiber.h"

namespace txcoord::failpoint {
namespace {

enum class Kind { kCrash, kError, kDelay };

struct Point {
  Kind kind = Kind::kCrash;
  int delay_ms = 0;
  int fire_at = 0;  // 0: every hit
  int hits = 0;
};

struct Registry {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, Point> points ABSL_GUARDED_BY(mu);
};

absl::StatusOr<Point> ParseAction(absl::string_view action) {
  Point p;
  absl::string_view body = action;
  if (auto at = action.find('@'); at != absl::string_view::npos) {
    body = action.substr(0, at);
    if (!absl::SimpleAtoi(action.substr(at + 1), &p.fire_at) || p.fire_at < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("fault point action \"", action, "\": bad @K"));
    }
  }
  if (body == "crash") {
    p.kind = Kind::kCrash;
  } else if (body == "error") {
    p.kind = Kind::kError;
  } else if (absl::ConsumePrefix(&body, "delay(") &&
             absl::ConsumeSuffix(&body, ")") &&
             absl::SimpleAtoi(body, &p.delay_ms) && p.delay_ms >= 0) {
    p.kind = Kind::kDelay;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "fault point action \"", action,
        "\" unknown: use crash, error or delay(N), optionally with @K"));
  }
  return p;
}

Registry& GetRegistry() {
  static Registry* registry = [] {
    auto* r = new Registry;
    if (const char* env = std::getenv("TXC_FAILPOINTS"); env && *env) {
      absl::MutexLock lock(&r->mu);
      for (absl::string_view item : absl::StrSplit(env, ';', absl::SkipEmpty())) {
        std::pair<absl::string_view, absl::string_view> kv =
            absl::StrSplit(item, absl::MaxSplits('=', 1));
        auto point = ParseAction(kv.second);
        if (point.ok()) r->points[std::string(kv.first)] = *point;
      }
    }
    return r;
  }();
  return *registry;
}

}  // namespace

absl::Status Arm(absl::string_view name, absl::string_view action) {
  auto point = ParseAction(action);
  if (!point.ok()) return point.status();
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  r.points[std::string(name)] = *point;
  return absl::OkStatus();
}

void Disarm(absl::string_view name) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  r.points.erase(std::string(name));
}

void DisarmAll() {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  r.points.clear();
}

int HitCount(absl::string_view name) {
  Registry& r = GetRegistry();
  absl::MutexLock lock(&r.mu);
  auto it = r.points.find(std::string(name));
  return it == r.points.end() ? 0 : it->second.hits;
}

absl::Status Hit(absl::string_view name) {
  Registry& r = GetRegistry();
  Point fired;
  {
    absl::MutexLock lock(&r.mu);
    auto it = r.points.find(std::string(name));
    if (it == r.points.end()) return absl::OkStatus();
    Point& p = it->second;
    ++p.hits;
    if (p.fire_at != 0 && p.hits != p.fire_at) return absl::OkStatus();
    fired = p;
  }
  switch (fired.kind) {
    case Kind::kCrash:
      ::kill(::getpid(), SIGKILL);
      ::pause();
      return absl::OkStatus();
    case Kind::kDelay:
      util::Sleep(absl::Milliseconds(fired.delay_ms));  // on a fiber, only this fiber waits
      return absl::OkStatus();
    case Kind::kError:
      return absl::UnavailableError(
          absl::StrCat("injected fault at \"", name, "\""));
  }
  return absl::OkStatus();
}

}  // namespace txcoord::failpoint
