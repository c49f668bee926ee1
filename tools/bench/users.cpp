#include "bench/users.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "client/api.hpp"

namespace parley::bench {

std::string user_name(const UserOptions& o, std::size_t i) {
  return o.prefix + std::to_string(i);
}

namespace {

std::string default_token_file(const UserOptions& o) {
  const char* tmp = std::getenv("TMPDIR");
  return std::string(tmp && *tmp ? tmp : "/tmp") + "/parley-bench-" + o.http.host + "-" +
         std::to_string(o.http.port) + "-" + o.prefix + ".tokens";
}

}  // namespace

std::vector<std::string> ensure_users(const UserOptions& o, std::size_t count) {
  const std::string path = o.token_file.empty() ? default_token_file(o) : o.token_file;
  std::map<std::string, std::string> cache;
  {
    std::ifstream in(path);
    std::string user, token;
    while (in >> user >> token) cache[user] = token;
  }
  client::HttpClient http(o.http, std::chrono::seconds(30));
  // A cache from an earlier server (another data directory on the same port) is worthless:
  // check one token and drop them all when it is refused.
  if (!cache.empty()) {
    const auto& [u, t] = *cache.begin();
    auto res = http.get("/api/v1/rooms", t);
    if (res.status == 401) {
      if (!o.quiet)
        std::fprintf(stderr, "token cache %s is stale (user %s refused): re-registering\n",
                     path.c_str(), u.c_str());
      cache.clear();
    } else if (res.status != 200) {
      throw std::runtime_error("GET /api/v1/rooms answered " + std::to_string(res.status) + ": " +
                               res.body);
    }
  }
  std::vector<std::string> tokens(count);
  std::vector<std::size_t> missing;
  for (std::size_t i = 0; i < count; ++i) {
    auto it = cache.find(user_name(o, i));
    if (it != cache.end())
      tokens[i] = it->second;
    else
      missing.push_back(i);
  }
  if (!missing.empty()) {
    if (!o.quiet) {
      std::fprintf(
          stderr, "registering %zu users (%s...) with %u parallel requests; tokens cached in %s\n",
          missing.size(), user_name(o, missing.front()).c_str(), o.concurrency, path.c_str());
    }
    std::atomic<std::size_t> next{0}, done{0};
    std::mutex mu;
    std::string first_error;
    auto started = std::chrono::steady_clock::now();
    auto work = [&] {
      client::HttpClient h(o.http, std::chrono::seconds(60));
      for (;;) {
        std::size_t k = next++;
        if (k >= missing.size()) return;
        std::size_t i = missing[k];
        const std::string name = user_name(o, i);
        try {
          client::Credentials c;
          try {
            c = client::register_user(h, name, o.password);
          } catch (const client::ApiError& e) {
            if (e.status() != 409) throw;
            c = client::login(h, name, o.password);  // registered by an earlier run
          }
          tokens[i] = c.token;
        } catch (const std::exception& e) {
          std::lock_guard lock(mu);
          if (first_error.empty()) first_error = name + ": " + e.what();
          return;
        }
        std::size_t d = ++done;
        if (!o.quiet && d % 500 == 0) std::fprintf(stderr, "  %zu/%zu users\n", d, missing.size());
      }
    };
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < std::max(1u, o.concurrency); ++t) threads.emplace_back(work);
    for (auto& t : threads) t.join();
    if (!first_error.empty()) throw std::runtime_error("registering users failed: " + first_error);
    if (!o.quiet) {
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      std::fprintf(stderr, "registered %zu users in %.1f s\n", missing.size(), s);
    }
    for (std::size_t i : missing) cache[user_name(o, i)] = tokens[i];
    std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      for (const auto& [u, t] : cache) out << u << ' ' << t << '\n';
    }
    std::rename(tmp.c_str(), path.c_str());
  }
  return tokens;
}

}  // namespace parley::bench
