#include "cluster/cluster_support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iomanip>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "client/api.hpp"

namespace parley::cluster {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

fs::path source_dir() {
#ifdef PARLEY_SOURCE_DIR
  return PARLEY_SOURCE_DIR;
#else
  return fs::current_path();
#endif
}

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail_lines(const std::string& text, std::size_t lines) {
  std::size_t pos = text.size();
  if (pos > 0 && text[pos - 1] == '\n') --pos;
  for (std::size_t i = 0; i < lines && pos > 0; ++i) {
    auto nl = text.rfind('\n', pos - 1);
    pos = nl == std::string::npos ? 0 : nl;
  }
  return text.substr(pos == 0 ? 0 : pos + 1);
}

// fork + exec with stdout/stderr into `log`; the child dies with the forking thread.
pid_t spawn(const std::vector<std::string>& argv, const fs::path& log) {
  std::vector<std::string> args = argv;
  std::vector<char*> cargv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  int log_fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (log_fd < 0 || null_fd < 0) throw std::runtime_error("cannot open " + log.string());
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execvp(cargv[0], cargv.data());
    const char msg[] = "cluster test: execvp failed\n";
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(log_fd);
  ::close(null_fd);
  return pid;
}

}  // namespace

int run_command(const std::vector<std::string>& argv, std::string* output,
                std::chrono::seconds timeout) {
  test::TempDir dir;
  const auto log = dir.path() / "out";
  pid_t pid = -1;
  try {
    pid = spawn(argv, log);
  } catch (const std::exception& e) {
    if (output) *output = e.what();
    return -1;
  }
  const auto deadline = steady::now() + timeout;
  int status = 0;
  int rc = -1;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (steady::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  if (output) {
    *output = read_file(log);
    if (rc < 0) *output += "\n(timed out after " + std::to_string(timeout.count()) + " s)";
  }
  return rc;
}

std::uint16_t pick_free_port() {
  static thread_local std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  std::uniform_int_distribution<int> dist(20000, 32767);
  for (int i = 0; i < 200; ++i) {
    auto p = static_cast<std::uint16_t>(dist(rng));
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(p);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (ok) return p;
  }
  throw std::runtime_error("no free loopback port in 20000..32767");
}

// ---------------------------------------------------------------------------------------------

PgControl::PgControl() {
  bin_ = env_or("PARLEY_TEST_PG_BIN", "/usr/lib/postgresql/15/bin");
  data_ = env_or("PARLEY_TEST_PG_DATA", "");
  if (data_.empty()) {
    const char* dir = std::getenv("PARLEY_TEST_SERVERS_DIR");
    if (dir == nullptr || *dir == '\0') {
      throw std::runtime_error(
          "neither PARLEY_TEST_PG_DATA nor PARLEY_TEST_SERVERS_DIR is set, so the test cannot "
          "stop and start PostgreSQL: " +
          std::string(kHowToRun));
    }
    data_ = (fs::path(dir) / "postgres" / "data").string();
  }
  opts_ = env_or("PARLEY_TEST_PG_OPTS", "");
  if (opts_.empty()) {
    // postmaster.opts holds the command line of the running server: "bin" "-D" "dir" "-p" ...
    std::ifstream in(fs::path(data_) / "postmaster.opts");
    std::string line;
    std::getline(in, line);
    std::istringstream words(line);
    std::vector<std::string> tokens;
    std::string w;
    while (words >> std::quoted(w)) tokens.push_back(w);
    if (tokens.empty()) {
      throw std::runtime_error("cannot read " + (fs::path(data_) / "postmaster.opts").string() +
                               " and PARLEY_TEST_PG_OPTS is not set: " + kHowToRun);
    }
    for (std::size_t i = 1; i < tokens.size(); ++i) {
      if (tokens[i] == "-D") {
        ++i;
        continue;
      }
      opts_ += (opts_.empty() ? "'" : " '") + tokens[i] + "'";
    }
  }
}

bool PgControl::stop(std::string& why) {
  int rc = run_command({"runuser", "-u", "postgres", "--", bin_ + "/pg_ctl", "-D", data_, "-m",
                        "fast", "-w", "-t", "60", "stop"},
                       &why);
  return rc == 0;
}

bool PgControl::start(std::string& why) {
  const std::string log = (fs::path(data_).parent_path() / "log").string();
  int rc = run_command({"runuser", "-u", "postgres", "--", bin_ + "/pg_ctl", "-D", data_, "-l", log,
                        "-w", "-t", "60", "-o", opts_, "start"},
                       &why);
  return rc == 0;
}

RabbitControl::RabbitControl() {
  run_dir_ = require_env("PARLEY_TEST_SERVERS_DIR");
  require_env("PARLEY_TEST_RABBIT_NODE");
}

bool RabbitControl::ctl(const std::vector<std::string>& args, std::string& why) {
  std::vector<std::string> argv = {"bash", (source_dir() / "deploy" / "servers.sh").string(), "ctl",
                                   run_dir_};
  argv.insert(argv.end(), args.begin(), args.end());
  int rc = run_command(argv, &why);
  if (rc != 0) {
    why = "deploy/servers.sh ctl " + run_dir_ + " ... exited " + std::to_string(rc) + ": " + why +
          "\n(rabbitmqctl needs the broker's environment: the PARLEY_*_PORT variables that "
          "deploy/servers.sh start was given)";
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------

Cluster::Cluster(ClusterOptions options) {
  db_ = std::make_unique<TestDatabase>();
  const auto bus = test::bus_args(*db_);
  const std::string base = test::unique_name("node");
  for (int i = 0; i < options.nodes; ++i) {
    std::vector<std::string> args = {"--store", db_->url(), "--node-id",
                                     base + "-" + std::to_string(i + 1),
                                     // Load tests send far above the default per-user rate.
                                     "--send-rate", "100000", "--send-burst", "100000",
                                     // Registration is not under test: cheap hashes, and no limit
                                     // on the one loopback address every client registers from.
                                     "--register-burst-per-ip", "0", "--argon2-opslimit", "1",
                                     "--argon2-memlimit-kib", "1024", "--drain-window-ms", "1000"};
    args.insert(args.end(), bus.begin(), bus.end());
    args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
    nodes_.push_back(std::make_unique<ServerProcess>(std::move(args)));
  }
}

Cluster::~Cluster() = default;

void Cluster::start() {
  for (auto& n : nodes_) n->start();
  for (auto& n : nodes_) {
    if (!wait_ready(*n, 30s)) {
      throw std::runtime_error("node " + n->node_id() +
                               " did not answer /readyz 200 within 30 s\n" + n->log_tail(40));
    }
  }
}

std::vector<client::Endpoint> Cluster::endpoints() const {
  std::vector<client::Endpoint> out;
  for (const auto& n : nodes_) out.push_back(endpoint_of(*n));
  return out;
}

int Cluster::index_of(const std::string& node_id) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i]->node_id() == node_id) return static_cast<int>(i);
  }
  return -1;
}

