#include "support/server_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

namespace parley::test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string parleyd_path() {
  if (const char* env = std::getenv("PARLEYD_BINARY"); env && *env) return env;
#ifdef PARLEY_PARLEYD_PATH
  return PARLEY_PARLEYD_PATH;
#else
  return {};
#endif
}

namespace {

// True when nothing listens on (or holds) 127.0.0.1:port right now.
bool port_is_free(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// A random free port in [20000, 32767]: below the ephemeral range, and random so that test
// processes running in parallel rarely pick the same one (a clash is retried by start()).
std::uint16_t pick_port() {
  static thread_local std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  std::uniform_int_distribution<int> dist(20000, 32767);
  for (int i = 0; i < 200; ++i) {
    auto p = static_cast<std::uint16_t>(dist(rng));
    if (port_is_free(p)) return p;
  }
  throw ServerStartError("no free loopback port found in 20000..32767");
}

fs::path make_temp_dir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/parley-it-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data()))
    throw ServerStartError("mkdtemp failed: " + std::string(std::strerror(errno)));
  return fs::path(buf.data());
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

ServerProcess::ServerProcess(std::vector<std::string> extra_args)
    : extra_args_(std::move(extra_args)) {
  dir_ = make_temp_dir();
  web_root_ = dir_ / "web";
  fs::create_directories(web_root_ / "assets");
  std::ofstream(web_root_ / "index.html") << index_html;
  std::ofstream(web_root_ / "assets" / "app.js") << "console.log('parley test asset');\n";
  log_path_ = dir_ / "parleyd.log";
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) kill9();
  // Keep the directory of a failed run for inspection when asked to.
  if (!std::getenv("PARLEY_KEEP_TEST_DIRS")) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
}

void ServerProcess::spawn() {
  const std::string binary = parleyd_path();
  if (binary.empty()) {
    throw ServerStartError(
        "no parleyd binary: build the `parleyd` target (CMake sets PARLEY_PARLEYD_PATH when it "
        "exists) or set PARLEYD_BINARY");
  }
  if (::access(binary.c_str(), X_OK) != 0) {
    throw ServerStartError("parleyd binary " + binary + " is not executable (build `parleyd`)");
  }
  std::vector<std::string> args = {binary, "--listen", host_ + ":" + std::to_string(port_)};
  // Defaults for the flags the caller did not give itself (parleyd refuses a repeated flag):
  // a cluster test passes its own --store, --bus and --node-id.
  const std::vector<std::pair<std::string, std::string>> defaults = {
      {"--store", "sqlite:" + (dir_ / "parley.db").string()},
      {"--bus", "inproc"},
      {"--node-id", node_id_},
      {"--threads", "2"},
      {"--web-root", web_root_.string()},
      {"--log-level", "info"}};
  for (const auto& [flag, value] : defaults) {
    if (!has_extra_flag(flag)) {
      args.push_back(flag);
      args.push_back(value);
    }
  }
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  {
    std::ofstream log(log_path_, std::ios::app);
    log << "\n===== test harness: starting";
    for (const auto& a : args) log << ' ' << a;
    log << " =====\n";
  }
  int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0)
    throw ServerStartError("cannot open the log file " + log_path_.string());
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw ServerStartError("fork failed: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec. The server dies with the test process,
    // so an aborted test run leaves no parleyd behind (the signal follows the forking thread,
    // so servers are started from the test's main thread).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execv(argv[0], argv.data());
    const char msg[] = "test harness: execv of parleyd failed\n";
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(log_fd);
  ::close(null_fd);
  pid_ = pid;
  exit_status_ = -1;
}

bool ServerProcess::wait_healthy(std::chrono::milliseconds timeout, std::string& why) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto http = client::HttpClient(host_, port_, 500ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) {
      why = "parleyd exited with status " + std::to_string(exit_status_) +
            " before /healthz answered";
      return false;
    }
    try {
      auto res = http.get("/healthz");
      if (res.status == 200) return true;
      why = "/healthz answered " + std::to_string(res.status);
    } catch (const std::exception& e) {
      why = e.what();
    }
    std::this_thread::sleep_for(20ms);
  }
  why = "parleyd did not answer /healthz within " + std::to_string(timeout.count()) +
        " ms (last: " + why + ")";
  return false;
}

void ServerProcess::start() {
  if (pid_ > 0) throw ServerStartError("start(): parleyd is already running");
  // Only the first start may move to another port: a restart must keep the address so that
  // clients and tests can reconnect to it.
  const int attempts = started_once_ ? 1 : 3;
  std::string why;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    if (!started_once_) {
      port_ = pick_port();
      node_id_ = "it-" + std::to_string(port_);
      for (std::size_t i = 0; i + 1 < extra_args_.size(); ++i) {
        if (extra_args_[i] == "--node-id") node_id_ = extra_args_[i + 1];
      }
    }
    spawn();
    if (wait_healthy(15s, why)) {
      started_once_ = true;
      return;
    }
    if (pid_ > 0) kill9();
    // Another process may have taken the port between the check and the bind; try another.
    auto text = log_tail(20);
    bool port_clash =
        text.find("in use") != std::string::npos || text.find("EADDRINUSE") != std::string::npos;
    if (!port_clash) break;
  }
  throw ServerStartError("parleyd did not start: " + why + "\n----- parleyd log (" +
                         log_path_.string() + ") -----\n" + log_tail());
}

bool ServerProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_status_ = decode_status(status);
    pid_ = -1;
    return false;
  }
  return true;
}

void ServerProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  exit_status_ = decode_status(status);
  pid_ = -1;
}

int ServerProcess::terminate(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return exit_status_;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) return exit_status_;
    std::this_thread::sleep_for(10ms);
  }
  kill9();
  throw std::runtime_error("parleyd was still running " + std::to_string(timeout.count()) +
                           " ms after SIGTERM (killed with SIGKILL)");
}

std::string ServerProcess::log() const {
  std::ifstream in(log_path_, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ServerProcess::log_tail(std::size_t lines) const {
  auto text = log();
  std::size_t pos = text.size();
  // Walk back over `lines` newlines (ignoring a final one) to find where the tail starts.
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (std::size_t i = 0; i < lines && pos > 0; ++i) {
    auto nl = text.rfind('\n', pos - 1);
    pos = nl == std::string::npos ? 0 : nl;
  }
  return text.substr(pos == 0 ? 0 : pos + 1);
}

bool ServerProcess::has_extra_flag(const std::string& flag) const {
  for (const auto& a : extra_args_) {
    if (a == flag || a.rfind(flag + "=", 0) == 0) return true;
  }
  return false;
}

std::unique_ptr<client::WsClient> ServerProcess::connect_ws() const {
  auto ws = std::make_unique<client::WsClient>();
  ws->connect(host_, port_);
  return ws;
}

}  // namespace parley::test
