// txcoord --config FILE : the coordinator service.
#include <malloc.h>
#include <sys/stat.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "server/config.h"
#include "server/server.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  CLI::App app{"txcoord: two-phase-commit transaction coordinator"};
  app.set_version_flag("--version", "txcoord " TXC_VERSION);
  std::string config_path;
  std::string address_file;
  app.add_option("--config,-c", config_path, "YAML configuration file")->required();
  app.add_option("--address-file", address_file,
                 "write the bound address (host:port) to this file once serving");
  bool check_config = false;
  app.add_flag("--check-config", check_config,
               "read and check the configuration (its ${VARIABLE}s from the environment), then exit: 0 when valid");
  CLI11_PARSE(app, argc, argv);

  // Abseil's lock-order cycle detection costs every lock acquisition; the
  // tests run with it, the service without.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Files txcoord creates (journal, logs it opens) are private to its user.
  ::umask(077);
  // SIGTERM/SIGINT stop the server (open transactions are rolled back);
  // SIGUSR1 is how the server tells the main thread it stopped by itself.
  // Blocked before any thread starts, so that only the main thread's
  // sigwait receives them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto config = txcoord::coordinator::LoadConfigFile(config_path);
  if (!config.ok()) {
    std::cerr << "txcoord: " << config.status().message() << "\n";
    return 2;
  }
  if (check_config) {
    std::cout << "txcoord: " << config_path << ": valid (node " << config->node_id << ", " << config->binds.size()
              << " binds)\n";
    return 0;
  }
  // Before any thread allocates: bounds glibc's per-thread arenas, whose
  // freed memory is seldom returned (limits.malloc_arenas). A binary
  // linked with tcmalloc (TXC_TCMALLOC, the default) ignores it.
  if (config->limits.malloc_arenas > 0) (void)mallopt(M_ARENA_MAX, config->limits.malloc_arenas);
  auto server = txcoord::coordinator::TxcoordServer::Start(*config);
  if (!server.ok()) {
    std::cerr << "txcoord: " << server.status().message() << "\n";
    return 1;
  }
  if (!address_file.empty()) {
    std::string tmp = address_file + ".tmp";
    std::ofstream(tmp) << (*server)->address() << "\n";
    std::rename(tmp.c_str(), address_file.c_str());
  }
  // The main thread waits for a signal: SIGTERM/SIGINT stop the server;
  // SIGUSR1 comes from the server once it stopped by itself (a lost etcd
  // lease), and counts only then (one sent by hand is ignored).
  const pthread_t main_thread = pthread_self();
  (*server)->NotifyWhenStoppedByItself([main_thread] { pthread_kill(main_thread, SIGUSR1); });
  for (;;) {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig == SIGUSR1) {
      if ((*server)->exit_code() != 0) break;
      continue;
    }
    spdlog::info("txcoord: signal {}, shutting down", sig);
    (*server)->Shutdown();
    break;
  }
  (*server)->Wait();
  const int code = (*server)->exit_code();
  server->reset();
  return code;
}
