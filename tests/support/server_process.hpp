#pragma once
// Runs a real parleyd as a child process for black-box tests: a free loopback port below 32768
// (the ephemeral range starts at 32768, so outgoing connections cannot take it), a fresh
// temporary data directory, stderr captured to a log file that tests print when they fail.
// The binary is PARLEY_PARLEYD_PATH (set by CMake) unless the environment variable
// PARLEYD_BINARY names another one.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "client/http_client.hpp"
#include "client/ws_client.hpp"

namespace parley::test {

// start() failed: the message says why and includes the end of the server's log.
class ServerStartError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ServerProcess {
 public:
  // `extra_args` are appended to the flags ServerProcess sets itself (--listen, --store,
  // --bus inproc, --node-id, --threads 2, --web-root, --log-level info). A flag among
  // `extra_args` other than --listen replaces ServerProcess's default for it (parleyd refuses
  // a repeated flag): cluster tests pass their own --store, --bus and --node-id, and
  // node_id() then returns the given --node-id.
  explicit ServerProcess(std::vector<std::string> extra_args = {});
  ~ServerProcess();  // SIGKILLs a running server and removes the data directory
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts the server and waits until GET /healthz answers 200. Throws ServerStartError when
  // the process exits first or takes more than 15 s.
  void start();
  // Starts again on the same port and data directory (after kill9 or terminate).
  void restart() { start(); }
  // SIGKILL, then reaps the process.
  void kill9();
  // SIGTERM, then waits for the exit. Returns the exit status (0..255), or 128 + the signal
  // number when a signal ended it; throws when it is still running after `timeout` (the
  // process is then SIGKILLed).
  int terminate(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // True while the child has not exited.
  bool running();

  const std::string& host() const { return host_; }
  std::uint16_t port() const { return port_; }
  std::string base_url() const { return "http://" + host_ + ":" + std::to_string(port_); }
  const std::string& node_id() const { return node_id_; }
  const std::filesystem::path& data_dir() const { return dir_; }
  const std::filesystem::path& web_root() const { return web_root_; }
  const std::filesystem::path& log_path() const { return log_path_; }
  // The whole log (every start appends to the same file).
  std::string log() const;
  // The last `lines` lines of the log, for failure reports.
  std::string log_tail(std::size_t lines = 150) const;

  client::HttpClient http(std::chrono::milliseconds timeout = std::chrono::seconds(10)) const {
    return client::HttpClient(host_, port_, timeout);
  }
  // A connected (not yet authenticated) WebSocket client.
  std::unique_ptr<client::WsClient> connect_ws() const;

  // The index.html ServerProcess writes into its web root, for static-file assertions.
  static constexpr const char* index_html =
      "<!doctype html><title>parley test web root</title><p>parley-test-index</p>\n";

 private:
  void spawn();
  bool has_extra_flag(const std::string& flag) const;
  bool wait_healthy(std::chrono::milliseconds timeout, std::string& why);

  std::vector<std::string> extra_args_;
  std::string host_ = "127.0.0.1";
  std::uint16_t port_ = 0;
  std::string node_id_;
  std::filesystem::path dir_;
  std::filesystem::path web_root_;
  std::filesystem::path log_path_;
  pid_t pid_ = -1;
  int exit_status_ = -1;
  bool started_once_ = false;
};

// The parleyd binary the tests run, or "" when none is configured.
std::string parleyd_path();

}  // namespace parley::test
