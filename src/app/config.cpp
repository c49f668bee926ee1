#include "app/config.hpp"

#include <toml++/toml.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <thread>

#include "bus/rabbitmq/rabbitmq_bus.hpp"
#include "core/throttle.hpp"

namespace parley::app {

namespace {

// One setting: its flag (and TOML key), help, the default shown in --help, and how to apply a
// textual value (returning an error message on a bad value).
struct Setting {
  std::string name;
  std::string help;
  std::string default_text;
  std::function<std::optional<std::string>(const std::string&)> apply;
  std::optional<std::string> cli_value;
};

template <class T>
std::function<std::optional<std::string>(const std::string&)> number(T& target, T min, T max) {
  return [&target, min, max](const std::string& v) -> std::optional<std::string> {
    T n{};
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p != v.data() + v.size() || n < min || n > max) {
      return "expects a whole number from " + std::to_string(min) + " to " + std::to_string(max) +
             ", got '" + v + "'";
    }
    target = n;
    return std::nullopt;
  };
}

std::function<std::optional<std::string>(const std::string&)> real(double& target, double min) {
  return [&target, min](const std::string& v) -> std::optional<std::string> {
    char* end = nullptr;
    double d = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !(d >= min)) {
      return "expects a number >= " + std::to_string(min) + ", got '" + v + "'";
    }
    target = d;
    return std::nullopt;
  };
}

std::function<std::optional<std::string>(const std::string&)> millis(std::chrono::milliseconds& t) {
  return [&t](const std::string& v) -> std::optional<std::string> {
    long n = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || p != v.data() + v.size() || n < 0) {
      return "expects milliseconds (a whole number >= 0), got '" + v + "'";
    }
    t = std::chrono::milliseconds(n);
    return std::nullopt;
  };
}

std::function<std::optional<std::string>(const std::string&)> text(std::string& t) {
  return [&t](const std::string& v) -> std::optional<std::string> {
    t = v;
    return std::nullopt;
  };
}

// --bus-exchange, with the RabbitMQ adapter's rule. Checked here, whatever --bus says, so that a
// bad name is refused like any other bad flag value (exit 2, one line naming the flag) instead of
// failing later as a bus that cannot be created, or passing unnoticed with --bus inproc.
std::function<std::optional<std::string>(const std::string&)> exchange_name(std::string& t) {
  return [&t](const std::string& v) -> std::optional<std::string> {
    if (!bus::valid_exchange_name(v)) {
      return "expects " + std::string(bus::kExchangeNameRule) + ", got '" + v + "'";
    }
    t = v;
    return std::nullopt;
  };
}

std::string toml_to_text(const toml::node& n) {
  if (auto s = n.as_string()) return s->get();
  if (auto i = n.as_integer()) return std::to_string(i->get());
  if (auto f = n.as_floating_point()) return std::to_string(f->get());
  if (auto b = n.as_boolean()) return b->get() ? "true" : "false";
  return {};
}

std::string default_web_root() {
  // Installed layout first (<prefix>/bin/parleyd and <prefix>/share/parley/web), then the
  // source tree the binary was built from.
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto installed = exe.parent_path().parent_path() / "share" / "parley" / "web";
    if (std::filesystem::is_directory(installed, ec)) return installed.string();
  }
  return PARLEY_SOURCE_WEB_ROOT;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "parley";
  return buf;
}

}  // namespace

