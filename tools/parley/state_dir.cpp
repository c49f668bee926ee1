#include "parley/state_dir.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace parley::cli {

namespace fs = std::filesystem;

namespace {

fs::path base_dir() {
  if (const char* home = std::getenv("PARLEY_HOME"); home && *home) return fs::path(home);
  if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg && *xdg) {
    return fs::path(xdg) / "parley";
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    return fs::path(home) / ".config" / "parley";
  }
  throw std::runtime_error("cannot find a state directory: set PARLEY_HOME or HOME");
}

std::optional<std::string> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

StateDir::StateDir(const client::Endpoint& server) {
  dir_ = base_dir() / (server.host + "-" + std::to_string(server.port));
}

std::optional<StateDir::Token> StateDir::load_token() const {
  auto token = read_file(dir_ / "token");
  if (!token) return std::nullopt;
  Token t;
  t.token = trim(*token);
  t.user = trim(read_file(dir_ / "user").value_or(""));
  if (t.token.empty()) return std::nullopt;
  return t;
}

void StateDir::save_token(const std::string& user, const std::string& token) const {
  write_atomically(dir_ / "user", user + "\n");
  write_atomically(dir_ / "token", token + "\n");
}

void StateDir::remove_token() const {
  std::error_code ec;
  fs::remove(dir_ / "token", ec);
  fs::remove(dir_ / "user", ec);
}

fs::path StateDir::cursor_path(const std::string& user, const std::string& room) const {
  return dir_ / ("cursor." + user + "." + room);
}

std::optional<std::uint64_t> StateDir::load_cursor(const std::string& user,
                                                   const std::string& room) const {
  auto text = read_file(cursor_path(user, room));
  if (!text) return std::nullopt;
  try {
    return std::stoull(trim(*text));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

void StateDir::save_cursor(const std::string& user, const std::string& room,
                           std::uint64_t seq) const {
  write_atomically(cursor_path(user, room), std::to_string(seq) + "\n");
}

void StateDir::write_atomically(const fs::path& p, const std::string& content) const {
  fs::create_directories(dir_);
  ::chmod(dir_.c_str(), 0700);
  auto tmp = p;
  tmp += ".tmp." + std::to_string(::getpid());
  // The token is a credential: the file is created readable by its owner only.
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot write " + tmp.string());
  const char* data = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    auto n = ::write(fd, data, left);
    if (n < 0) {
      ::close(fd);
      throw std::runtime_error("cannot write " + tmp.string());
    }
    data += n;
    left -= static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (std::rename(tmp.c_str(), p.c_str()) != 0) {
    throw std::runtime_error("cannot replace " + p.string());
  }
}

}  // namespace parley::cli
