#pragma once
// The subcommands of the `parley` CLI. Each returns the process exit code; see exit_code.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "client/http_client.hpp"

namespace parley::cli {

// Exit codes, also listed in `parley --help`.
namespace exit_code {
inline constexpr int ok = 0;
inline constexpr int server_error = 1;  // the server refused the request (not found, forbidden…)
inline constexpr int usage = 2;         // bad command line
inline constexpr int auth = 3;          // not logged in, bad credentials, dead token
inline constexpr int connection = 4;    // cannot reach the server, or it stopped answering
}  // namespace exit_code

struct GlobalOptions {
  client::Endpoint server;
  std::string user;      // --user or PARLEY_USER
  std::string password;  // --password or PARLEY_PASSWORD
  bool verbose = false;
};

int cmd_register(const GlobalOptions& g);
int cmd_login(const GlobalOptions& g);
int cmd_logout(const GlobalOptions& g);
int cmd_rooms(const GlobalOptions& g);
int cmd_join(const GlobalOptions& g, const std::string& room);
int cmd_create(const GlobalOptions& g, const std::string& room, bool is_private);
int cmd_send(const GlobalOptions& g, const std::string& room, const std::string& text);

struct TailOptions {
  std::vector<std::string> rooms;
  std::uint64_t last = 0;   // without a saved cursor, start this many messages back
  std::uint64_t count = 0;  // exit after printing this many messages (0: never)
};
int cmd_tail(const GlobalOptions& g, const TailOptions& t);

int cmd_history(const GlobalOptions& g, const std::string& room,
                std::optional<std::uint64_t> before, std::uint32_t limit);

}  // namespace parley::cli
