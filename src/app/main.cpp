// parleyd: wiring. This is the only place that names concrete adapters: it picks the store and
// the bus from their URLs, builds the node and the listener, and runs until SIGTERM drains it.

#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdio>
#include <memory>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

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

void setup_logging(const app::Config& c) {
  auto logger = spdlog::stderr_color_mt("parleyd");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(c.log_level));
  if (c.log_format == "json") {
    // Messages never carry tokens, passwords or bodies, and are plain ASCII text from our code.
    spdlog::set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","node":")" +
                        c.transport.node_id + R"(","msg":"%v"})");
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
    if (o.path.empty()) return unexpected(std::string("--store sqlite: needs a path, e.g. sqlite:./data/parley.db"));
    o.reader_threads = c.store_readers;
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
    auto b = bus::RabbitmqBus::create(std::move(o));
    if (!b) return unexpected("--bus: " + b.error());
    return std::unique_ptr<bus::Bus>(std::move(*b));
  }
  return unexpected("--bus expects inproc or amqp://..., got '" + c.bus + "'");
}

}  // namespace

int main(int argc, char** argv) {
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
  registry.gauge("parley_build_info", "Build information.",
                 {{"version", PARLEY_VERSION}, {"node", config.transport.node_id}})
      .set(1);

  auto store = make_store(config, registry);
  if (!store) {
    std::fprintf(stderr, "parleyd: %s\n", store.error().c_str());
    return 1;
  }
  auto bus = make_bus(config, registry);
  if (!bus) {
    std::fprintf(stderr, "parleyd: %s\n", bus.error().c_str());
    return 1;
  }
  auto node = std::make_unique<transport::Node>(config.transport, **store, **bus, registry);
  auto server = std::make_unique<transport::Server>(*node);
  if (auto l = server->listen(); !l) {
    std::fprintf(stderr, "parleyd: %s\n", l.error().c_str());
    return 1;
  }
  node->start();
  server->start_accepting();
  spdlog::info("parleyd {} node {} listening on http://{}:{} (store {}, bus {}, {} I/O threads)",
               PARLEY_VERSION, config.transport.node_id, config.transport.host, server->port(),
               config.store.rfind("sqlite:", 0) == 0 ? config.store : std::string("postgresql"),
               config.bus.rfind("amqp", 0) == 0 ? "amqp" : config.bus, config.transport.threads);

  boost::asio::signal_set signals(node->shard(0).ioc(), SIGTERM, SIGINT);
  signals.async_wait([&](boost::system::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("received signal {}: draining", sig);
    server->drain([&] { node->stop(); });
  });
  node->join();

  // Shut down in dependency order: no new work, then the bus, then the store (which completes its
  // queued operations into the stopped node), then the node's memory.
  server.reset();
  (*bus)->stop();
  store->reset();
  node.reset();
  spdlog::info("parleyd stopped");
  return 0;
}
