// The `parley` CLI against a real server: register, create, send, tail with saved cursors
// (resuming exactly after the last printed message, also across a server restart), history,
// rooms, logout, exit codes.

#include <sys/wait.h>

#include <cstdio>
#include <fstream>

#include "fixture.hpp"

namespace parley::test {
namespace {

#ifdef PARLEY_CLI_PATH

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

struct CliResult {
  int code = -1;
  std::string out;
  std::string err;
};

class Cli : public IntegrationTest {
 protected:
  void SetUp() override { home_ = scratch_.path() / "cli-home"; }

  // The command line of `parley` with a private PARLEY_HOME, bounded by `timeout`.
  std::string command(const ServerProcess& srv, const std::vector<std::string>& args,
                      const std::string& env = {}) {
    std::string cmd = "env -u PARLEY_USER -u PARLEY_PASSWORD PARLEY_HOME=" + quote(home_.string()) +
                      " " + env + " timeout 30 " + quote(PARLEY_CLI_PATH) + " --server " +
                      quote(srv.base_url());
    for (const auto& a : args) cmd += " " + quote(a);
    return cmd;
  }

  CliResult run(const ServerProcess& srv, const std::vector<std::string>& args,
                const std::string& env = {}) {
    auto err_path = scratch_.path() / "stderr.txt";
    CliResult r;
    FILE* p = ::popen((command(srv, args, env) + " 2>" + quote(err_path.string())).c_str(), "r");
    if (!p) return r;
    char buf[4096];
    while (auto n = std::fread(buf, 1, sizeof buf, p)) r.out.append(buf, n);
    int status = ::pclose(p);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    std::ifstream in(err_path);
    r.err.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return r;
  }

  TempDir scratch_;
  std::filesystem::path home_;
};

std::string line(const std::string& room, int seq, const std::string& user,
                 const std::string& body) {
  return "[" + room + " #" + std::to_string(seq) + "] " + user + ": " + body + "\n";
}

TEST_F(Cli, RegisterCreateSendTailHistoryLogout) {
  auto& srv = server();
  auto user = unique_name("cli");
  const std::string pw = "cli password";
  auto room = unique_name("cliroom");

  auto r = run(srv, {"--user", user, "--password", pw, "register"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto token_file = home_ / ("127.0.0.1-" + std::to_string(srv.port())) / "token";
  ASSERT_TRUE(std::filesystem::exists(token_file)) << "the token is saved";
  EXPECT_EQ(std::filesystem::status(token_file).permissions() & std::filesystem::perms::others_read,
            std::filesystem::perms::none)
      << "the token file is private";

  // Later commands use the saved token; no credentials needed.
  r = run(srv, {"create", room});
  ASSERT_EQ(r.code, 0) << r.err;
  for (int i = 1; i <= 3; ++i) {
    r = run(srv, {"send", room, "hello " + std::to_string(i)});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("#" + std::to_string(i)), std::string::npos)
        << "prints the seq: " << r.out;
  }
  // First tail of the room: --last 2 starts two messages back.
  r = run(srv, {"tail", room, "--last", "2", "--count", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, line(room, 2, user, "hello 2") + line(room, 3, user, "hello 3"));
  // Two more messages; the next tail resumes exactly after #3 from its saved cursor.
  run(srv, {"send", room, "hello 4"});
  run(srv, {"send", room, "hello 5"});
  r = run(srv, {"tail", room, "--count", "2"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, line(room, 4, user, "hello 4") + line(room, 5, user, "hello 5"));

  r = run(srv, {"history", room, "--before", "3", "--limit", "5"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, line(room, 1, user, "hello 1") + line(room, 2, user, "hello 2"));

  r = run(srv, {"rooms"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(room), std::string::npos) << r.out;

  // Errors: a room that does not exist, a server that is not there.
  r = run(srv, {"join", unique_name("nosuch")});
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("not_found"), std::string::npos) << r.err;
  r = run(srv, {"tail", unique_name("nosuch")});
  EXPECT_EQ(r.code, 1) << r.err;

  r = run(srv, {"logout"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(token_file));
  r = run(srv, {"rooms"});
  EXPECT_EQ(r.code, 3) << "not logged in: " << r.out << r.err;
  // Credentials from the environment log in again.
  r = run(srv, {"rooms"}, "PARLEY_USER=" + quote(user) + " PARLEY_PASSWORD=" + quote(pw));
  EXPECT_EQ(r.code, 0) << r.err;
  r = run(srv, {"--user", user, "--password", "wrong password", "login"});
  EXPECT_EQ(r.code, 3) << r.err;
}

TEST_F(Cli, TailPrintsLiveAndReconnectsAcrossAServerRestart) {
  auto& srv = own();
  auto user = unique_name("tail");
  const std::string pw = "tail password";
  auto room = unique_name("tailroom");
  ASSERT_EQ(run(srv, {"--user", user, "--password", pw, "register"}).code, 0);
  ASSERT_EQ(run(srv, {"create", room}).code, 0);
  ASSERT_EQ(run(srv, {"send", room, "first"}).code, 0);
  // Saves the cursor at #1, so that the live tail below cannot miss anything sent after it.
  ASSERT_EQ(run(srv, {"tail", room, "--last", "1", "--count", "1"}).out,
            line(room, 1, user, "first"));

  FILE* tail = ::popen(command(srv, {"tail", room, "--count", "2"}).c_str(), "r");
  ASSERT_NE(tail, nullptr);
  char buf[4096];
  ASSERT_EQ(run(srv, {"send", room, "second"}).code, 0);
  ASSERT_NE(std::fgets(buf, sizeof buf, tail), nullptr);
  EXPECT_EQ(std::string(buf), line(room, 2, user, "second"));
  // The server restarts; tail reconnects by itself and resumes from its cursor.
  srv.kill9();
  srv.restart();
  ASSERT_EQ(run(srv, {"send", room, "third"}).code, 0);
  ASSERT_NE(std::fgets(buf, sizeof buf, tail), nullptr) << "tail did not come back";
  EXPECT_EQ(std::string(buf), line(room, 3, user, "third"));
  int status = ::pclose(tail);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

#endif  // PARLEY_CLI_PATH

}  // namespace
}  // namespace parley::test