std::string Cluster::logs(std::size_t lines) const {
  std::string out;
  for (const auto& n : nodes_) {
    out += "----- end of parleyd log " + n->log_path().string() + " (node " + n->node_id() +
           ") -----\n" + n->log_tail(lines) + "----- end of log -----\n";
  }
  return out;
}

bool wait_ready(const ServerProcess& node, std::chrono::milliseconds timeout) {
  auto http = client::HttpClient(node.host(), node.port(), 1s);
  return test::eventually(
      [&] {
        try {
          return http.get("/readyz").status == 200;
        } catch (const std::exception&) {
          return false;
        }
      },
      timeout);
}

double metric(const ServerProcess& node, const std::string& name) {
  auto res = node.http(5s).get("/metrics");
  if (res.status != 200) {
    throw std::runtime_error("GET /metrics on " + node.node_id() + ": " +
                             std::to_string(res.status));
  }
  double sum = 0;
  std::istringstream in(res.body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind(name, 0) != 0 || line.size() <= name.size()) continue;
    char next = line[name.size()];
    if (next != ' ' && next != '{') continue;
    auto sp = line.rfind(' ');
    sum += std::strtod(line.c_str() + sp + 1, nullptr);
  }
  return sum;
}

// ---------------------------------------------------------------------------------------------

Haproxy::Haproxy(std::string balance, std::vector<Server> servers)
    : balance_(std::move(balance)), servers_(std::move(servers)) {
  cfg_ = dir_.path() / "haproxy.cfg";
  log_ = dir_.path() / "haproxy.log";
}

Haproxy::~Haproxy() {
  stop();
}

void Haproxy::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

