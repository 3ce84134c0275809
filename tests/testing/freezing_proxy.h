// FreezingProxy: a TCP relay on 127.0.0.1 in front of a real database, for
// tests of a database that stops answering (an injected fault: a server
// stopped by SIGSTOP, swapped out, or behind a dead link that still
// accepts). Forwards bytes both ways until Freeze(); from then on it reads
// nothing and forwards nothing, and new connections are accepted by the
// kernel (listen backlog) but not served — the server looks alive and
// silent. Thaw() resumes. It also counts the client's turns: how often the
// client spoke after the server (round trips, for tests of pipelining).
// One thread; every socket is closed by the destructor.
#ifndef TXCOORD_TESTS_TESTING_FREEZING_PROXY_H_
#define TXCOORD_TESTS_TESTING_FREEZING_PROXY_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <regex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace txcoord::testing {

class FreezingProxy {
 public:
  // Relays 127.0.0.1:<port()> to 127.0.0.1:target_port.
  explicit FreezingProxy(int target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw std::runtime_error("FreezingProxy: socket");
    sockaddr_in a = Loopback(0);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 64) != 0) {
      ::close(listen_fd_);
      throw std::runtime_error("FreezingProxy: bind/listen");
    }
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }

  ~FreezingProxy() {
    stop_ = true;
    thread_.join();
    for (const Pair& p : pairs_) {
      ::close(p.client);
      ::close(p.server);
    }
    for (int fd : stranded_) ::close(fd);
    ::close(listen_fd_);
  }

  FreezingProxy(const FreezingProxy&) = delete;
  FreezingProxy& operator=(const FreezingProxy&) = delete;

  int port() const { return port_; }
  // Relayed bursts of client bytes, each after the server's last bytes (or
  // a connection's first), over all connections so far.
  int client_turns() const { return client_turns_; }
  void Freeze() { frozen_ = true; }
  void Thaw() { frozen_ = false; }
  // Thaws as a healed network partition does: the connections open so far
  // are dropped on the client's side only — their server sessions live on,
  // never told (until this proxy is destroyed) — and new ones are relayed.
  void ThawStrandingOldConnections() {
    strand_ = true;  // seen by the loop before it relays anything again
    frozen_ = false;
  }

 private:
  struct Pair {
    int client;
    int server;
    bool client_spoke_last = false;
  };

  static sockaddr_in Loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
  }

  // Copies what is readable on `from` to `to`; false when either side
  // ended. *relayed: some bytes were.
  static bool Relay(int from, int to, bool* relayed) {
    char buf[64 << 10];
    ssize_t n = ::recv(from, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    *relayed = true;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::send(to, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          pollfd p{to, POLLOUT, 0};
          ::poll(&p, 1, 100);
          continue;
        }
        return false;
      }
      off += w;
    }
    return true;
  }

  void Loop() {
    while (!stop_) {
      if (strand_.exchange(false)) {
        for (const Pair& p : pairs_) {
          ::close(p.client);
          stranded_.push_back(p.server);
        }
        pairs_.clear();
      }
      if (frozen_) {
        ::usleep(10 * 1000);
        continue;
      }
      std::vector<pollfd> fds;
      fds.push_back({listen_fd_, POLLIN, 0});
      for (const Pair& p : pairs_) {
        fds.push_back({p.client, POLLIN, 0});
        fds.push_back({p.server, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (frozen_) continue;  // frozen meanwhile: read nothing more
      const size_t polled = pairs_.size();
      if (fds[0].revents & POLLIN) Accept();
      std::vector<Pair> kept;
      for (size_t i = 0; i < polled; ++i) {
        Pair& p = pairs_[i];
        bool ok = true;
        bool from_client = false;
        bool from_server = false;
        if (fds[1 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR)) ok = Relay(p.client, p.server, &from_client);
        if (from_client && !p.client_spoke_last) ++client_turns_;
        if (from_client) p.client_spoke_last = true;
        if (ok && (fds[2 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR))) ok = Relay(p.server, p.client, &from_server);
        if (from_server) p.client_spoke_last = false;
        if (ok) {
          kept.push_back(p);
        } else {
          ::close(p.client);
          ::close(p.server);
        }
      }
      // Accept() may have appended a pair that was not polled this round.
      for (size_t i = polled; i < pairs_.size(); ++i) kept.push_back(pairs_[i]);
      pairs_ = std::move(kept);
    }
  }

  void Accept() {
    int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = Loopback(target_port_);
    if (s < 0 || ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      if (s >= 0) ::close(s);
      ::close(c);
      return;
    }
    pairs_.push_back({c, s});
  }

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> frozen_{false};
  std::atomic<bool> stop_{false};
  std::atomic<bool> strand_{false};
  std::atomic<int> client_turns_{0};
  std::vector<Pair> pairs_;     // the loop thread's only
  std::vector<int> stranded_;   // server sides kept open (the loop thread's)
  std::thread thread_;
};

// Where the port is in "…@host:PORT/…" (libpq URI) or "Port=PORT" (ODBC).
inline bool FindDsnPort(const std::string& dsn, std::smatch* m) {
  static const std::regex uri_port(R"(@[^/:]+:(\d+))");
  static const std::regex odbc_port(R"(Port=(\d+))", std::regex::icase);
  return std::regex_search(dsn, *m, odbc_port) || std::regex_search(dsn, *m, uri_port);
}

// The port `dsn` names; -1 when it names none.
inline int PortOf(const std::string& dsn) {
  std::smatch m;
  return FindDsnPort(dsn, &m) ? std::stoi(m[1]) : -1;
}

// `dsn` with its port replaced by `port` (unchanged when it names none).
inline std::string WithPort(const std::string& dsn, int port) {
  std::smatch m;
  if (!FindDsnPort(dsn, &m)) return dsn;
  return dsn.substr(0, m.position(1)) + std::to_string(port) + dsn.substr(m.position(1) + m.length(1));
}

}  // namespace txcoord::testing

#endif  // TXCOORD_TESTS_TESTING_FREEZING_PROXY_H_
