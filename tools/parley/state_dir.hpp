#pragma once
// Where the CLI keeps what must outlive one invocation: the session token of each server and
// the per-room cursors of `tail`. One directory per server (host and port), so that logging in
// to a second server does not replace the first one's token.
//
// Layout, under $PARLEY_HOME, else $XDG_CONFIG_HOME/parley, else ~/.config/parley:
//   <host>-<port>/token                the bearer token (mode 0600)
//   <host>-<port>/user                 the user the token belongs to
//   <host>-<port>/cursor.<user>.<room> the last seq `tail` printed for that user and room

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "client/http_client.hpp"

namespace parley::cli {

class StateDir {
 public:
  explicit StateDir(const client::Endpoint& server);

  const std::filesystem::path& path() const { return dir_; }

  struct Token {
    std::string user;
    std::string token;
  };
  std::optional<Token> load_token() const;
  void save_token(const std::string& user, const std::string& token) const;
  void remove_token() const;

  std::optional<std::uint64_t> load_cursor(const std::string& user, const std::string& room) const;
  void save_cursor(const std::string& user, const std::string& room, std::uint64_t seq) const;

 private:
  std::filesystem::path cursor_path(const std::string& user, const std::string& room) const;
  // Writes through a temporary file and a rename, so that a crash or a concurrent reader never
  // sees a half-written file.
  void write_atomically(const std::filesystem::path& p, const std::string& content) const;

  std::filesystem::path dir_;
};

}  // namespace parley::cli