void Haproxy::start() {
  const std::string templ = read_file(source_dir() / "deploy" / "haproxy.cfg.in");
  if (templ.empty()) {
    throw std::runtime_error("cannot read " +
                             (source_dir() / "deploy" / "haproxy.cfg.in").string());
  }
  std::string why;
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = pick_free_port();
    do {
      stats_port_ = pick_free_port();
    } while (stats_port_ == port_);
    std::string servers;
    for (const auto& s : servers_) {
      servers += "    server " + s.name + " 127.0.0.1:" + std::to_string(s.port) + " check\n";
    }
    auto replace_all = [](std::string text, const std::string& from, const std::string& to) {
      for (auto p = text.find(from); p != std::string::npos; p = text.find(from, p + to.size())) {
        text.replace(p, from.size(), to);
      }
      return text;
    };
    std::string cfg = templ;
    cfg = replace_all(cfg, "@SERVERS@\n", servers);
    cfg = replace_all(cfg, "@BIND@", "127.0.0.1:" + std::to_string(port_));
    cfg = replace_all(cfg, "@STATS_BIND@", "127.0.0.1:" + std::to_string(stats_port_));
    cfg = replace_all(cfg, "@BALANCE@", balance_);
    std::ofstream(cfg_, std::ios::trunc) << cfg;
    {
      std::ofstream(log_, std::ios::app) << "===== test harness: haproxy -f " << cfg_.string()
                                         << " -db (balance " << balance_ << ") =====\n";
    }
    pid_ = spawn({"haproxy", "-f", cfg_.string(), "-db"}, log_);
    const auto deadline = steady::now() + 10s;
    auto http = client::HttpClient("127.0.0.1", stats_port_, 1s);
    while (steady::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        why = "haproxy exited: " + tail_lines(read_file(log_), 20);
        break;
      }
      try {
        if (http.get("/;csv").status == 200) return;
      } catch (const std::exception& e) {
        why = e.what();
      }
      std::this_thread::sleep_for(50ms);
    }
    stop();
    if (why.find("bind") == std::string::npos) break;  // only a port clash is worth a retry
  }
  throw std::runtime_error("haproxy did not start: " + why + "\nconfig " + cfg_.string() + "\n" +
                           tail_lines(read_file(log_), 20));
}

std::map<std::string, std::map<std::string, std::string>> Haproxy::stats() {
  std::map<std::string, std::map<std::string, std::string>> out;
  auto res = client::HttpClient("127.0.0.1", stats_port_, 2s).get("/;csv");
  if (res.status != 200) return out;
  std::istringstream in(res.body);
  std::string line;
  std::vector<std::string> header;
  auto split = [](const std::string& s) {
    std::vector<std::string> v;
    std::string cur;
    for (char c : s) {
      if (c == ',') {
        v.push_back(cur);
        cur.clear();
      } else {
        cur.push_back(c);
      }
    }
    v.push_back(cur);
    return v;
  };
  while (std::getline(in, line)) {
    if (line.rfind("# ", 0) == 0) {
      header = split(line.substr(2));
      continue;
    }
    auto f = split(line);
    if (header.empty() || f.size() < 2 || f[0] != "parleyd" || f[1] == "BACKEND" ||
        f[1] == "FRONTEND") {
      continue;
    }
    auto& row = out[f[1]];
    for (std::size_t i = 0; i < header.size() && i < f.size(); ++i) row[header[i]] = f[i];
  }
  return out;
}

bool Haproxy::wait_server(const std::string& name, const std::string& status,
                          std::chrono::milliseconds timeout) {
  return test::eventually(
      [&] {
        try {
          auto s = stats();
          auto it = s.find(name);
          return it != s.end() && it->second["status"] == status;
        } catch (const std::exception&) {
          return false;
        }
      },
      timeout);
}

bool Haproxy::wait_all(const std::string& status, std::chrono::milliseconds timeout) {
  for (const auto& s : servers_) {
    if (!wait_server(s.name, status, timeout)) return false;
  }
  return true;
}

std::string Haproxy::log_tail(std::size_t lines) const {
  return tail_lines(read_file(log_), lines);
}

// ---------------------------------------------------------------------------------------------

std::string register_user(const client::Endpoint& at, const std::string& name) {
  client::HttpClient http(at, 10s);
  return client::register_user(http, name, "pw-" + name + "-secret").token;
}

std::vector<json> room_history(const client::Endpoint& at, const std::string& token,
                               const std::string& room) {
  std::vector<json> out;
  std::optional<std::uint64_t> before;
  client::HttpClient http(at, 10s);
  for (int page = 0; page < 100000; ++page) {
    std::string target =
        "/api/v1/rooms/" + client::url_encode_segment(room) + "/messages?limit=200";
    if (before) target += "&before=" + std::to_string(*before);
    auto res = http.get(target, token);
    if (res.status != 200) {
      throw std::runtime_error("GET " + target + ": " + std::to_string(res.status) + " " +
                               res.body);
    }
    auto j = res.json();
    auto msgs = j.at("messages");
    out.insert(out.begin(), msgs.begin(), msgs.end());
    if (!j.at("has_more").get<bool>() || msgs.empty()) break;
    before = msgs.front().at("seq").get<std::uint64_t>();
  }
  return out;
}

std::map<std::string, std::uint64_t> room_last_seqs(const client::Endpoint& at,
                                                    const std::string& token) {
  auto res = client::HttpClient(at, 10s).get("/api/v1/rooms", token);
  if (res.status != 200) {
    throw std::runtime_error("GET /api/v1/rooms: " + std::to_string(res.status) + " " + res.body);
  }
  std::map<std::string, std::uint64_t> out;
  const auto body = res.json();
  for (const auto& r : body.at("rooms")) {
    out[r.at("room").get<std::string>()] = r.at("last_seq").get<std::uint64_t>();
  }
  return out;
}

}  // namespace parley::cluster
