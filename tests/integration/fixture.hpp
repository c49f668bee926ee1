#pragma once
// The base fixture of the integration tests. Servers come in two kinds:
//  - shared(): one parleyd per distinct flag set, started on first use and kept for the rest
//    of the process (when the binary runs many tests, they share it; under ctest each test is
//    its own process, so it is effectively per test);
//  - own(): a server for this test alone, for tests that kill, restart or stop it.
// When a test fails, the end of the log of every server it used is printed.

#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "support/server_process.hpp"
#include "support/test_util.hpp"

namespace parley::test {

// Flags of the default shared server: the send rate limit is raised so that tests which send
// thousands of messages are not throttled, and registrations from the one loopback address are
// not limited; the rate-limit tests use servers of their own.
inline std::vector<std::string> default_server_args() {
  return {"--send-rate", "1000000", "--send-burst", "1000000", "--register-burst-per-ip", "0"};
}

class IntegrationTest : public ::testing::Test {
 protected:
  // The shared server with default_server_args().
  ServerProcess& server() { return shared(default_server_args()); }

  ServerProcess& shared(const std::vector<std::string>& args) {
    auto& slot = registry()[args];
    if (!slot.server) {
      slot.server = std::make_unique<ServerProcess>(args);
      try {
        slot.server->start();
      } catch (const std::exception& e) {
        slot.error = e.what();
      }
    }
    if (!slot.error.empty()) throw ServerStartError(slot.error);
    use(*slot.server);
    return *slot.server;
  }

  ServerProcess& own(const std::vector<std::string>& args = default_server_args()) {
    own_.push_back(std::make_unique<ServerProcess>(args));
    auto& s = *own_.back();
    use(s);
    s.start();
    return s;
  }

  void TearDown() override {
    if (!HasFailure()) return;
    for (auto* s : used_) {
      std::cerr << "----- end of parleyd log " << s->log_path().string() << " (node "
                << s->node_id() << ") -----\n"
                << s->log_tail(120) << "----- end of log -----\n";
    }
  }

 private:
  struct Slot {
    std::unique_ptr<ServerProcess> server;
    std::string error;
  };
  static std::map<std::vector<std::string>, Slot>& registry() {
    static std::map<std::vector<std::string>, Slot> r;
    return r;
  }
  void use(ServerProcess& s) {
    for (auto* p : used_) {
      if (p == &s) return;
    }
    used_.push_back(&s);
  }

  std::vector<ServerProcess*> used_;
  std::vector<std::unique_ptr<ServerProcess>> own_;
};

// Asserts an HTTP error answer: the status and a body {"error":{"code","message"}}.
inline ::testing::AssertionResult is_http_error(const client::HttpResponse& res, int status,
                                                const std::string& code) {
  if (res.status != status) {
    return ::testing::AssertionFailure() << "expected HTTP " << status << " " << code << ", got "
                                         << res.status << " " << res.body;
  }
  auto j = res.json();
  if (!j.is_object() || !j.contains("error") || !j["error"].is_object() ||
      !j["error"].contains("code") || !j["error"].contains("message") ||
      !j["error"]["message"].is_string()) {
    return ::testing::AssertionFailure()
           << "HTTP " << status << " body is not {\"error\":{\"code\",\"message\"}}: " << res.body;
  }
  if (j["error"]["code"] != code) {
    return ::testing::AssertionFailure() << "expected error code " << code << ", got " << res.body;
  }
  return ::testing::AssertionSuccess();
}

// Asserts a WebSocket error frame with `code` (and `ref` when given).
inline ::testing::AssertionResult is_ws_error(const json& j, const std::string& code,
                                              const std::string& ref = {}) {
  if (!j.is_object() || j.value("type", "") != "error" || j.value("code", "") != code ||
      !j.contains("message") || !j["message"].is_string()) {
    return ::testing::AssertionFailure()
           << "expected an error frame with code " << code << ", got " << j.dump();
  }
  if (!ref.empty() && j.value("ref", "") != ref) {
    return ::testing::AssertionFailure()
           << "error frame does not echo ref " << ref << ": " << j.dump();
  }
  return ::testing::AssertionSuccess();
}

// `s` repeated `n` times.
inline std::string repeat(std::string_view s, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += s;
  return out;
}

inline std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace parley::test
