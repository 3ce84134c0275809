// An etcd cluster of a test's own (one or three members on free loopback
// ports, data in a temporary directory), for tests that kill, pause or
// restart members. Each member dies with the test process
// (PR_SET_PDEATHSIG) and is stopped when the object goes away.
#ifndef TXCOORD_TESTS_TESTING_ETCD_CLUSTER_H_
#define TXCOORD_TESTS_TESTING_ETCD_CLUSTER_H_

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace txcoord::testing {

// A loopback port nobody listens on now (bound, read, closed).
inline std::string FreeLoopbackAddress() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  (void)::bind(fd, reinterpret_cast<sockaddr*>(&addr), len);
  (void)::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
}

// TLS on the client port: the server's certificate and key, and the CA
// whose client certificates it requires.
struct EtcdTls {
  std::string cert_file, key_file, client_ca_file;
};

class EtcdCluster {
 public:
  explicit EtcdCluster(int members, EtcdTls tls = {}) : tls_(std::move(tls)) {
    char dir_template[] = "/tmp/txcoord-etcd-test.XXXXXX";
    if (::mkdtemp(dir_template) != nullptr) dir_ = dir_template;
    std::vector<std::string> taken;
    auto fresh = [&] {
      std::string a;
      do a = FreeLoopbackAddress();
      while (std::find(taken.begin(), taken.end(), a) != taken.end());
      taken.push_back(a);
      return a;
    };
    for (int i = 0; i < members; ++i) members_.push_back(Member{"m" + std::to_string(i), fresh(), fresh(), -1});
    for (const Member& m : members_) {
      if (!initial_cluster_.empty()) initial_cluster_ += ",";
      initial_cluster_ += m.name + "=http://" + m.peer;
    }
  }
  ~EtcdCluster() {
    for (size_t i = 0; i < members_.size(); ++i) Kill(i);
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  // Starts every member that is not running (again, on its data, after
  // Kill). Call it from the thread that outlives the members: a member
  // dies with the thread that started it (PR_SET_PDEATHSIG).
  void StartAll() {
    for (size_t i = 0; i < members_.size(); ++i) Start(i);
  }
  void Start(size_t i) {
    Member& m = members_[i];
    if (m.pid > 0) return;
    const std::string client_url = (tls_.cert_file.empty() ? "http://" : "https://") + m.client;
    const std::string peer_url = "http://" + m.peer;
    std::vector<std::string> args = {"/usr/bin/etcd",
                                     "--name", m.name,
                                     "--data-dir", dir_ + "/" + m.name,
                                     "--listen-client-urls", client_url,
                                     "--advertise-client-urls", client_url,
                                     "--listen-peer-urls", peer_url,
                                     "--initial-advertise-peer-urls", peer_url,
                                     "--initial-cluster", initial_cluster_,
                                     "--initial-cluster-token", dir_,
                                     "--initial-cluster-state", "new"};
    if (!tls_.cert_file.empty()) {
      for (const std::string& a : {std::string("--cert-file"), tls_.cert_file, std::string("--key-file"),
                                   tls_.key_file, std::string("--trusted-ca-file"), tls_.client_ca_file,
                                   std::string("--client-cert-auth")}) {
        args.push_back(a);
      }
    }
    const std::string log = dir_ + "/" + m.name + ".log";
    m.pid = ::fork();
    if (m.pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives a test that died
      FILE* out = std::fopen(log.c_str(), "a");
      if (out != nullptr) {
        ::dup2(::fileno(out), 1);
        ::dup2(::fileno(out), 2);
      }
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  // SIGKILL (and reap) member i.
  void Kill(size_t i) {
    Member& m = members_[i];
    if (m.pid <= 0) return;
    ::kill(m.pid, SIGCONT);
    ::kill(m.pid, SIGKILL);
    ::waitpid(m.pid, nullptr, 0);
    m.pid = -1;
  }
  // Sends `sig` to member i. SIGSTOP returns once every thread of it has
  // stopped (kill() only queues the signal: a thread running on another
  // core may still answer a call for a moment).
  void Signal(size_t i, int sig) {
    const pid_t pid = members_[i].pid;
    if (pid <= 0) return;
    ::kill(pid, sig);
    if (sig == SIGSTOP) {
      int status = 0;
      (void)::waitpid(pid, &status, WUNTRACED);
    }
  }

  // Every member's client address, comma-separated (host:port,…).
  std::string endpoints() const {
    std::string out;
    for (const Member& m : members_) out += (out.empty() ? "" : ",") + m.client;
    return out;
  }
  std::vector<std::string> endpoint_list() const {
    std::vector<std::string> out;
    for (const Member& m : members_) out.push_back(m.client);
    return out;
  }
  // The members' logs, for a failure message.
  std::string Logs() const {
    std::string out;
    for (const Member& m : members_) {
      std::ifstream in(dir_ + "/" + m.name + ".log");
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      out += "---- " + m.name + "\n" + text.substr(text.size() > 3000 ? text.size() - 3000 : 0);
    }
    return out;
  }

 private:
  struct Member {
    std::string name, client, peer;
    pid_t pid;
  };
  EtcdTls tls_;
  std::string dir_;
  std::string initial_cluster_;
  std::vector<Member> members_;
};

}  // namespace txcoord::testing

#endif  // TXCOORD_TESTS_TESTING_ETCD_CLUSTER_H_
