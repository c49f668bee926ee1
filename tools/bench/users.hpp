#pragma once
// Benchmark users: registered once (Argon2 hashing makes registration slow on purpose), their
// tokens kept in a small file and reused by every later run against the same server, so that
// connections authenticate by token as real clients do.

#include <cstddef>
#include <string>
#include <vector>

#include "client/http_client.hpp"

namespace parley::bench {

struct UserOptions {
  client::Endpoint http;         // where to register (a node or HAProxy)
  std::string prefix = "bench";  // users are <prefix>0, <prefix>1, ...
  std::string password = "bench-password";
  std::string token_file;    // "" = default under $TMPDIR
  unsigned concurrency = 8;  // parallel registrations
  bool quiet = false;
};

// Returns `count` tokens, index i for user <prefix><i>. Throws std::runtime_error on failure.
std::vector<std::string> ensure_users(const UserOptions& o, std::size_t count);

std::string user_name(const UserOptions& o, std::size_t i);

}  // namespace parley::bench