Result<ParseOutcome, std::string> parse_config(int argc, char** argv, Config& c) {
  auto& t = c.transport;
  t.threads = std::max(1u, std::thread::hardware_concurrency());
  t.web_root = default_web_root();
  std::string node_id;
  unsigned long write_queue = t.write_queue_bytes, max_frame = t.max_frame_bytes,
                max_body = t.max_http_body_bytes, cache_per_room = t.cache_per_room,
                cache_rooms = t.cache_rooms, replay_page = t.replay_page,
                argon2_mem_kib = t.argon2_memlimit / 1024;
  unsigned long body_cp = t.protocol.max_body_code_points;
  unsigned history_max = t.protocol.max_history_limit;
  unsigned long max_ref = t.protocol.max_ref, max_cmid = t.protocol.max_client_msg_id,
                max_watch = t.protocol.max_watch_users, max_cursors = t.protocol.max_cursors,
                max_pipelined = t.max_pipelined, max_watched = t.max_watched_users;
  long token_ttl = t.token_ttl_s;
  long token_cache_ttl = t.token_cache_ttl.count();
  auto& th = t.throttle;
  unsigned long max_conn_ip = th.max_connections_per_ip,
                max_conn_user = th.max_connections_per_user;
  std::string allowed_origins, trusted_proxies;

  // One row per setting, kept on one line each so the table reads as a table.
  // clang-format off
  std::vector<Setting> settings = {
      {"listen", "HTTP + WebSocket address HOST:PORT", c.listen, text(c.listen), {}},
      {"store", "sqlite:PATH or a PostgreSQL URL postgresql://...", c.store, text(c.store), {}},
      {"bus", "inproc or an AMQP URL amqp://user:pass@host:port/vhost", c.bus, text(c.bus), {}},
      {"node-id", "this node's name in logs, metrics and welcome", "host name + port", text(node_id), {}},
      {"threads", "I/O threads", "number of cores", number(t.threads, 1u, 256u), {}},
      {"web-root", "directory of the static web client", "the one installed with the binary", text(t.web_root), {}},
      {"send-rate", "sends per second per user per node (token bucket refill)", "20", real(t.send_rate.per_second, 0.001), {}},
      {"send-burst", "send burst per user per node (token bucket size)", "40", real(t.send_rate.burst, 1), {}},
      {"max-frame-bytes", "largest WebSocket message accepted; larger closes 1009", "65536", number(max_frame, 128ul, 64ul << 20), {}},
      {"max-body-code-points", "longest message body in Unicode code points", "4000", number(body_cp, 1ul, 1ul << 20), {}},
      {"max-http-body-bytes", "largest HTTP request body; larger is 413", "65536", number(max_body, 256ul, 64ul << 20), {}},
      {"write-queue-bytes", "bytes queued for one client before it is closed 1008 slow consumer", "4194304", number(write_queue, 1024ul, 1ul << 32), {}},
      {"auth-timeout-ms", "time a new WebSocket has to send auth", "5000", millis(t.auth_timeout), {}},
      {"http-request-timeout-ms", "time an HTTP connection has to send each request (idle keep-alive included)", "30000", millis(t.http_request_timeout), {}},
      {"drain-window-ms", "on SIGTERM, closes (1001) are spread over this window", "2000", millis(t.drain_window), {}},
      {"heartbeat-ms", "interval of this node's heartbeat on the bus", "1000", millis(t.heartbeat_interval), {}},
      {"node-timeout-ms", "a node silent this long is taken for dead and its users go offline", "5000", millis(t.node_timeout), {}},
      {"token-ttl-s", "session token lifetime in seconds", "2592000", number(token_ttl, 60l, 10l * 365 * 86400), {}},
      {"token-cache-ttl-s", "seconds a node reuses a token lookup before reading the store again (0: no cache)", "60", number(token_cache_ttl, 0l, 3600l), {}},
      {"max-ref-chars", "longest `ref` on a request, in code points", "64", number(max_ref, 1ul, 4096ul), {}},
      {"max-client-msg-id-chars", "longest client_msg_id, in code points", "64", number(max_cmid, 1ul, 4096ul), {}},
      {"max-watch-users", "users one watch request may name", "1000", number(max_watch, 1ul, 1ul << 20), {}},
      {"max-watched-users", "distinct users one connection may watch in all; a watch past it is bad_request", "10000", number(max_watched, 1ul, 1ul << 24), {}},
      {"typing-rate", "typing events per second per user per node (token bucket refill)", "2", real(t.typing_rate.per_second, 0.001), {}},
      {"typing-burst", "typing burst per user per node (token bucket size)", "10", real(t.typing_rate.burst, 1), {}},
      {"max-cursors", "rooms one auth frame may carry cursors for", "10000", number(max_cursors, 1ul, 1ul << 24), {}},
      {"max-pipelined", "requests a client may send after auth before welcome", "64", number(max_pipelined, 0ul, 1ul << 16), {}},
      {"history-max-limit", "largest history page", "200", number(history_max, 1u, 10000u), {}},
      {"replay-page", "messages fetched per round trip while resuming", "500", number(replay_page, 10ul, 100000ul), {}},
      {"cache-per-room", "recent messages cached per room", "256", number(cache_per_room, 0ul, 1ul << 20), {}},
      {"cache-rooms", "rooms kept in the recent-message cache", "4096", number(cache_rooms, 16ul, 1ul << 24), {}},
      {"argon2-opslimit", "Argon2id passes (OWASP minimum 2)", "2", number(t.argon2_opslimit, std::uint64_t{1}, std::uint64_t{100}), {}},
      {"argon2-memlimit-kib", "Argon2id memory in KiB (OWASP minimum 19456)", "19456", number(argon2_mem_kib, 8ul, 4ul << 20), {}},
      {"hash-threads", "threads that hash passwords", "2", number(t.hash_threads, 1u, 64u), {}},
      {"store-readers", "SQLite reader threads", "2", number(c.store_readers, 1u, 64u), {}},
      {"sqlite-cache-mib", "page cache of the SQLite writer connection, in MiB (memory it may keep)", "64", number(c.sqlite_cache_mib, 1u, 65536u), {}},
      {"store-pool", "PostgreSQL connections (writer and readers)", "4", number(c.store_pool, 2u, 256u), {}},
      {"bus-exchange", "AMQP topic exchange the nodes of one cluster share; clusters sharing a broker (or vhost) need distinct names", c.bus_exchange, exchange_name(c.bus_exchange), {}},
      {"bus-consume-delay-ms", "testing only: the RabbitMQ consumer sleeps this long per message, so this node's queue fills (0: off)", "0", number(c.bus_consume_delay_ms, 0u, 10000u), {}},
      {"trusted-proxies", "comma-separated addresses of proxies whose X-Forwarded-For names the client (per-address limits then count the client)", "none", text(trusted_proxies), {}},
      {"allowed-origins", "comma-separated origins (or *) whose pages may open a WebSocket besides the server's own", "none: same origin, or no Origin header", text(allowed_origins), {}},
      {"login-rate-per-user", "failed logins per second per username (token bucket refill)", "0.1", real(th.login.per_user.per_second, 0), {}},
      {"login-burst-per-user", "failed logins per username before 429 (0: no limit)", "10", real(th.login.per_user.burst, 0), {}},
      {"login-rate-per-ip", "failed logins per second per client address (token bucket refill)", "1", real(th.login.per_ip.per_second, 0), {}},
      {"login-burst-per-ip", "failed logins per client address before 429 (0: no limit)", "50", real(th.login.per_ip.burst, 0), {}},
      {"register-rate-per-ip", "registrations per second per client address (token bucket refill)", "1", real(th.register_per_ip.per_second, 0), {}},
      {"register-burst-per-ip", "registrations per client address before 429 (0: no limit)", "100", real(th.register_per_ip.burst, 0), {}},
      {"max-connections-per-ip", "WebSocket connections per client address; more get 429 (0: no cap)", "0", number(max_conn_ip, 0ul, 1ul << 24), {}},
      {"max-connections-per-user", "WebSocket sessions per user on this node; more are closed 1008 (0: no cap)", "256", number(max_conn_user, 0ul, 1ul << 24), {}},
      {"log-level", "trace, debug, info, warn, error or off", c.log_level, text(c.log_level), {}},
      {"log-format", "text or json", c.log_format, text(c.log_format), {}},
  };
  // clang-format on

  CLI::App cli{
      "parleyd: the Parley chat server. Every flag is also a key of the --config TOML file.",
      "parleyd"};
  cli.set_help_flag("-h,--help", "Print this help and exit");
  std::string config_file;
  cli.add_option("--config", config_file, "TOML file with any of the settings below");
  for (auto& s : settings) {
    cli.add_option("--" + s.name, s.cli_value, s.help + " (default: " + s.default_text + ")");
  }
  try {
    cli.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << cli.help();
    return ParseOutcome::exit_ok;
  } catch (const CLI::ParseError& e) {
    return unexpected(std::string(e.what()) + " (see parleyd --help)");
  }

  std::map<std::string, std::string> file_values;
  if (!config_file.empty()) {
    try {
      auto tbl = toml::parse_file(config_file);
      for (auto& [k, v] : tbl) {
        std::string key(k.str());
        auto it = std::find_if(settings.begin(), settings.end(),
                               [&](const Setting& s) { return s.name == key; });
        if (it == settings.end()) {
          return unexpected("config file " + config_file + ": unknown key '" + key + "'");
        }
        std::string value = toml_to_text(v);
        if (value.empty() && !v.is_string()) {
          return unexpected("config file " + config_file + ": key '" + key +
                            "' must be a string or number");
        }
        file_values[key] = value;
      }
    } catch (const toml::parse_error& e) {
      return unexpected("config file " + config_file + ": " + std::string(e.description()) +
                        " at line " + std::to_string(e.source().begin.line));
    }
  }
  for (auto& s : settings) {
    std::optional<std::string> v = s.cli_value;
    const char* where = "--";
    if (!v) {
      auto f = file_values.find(s.name);
      if (f != file_values.end()) {
        v = f->second;
        where = "config key ";
      }
    }
    if (!v) continue;
    if (auto err = s.apply(*v)) return unexpected(std::string(where) + s.name + " " + *err);
  }

  // Derived and checked values.
  auto colon = c.listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return unexpected("--listen expects HOST:PORT, got '" + c.listen + "'");
  }
  t.host = c.listen.substr(0, colon);
  if (t.host.size() > 2 && t.host.front() == '[' && t.host.back() == ']') {
    t.host = t.host.substr(1, t.host.size() - 2);
  }
  unsigned port = 0;
  auto ps = c.listen.substr(colon + 1);
  auto [p, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), port);
  if (ec != std::errc() || p != ps.data() + ps.size() || port > 65535) {
    return unexpected("--listen expects HOST:PORT with a port from 0 to 65535, got '" + c.listen +
                      "'");
  }
  t.port = static_cast<std::uint16_t>(port);
  t.node_id = node_id.empty() ? host_name() + ":" + std::to_string(port) : node_id;
  t.write_queue_bytes = write_queue;
  t.max_frame_bytes = max_frame;
  t.max_http_body_bytes = max_body;
  t.cache_per_room = cache_per_room;
  t.cache_rooms = cache_rooms;
  t.replay_page = replay_page;
  t.argon2_memlimit = argon2_mem_kib * 1024;
  t.token_ttl_s = token_ttl;
  t.token_cache_ttl = std::chrono::seconds(token_cache_ttl);
  t.protocol.max_body_code_points = body_cp;
  t.protocol.max_history_limit = history_max;
  t.protocol.max_ref = max_ref;
  t.protocol.max_client_msg_id = max_cmid;
  t.protocol.max_watch_users = max_watch;
  t.protocol.max_cursors = max_cursors;
  t.max_pipelined = max_pipelined;
  t.max_watched_users = max_watched;
  th.max_connections_per_ip = max_conn_ip;
  th.max_connections_per_user = max_conn_user;
  th.allowed_origins = core::split_list(allowed_origins);
  th.trusted_proxies = core::split_list(trusted_proxies);
  for (const auto& [name, limit] : {std::pair{"login-rate-per-user", th.login.per_user},
                                    std::pair{"login-rate-per-ip", th.login.per_ip},
                                    std::pair{"register-rate-per-ip", th.register_per_ip}}) {
    if (!std::isfinite(limit.per_second) || !std::isfinite(limit.burst) ||
        (limit.burst > 0 && limit.burst < 1)) {
      std::string burst(name);
      burst.replace(burst.find("-rate-"), 6, "-burst-");
      return unexpected("--" + std::string(name) + " and --" + burst +
                        " expect finite numbers, and a burst of 0 (no limit) or at least 1");
    }
  }
  if (t.protocol.default_history_limit > history_max)
    t.protocol.default_history_limit = history_max;
  if (c.log_format != "text" && c.log_format != "json") {
    return unexpected("--log-format expects text or json, got '" + c.log_format + "'");
  }
  static const char* levels[] = {"trace", "debug", "info", "warn", "error", "off"};
  if (std::find(std::begin(levels), std::end(levels), c.log_level) == std::end(levels)) {
    return unexpected("--log-level expects trace, debug, info, warn, error or off, got '" +
                      c.log_level + "'");
  }
  return ParseOutcome::run;
}

}  // namespace parley::app
