// parleyd: wiring. This is the only place that names concrete adapters: it picks the store and
// the bus from their URLs, builds the node and the listener, and runs until SIGTERM drains it.

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "app/config.hpp"
#include "bus/inproc/inproc_bus.hpp"
#include "bus/rabbitmq/rabbitmq_bus.hpp"
#include "metrics/metrics.hpp"
#include "metrics/process.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/sqlite/sqlite_store.hpp"
#include "transport/node.hpp"
#include "transport/server.hpp"
#include "transport/shard.hpp"

namespace {

using namespace parley;

// A JSON string's contents: quote, backslash and control characters escaped, so that every
// line of --log-format json parses whatever a message holds (a peer's address, a store error).
// Length of the valid UTF-8 sequence starting at s[i] (2..4), or 0 when it is not one.
std::size_t utf8_len(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  std::size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xc0) != 0x80) return 0;
  }
  if (n == 3 && ((c == 0xe0 && b(1) < 0xa0) || (c == 0xed && b(1) > 0x9f))) return 0;
  if (n == 4 && ((c == 0xf0 && b(1) < 0x90) || (c == 0xf4 && b(1) > 0x8f))) return 0;
  return n;
}

void append_json_escaped(std::string_view in, spdlog::memory_buf_t& dest) {
  static constexpr char hex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c >= 0x80) {
      // Valid UTF-8 passes through; any other byte becomes U+FFFD, so the line stays JSON.
      if (const auto n = utf8_len(in, i); n > 0) {
        dest.append(in.data() + i, in.data() + i + n);
        i += n - 1;
      } else {
        dest.append(std::string_view("\\ufffd"));
      }
      continue;
    }
    switch (c) {
      case '"':
        dest.append(std::string_view("\\\""));
        break;
      case '\\':
        dest.append(std::string_view("\\\\"));
        break;
      case '\n':
        dest.append(std::string_view("\\n"));
        break;
      case '\r':
        dest.append(std::string_view("\\r"));
        break;
      case '\t':
        dest.append(std::string_view("\\t"));
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          const char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
          dest.append(esc, esc + 6);
        } else {
          dest.push_back(static_cast<char>(c));
        }
    }
  }
}

// %* in the JSON pattern: the message, escaped as a JSON string's contents.
class JsonMessageFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    append_json_escaped(std::string_view(msg.payload.data(), msg.payload.size()), dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessageFlag>();
  }
};

void setup_logging(const app::Config& c) {
  auto logger = spdlog::stderr_color_mt("parleyd");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(c.log_level));
  if (c.log_format == "json") {
    // One JSON object per line; the message is escaped (it may quote a peer's input), the node
    // id too. Messages never carry tokens, passwords or bodies.
    spdlog::memory_buf_t node;
    append_json_escaped(c.transport.node_id, node);
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","node":")" +
        std::string(node.data(), node.size()) + R"(","msg":"%*"})");
    spdlog::set_formatter(std::move(f));
  } else {
    spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  }
}

Result<std::unique_ptr<store::Store>, std::string> make_store(const app::Config& c,
                                                              metrics::Registry& registry) {
  const std::string& url = c.store;
  if (url.rfind("sqlite:", 0) == 0) {
    store::SqliteOptions o;
    o.path = url.substr(7);
    if (o.path.empty())
      return unexpected(std::string("--store sqlite: needs a path, e.g. sqlite:./data/parley.db"));
    o.reader_threads = c.store_readers;
    o.writer_cache_mib = c.sqlite_cache_mib;
    auto s = store::SqliteStore::open(std::move(o), registry);
    if (!s) return unexpected(s.error());
    return std::unique_ptr<store::Store>(std::move(*s));
  }
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
    store::PostgresOptions o;
    o.url = url;
    o.pool_size = c.store_pool;
    auto s = store::PostgresStore::open(std::move(o), registry);
    if (!s) return unexpected(s.error());
    return std::unique_ptr<store::Store>(std::move(*s));
  }
  return unexpected("--store expects sqlite:PATH or postgresql://..., got '" + url + "'");
}

Result<std::unique_ptr<bus::Bus>, std::string> make_bus(const app::Config& c,
                                                        metrics::Registry& registry) {
  if (c.bus == "inproc") return std::unique_ptr<bus::Bus>(std::make_unique<bus::InprocBus>());
  if (c.bus.rfind("amqp://", 0) == 0) {
    bus::RabbitmqOptions o;
    o.url = c.bus;
    o.node_id = c.transport.node_id;
    o.metrics = &registry;
    o.exchange = c.bus_exchange;
    o.consume_delay = std::chrono::milliseconds(c.bus_consume_delay_ms);
    auto b = bus::RabbitmqBus::create(std::move(o));
    if (!b) return unexpected("--bus: " + b.error());
    return std::unique_ptr<bus::Bus>(std::move(*b));
  }
  return unexpected("--bus expects inproc or amqp://..., got '" + c.bus + "'");
}

