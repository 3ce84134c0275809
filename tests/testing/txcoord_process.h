// Runs the real txcoord binary as a child process (for crash tests): a
// config file, optional fault points in TXC_FAILPOINTS, the bound address
// read back from --address-file.
#ifndef TXCOORD_TESTS_TESTING_TXCOORD_PROCESS_H_
#define TXCOORD_TESTS_TESTING_TXCOORD_PROCESS_H_

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace txcoord::testing {

class TxcoordProcess {
 public:
  // `binary`: path of txcoord; `workdir`: where the address file goes.
  TxcoordProcess(std::string binary, std::string config_path, std::string workdir)
      : binary_(std::move(binary)), config_(std::move(config_path)), workdir_(std::move(workdir)) {}
  ~TxcoordProcess() { Kill(); }

  // Starts the process with TXC_FAILPOINTS=`failpoints` ("" for none) and
  // waits (up to 30 s) until it serves. Returns false if it died or hung.
  bool Start(const std::string& failpoints = "") {
    Kill();
    address_file_ = workdir_ + "/address";
    std::filesystem::remove(address_file_);
    log_ = workdir_ + "/txcoord.log";
    pid_ = ::fork();
    if (pid_ == 0) {
      if (failpoints.empty()) ::unsetenv("TXC_FAILPOINTS");
      else ::setenv("TXC_FAILPOINTS", failpoints.c_str(), 1);
      FILE* out = std::fopen(log_.c_str(), "a");
      if (out) {
        ::dup2(fileno(out), 1);
        ::dup2(fileno(out), 2);
      }
      ::execl(binary_.c_str(), binary_.c_str(), "--config", config_.c_str(), "--address-file",
              address_file_.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 3000; ++i) {
      if (std::filesystem::exists(address_file_)) {
        std::ifstream in(address_file_);
        std::getline(in, address_);
        if (!address_.empty()) return true;
      }
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  // Waits up to `seconds` for the process to die by itself (a crash fault
  // point). True if it died of SIGKILL.
  bool WaitForCrash(int seconds) {
    for (int i = 0; i < seconds * 100 && pid_ > 0; ++i) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  // SIGTERM and wait (graceful); SIGKILL after 15 s.
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 1500; ++i) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    Kill();
  }

  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  // Waits up to `seconds` for the process to exit by itself; its exit
  // code, -1 if it did not exit (or died of a signal).
  int WaitExit(int seconds) {
    for (int i = 0; i < seconds * 100 && pid_ > 0; ++i) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const std::string& address() const { return address_; }
  const std::string& log_path() const { return log_; }

 private:
  std::string binary_, config_, workdir_, address_file_, address_, log_;
  pid_t pid_ = -1;
};

}  // namespace txcoord::testing

#endif  // TXCOORD_TESTS_TESTING_TXCOORD_PROCESS_H_