// `parleyd admin grant|revoke USER [--store URL]`: sets or clears a user's admin flag, the one
// way to make an admin (registration never does). Safe while a node runs on the same store.
int admin_command(int argc, char** argv) {
  const char* usage = "usage: parleyd admin grant|revoke USER [--store URL]";
  app::Config config;
  std::vector<std::string> positional;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--store" && i + 1 < argc) {
      config.store = argv[++i];
    } else if (a.rfind("--store=", 0) == 0) {
      config.store = a.substr(8);
    } else if (a == "-h" || a == "--help") {
      std::printf("%s\n", usage);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "parleyd admin: unknown option %s; %s\n", a.c_str(), usage);
      return 1;
    } else {
      positional.push_back(std::move(a));
    }
  }
  if (positional.size() != 2 || (positional[0] != "grant" && positional[0] != "revoke")) {
    std::fprintf(stderr, "parleyd admin: %s\n", usage);
    return 1;
  }
  const bool grant = positional[0] == "grant";
  const std::string& user = positional[1];
  spdlog::set_level(spdlog::level::warn);  // one line of our own, not the store's start-up log
  metrics::Registry registry;
  auto store = make_store(config, registry);
  if (!store) {
    std::fprintf(stderr, "parleyd admin: cannot open the store: %s\n", store.error().c_str());
    return 1;
  }
  std::promise<Result<Ok>> done;
  auto result = done.get_future();
  (*store)->set_admin(user, grant, [&done](Result<Ok> r) { done.set_value(std::move(r)); });
  const auto r = result.get();
  store->reset();
  if (!r) {
    if (r.error() == store::StoreErrc::not_found) {
      std::fprintf(stderr, "parleyd admin: no user %s\n", user.c_str());
    } else {
      std::fprintf(stderr, "parleyd admin: cannot %s admin: %s\n", positional[0].c_str(),
                   r.error().message().c_str());
    }
    return 1;
  }
  std::printf("%s is %s an admin\n", user.c_str(), grant ? "now" : "no longer");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "admin") return admin_command(argc, argv);
  app::Config config;
  auto parsed = app::parse_config(argc, argv, config);
  if (!parsed) {
    std::fprintf(stderr, "parleyd: %s\n", parsed.error().c_str());
    return 2;
  }
  if (*parsed == app::ParseOutcome::exit_ok) return 0;
  setup_logging(config);
  // A peer that vanishes mid-write must not kill the process.
  std::signal(SIGPIPE, SIG_IGN);

  metrics::Registry registry;
  metrics::register_process_metrics(registry);
  registry
      .gauge("parley_build_info", "Build information.",
             {{"version", PARLEY_VERSION}, {"node", config.transport.node_id}})
      .set(1);

  auto store = make_store(config, registry);
  if (!store) {
    spdlog::error("parleyd: cannot open the store: {}", store.error());
    return 1;
  }
  auto bus = make_bus(config, registry);
  if (!bus) {
    spdlog::error("parleyd: cannot create the bus: {}", bus.error());
    return 1;
  }
  auto node = std::make_unique<transport::Node>(config.transport, **store, **bus, registry);
  auto server = std::make_unique<transport::Server>(*node);
  if (auto l = server->listen(); !l) {
    spdlog::error("parleyd: cannot listen: {}", l.error());
    return 1;
  }
  node->start();
  server->start_accepting();
  spdlog::info("parleyd {} node {} listening on http://{}:{} (store {}, bus {}, {} I/O threads)",
               PARLEY_VERSION, config.transport.node_id, config.transport.host, server->port(),
               config.store.rfind("sqlite:", 0) == 0 ? config.store : std::string("postgresql"),
               config.bus.rfind("amqp", 0) == 0 ? "amqp" : config.bus, config.transport.threads);

  // The signal set lives on shard 0's io_context, so it must go before the node does.
  auto signals = std::make_unique<boost::asio::signal_set>(node->shard(0).ioc(), SIGTERM, SIGINT);
  signals->async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("received signal {}: draining", sig);
    server->drain([&] { node->stop(); });
  });
  node->join();

  // Shut down in dependency order: no new work, then the bus, then the store (which completes its
  // queued operations into the stopped node), then the node's memory.
  signals.reset();
  server.reset();
  (*bus)->stop();
  store->reset();
  node.reset();
  spdlog::info("parleyd stopped");
  return 0;
}
